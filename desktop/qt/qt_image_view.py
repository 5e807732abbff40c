"""The X-ray viewer: fit, zoom, pan, 1:1, window/level, heatmap overlay, pixel readout.

Mouse: wheel zooms about the cursor, left-drag pans, right-drag changes the
window (left/right: width, i.e. contrast; up/down: level, i.e. brightness).
Double-click fits the image to the window.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

from desktop.core.imaging import Window, XRay

ZOOM_STEP = 1.25
MIN_SCALE = 0.02
MAX_SCALE = 40.0


def gray_to_qimage(gray: np.ndarray) -> QImage:
    """An 8-bit grayscale QImage that owns a copy of ``gray`` (HxW uint8)."""
    arr = np.ascontiguousarray(gray, dtype=np.uint8)
    h, w = arr.shape
    return QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8).copy()


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """An RGB888 or RGBA8888 QImage (copy) from an HxWx3/4 uint8 array."""
    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, c = arr.shape
    fmt = QImage.Format.Format_RGBA8888 if c == 4 else QImage.Format.Format_RGB888
    return QImage(arr.data, w, h, arr.strides[0], fmt).copy()


class QtImageView(QGraphicsView):
    """Shows one :class:`XRay` and, optionally, a heatmap on top."""

    #: The display window changed (by right-drag, preset or reset): a ``Window``.
    window_changed = Signal(object)
    #: Text for the status bar about the pixel under the cursor ("" when outside).
    pixel_info = Signal(str)
    #: The zoom factor changed (1.0 = one image pixel per screen pixel).
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(QColor(20, 20, 20))
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAccessibleName("X-ray image")
        self.setToolTip(
            "Wheel: zoom. Left-drag: move. Right-drag: contrast (left/right) and brightness "
            "(up/down). Double-click: fit to window."
        )
        self._image_item = QGraphicsPixmapItem()
        self._image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._heat_item = QGraphicsPixmapItem()
        self._heat_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._heat_item.setZValue(1)
        self._heat_item.setVisible(False)
        self.scene().addItem(self._image_item)
        self.scene().addItem(self._heat_item)
        self._xray: XRay | None = None
        self._window: Window | None = None
        self._range = (0.0, 1.0)
        self._fit_mode = True
        self._wl_start: tuple[QPoint, Window] | None = None
        self._heat_visible = True
        self._heat_held = False
        self._placeholder = "Open a chest X-ray: File > Open (Ctrl+O), or drop a file here."

    # --- content ----------------------------------------------------------
    @property
    def xray(self) -> XRay | None:
        return self._xray

    @property
    def display_window(self) -> Window | None:
        """The display window now shown (None: the image's default view)."""
        return self._window

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.viewport().update()

    def set_xray(self, xray: XRay | None, *, keep_view: bool = False) -> None:
        self._xray = xray
        self._window = xray.window if xray is not None else None
        self.clear_heatmap()
        if xray is None:
            self._image_item.setPixmap(QPixmap())
            self.scene().setSceneRect(QRectF())
            self.viewport().update()
            return
        lo, hi = float(np.min(xray.values)), float(np.max(xray.values))
        self._range = (lo, hi if hi > lo else lo + 1.0)
        self._image_item.setPixmap(QPixmap.fromImage(gray_to_qimage(xray.to_uint8(None))))
        self.scene().setSceneRect(QRectF(0, 0, xray.shape[1], xray.shape[0]))
        if not keep_view:
            self.fit()
        self.window_changed.emit(self._window)

    def set_window(self, window: Window | None) -> None:
        """Show the image through ``window`` (None: the default view)."""
        if self._xray is None:
            return
        self._window = window if window is not None else self._xray.window
        pixels = self._xray.to_uint8(window) if window is not None else self._xray.to_uint8(None)
        self._image_item.setPixmap(QPixmap.fromImage(gray_to_qimage(pixels)))
        self.window_changed.emit(self._window)

    def reset_window(self) -> None:
        self.set_window(None)

    def image_rgb(self) -> QImage:
        """What the viewer shows (image plus visible heatmap) at the image's resolution."""
        rect = self.scene().sceneRect()
        out = QImage(max(int(rect.width()), 1), max(int(rect.height()), 1), QImage.Format.Format_RGB888)
        out.fill(QColor(0, 0, 0))
        painter = QPainter(out)
        self.scene().render(painter, QRectF(out.rect()), rect)
        painter.end()
        return out

    # --- heatmap ----------------------------------------------------------
    def set_heatmap(self, rgba: np.ndarray | None, *, held: bool = False) -> None:
        """An RGBA (or RGB) heatmap image; stretched over the whole X-ray.

        ``held``: keep it but do not draw it (a negative result's map, until
        the user asks for it, when the window sets it again unheld).
        """
        if rgba is None or self._xray is None:
            self.clear_heatmap()
            return
        pix = QPixmap.fromImage(rgb_to_qimage(rgba))
        self._heat_item.setPixmap(pix)
        h, w = self._xray.shape
        self._heat_item.setTransform(
            self._heat_item.transform().fromScale(w / max(pix.width(), 1), h / max(pix.height(), 1))
        )
        self._heat_held = held
        self._update_heat_visibility()

    def clear_heatmap(self) -> None:
        self._heat_item.setPixmap(QPixmap())
        self._heat_held = False
        self._heat_item.setVisible(False)

    def has_heatmap(self) -> bool:
        """A heatmap is in place (drawn, switched off or held back)."""
        return not self._heat_item.pixmap().isNull()

    def heatmap_shown(self) -> bool:
        """The heatmap is drawn on the film."""
        return self.has_heatmap() and self._heat_item.isVisible()

    def heatmap_held(self) -> bool:
        """A heatmap is in place but held back (a negative result's)."""
        return self.has_heatmap() and self._heat_held

    def set_heatmap_visible(self, visible: bool) -> None:
        """The user's switch: show heatmaps or not."""
        self._heat_visible = visible
        self._update_heat_visibility()

    def _update_heat_visibility(self) -> None:
        self._heat_item.setVisible(self._heat_visible and not self._heat_held and self.has_heatmap())

    def set_heatmap_opacity(self, opacity: float) -> None:
        self._heat_item.setOpacity(min(max(opacity, 0.0), 1.0))

    def heatmap_opacity(self) -> float:
        return float(self._heat_item.opacity())

    # --- zoom ---------------------------------------------------------------
    def fit(self) -> None:
        self._fit_mode = True
        if self._xray is not None:
            self.fitInView(self._image_item, Qt.AspectRatioMode.KeepAspectRatio)
            self.zoom_changed.emit(self.zoom())

    def actual_size(self) -> None:
        """One image pixel per physical screen pixel."""
        self._fit_mode = False
        dpr = self.devicePixelRatioF() or 1.0
        self.resetTransform()
        self.scale(1.0 / dpr, 1.0 / dpr)
        self.zoom_changed.emit(self.zoom())

    def zoom(self) -> float:
        return float(self.transform().m11()) * (self.devicePixelRatioF() or 1.0)

    def zoom_by(self, factor: float) -> None:
        if self._xray is None:
            return
        current = self.transform().m11()
        target = min(max(current * factor, MIN_SCALE), MAX_SCALE)
        if target == current:
            return
        self._fit_mode = False
        self.scale(target / current, target / current)
        self.zoom_changed.emit(self.zoom())

    def zoom_in(self) -> None:
        self.zoom_by(ZOOM_STEP)

    def zoom_out(self) -> None:
        self.zoom_by(1.0 / ZOOM_STEP)

    def reset_view(self) -> None:
        """Fit and default window."""
        self.reset_window()
        self.fit()

    # --- events ---------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta().y()
        if delta and self._xray is not None:
            self.zoom_by(ZOOM_STEP ** (delta / 120.0))
            event.accept()
        else:
            super().wheelEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.fit()
        else:
            super().mouseDoubleClickEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.RightButton and self._xray is not None:
            window = self._window or self._xray.window
            self._wl_start = (event.position().toPoint(), window)
            self.viewport().setCursor(Qt.CursorShape.SizeAllCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if self._wl_start is not None and self._xray is not None:
            start, window = self._wl_start
            span = self._range[1] - self._range[0]
            step = span / 400.0
            dx = pos.x() - start.x()
            dy = pos.y() - start.y()
            width = max(window.width + dx * step, 1e-3 * span)
            center = window.center - dy * step
            self.set_window(Window(center, width, "Manual"))
            event.accept()
        else:
            super().mouseMoveEvent(event)
        self._emit_pixel_info(pos)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.RightButton and self._wl_start is not None:
            self._wl_start = None
            self.viewport().unsetCursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def leaveEvent(self, event: QEvent) -> None:
        self.pixel_info.emit("")
        super().leaveEvent(event)

    def _emit_pixel_info(self, pos: QPointF) -> None:
        self.pixel_info.emit(self.pixel_text(self.mapToScene(pos.toPoint())))

    def pixel_text(self, scene_pos: QPointF) -> str:
        """'x, y: value' for an image position, or '' outside the image."""
        if self._xray is None:
            return ""
        x, y = int(np.floor(scene_pos.x())), int(np.floor(scene_pos.y()))
        h, w = self._xray.shape
        if not (0 <= x < w and 0 <= y < h):
            return ""
        value = float(self._xray.values[y, x])
        if self._window is None or self._window is self._xray.window:
            shown = float(self._xray.pixels[y, x])
        else:
            shown = float(self._window.apply(self._xray.values[y : y + 1, x : x + 1])[0, 0])
            if self._xray.invert:
                shown = 1.0 - shown
        value_text = f"{value:.0f}" if value == round(value) else f"{value:.2f}"
        return f"Pixel x={x}, y={y}   value {value_text}   (display {shown * 255:.0f}/255)"

    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:
        super().drawForeground(painter, rect)
        if self._xray is None and self._placeholder:
            painter.save()
            painter.resetTransform()
            painter.setPen(QColor(200, 200, 200))
            font = painter.font()
            font.setPointSizeF(font.pointSizeF() * 1.3)
            painter.setFont(font)
            painter.drawText(
                self.viewport().rect(),
                int(Qt.AlignmentFlag.AlignCenter) | int(Qt.TextFlag.TextWordWrap),
                self._placeholder,
            )
            painter.restore()


__all__ = ["QtImageView", "gray_to_qimage", "rgb_to_qimage"]

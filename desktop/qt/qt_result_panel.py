"""The result panel: p(COVID-19) with a bar, the decision, model and operating point, heatmap controls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPen, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from desktop.core.overlay import SHOW_BELOW_THRESHOLD

from .qt_image_view import rgb_to_qimage
from .qt_settings import COLORMAPS

POSITIVE_COLOR = QColor(196, 58, 30)
NEGATIVE_COLOR = QColor(36, 122, 62)
NEUTRAL_COLOR = QColor(120, 120, 120)
CAUTION_COLOR = QColor(150, 90, 0)
#: The report button's tooltip while it can be used.
REPORT_TIP = "Write a PDF report of this X-ray for the remote doctor (Ctrl+E)"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.0f}%"


def operating_point_text(op: Any) -> str:
    """'Threshold 0.42. Sensitivity 95% (90-98%), specificity 70% (64-76%)' from an OperatingPoint."""
    parts = [f"Threshold {op.threshold:.2f}."]
    if op.sensitivity is not None:
        ci = f" (95% CI {_pct(op.sensitivity_ci[0])}-{_pct(op.sensitivity_ci[1])})" if op.sensitivity_ci else ""
        parts.append(f"Finds {_pct(op.sensitivity)} of COVID-19 cases{ci}.")
    if op.specificity is not None:
        ci = f" (95% CI {_pct(op.specificity_ci[0])}-{_pct(op.specificity_ci[1])})" if op.specificity_ci else ""
        parts.append(f"Clears {_pct(op.specificity)} of normal X-rays{ci}.")
    if op.sensitivity is None and op.specificity is None:
        parts.append("Not validated (no sensitivity/specificity in the model card).")
    if op.description:
        parts.append(op.description.rstrip(".") + ".")
    return " ".join(parts)


class QtProbabilityBar(QWidget):
    """A horizontal bar from 0 to 100% filled to p(COVID-19), with the threshold marked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._p: float | None = None
        self._threshold: float | None = None
        self._positive = False
        self.setMinimumHeight(34)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName("Probability of COVID-19")

    def set_values(self, p: float | None, threshold: float | None, positive: bool) -> None:
        self._p, self._threshold, self._positive = p, threshold, positive
        self.setAccessibleDescription("" if p is None else f"{100 * p:.0f} percent")
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(240, 38)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        bar = QRectF(1, 4, self.width() - 2, self.height() - 16)
        painter.setPen(QPen(self.palette().mid().color(), 1))
        painter.setBrush(self.palette().base())
        painter.drawRoundedRect(bar, 4, 4)
        if self._p is not None:
            fill = QRectF(bar)
            fill.setWidth(max(bar.width() * float(self._p), 2))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(POSITIVE_COLOR if self._positive else NEGATIVE_COLOR)
            painter.drawRoundedRect(fill, 4, 4)
        if self._threshold is not None:
            x = bar.left() + bar.width() * float(self._threshold)
            painter.setPen(QPen(self.palette().text().color(), 2, Qt.PenStyle.DashLine))
            painter.drawLine(int(x), int(bar.top() - 3), int(x), int(bar.bottom() + 3))
        font = painter.font()
        font.setPointSizeF(max(font.pointSizeF() * 0.8, 7.0))
        painter.setFont(font)
        painter.setPen(self.palette().text().color())
        bottom = QRectF(bar.left(), bar.bottom() + 1, bar.width(), 12)
        painter.drawText(bottom, int(Qt.AlignmentFlag.AlignLeft), "0%")
        painter.drawText(bottom, int(Qt.AlignmentFlag.AlignRight), "100%")
        if self._threshold is not None:
            x = bar.left() + bar.width() * float(self._threshold)
            painter.drawText(QRectF(x - 60, bar.bottom() + 1, 120, 12), int(Qt.AlignmentFlag.AlignHCenter), "threshold")
        painter.end()


def colorbar_pixmap(rgb: np.ndarray | None, width: int = 220, height: int = 14) -> QPixmap:
    """A horizontal colour bar image (from an (N, 3) or (1, N, 3) uint8 ramp)."""
    if rgb is None:
        return QPixmap()
    ramp = np.asarray(rgb, dtype=np.uint8)
    if ramp.ndim == 2:
        ramp = ramp[None, :, :]
    ramp = np.repeat(ramp[:1], height, axis=0)
    return QPixmap.fromImage(rgb_to_qimage(ramp).scaled(width, height))


class QtVerticalScrollArea(QScrollArea):
    """Scrolls vertically only, giving its widget the height its word-wrapped text needs."""

    def __init__(self, widget: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidget(widget)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._fit)
        changed = getattr(widget, "content_changed", None)
        if changed is not None:
            changed.connect(self._timer.start)

    def _fit(self) -> None:
        widget = self.widget()
        layout = widget.layout() if widget is not None else None
        if widget is None or layout is None:
            return
        width = self.viewport().width()
        height = layout.totalHeightForWidth(width) if layout.hasHeightForWidth() else -1
        height = max(height, layout.totalMinimumSize().height())
        if height > 0 and widget.minimumHeight() != height:
            widget.setMinimumHeight(height)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._timer.start()


class QtResultPanel(QWidget):
    """Shows one prediction and lets the user change model, operating point and heatmap."""

    model_selected = Signal(str)
    operating_point_selected = Signal(str)
    heatmap_toggled = Signal(bool)
    #: "Show the heatmap for a negative result too" changed.
    heatmap_below_toggled = Signal(bool)
    opacity_changed = Signal(float)
    colormap_changed = Signal(str)
    model_card_requested = Signal()
    report_requested = Signal()
    #: Texts changed (the scroll area re-fits the panel's height).
    content_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ops: dict[str, Any] = {}
        self._updating = False

        # --- result ---------------------------------------------------------
        result_box = QGroupBox("Result")
        rl = QVBoxLayout(result_box)
        self.decision = QLabel("No image open")
        font = QFont(self.decision.font())
        font.setPointSizeF(font.pointSizeF() * 1.45)
        font.setBold(True)
        self.decision.setFont(font)
        self.decision.setWordWrap(True)
        self.decision.setAccessibleName("Decision")
        self.advice = QLabel("")
        self.advice.setWordWrap(True)
        #: the OOD flag of an accepted film (hidden unless flagged)
        self.caution = QLabel("")
        self.caution.setWordWrap(True)
        self.caution.setAccessibleName("Caution")
        self.caution.setStyleSheet(f"color: {CAUTION_COLOR.name()}")
        self.caution.hide()
        self.bar = QtProbabilityBar()
        self.probability = QLabel("")
        self.probability.setWordWrap(True)
        self.probability.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_used = QLabel("")
        self.model_used.setWordWrap(True)
        small = self.model_used.font()
        small.setPointSizeF(small.pointSizeF() * 0.9)
        self.model_used.setFont(small)
        self.report_button = QPushButton("Export PDF report...")
        self.report_button.setToolTip(REPORT_TIP)
        self.report_button.setEnabled(False)
        self.report_button.clicked.connect(self.report_requested)
        rl.addWidget(self.decision)
        rl.addWidget(self.advice)
        rl.addWidget(self.caution)
        rl.addWidget(self.bar)
        rl.addWidget(self.probability)
        rl.addWidget(self.model_used)
        rl.addWidget(self.report_button)

        # --- model -------------------------------------------------------------
        model_box = QGroupBox("Model")
        mf = QFormLayout(model_box)
        mf.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The AI model that reads the X-ray. The default one is marked.")
        self.model_combo.setAccessibleName("Model")
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(12)
        self.op_combo = QComboBox()
        self.op_combo.setToolTip(
            "How readily the model says COVID-19: a lower threshold finds more cases "
            "but raises more false alarms."
        )
        self.op_combo.setAccessibleName("Operating point")
        self.op_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.op_combo.setMinimumContentsLength(12)
        self.op_text = QLabel("")
        self.op_text.setWordWrap(True)
        self.card_button = QPushButton("About this model...")
        self.card_button.setToolTip("The model card: how it was trained and tested, and its limits")
        self.card_button.clicked.connect(self.model_card_requested)
        mf.addRow("&Model:", self.model_combo)
        mf.addRow("&Operating point:", self.op_combo)
        mf.addRow(self.op_text)
        mf.addRow(self.card_button)
        self.model_combo.currentIndexChanged.connect(self._on_model)
        self.op_combo.currentIndexChanged.connect(self._on_op)

        # --- heatmap -----------------------------------------------------------
        heat_box = QGroupBox("Heatmap (where the model looked)")
        hl = QVBoxLayout(heat_box)
        self.heat_check = QCheckBox("&Show heatmap")
        self.heat_check.setChecked(True)
        self.heat_check.setToolTip("Colour the regions that most influenced the COVID-19 score (H)")
        self.heat_check.toggled.connect(self.heatmap_toggled)
        # offered under the note while the result is negative (a positive's map is always drawn)
        self.heat_below = QCheckBox(SHOW_BELOW_THRESHOLD)
        self.heat_below.setToolTip("Off: a result below the threshold shows no heatmap (no region's influence "
                                   "led to a flag), as in the PDF report. Remembered.")
        self.heat_below.setVisible(False)
        self.heat_below.toggled.connect(self.heatmap_below_toggled)
        row = QHBoxLayout()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setAccessibleName("Heatmap opacity")
        self.opacity.setToolTip("How strongly the heatmap covers the X-ray")
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100.0))
        opacity_label = QLabel("O&pacity:")
        opacity_label.setBuddy(self.opacity)
        row.addWidget(opacity_label)
        row.addWidget(self.opacity, 1)
        self.cmap_combo = QComboBox()
        for name, label in COLORMAPS:
            self.cmap_combo.addItem(label.split(":")[0], name)
            self.cmap_combo.setItemData(self.cmap_combo.count() - 1, label, Qt.ItemDataRole.ToolTipRole)
        self.cmap_combo.setAccessibleName("Heatmap colours")
        self.cmap_combo.currentIndexChanged.connect(
            lambda _i: self.colormap_changed.emit(str(self.cmap_combo.currentData()))
        )
        cmap_row = QHBoxLayout()
        cmap_label = QLabel("&Colours:")
        cmap_label.setBuddy(self.cmap_combo)
        cmap_row.addWidget(cmap_label)
        cmap_row.addWidget(self.cmap_combo, 1)
        self.colorbar = QLabel()
        self.colorbar.setMinimumHeight(14)
        self.colorbar.setScaledContents(True)
        ends = QHBoxLayout()
        low = QLabel("little influence")
        high = QLabel("strong influence")
        for lab in (low, high):
            f = lab.font()
            f.setPointSizeF(f.pointSizeF() * 0.9)
            lab.setFont(f)
        ends.addWidget(low)
        ends.addStretch(1)
        ends.addWidget(high)
        self.heat_note = QLabel("")
        self.heat_note.setWordWrap(True)
        # Opacity and colours share a row: at 1366x768 the controls and the disclaimer fit above the fold.
        row.addSpacing(8)
        row.addLayout(cmap_row)
        hl.addWidget(self.heat_check)
        hl.addLayout(row)
        hl.addWidget(self.colorbar)
        hl.addLayout(ends)
        hl.addWidget(self.heat_note)
        hl.addWidget(self.heat_below)

        self.disclaimer = disclaimer = QLabel(
            "Decision support only, not a diagnosis. A clinician must review the X-ray "
            "and the patient before acting on this result."
        )
        disclaimer.setWordWrap(True)
        disclaimer.setFrameShape(QFrame.Shape.StyledPanel)
        disclaimer.setMargin(6)

        # The result, how to read its heatmap and the disclaimer first; the model choice (changed
        # rarely) last, so a 1366x768 screen shows the first three without scrolling.
        layout = QVBoxLayout(self)
        layout.addWidget(result_box)
        layout.addWidget(heat_box)
        layout.addWidget(disclaimer)
        layout.addWidget(model_box)
        layout.addStretch(1)
        self.setMinimumWidth(300)
        self.clear()

    # --- models ---------------------------------------------------------------
    def set_models(self, bundles: Sequence[Any], current: str | None = None) -> None:
        """List the bundles (``Bundle`` objects); the default is marked."""
        self._updating = True
        try:
            self.model_combo.clear()
            for b in bundles:
                card = b.card
                label = f"{card.name} {card.version}"
                if card.default:
                    label += " (default)"
                if not getattr(b, "verified", True):
                    label += " - unverified bundle"
                self.model_combo.addItem(label, card.name)
                self.model_combo.setItemData(
                    self.model_combo.count() - 1,
                    f"{card.architecture}, created {card.created or 'n/a'}, from {b.path}",
                    Qt.ItemDataRole.ToolTipRole,
                )
            if current is not None:
                idx = self.model_combo.findData(current)
                if idx >= 0:
                    self.model_combo.setCurrentIndex(idx)
            self.model_combo.setEnabled(len(bundles) > 0)
            self.card_button.setEnabled(len(bundles) > 0)
        finally:
            self._updating = False

    def set_operating_points(self, card: Any, current: str | None = None, sites: Sequence[str] = ()) -> None:
        """The card's operating points, then one entry per calibrated site (``site:<name>``)."""
        self._updating = True
        try:
            self.op_combo.clear()
            self._ops = {}
            for op in card.operating_points:
                label = op.name.replace("_", " ")
                if op.name == card.default_operating_point:
                    label += " (default)"
                self.op_combo.addItem(label, op.name)
                self.op_combo.setItemData(self.op_combo.count() - 1, operating_point_text(op), Qt.ItemDataRole.ToolTipRole)
                self._ops[op.name] = op
            for site in sites:
                self.op_combo.addItem(f"site: {site}", f"site:{site}")
                self.op_combo.setItemData(self.op_combo.count() - 1,
                                          "This clinic's threshold, set from its own normal films",
                                          Qt.ItemDataRole.ToolTipRole)
            idx = self.op_combo.findData(current or card.default_operating_point)
            self.op_combo.setCurrentIndex(max(idx, 0))
            self._show_op_text()
        finally:
            self._updating = False

    def current_model(self) -> str | None:
        data = self.model_combo.currentData()
        return None if data is None else str(data)

    def current_operating_point(self) -> str | None:
        data = self.op_combo.currentData()
        return None if data is None else str(data)

    def select_model(self, name: str) -> None:
        idx = self.model_combo.findData(name)
        if idx >= 0:
            self.model_combo.setCurrentIndex(idx)

    def select_operating_point(self, name: str) -> None:
        idx = self.op_combo.findData(name)
        if idx >= 0:
            self.op_combo.setCurrentIndex(idx)

    def _on_model(self, _index: int) -> None:
        if not self._updating and self.current_model():
            self.model_selected.emit(self.current_model())

    def _on_op(self, _index: int) -> None:
        self._show_op_text()
        if not self._updating and self.current_operating_point():
            self.operating_point_selected.emit(self.current_operating_point())

    def show_site_basis(self, op: Any) -> None:
        """What a site's threshold rests on (the profile's own sentence) under the operating point."""
        self._ops[str(op.name)] = op
        self.op_text.setText(f"Threshold {op.threshold:.2f}: {op.description}")
        self.content_changed.emit()

    def _show_op_text(self) -> None:
        op = self._ops.get(self.current_operating_point() or "")
        if op is not None and str(op.name).startswith("site:"):
            self.op_text.setText(f"Threshold {op.threshold:.2f}: {op.description}")
        else:
            self.op_text.setText(operating_point_text(op) if op is not None else "")
        self.content_changed.emit()

    # --- result -----------------------------------------------------------------
    def clear(self, message: str = "No image open") -> None:
        self.decision.setText(message)
        self.decision.setStyleSheet("")
        self.advice.setText("Open a chest X-ray (Ctrl+O) to screen it.")
        self.set_caution(None)
        self.bar.set_values(None, None, False)
        self.probability.setText("")
        self.model_used.setText("")
        self._set_assessable(True, False)
        self.offer_heatmap_below(False)
        self.content_changed.emit()

    def set_busy(self, message: str) -> None:
        self.decision.setText(message)
        self.decision.setStyleSheet(f"color: {NEUTRAL_COLOR.name()}")
        self.advice.setText("Working; the window stays usable.")
        self.set_caution(None)
        self.bar.set_values(None, None, False)
        self.probability.setText("")
        self._set_assessable(True, False)
        self.content_changed.emit()

    def _set_assessable(self, assessable: bool, report: bool) -> None:
        """A film not assessable shows no bar (an empty one would read as 0%) and offers no report."""
        self.bar.setVisible(assessable)
        self.report_button.setEnabled(report)
        self.report_button.setToolTip(REPORT_TIP if assessable else
                                      "No report: no chest result is given for a film that is not assessable")

    def set_caution(self, text: str | None) -> None:
        """The OOD flag's sentence under the decision ("unlike the films the model was trained on: ..."), or none."""
        self.caution.setText(f"Caution: {text}." if text else "")
        self.caution.setVisible(bool(text))

    def set_not_assessable(self, gate: Any, model: str = "") -> None:
        """A film the input gate rejected (a :class:`~desktop.core.gate.GateResult`): its reason and code, no result."""
        from desktop.core.gate import REJECT_CODES

        reason = str(gate.reason or REJECT_CODES.get(str(gate.code), "not a film this model can read"))
        self.decision.setText(f"Not assessable: {reason}")
        self.decision.setStyleSheet(f"color: {NEUTRAL_COLOR.name()}")
        found = {"dicom": "the DICOM tags", "pixels": "the image itself", "learnt": "the model's input check",
                 "load": "reading the file"}.get(str(gate.by), "the input check")
        self.advice.setText(
            "The model was made for frontal chest X-rays of adults only. "
            "No COVID-19 result is given for this film; a clinician reads it as usual."
        )
        self.set_caution(None)
        self.bar.set_values(None, None, False)
        self.probability.setText(
            f"No probability of COVID-19 for this film. Reject code <b>{gate.code}</b> "
            f"({REJECT_CODES.get(str(gate.code), '')}; found from {found})."
        )
        self.model_used.setText(f"Model: {model}" if model else "")
        self._set_assessable(False, False)
        self.content_changed.emit()

    def set_prediction(self, prediction: Any, positive_class: str = "covid", caution: str | None = None) -> None:
        """The decision, p(COVID-19) and threshold; ``caution``: the OOD flag's sentence (the result still stands)."""
        self.set_caution(caution)
        positive = prediction.label == positive_class
        if positive:
            self.decision.setText("COVID-19 pattern: positive screen")
            self.decision.setStyleSheet(f"color: {POSITIVE_COLOR.name()}")
            self.advice.setText(
                "The model finds signs it associates with COVID-19 pneumonia. "
                "Refer the X-ray for review by a doctor."
            )
        else:
            self.decision.setText("No COVID-19 pattern: negative screen")
            self.decision.setStyleSheet(f"color: {NEGATIVE_COLOR.name()}")
            self.advice.setText(
                "The model does not find signs it associates with COVID-19. "
                "This does not rule out COVID-19 or other disease."
            )
        self.bar.set_values(prediction.p_covid, prediction.threshold, positive)
        op = prediction.operating_point.replace("_", " ")
        self.probability.setText(
            f"Estimated probability of COVID-19: <b>{100 * prediction.p_covid:.1f}%</b>. "
            f"Positive screen from {100 * prediction.threshold:.1f}% (dashed line; operating point "
            f"<i>{op}</i>)."
        )
        self.model_used.setText(f"Model used: {prediction.model} {prediction.model_version}")
        self._set_assessable(True, True)
        self.content_changed.emit()

    # --- heatmap -------------------------------------------------------------------
    def set_colorbar(self, rgb: np.ndarray | None) -> None:
        self.colorbar.setPixmap(colorbar_pixmap(rgb))

    def set_heatmap_note(self, text: str) -> None:
        self.heat_note.setText(text)
        self.content_changed.emit()

    def offer_heatmap_below(self, offer: bool) -> None:
        """Show "Show the heatmap for a negative result too" (while the shown result is negative) or not."""
        if self.heat_below.isVisibleTo(self) != offer:
            self.heat_below.setVisible(offer)
            self.content_changed.emit()

    def set_heatmap_settings(self, show: bool, opacity: float, colormap: str, below_threshold: bool = False) -> None:
        widgets = (self.heat_check, self.heat_below, self.opacity, self.cmap_combo)
        for w in widgets:
            w.blockSignals(True)
        self.heat_check.setChecked(show)
        self.heat_below.setChecked(below_threshold)
        self.opacity.setValue(round(opacity * 100))
        idx = self.cmap_combo.findData(colormap)
        self.cmap_combo.setCurrentIndex(max(idx, 0))
        for w in widgets:
            w.blockSignals(False)


__all__ = ["CAUTION_COLOR", "QtProbabilityBar", "QtResultPanel", "QtVerticalScrollArea", "colorbar_pixmap", "operating_point_text"]

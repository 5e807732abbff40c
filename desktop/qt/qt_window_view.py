"""The main window's view controls: contrast presets and the heatmap (visibility, opacity, colours).

A mixin of :class:`desktop.qt.qt_main_window.QtMainWindow`; the heatmap's
colours come from the core (:mod:`desktop.core.overlay` via the bridge).
A negative result's heatmap is made but held back unless the user asks for
it (``AppSettings.heatmap_below_threshold``), as in the PDF report; the
decision is re-made at each change of operating point or site, and so is
whether the map is drawn.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtWidgets import QMainWindow

from desktop.core.imaging import Window
from desktop.core.overlay import HIDDEN_BELOW_THRESHOLD

from . import _core_bridge as bridge
from .qt_settings import COLORBLIND_SAFE

log = logging.getLogger(__name__)


class QtWindowView(QMainWindow):
    """Contrast presets and heatmap controls (mixed into the main window)."""

    session: Any
    settings: Any
    errors: Any
    view: Any
    panel: Any
    preset_combo: Any
    preset_menu: Any
    pixel_label: Any
    act_heatmap: Any
    _colormap: str

    def _fill_presets(self) -> None:
        self.preset_combo.clear()
        self.preset_menu.clear()
        xray = self.view.xray
        if xray is None:
            self.preset_combo.setEnabled(False)
            return
        self.preset_combo.setEnabled(True)
        self.preset_combo.addItem("As stored (default)", None)
        for i, preset in enumerate(xray.presets):
            label = preset.name or f"Preset {i + 1}"
            self.preset_combo.addItem(label, i)
            action = self.preset_menu.addAction(label)
            action.triggered.connect(lambda _c=False, w=preset: self.view.set_window(w))
        self.preset_combo.setCurrentIndex(0)

    def _on_preset(self, index: int) -> None:
        xray = self.view.xray
        data = self.preset_combo.itemData(index)
        if xray is None:
            return
        if data is None:
            self.view.reset_window()
        elif isinstance(data, int) and 0 <= data < len(xray.presets):
            self.view.set_window(xray.presets[data])

    def _on_window_changed(self, window: Window | None) -> None:
        xray = self.view.xray
        if xray is None or window is None:
            return
        if window is xray.window:
            self.preset_combo.setCurrentIndex(0)
            return
        for i, preset in enumerate(xray.presets):
            if preset is window:
                self.preset_combo.setCurrentIndex(i + 1)
                return
        idx = self.preset_combo.findText("Manual")
        if idx < 0:
            self.preset_combo.addItem("Manual", "manual")
            idx = self.preset_combo.count() - 1
        self.preset_combo.setCurrentIndex(idx)
        self.pixel_label.setText(f"Contrast: centre {window.center:.0f}, width {window.width:.0f}")

    def _on_pixel_info(self, text: str) -> None:
        self.pixel_label.setText(text)

    def _apply_heatmap_settings(self) -> None:
        s = self.settings
        self.panel.set_heatmap_settings(s.show_heatmap, s.heatmap_opacity, s.colormap, s.heatmap_below_threshold)
        self.view.set_heatmap_visible(s.show_heatmap)
        self.view.set_heatmap_opacity(s.heatmap_opacity)
        self._colormap = s.colormap
        self._update_colorbar()

    def _update_colorbar(self) -> None:
        try:
            self.panel.set_colorbar(bridge.colorbar(self._colormap))
        except Exception as exc:  # the colour bar is an aid: never block the window for it
            log.warning("colour bar not available: %s", exc)
            self.panel.set_colorbar(None)
        safe = "colour-blind safe" if self._colormap in COLORBLIND_SAFE else "not colour-blind safe"
        self._colour_head = f"Warm colours mark regions that raised the COVID-19 score ({safe}; change under Colours)."
        self._colour_note = self._colour_head + " If they lie outside the lungs, distrust the result."
        self.panel.set_heatmap_note(self._colour_note)

    def _show_heatmap(self, analysis: bridge.Analysis) -> None:
        self._update_colorbar()
        empty = bool(getattr(analysis.heatmap, "empty", False))
        self.panel.offer_heatmap_below(self._is_negative() and not empty)
        if empty:
            # Grad-CAM found no region that raises the score: an all-cold overlay would mislead.
            self.view.clear_heatmap()
            self.panel.set_heatmap_note(
                "No heatmap for this image: no region of the X-ray raised the COVID-19 score."
            )
            return
        held = self._held_below_threshold()
        try:
            self.view.set_heatmap(bridge.colorize(analysis.heat, self._colormap), held=held)
        except Exception as exc:
            self.errors.handle(exc, "Drawing the heatmap")
            self.view.clear_heatmap()
            return
        if held:  # the PDF's sentence (the option to draw it anyway is offered below); no lung share of a hidden map
            self.panel.set_heatmap_note(HIDDEN_BELOW_THRESHOLD)
            return
        # on the fixed scale only strong influence is drawn; how much of it lies in the lung fields,
        # with a warning when most lies outside
        lung_text, warn = analysis.lung_note()
        # with the warning, the general advice would say the same again (and push the disclaimer off a laptop screen)
        self.panel.set_heatmap_note(f"{self._colour_head} Warning: {lung_text}" if warn else f"{self._colour_note} {lung_text}")

    def _is_negative(self) -> bool:
        """The shown result is negative at the chosen operating point (or site)."""
        prediction = self.session.prediction()
        bundle = self.session.bundle
        return prediction is not None and bundle is not None and prediction.label != bundle.card.positive_class

    def _held_below_threshold(self) -> bool:
        """The shown result is negative and its map was not asked for."""
        return not self.settings.heatmap_below_threshold and self._is_negative()

    def _show_current_heatmap(self) -> None:
        analysis = self.session.analysis()
        if analysis is not None and not analysis.rejected and self.view.xray is not None:  # a rejected film has no heatmap
            self._show_heatmap(analysis)

    def has_analysis(self) -> bool:
        """The shown film's result is in place: its heatmap made (drawn or held back) or found empty."""
        w: Any = self
        analysis = self.session.analysis()
        if analysis is None or w.is_busy() or self.session.prediction() is None:
            return False
        return bool(self.view.has_heatmap() or getattr(analysis.heatmap, "empty", False))

    def _on_heatmap_toggled(self, show: bool) -> None:
        self.view.set_heatmap_visible(show)
        self.act_heatmap.setChecked(show)
        self.settings.show_heatmap = show

    def _on_heatmap_below_toggled(self, show: bool) -> None:
        self.settings.heatmap_below_threshold = show
        self._show_current_heatmap()

    def _toggle_heatmap_action(self, checked: bool) -> None:
        self.panel.heat_check.setChecked(checked)

    def _on_opacity(self, value: float) -> None:
        self.view.set_heatmap_opacity(value)
        self.settings.heatmap_opacity = value

    def _on_colormap(self, name: str) -> None:
        self._colormap = name
        self.settings.colormap = name
        self._update_colorbar()


__all__ = ["QtWindowView"]

"""The main window's actions, menus, toolbar and status bar (what the user can reach, and how).

A mixin of :class:`desktop.qt.qt_main_window.QtMainWindow`: it builds the
widgets that *start* things; the slots live in the window and its other
mixins. The **Tools** menu is where other features hook in
(:meth:`QtWindowActions.add_tool_action`): site calibration, the DICOM
receiving panel.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import QComboBox, QLabel, QMainWindow, QMenu, QProgressBar, QStyle, QToolBar

#: Suffixes of the sample images offered in File > Open a sample X-ray.
SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")


class QtWindowActions(QMainWindow):
    """Builds the actions, menus, toolbar and status bar of the main window."""

    # Provided by the window (slots and widgets used here).
    view: Any
    settings: Any
    tabs: Any
    session: Any
    tools_menu: QMenu

    def _icon(self, theme: str, fallback: QStyle.StandardPixmap) -> QIcon:
        icon = QIcon.fromTheme(theme)
        return icon if not icon.isNull() else self.style().standardIcon(fallback)

    def _action(
        self,
        text: str,
        slot: Any,
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
        tip: str = "",
        icon: QIcon | None = None,
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            short = f" ({action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})" if shortcut else ""
            action.setToolTip(tip + short)
            action.setStatusTip(tip)
        if icon is not None:
            action.setIcon(icon)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def add_tool_action(self, text: str, slot: Callable[[], Any], tip: str = "") -> QAction:
        """Add an entry to the Tools menu (site calibration, DICOM receiving... hook in here)."""
        action = self._action(text, slot, None, tip)
        self.tools_menu.addAction(action)
        self.tools_menu.menuAction().setVisible(True)
        return action

    def _build_actions(self) -> None:
        sp = QStyle.StandardPixmap
        w: Any = self
        self.act_open = self._action(
            "&Open X-ray...", w.open_dialog, QKeySequence.StandardKey.Open,
            "Open one or more chest X-rays (PNG, JPEG or DICOM)", self._icon("document-open", sp.SP_DialogOpenButton),
        )
        self.act_folder = self._action(
            "Scan &folder...", w.scan_folder_dialog, "Ctrl+Shift+O",
            "Check every X-ray in a folder", self._icon("folder-open", sp.SP_DirOpenIcon),
        )
        self.act_report = self._action(
            "&Export PDF report...", w.export_report, "Ctrl+E",
            "Write a PDF report of the shown X-ray for the remote doctor",
            self._icon("document-save-as", sp.SP_DialogSaveButton),
        )
        self.act_settings = self._action("&Settings...", w.show_settings, QKeySequence.StandardKey.Preferences, "Clinic, operator, default model, heatmap")
        if self.act_settings.shortcut().isEmpty():
            self.act_settings.setShortcut(QKeySequence("Ctrl+,"))
        self.act_quit = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, "Close CXR Screener")
        self.act_close_image = self._action("&Close image", w.close_current, QKeySequence.StandardKey.Close, "Remove the shown image from the list")

        v = self.view
        self.act_fit = self._action("&Fit to window", v.fit, "F", "Show the whole X-ray", self._icon("zoom-fit-best", sp.SP_TitleBarNormalButton))
        self.act_actual = self._action("&Actual size (1:1)", v.actual_size, "1", "One image pixel per screen pixel", self._icon("zoom-original", sp.SP_TitleBarMaxButton))
        self.act_zoom_in = self._action("Zoom &in", v.zoom_in, QKeySequence.StandardKey.ZoomIn, "Zoom in", self._icon("zoom-in", sp.SP_ArrowUp))
        self.act_zoom_out = self._action("Zoom &out", v.zoom_out, QKeySequence.StandardKey.ZoomOut, "Zoom out", self._icon("zoom-out", sp.SP_ArrowDown))
        self.act_reset = self._action("&Reset view", v.reset_view, "R", "Fit and restore the original contrast", self._icon("view-refresh", sp.SP_BrowserReload))
        self.act_heatmap = self._action("Show &heatmap", w._toggle_heatmap_action, "H", "Show where the model looked")
        self.act_heatmap.setCheckable(True)
        self.act_heatmap.setChecked(self.settings.show_heatmap)
        self.act_tab_image = self._action("&Image tab", lambda: self.tabs.setCurrentIndex(0), "Alt+1", "Show the image tab")
        self.act_tab_batch = self._action("Folder &scan tab", lambda: self.tabs.setCurrentIndex(1), "Alt+2", "Show the folder scan tab")
        self.act_card = self._action("&Model card...", w.show_model_card, None, "How the chosen model was trained and tested, and its limits")
        self.act_help = self._action("&Getting started", w.show_help, QKeySequence.StandardKey.HelpContents, "How to use CXR Screener")
        self.act_about = self._action("&About CXR Screener", w.show_about, None, "Versions, licences, models")

    def _build_menus(self) -> None:
        bar = self.menuBar()
        m = bar.addMenu("&File")
        m.addAction(self.act_open)
        self.recent_menu = m.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self._fill_recent()
        self.samples_menu = m.addMenu("Open a &sample X-ray")
        self.samples_menu.setToolTip("Licence-clear example X-rays shipped with the application, to try it out")
        self._fill_samples()
        m.addAction(self.act_folder)
        m.addSeparator()
        m.addAction(self.act_report)
        m.addAction(self.act_close_image)
        m.addSeparator()
        m.addAction(self.act_settings)
        m.addSeparator()
        m.addAction(self.act_quit)

        v = bar.addMenu("&View")
        for a in (self.act_fit, self.act_actual, self.act_zoom_in, self.act_zoom_out, self.act_reset):
            v.addAction(a)
        self.preset_menu = v.addMenu("&Contrast presets")
        v.addSeparator()
        v.addAction(self.act_heatmap)
        v.addSeparator()
        v.addAction(self.act_tab_image)
        v.addAction(self.act_tab_batch)

        md = bar.addMenu("&Model")
        md.addAction(self.act_card)
        self.model_menu_sep = md.addSeparator()
        self.model_menu = md

        # Hidden until a feature adds an entry (add_tool_action).
        self.tools_menu = bar.addMenu("&Tools")
        self.tools_menu.menuAction().setVisible(False)

        h = bar.addMenu("&Help")
        h.addAction(self.act_help)
        h.addAction(self.act_about)

    def _build_toolbar(self) -> None:
        tb = QToolBar("Main")
        tb.setObjectName("main_toolbar")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.setIconSize(QSize(20, 20))
        tb.addAction(self.act_open)
        tb.addAction(self.act_folder)
        tb.addAction(self.act_report)
        tb.addSeparator()
        for a in (self.act_fit, self.act_actual, self.act_zoom_in, self.act_zoom_out, self.act_reset):
            tb.addAction(a)
        tb.addSeparator()
        tb.addWidget(QLabel(" Contrast: "))
        self.preset_combo = QComboBox()
        self.preset_combo.setToolTip("Brightness/contrast presets from the file; right-drag on the image to adjust")
        self.preset_combo.setAccessibleName("Contrast preset")
        self.preset_combo.setMinimumContentsLength(14)
        self.preset_combo.activated.connect(self._on_preset)  # type: ignore[attr-defined]
        tb.addWidget(self.preset_combo)
        tb.addSeparator()
        tb.addAction(self.act_heatmap)
        self.addToolBar(tb)
        self.toolbar = tb

    def _build_statusbar(self) -> None:
        sb = self.statusBar()
        self.pixel_label = QLabel("")
        self.zoom_label = QLabel("")
        self.busy_label = QLabel("")
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(120)
        self.busy_bar.setVisible(False)
        sb.addWidget(self.pixel_label, 1)
        sb.addPermanentWidget(self.busy_label)
        sb.addPermanentWidget(self.busy_bar)
        sb.addPermanentWidget(self.zoom_label)

    # --- menus filled from the settings / the installation -------------------------
    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        files = self.settings.recent_files
        w: Any = self
        for f in files:
            action = self.recent_menu.addAction(Path(f).name)
            action.setToolTip(f)
            action.setStatusTip(f)
            action.triggered.connect(lambda _c=False, p=f: w.open_files([p]))
        if files:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self.settings.clear_recent_files)
        else:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    def _fill_samples(self) -> None:
        from desktop.core.paths import samples_dir

        w: Any = self
        self.samples_menu.clear()
        folder = samples_dir()
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in SAMPLE_SUFFIXES)
        for f in files:
            action = self.samples_menu.addAction(f.name)
            action.triggered.connect(lambda _c=False, p=str(f): w.open_files([p]))
        if files:
            self.samples_menu.addSeparator()
            self.samples_menu.addAction("Scan the samples folder", lambda: w.scan_folder(str(folder)))
        else:
            self.samples_menu.addAction("(no samples installed)").setEnabled(False)

    def _fill_model_menu(self) -> None:
        w: Any = self
        for action in self.model_menu.actions():
            if action.data() == "model":
                self.model_menu.removeAction(action)
        for b in self.session.bundles:
            label = f"{b.card.name} {b.card.version}" + (" (default)" if b.card.default else "")
            action = QAction(label, self)
            action.setCheckable(True)
            action.setChecked(b.name == self.session.model_name)
            action.setData("model")
            action.triggered.connect(lambda _c=False, n=b.name: w.set_model(n))
            self.model_menu.addAction(action)

    def _check_model_menu(self) -> None:
        names = {f"{b.card.name} {b.card.version}": b.name for b in self.session.bundles}
        for action in self.model_menu.actions():
            if action.data() == "model":
                label = action.text().removesuffix(" (default)")
                action.setChecked(names.get(label) == self.session.model_name)


__all__ = ["QtWindowActions"]

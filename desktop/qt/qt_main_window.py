"""The main window: open X-rays, see the result and heatmap, scan folders, export reports.

Layout: an *Image* tab (list of open images | viewer | Result / Image details
tabs) and a *Folder scan* tab. Menus, toolbar and keyboard shortcuts reach
every action. Loading, inference, Grad-CAM, scans and reports run in
:mod:`desktop.qt.qt_workers` workers; results come back as signals, and a
result for an image or model that is no longer shown is kept, not displayed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QIcon,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QStyle,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from desktop.core.imaging import Window, load_xray

from . import _core_bridge as bridge
from .qt_about import QtAboutDialog, QtFirstRunDialog, QtHelpDialog
from .qt_batch import QtBatchWidget
from .qt_errors import QtErrorHandler
from .qt_image_view import QtImageView
from .qt_metadata import QtMetadataPanel
from .qt_model_card import QtModelCardDialog
from .qt_result_panel import QtResultPanel, QtVerticalScrollArea
from .qt_settings import COLORBLIND_SAFE, AppSettings, ModelChoice, QtSettingsDialog
from .qt_workers import QtWorker, active_workers, create_worker, quit_all

log = logging.getLogger(__name__)

OPEN_FILTER = "X-ray images (*.png *.jpg *.jpeg *.dcm *.dicom *.DCM);;All files (*)"
#: Opened images whose pixels stay in memory (older ones are re-read when selected).
KEEP_LOADED = 4


def _analyze_files(
    paths: Sequence[str], bundle: Any, operating_point: str | None, cache: bridge.PredictorCache
) -> Iterator[tuple[str, str, Any]]:
    """Worker body: load each file, yield it, then its analysis (or the error)."""
    for path in paths:
        try:
            xray = load_xray(path)
        except Exception as exc:  # reported per file, the others go on
            yield ("error", path, exc)
            continue
        yield ("loaded", path, xray)
        if bundle is None:
            continue
        try:
            predictor = cache.get(bundle)
            yield ("analysis", path, (bundle.name, bridge.analyze(xray, predictor, operating_point)))
        except Exception as exc:
            yield ("error", path, exc)


class QtMainWindow(QMainWindow):
    """CXR Screener's window. ``settings`` defaults to the user's QSettings."""

    #: Emitted when an analysis is displayed (tests and screenshots wait on it).
    result_shown = Signal(object)
    #: Emitted when the model list is known.
    models_ready = Signal()

    def __init__(
        self,
        settings: AppSettings | None = None,
        *,
        show_notice: bool = True,
        model_dirs: Sequence[tuple[Path, str]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._model_dirs = None if model_dirs is None else [(Path(d), o) for d, o in model_dirs]
        self.settings = settings if settings is not None else AppSettings()
        self.errors = QtErrorHandler(self)
        self.predictors = bridge.PredictorCache()
        self.bundles: list[Any] = []
        self.bundle_problems: list[BaseException] = []
        self.studies: dict[str, bridge.Study] = {}
        self.current_path: str | None = None
        self._model_name: str | None = None
        self._op_name: str | None = None
        self._models_known = False
        self._pending_open: list[str] = []
        self._busy: dict[int, str] = {}
        self._workers: list[QtWorker] = []
        self._show_notice = show_notice

        self.setWindowTitle("CXR Screener")
        self.setAcceptDrops(True)
        self.resize(self._default_size())
        self.setMinimumSize(QSize(900, 600))

        self._build_widgets()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_statusbar()
        self._apply_heatmap_settings()
        self._update_actions()
        self._discover_models()

    @staticmethod
    def _default_size() -> QSize:
        """1360x860, or 90% of a smaller screen."""
        screen = QApplication.primaryScreen()
        if screen is None:
            return QSize(1360, 860)
        avail = screen.availableGeometry()
        return QSize(min(1360, int(avail.width() * 0.9)), min(860, int(avail.height() * 0.9)))

    # ------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.view = QtImageView()
        self.view.pixel_info.connect(self._on_pixel_info)
        self.view.zoom_changed.connect(lambda z: self.zoom_label.setText(f"Zoom {100 * z:.0f}%"))
        self.view.window_changed.connect(self._on_window_changed)

        self.file_list = QListWidget()
        self.file_list.setAccessibleName("Open images")
        self.file_list.setToolTip("Images you opened; click one to show it")
        self.file_list.currentItemChanged.connect(self._on_file_selected)
        self.file_list.setMinimumWidth(150)
        self.file_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.file_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.file_list.setWordWrap(False)
        self.file_list.setUniformItemSizes(True)
        files_box = QWidget()
        fl = QVBoxLayout(files_box)
        fl.setContentsMargins(0, 0, 0, 0)
        fl.addWidget(QLabel("Open images:"))
        fl.addWidget(self.file_list)

        self.panel = QtResultPanel()
        self.panel.model_selected.connect(self.set_model)
        self.panel.operating_point_selected.connect(self.set_operating_point)
        self.panel.heatmap_toggled.connect(self._on_heatmap_toggled)
        self.panel.opacity_changed.connect(self._on_opacity)
        self.panel.colormap_changed.connect(self._on_colormap)
        self.panel.model_card_requested.connect(self.show_model_card)
        self.panel.report_requested.connect(self.export_report)
        panel_scroll = QtVerticalScrollArea(self.panel)
        self.metadata = QtMetadataPanel()
        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(panel_scroll, "Result")
        self.side_tabs.addTab(self.metadata, "Image details")
        self.side_tabs.setMinimumWidth(340)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(files_box)
        splitter.addWidget(self.view)
        splitter.addWidget(self.side_tabs)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 0)
        splitter.setSizes([210, 800, 390])
        self.splitter = splitter

        self.batch = QtBatchWidget(self.settings, self.errors, self._batch_model, self.predictors)
        self.batch.open_requested.connect(self.open_from_batch)

        self.tabs = QTabWidget()
        self.tabs.addTab(splitter, "Image")
        self.tabs.addTab(self.batch, "Folder scan")
        self.tabs.setDocumentMode(True)
        self.setCentralWidget(self.tabs)

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

    def _build_actions(self) -> None:
        sp = QStyle.StandardPixmap
        self.act_open = self._action(
            "&Open X-ray...", self.open_dialog, QKeySequence.StandardKey.Open,
            "Open one or more chest X-rays (PNG, JPEG or DICOM)", self._icon("document-open", sp.SP_DialogOpenButton),
        )
        self.act_folder = self._action(
            "Scan &folder...", self.scan_folder_dialog, "Ctrl+Shift+O",
            "Check every X-ray in a folder", self._icon("folder-open", sp.SP_DirOpenIcon),
        )
        self.act_report = self._action(
            "&Export PDF report...", self.export_report, "Ctrl+E",
            "Write a PDF report of the shown X-ray for the remote doctor",
            self._icon("document-save-as", sp.SP_DialogSaveButton),
        )
        self.act_settings = self._action("&Settings...", self.show_settings, QKeySequence.StandardKey.Preferences, "Clinic, operator, default model, heatmap")
        if self.act_settings.shortcut().isEmpty():
            self.act_settings.setShortcut(QKeySequence("Ctrl+,"))
        self.act_quit = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, "Close CXR Screener")
        self.act_close_image = self._action("&Close image", self.close_current, QKeySequence.StandardKey.Close, "Remove the shown image from the list")

        self.act_fit = self._action("&Fit to window", self.view.fit, "F", "Show the whole X-ray", self._icon("zoom-fit-best", sp.SP_TitleBarNormalButton))
        self.act_actual = self._action("&Actual size (1:1)", self.view.actual_size, "1", "One image pixel per screen pixel", self._icon("zoom-original", sp.SP_TitleBarMaxButton))
        self.act_zoom_in = self._action("Zoom &in", self.view.zoom_in, QKeySequence.StandardKey.ZoomIn, "Zoom in", self._icon("zoom-in", sp.SP_ArrowUp))
        self.act_zoom_out = self._action("Zoom &out", self.view.zoom_out, QKeySequence.StandardKey.ZoomOut, "Zoom out", self._icon("zoom-out", sp.SP_ArrowDown))
        self.act_reset = self._action("&Reset view", self.view.reset_view, "R", "Fit and restore the original contrast", self._icon("view-refresh", sp.SP_BrowserReload))
        self.act_heatmap = self._action("Show &heatmap", self._toggle_heatmap_action, "H", "Show where the model looked")
        self.act_heatmap.setCheckable(True)
        self.act_heatmap.setChecked(self.settings.show_heatmap)
        self.act_tab_image = self._action("&Image tab", lambda: self.tabs.setCurrentIndex(0), "Alt+1", "Show the image tab")
        self.act_tab_batch = self._action("Folder &scan tab", lambda: self.tabs.setCurrentIndex(1), "Alt+2", "Show the folder scan tab")
        self.act_card = self._action("&Model card...", self.show_model_card, None, "How the chosen model was trained and tested, and its limits")
        self.act_help = self._action("&Getting started", self.show_help, QKeySequence.StandardKey.HelpContents, "How to use CXR Screener")
        self.act_about = self._action("&About CXR Screener", self.show_about, None, "Versions, licences, models")

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
        self.preset_combo.activated.connect(self._on_preset)
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

    # ------------------------------------------------------------------
    # Busy indicator
    # ------------------------------------------------------------------
    def _start(self, worker: QtWorker, message: str) -> QtWorker:
        key = id(worker)
        self._busy[key] = message
        self._workers.append(worker)
        worker.signals.finished.connect(lambda: self._done(key, worker))
        self._show_busy()
        worker.start()
        return worker

    def _done(self, key: int, worker: QtWorker) -> None:
        self._busy.pop(key, None)
        if worker in self._workers:
            self._workers.remove(worker)
        self._show_busy()

    def _show_busy(self) -> None:
        busy = bool(self._busy)
        self.busy_bar.setVisible(busy)
        self.busy_label.setText(next(iter(self._busy.values()), "") if busy else "")

    def is_busy(self) -> bool:
        """True while the window's own workers (not a folder scan) are running."""
        return bool(self._busy)

    # ------------------------------------------------------------------
    # Models
    # ------------------------------------------------------------------
    def _discover_models(self) -> None:
        self.panel.clear("Loading models...")
        worker = create_worker(bridge.discover, self.settings.models_folder, self._model_dirs, _start=False)
        worker.signals.returned.connect(self._on_models)
        worker.signals.errored.connect(lambda exc: self._on_models_failed(exc))
        self._start(worker, "Checking the installed models...")

    def _on_models_failed(self, exc: BaseException) -> None:
        self.errors.handle(exc, "Loading the models")
        self._on_models(None)

    def _on_models(self, discovery: Any) -> None:
        self.bundles = list(discovery.bundles) if discovery is not None else []
        self.bundle_problems = list(discovery.problems) if discovery is not None else []
        self._models_known = True
        for problem in self.bundle_problems:
            self.errors.handle(problem, "Loading a model")
        wanted = self.settings.default_model
        names = [b.name for b in self.bundles]
        if wanted not in names:
            default = next((b for b in self.bundles if b.card.default), self.bundles[0] if self.bundles else None)
            wanted = default.name if default is not None else ""
        self._model_name = wanted or None
        self.panel.set_models(self.bundles, self._model_name)
        self._fill_model_menu()
        bundle = self.current_bundle()
        if bundle is not None:
            op = self.settings.default_operating_point
            ops = [o.name for o in bundle.card.operating_points]
            self._op_name = op if op in ops else bundle.card.default_operating_point
            self.panel.set_operating_points(bundle.card, self._op_name)
            self.panel.clear()
            # Warm up the model in the background so the first image is quick.
            warm = create_worker(self.predictors.get, bundle, _start=False)
            warm.signals.errored.connect(lambda exc: self.errors.handle(exc, "Loading the model"))
            self._start(warm, "Loading the model...")
        else:
            self.panel.clear("No model installed")
            self.panel.advice.setText(
                "Images can be viewed, but no result can be computed. Install a model bundle "
                "(see Help > About > Models) or choose a models folder in Settings."
            )
        self._update_actions()
        self.models_ready.emit()
        if self._pending_open:
            pending, self._pending_open = self._pending_open, []
            self.open_files(pending)

    def current_bundle(self) -> Any:
        return next((b for b in self.bundles if b.name == self._model_name), None)

    @property
    def model_name(self) -> str | None:
        return self._model_name

    @property
    def operating_point(self) -> str | None:
        return self._op_name

    def _fill_model_menu(self) -> None:
        for action in self.model_menu.actions():
            if action.data() == "model":
                self.model_menu.removeAction(action)
        for b in self.bundles:
            label = f"{b.card.name} {b.card.version}" + (" (default)" if b.card.default else "")
            action = QAction(label, self)
            action.setCheckable(True)
            action.setChecked(b.name == self._model_name)
            action.setData("model")
            action.triggered.connect(lambda _c=False, n=b.name: self.set_model(n))
            self.model_menu.addAction(action)

    def set_model(self, name: str) -> None:
        """Use model ``name``: shows its result for the current image (computing it if needed)."""
        if name == self._model_name or name not in [b.name for b in self.bundles]:
            return
        self._model_name = name
        bundle = self.current_bundle()
        self.panel.select_model(name)
        ops = [o.name for o in bundle.card.operating_points]
        op = self._op_name if self._op_name in ops else (
            self.settings.default_operating_point
            if self.settings.default_operating_point in ops
            else bundle.card.default_operating_point
        )
        self._op_name = op
        self.panel.set_operating_points(bundle.card, op)
        for action in self.model_menu.actions():
            if action.data() == "model":
                action.setChecked(action.text().split(" ")[0] == name)
        self._show_current()

    def set_operating_point(self, name: str) -> None:
        """Decide at operating point ``name``: no model run, the shown result updates at once."""
        bundle = self.current_bundle()
        if bundle is None or name not in [o.name for o in bundle.card.operating_points]:
            return
        self._op_name = name
        self.panel.select_operating_point(name)
        self._show_result()

    # ------------------------------------------------------------------
    # Opening files
    # ------------------------------------------------------------------
    def open_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self, "Open chest X-rays", self.settings.last_folder("open"), OPEN_FILTER
        )
        if files:
            self.settings.set_last_folder("open", str(Path(files[0]).parent))
            self.open_files(files)

    def open_files(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        """Open files (shown in the Image tab) and folders (scanned in the Folder scan tab)."""
        names = [os.fspath(p) for p in paths]
        folders = [p for p in names if Path(p).is_dir()]
        files = [p for p in names if not Path(p).is_dir()]
        if folders:
            self.scan_folder(folders[0])
        if not files:
            return
        if not self._models_known:
            self._pending_open.extend(files)
            return
        self.tabs.setCurrentIndex(0)
        first = True
        for path in files:
            key = str(Path(path).absolute())
            if key not in self.studies:
                self.studies[key] = bridge.Study(key)
                item = QListWidgetItem(Path(key).name)
                item.setData(Qt.ItemDataRole.UserRole, key)
                item.setToolTip(key)
                self.file_list.addItem(item)
            self.settings.add_recent_file(key)
            if first:
                self._select_path(key)
                first = False
        keys = [str(Path(p).absolute()) for p in files]
        todo = [k for k in keys if self.studies[k].xray is None or self._model_name not in self.studies[k].analyses]
        self._run_analysis(todo)

    def _run_analysis(self, keys: Sequence[str]) -> None:
        if not keys:
            self._show_current()
            return
        bundle = self.current_bundle()
        if keys and keys[0] == self.current_path:
            if bundle is not None:
                self.panel.set_busy("Reading the X-ray...")
        worker = create_worker(_analyze_files, list(keys), bundle, self._op_name, self.predictors, _start=False)
        worker.signals.yielded.connect(self._on_analysis_item)
        worker.signals.errored.connect(lambda exc: self.errors.handle(exc, "Analysing the X-ray"))
        n = len(keys)
        self._start(worker, f"Analysing {n} image{'s' if n > 1 else ''}...")

    def _on_analysis_item(self, item: tuple[str, str, Any]) -> None:
        kind, path, payload = item
        study = self.studies.get(path)
        if study is None:  # closed meanwhile
            return
        if kind == "error":
            study.error = payload
            self.errors.handle(payload, f"Opening {Path(path).name}")
            self._remove_study(path)
            return
        if kind == "loaded":
            study.xray = payload
            study.error = None
            self._evict()
            if path == self.current_path:
                self._show_image(study)
                if self.current_bundle() is not None and self._model_name not in study.analyses:
                    self.panel.set_busy("Analysing...")
            return
        model, analysis = payload
        study.analyses[model] = analysis
        self._update_item(path)
        if path == self.current_path and model == self._model_name:
            self._show_result()

    def _evict(self) -> None:
        loaded = [s for s in self.studies.values() if s.xray is not None and s.path != self.current_path]
        for study in loaded[: max(0, len(loaded) - KEEP_LOADED)]:
            study.xray = None

    def _select_path(self, key: str) -> None:
        for row in range(self.file_list.count()):
            item = self.file_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == key:
                self.file_list.setCurrentRow(row)
                return

    def _on_file_selected(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        key = current.data(Qt.ItemDataRole.UserRole) if current is not None else None
        self.current_path = key
        self._show_current()

    def _show_current(self) -> None:
        study = self.studies.get(self.current_path or "")
        if study is None:
            self.view.set_xray(None)
            self.metadata.set_xray(None)
            self.panel.clear("No image open" if self.bundles or not self._models_known else "No model installed")
            self._fill_presets()
            self._update_actions()
            return
        if study.xray is None:
            self.view.set_xray(None)
            self.view.set_placeholder("Reading the X-ray...")
            self._run_analysis([study.path])
            return
        self._show_image(study)
        if self.current_bundle() is not None and self._model_name not in study.analyses:
            self._run_analysis([study.path])
            return
        self._show_result()

    def _show_image(self, study: bridge.Study) -> None:
        if self.view.xray is not study.xray:
            self.view.set_xray(study.xray)
            self.metadata.set_xray(study.xray)
            self._fill_presets()
            self.setWindowTitle(f"{Path(study.path).name} - CXR Screener")
        self._update_actions()

    def _show_result(self) -> None:
        study = self.studies.get(self.current_path or "")
        bundle = self.current_bundle()
        if study is None or bundle is None:
            return
        analysis = study.analyses.get(bundle.name)
        if analysis is None:
            return
        prediction = self.current_prediction()
        self.panel.set_prediction(prediction, bundle.card.positive_class)
        self._show_heatmap(analysis)
        self._update_item(study.path)
        self._update_actions()
        self.result_shown.emit(prediction)

    def current_study(self) -> bridge.Study | None:
        return self.studies.get(self.current_path or "")

    def current_prediction(self) -> Any:
        """The shown image's prediction with the current model, at the current operating point."""
        study = self.current_study()
        bundle = self.current_bundle()
        if study is None or bundle is None or bundle.name not in study.analyses:
            return None
        analysis = study.analyses[bundle.name]
        return bridge.at_operating_point(analysis.prediction, analysis.predictor, self._op_name)

    def _update_item(self, path: str) -> None:
        study = self.studies.get(path)
        bundle = self.current_bundle()
        if study is None or bundle is None:
            return
        for row in range(self.file_list.count()):
            item = self.file_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == path:
                analysis = study.analyses.get(bundle.name)
                name = Path(path).name
                if analysis is not None:
                    pred = bridge.at_operating_point(analysis.prediction, analysis.predictor, self._op_name)
                    mark = "POSITIVE" if pred.label == bundle.card.positive_class else "negative"
                    item.setText(f"{name}\n   {mark}  {100 * pred.p_covid:.0f}%")
                else:
                    item.setText(name)

    def _remove_study(self, path: str) -> None:
        self.studies.pop(path, None)
        for row in range(self.file_list.count()):
            item = self.file_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == path:
                self.file_list.takeItem(row)
                break
        if path == self.current_path:
            self.current_path = None
            current = self.file_list.currentItem()
            self.current_path = current.data(Qt.ItemDataRole.UserRole) if current is not None else None
            self._show_current()
        self._update_actions()

    def close_current(self) -> None:
        if self.current_path:
            self._remove_study(self.current_path)

    def open_from_batch(self, path: str) -> None:
        self.open_files([path])

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        files = self.settings.recent_files
        for f in files:
            action = self.recent_menu.addAction(Path(f).name)
            action.setToolTip(f)
            action.setStatusTip(f)
            action.triggered.connect(lambda _c=False, p=f: self.open_files([p]))
        if files:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self.settings.clear_recent_files)
        else:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    def _fill_samples(self) -> None:
        from desktop.core.paths import samples_dir

        self.samples_menu.clear()
        folder = samples_dir()
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
        for f in files:
            action = self.samples_menu.addAction(f.name)
            action.triggered.connect(lambda _c=False, p=str(f): self.open_files([p]))
        if files:
            self.samples_menu.addSeparator()
            self.samples_menu.addAction("Scan the samples folder", lambda: self.scan_folder(str(folder)))
        else:
            self.samples_menu.addAction("(no samples installed)").setEnabled(False)

    # ------------------------------------------------------------------
    # Folder scan
    # ------------------------------------------------------------------
    def scan_folder_dialog(self) -> None:
        self.tabs.setCurrentIndex(1)
        self.batch.choose_folder()

    def scan_folder(self, folder: str) -> None:
        self.tabs.setCurrentIndex(1)
        self.batch.set_folder(folder)
        self.batch.start_scan()

    def _batch_model(self) -> tuple[Any, str | None]:
        return self.current_bundle(), self._op_name

    # ------------------------------------------------------------------
    # View: presets, heatmap
    # ------------------------------------------------------------------
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
        self.panel.set_heatmap_settings(s.show_heatmap, s.heatmap_opacity, s.colormap)
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
        self.panel.set_heatmap_note(
            f"Warm colours mark regions that raised the COVID-19 score ({safe}; change under Colours). "
            "If they lie outside the lungs, distrust the result."
        )

    def _show_heatmap(self, analysis: bridge.Analysis) -> None:
        self._update_colorbar()
        if getattr(analysis.heatmap, "empty", False):
            # Grad-CAM found no region that raises the score: an all-cold overlay would mislead.
            self.view.clear_heatmap()
            self.panel.set_heatmap_note(
                "No heatmap for this image: no region of the X-ray raised the COVID-19 score."
            )
            return
        try:
            self.view.set_heatmap(bridge.colorize(analysis.heat, self._colormap))
        except Exception as exc:
            self.errors.handle(exc, "Drawing the heatmap")
            self.view.clear_heatmap()

    def _on_heatmap_toggled(self, show: bool) -> None:
        self.view.set_heatmap_visible(show)
        self.act_heatmap.setChecked(show)
        self.settings.show_heatmap = show

    def _toggle_heatmap_action(self, checked: bool) -> None:
        self.panel.heat_check.setChecked(checked)

    def _on_opacity(self, value: float) -> None:
        self.view.set_heatmap_opacity(value)
        self.settings.heatmap_opacity = value

    def _on_colormap(self, name: str) -> None:
        self._colormap = name
        self.settings.colormap = name
        self._update_colorbar()
        study = self.current_study()
        bundle = self.current_bundle()
        if study is not None and bundle is not None and bundle.name in study.analyses:
            self._show_heatmap(study.analyses[bundle.name])

    # ------------------------------------------------------------------
    # Dialogs
    # ------------------------------------------------------------------
    def export_report(self) -> None:
        study = self.current_study()
        prediction = self.current_prediction()
        bundle = self.current_bundle()
        if study is None or study.xray is None or prediction is None or bundle is None:
            self.errors.show_message(
                "No result to report",
                "Open a chest X-ray and wait for its result before exporting a report.",
            )
            return
        from .qt_report_dialog import QtReportDialog

        analysis = study.analyses[bundle.name]
        dialog = QtReportDialog(
            study.xray, prediction, analysis.heatmap, bundle, self.settings, self.errors,
            window=self.view.display_window, colormap=self._colormap, parent=self,
        )
        self.report_dialog = dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def show_model_card(self, bundle: Any = None) -> None:
        bundle = bundle if bundle is not None and not isinstance(bundle, bool) else self.current_bundle()
        if bundle is None:
            self.errors.show_message("No model installed", "There is no model card to show: no model is installed.")
            return
        try:
            dialog = QtModelCardDialog(bundle, self)
        except Exception as exc:
            self.errors.handle(exc, "Showing the model card")
            return
        self.card_dialog = dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def show_settings(self) -> None:
        choices = [
            ModelChoice(
                b.name,
                f"{b.card.name} {b.card.version}" + (" (default)" if b.card.default else ""),
                tuple(o.name for o in b.card.operating_points),
                b.card.default_operating_point,
            )
            for b in self.bundles
        ]
        dialog = QtSettingsDialog(self.settings, choices, self)
        dialog.accepted.connect(self._apply_heatmap_settings)
        dialog.accepted.connect(self._after_settings)
        self.settings_dialog = dialog
        dialog.open()

    def _after_settings(self) -> None:
        name = self.settings.default_model
        if name and name != self._model_name:
            self.set_model(name)
        op = self.settings.default_operating_point
        if op:
            self.set_operating_point(op)
        study = self.current_study()
        bundle = self.current_bundle()
        if study is not None and bundle is not None and bundle.name in study.analyses:
            self._show_heatmap(study.analyses[bundle.name])

    def show_about(self) -> None:
        dialog = QtAboutDialog(self.bundles, self.show_model_card, self.bundle_problems, self)
        self.about_dialog = dialog
        dialog.open()

    def show_help(self) -> None:
        dialog = QtHelpDialog(self)
        self.help_dialog = dialog
        dialog.open()

    def show_first_run_notice(self) -> None:
        if self.settings.notice_accepted:
            return
        dialog = QtFirstRunDialog(self)
        dialog.accepted.connect(lambda: setattr(self.settings, "notice_accepted", True))
        dialog.rejected.connect(self._notice_rejected)
        self.notice_dialog = dialog
        dialog.open()

    def _notice_rejected(self) -> None:
        QTimer.singleShot(0, self, self.show_first_run_notice)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._show_notice:
            self._show_notice = False
            QTimer.singleShot(0, self, self.show_first_run_notice)

    # ------------------------------------------------------------------
    # State of the actions
    # ------------------------------------------------------------------
    def _update_actions(self) -> None:
        has_image = self.view.xray is not None
        has_result = self.current_prediction() is not None
        for a in (self.act_fit, self.act_actual, self.act_zoom_in, self.act_zoom_out, self.act_reset, self.act_close_image):
            a.setEnabled(has_image)
        self.act_report.setEnabled(has_result)
        self.act_card.setEnabled(bool(self.bundles))
        if not has_image:
            self.setWindowTitle("CXR Screener")
            self.view.set_placeholder("Open a chest X-ray: File > Open X-ray (Ctrl+O), or drop files here.\n"
                                      "To check a whole folder: File > Scan folder (Ctrl+Shift+O).")

    # ------------------------------------------------------------------
    # Drag and drop, closing
    # ------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_files(paths)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.batch.is_running():
            answer = QMessageBox.question(
                self,
                "A folder scan is running",
                "Stop the folder scan and quit?\n\nResults found so far are saved; "
                "you can resume the scan next time.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.batch.cancel_scan()
        quit_all()
        event.accept()

    def wait_idle(self, timeout_ms: int = 30000) -> bool:
        """Process events until no worker of this window runs (tests, screenshots)."""
        import time

        deadline = time.monotonic() + timeout_ms / 1000.0
        while time.monotonic() < deadline:
            if not self._busy and not any(not w.is_done for w in active_workers()):
                return True
            QApplication.processEvents()
            time.sleep(0.01)
        return False

    def open_url(self, url: str) -> None:
        QDesktopServices.openUrl(QUrl(url))


__all__ = ["QtMainWindow"]

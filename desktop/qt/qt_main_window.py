"""The main window: open X-rays, see the result and heatmap, scan folders, export reports.

Layout: an *Image* tab (list of open images | viewer | Result / Image details
tabs) and a *Folder scan* tab. Menus, toolbar and keyboard shortcuts reach
every action (:mod:`.qt_window_actions`; the Tools menu is where features such
as site calibration hook in with :meth:`add_tool_action`). What is open and
chosen is the Qt-free :class:`desktop.core.session.Session`; opening and
showing images is :mod:`.qt_window_documents`, the contrast and heatmap
controls :mod:`.qt_window_view`. Loading, inference, Grad-CAM, scans and
reports run in superqt workers (:mod:`.qt_workers`); results come back as
signals, and a result for an image or model that is no longer shown is kept,
not displayed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QListWidget,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.core.session import KEEP_LOADED, Session, Study

from . import _core_bridge as bridge
from .qt_about import QtAboutDialog, QtFirstRunDialog, QtHelpDialog
from .qt_batch import QtBatchWidget
from .qt_errors import QtErrorHandler
from .qt_image_view import QtImageView
from .qt_metadata import QtMetadataPanel
from .qt_model_card import QtModelCardDialog
from .qt_result_panel import QtResultPanel, QtVerticalScrollArea
from .qt_settings import AppSettings, ModelChoice, QtSettingsDialog
from .qt_window_actions import QtWindowActions
from .qt_window_documents import OPEN_FILTER, QtWindowDocuments
from .qt_window_view import QtWindowView
from .qt_workers import active_workers, create_worker, quit_all

log = logging.getLogger(__name__)


class QtMainWindow(QtWindowActions, QtWindowDocuments, QtWindowView):
    """CXR Screener's window. ``settings`` defaults to the user's QSettings."""

    #: Emitted when an analysis is displayed (tests and screenshots wait on it): the prediction, or the
    #: input gate's GateResult for a film that is not assessable.
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
        self.session = Session(keep_loaded=KEEP_LOADED)
        self._pending_open: list[str] = []
        self._busy: dict[int, str] = {}
        self._workers: list[Any] = []
        self._show_notice = show_notice

        self.setWindowTitle("CXR Screener")
        self.setAcceptDrops(True)
        self.resize(self._default_size())
        self.setMinimumSize(QSize(900, 600))

        self._build_widgets()
        self._build_actions()
        self._build_menus()
        self.add_tool_action("Calibrate for this &site...", self.calibrate_dialog,
                             "Set this clinic's threshold from its own confirmed-normal films")
        self.add_tool_action("&Receive films (DICOM)...", self.receiving_panel,
                             "Receive films from the X-ray unit or PACS over DICOM and screen them")
        self._build_toolbar()
        self._build_statusbar()
        self._apply_heatmap_settings()
        self._update_actions()
        self._discover_models()

    # --- the session's state, as the tests and tools have always read it ---------
    @property
    def studies(self) -> dict[str, Study]:
        return self.session.studies

    @property
    def current_path(self) -> str | None:
        return self.session.current_path

    @property
    def bundles(self) -> list[Any]:
        return self.session.bundles

    @property
    def bundle_problems(self) -> list[BaseException]:
        return self.session.bundle_problems

    @property
    def _models_known(self) -> bool:
        return self.session.models_known

    @property
    def model_name(self) -> str | None:
        return self.session.model_name

    @property
    def operating_point(self) -> str | None:
        return self.session.operating_point

    def current_bundle(self) -> Any:
        return self.session.bundle

    def calibrate_dialog(self) -> Any:
        """The "Calibrate for this site..." dialog for the current model (``desktop.qt.qt_calibrate``)."""
        from .qt_calibrate import QtCalibrateDialog

        bundle = self.current_bundle()
        if bundle is None:
            return None
        dialog = QtCalibrateDialog(bundle, lambda: self.predictors.get(bundle),
                                   operator=self.settings.operator, parent=self)
        dialog.profiles_changed.connect(lambda: self._fill_operating_points(bundle))
        dialog.show()
        return dialog

    def receiving_panel(self) -> Any:
        """The DICOM "Receiving" panel, docked in this window (``desktop.qt.qt_receiving``)."""
        from .qt_receiving import open_receiving_panel

        panel = getattr(self, "_receiving", None)
        if panel is None:
            panel = self._receiving = open_receiving_panel(self)
        (panel.parentWidget() or panel).show()  # its dock, if the user closed it
        return panel

    def current_study(self) -> Study | None:
        return self.session.current

    def current_prediction(self) -> Any:
        """The shown image's prediction with the current model, at the current operating point."""
        return self.session.prediction()

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
        self.panel.heatmap_below_toggled.connect(self._on_heatmap_below_toggled)
        self.panel.opacity_changed.connect(self._on_opacity)
        self.panel.colormap_changed.connect(self._on_colormap)
        self.panel.model_card_requested.connect(self.show_model_card)
        self.panel.report_requested.connect(self.export_report)
        self.panel_scroll = QtVerticalScrollArea(self.panel)
        self.metadata = QtMetadataPanel()
        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(self.panel_scroll, "Result")
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

    # ------------------------------------------------------------------
    # Busy indicator
    # ------------------------------------------------------------------
    def _start(self, worker: Any, message: str) -> Any:
        key = id(worker)
        self._busy[key] = message
        self._workers.append(worker)
        worker.signals.finished.connect(lambda: self._done(key, worker))
        self._show_busy()
        worker.start()
        return worker

    def _done(self, key: int, worker: Any) -> None:
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
        self.session.set_bundles(
            list(discovery.bundles) if discovery is not None else [],
            list(discovery.problems) if discovery is not None else [],
            default_model=self.settings.default_model,
            default_operating_point=self.settings.default_operating_point,
        )
        for problem in self.session.bundle_problems:
            self.errors.handle(problem, "Loading a model")
        self.panel.set_models(self.bundles, self.session.model_name)
        self._fill_model_menu()
        bundle = self.current_bundle()
        if bundle is not None:
            self.panel.set_operating_points(bundle.card, self.session.operating_point)
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

    def set_model(self, name: str) -> None:
        """Use model ``name``: shows its result for the current image (computing it if needed)."""
        if not self.session.set_model(name, default_operating_point=self.settings.default_operating_point):
            return
        bundle = self.current_bundle()
        self.panel.select_model(name)
        self.panel.set_operating_points(bundle.card, self.session.operating_point)
        self._check_model_menu()
        self._show_current()

    def _fill_operating_points(self, bundle: Any) -> None:
        """The card's operating points and this model's calibrated sites; the remembered site is chosen."""
        sites = self.session.site_choices()
        self.panel.set_operating_points(bundle.card, self.session.operating_point, sites)
        remembered = self.settings.site
        if remembered and remembered in sites and self.session.site != remembered:
            self.set_operating_point(f"site:{remembered}")

    def set_operating_point(self, name: str) -> None:
        """Decide at operating point ``name`` (or ``site:<name>``): no model run, the result updates at once."""
        try:
            ok = self.session.set_operating_point(name)
        except Exception as exc:  # a site profile edited by hand, or made for another model
            self.errors.handle(exc, "Using the site's threshold")
            return
        if not ok:
            return
        self.settings.site = self.session.site or ""
        self.panel.select_operating_point(name)
        if self.session.site_op is not None:
            self.panel.show_site_basis(self.session.site_op)
        self._show_result()

    # ------------------------------------------------------------------
    # Folder scan
    # ------------------------------------------------------------------
    def scan_folder_dialog(self) -> None:
        """Choose a folder and scan it at once (the Start button is for scanning it again)."""
        self.tabs.setCurrentIndex(1)
        self.batch.choose_folder(start=True)

    def scan_folder(self, folder: str) -> None:
        self.tabs.setCurrentIndex(1)
        self.batch.set_folder(folder)
        self.batch.start_scan()

    def _batch_model(self) -> tuple[Any, str | None]:
        return self.current_bundle(), self.session.operating_point

    # ------------------------------------------------------------------
    # Dialogs
    # ------------------------------------------------------------------
    def export_report(self) -> None:
        study = self.current_study()
        prediction = self.current_prediction()
        bundle = self.current_bundle()
        analysis = self.session.analysis(study) if study is not None else None
        if analysis is not None and analysis.rejected:  # the input gate: no chest report for this film
            gate = analysis.gate
            self.errors.show_message(
                "No report for this film",
                f"This film is {gate.text} (code {gate.code}). The model gives no chest result for it, "
                "so no report is made. A clinician reads the film as usual.",
            )
            return
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
            window=self.view.display_window, colormap=self._colormap, caution=analysis.caution, parent=self,
        )
        self.report_dialog = dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._fit_to_screen(dialog)
        dialog.open()

    def _fit_to_screen(self, dialog: QWidget, title_bar: int = 32) -> None:
        """Shrink a dialog to the screen's free area (a 1366x768 laptop): its buttons must stay reachable."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        avail = screen.availableGeometry()
        width = min(dialog.width(), avail.width())
        height = min(dialog.height(), avail.height() - title_bar)
        if (width, height) != (dialog.width(), dialog.height()):
            dialog.resize(max(width, dialog.minimumWidth()), max(height, dialog.minimumHeight()))

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
        self._fit_to_screen(dialog)
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
        if name and name != self.session.model_name:
            self.set_model(name)
        op = self.settings.default_operating_point
        if op:
            self.set_operating_point(op)
        self._show_current_heatmap()

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


__all__ = ["OPEN_FILTER", "QtMainWindow"]

"""The Folder scan tab: scan a folder with progress, rate, ETA and Cancel; results table; exports; resume.

The scan is :func:`desktop.core.batch.scan`, the generator the CLI uses, run
in a superqt worker; its progress goes to a :class:`desktop.core.progress.Progress`
(the same object the CLI's bar reads) that a timer here redraws. What the tab
shows is a :class:`desktop.core.session.FolderScan`: the rows, the counts,
the resume rule and the model-mismatch rule. Each result is appended to the
folder's ``results.csv`` in the per-user data folder
(:func:`desktop.core.scan_state.user_scan_dir`, the folder the CLI uses too)
as it comes, so a cancelled or crashed scan loses nothing and can be resumed.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop.core.batch import CancelToken, ScanResult
from desktop.core.errors import CXRError
from desktop.core.filenames import display_name
from desktop.core.progress import Progress, describe
from desktop.core.scan_state import export_csv, user_results_csv, user_scan_dir
from desktop.core.session import FolderScan, choice_for
from desktop.core.session_work import resolve_site, scan_folder

from . import _core_bridge as bridge
from .qt_errors import QtErrorHandler
from .qt_results_table import COLUMNS, FILTERS, REJECTED, QtResultsFilter, QtResultsModel, problem
from .qt_settings import AppSettings
from .qt_workers import create_worker

log = logging.getLogger(__name__)

#: The progress bar and status line are refreshed at most this often (ms).
PROGRESS_MS = 150

ModelFn = Callable[[], tuple[Any, str | None]]

#: Kept under their old names (the CLI and the GUI now share one per-user folder).
scan_state_dir = user_scan_dir
results_csv_for = user_results_csv


class QtBatchWidget(QWidget):
    """Choose a folder, scan it, browse and export the results."""

    #: The user asked to open one file in the Image tab.
    open_requested = Signal(str)
    scan_started = Signal()
    #: The scan ended (finished, cancelled or failed): the number of results in the table.
    scan_finished = Signal(int)

    def __init__(
        self,
        settings: AppSettings,
        errors: QtErrorHandler,
        model_fn: ModelFn,
        predictors: bridge.PredictorCache,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.errors = errors
        self._model_fn = model_fn
        self.predictors = predictors
        self.state: FolderScan | None = None
        self.worker: Any = None
        self.pdf_worker: Any = None
        self.cancel_token: CancelToken | None = None
        self.started_at: _dt.datetime | None = None
        self.scan_bundle: Any = None
        self.scan_operating_point: str | None = None
        self.scan_site: Any = None  # the site profile of the last scan (its threshold and figures go in the PDF)
        #: Decoding processes for the scan (None: the core's default).
        self.decode_workers: int | None = None
        #: The running scan's progress (written by the scan's thread, read by the timer).
        self.scan_progress = Progress()
        self._shown_version = -1
        self._ignored: list[str] = []
        self._pending_rows: list[ScanResult] = []
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(PROGRESS_MS)
        self._progress_timer.timeout.connect(self._show_progress)

        intro = QLabel(
            "Checks every PNG, JPEG and DICOM file in a folder and its sub-folders. "
            "Results are saved as they come: if you cancel or the computer stops, "
            "nothing is lost and the scan can be resumed."
        )
        intro.setWordWrap(True)

        row = QHBoxLayout()
        self.folder_edit = QLineEdit()
        self.folder_edit.setReadOnly(True)
        self.folder_edit.setPlaceholderText("No folder chosen")
        self.folder_edit.setAccessibleName("Folder to scan")
        self.choose_button = QPushButton("&Choose folder...")
        self.choose_button.setToolTip("Choose a folder; its scan starts at once")
        self.choose_button.clicked.connect(lambda: self.choose_folder(start=True))
        self.start_button = QPushButton("&Start scan")
        self.start_button.setToolTip("Check every X-ray in the folder (from the beginning)")
        self.start_button.clicked.connect(lambda: self.start_scan(resume=False))
        self.resume_button = QPushButton("&Resume")
        self.resume_button.setToolTip("Check only the files not yet in the saved results")
        self.resume_button.clicked.connect(lambda: self.start_scan(resume=True))
        self.cancel_button = QPushButton("Ca&ncel")
        self.cancel_button.setToolTip("Stop after the current file; the results so far are kept")
        self.cancel_button.clicked.connect(self.cancel_scan)
        row.addWidget(QLabel("Folder:"))
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.choose_button)
        row.addWidget(self.start_button)
        row.addWidget(self.resume_button)
        row.addWidget(self.cancel_button)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)  # no "0 of 1 files" before there is a folder
        self.progress.setFormat("%v of %m files")
        self.progress.setAccessibleName("Scan progress")
        self.status = QLabel("Choose a folder to scan.")
        self.status.setWordWrap(True)
        self.saved_label = QLabel("")
        self.saved_label.setWordWrap(True)
        self.saved_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.saved_label.setAccessibleName("Where the results are saved")

        filt = QHBoxLayout()
        self.filter_combo = QComboBox()
        for key, label in FILTERS:
            self.filter_combo.addItem(label, key)
        self.filter_combo.setAccessibleName("Show")
        self.filter_combo.currentIndexChanged.connect(self._on_filter)
        show_label = QLabel("S&how:")
        show_label.setBuddy(self.filter_combo)
        self.counts = QLabel("")
        filt.addWidget(show_label)
        filt.addWidget(self.filter_combo)
        filt.addSpacing(12)
        filt.addWidget(self.counts, 1)

        self.model = QtResultsModel(self)
        self.proxy = QtResultsFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for name, width in (("File", 300), ("Result", 130), ("COVID-19 probability", 150), ("Threshold", 80),
                            ("Operating point", 130), ("Site", 110), ("Model", 160)):
            header.resizeSection(COLUMNS.index(name), width)
        self.table.setColumnHidden(COLUMNS.index("Site"), True)  # shown once a result names a site
        self.table.setToolTip("Double-click (or Enter) to open the X-ray with its heatmap")
        self.table.setAccessibleName("Scan results")
        self.table.doubleClicked.connect(self._open_index)
        self.table.activated.connect(self._open_index)

        failed_box = QGroupBox("Files that could not be read")
        fl = QVBoxLayout(failed_box)
        self.failed_list = QListWidget()
        self.failed_list.setAccessibleName("Files that could not be read")
        fl.addWidget(self.failed_list)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(failed_box)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setSizes([480, 120])

        export = QHBoxLayout()
        self.anonymize = QCheckBox("&Anonymise file names in exports")
        self.anonymize.setToolTip("Replace file names (which may contain patient names) by pseudonyms in the CSV and PDF")
        self.study_pages = QCheckBox("PDF: a page per &image with its heatmap")
        self.study_pages.setToolTip("Add one page per scanned image (image, heatmap and result) after the summary;\n"
                                    "the report takes longer to write: each image is analysed again")
        self.csv_button = QPushButton("Save results as C&SV...")
        self.csv_button.clicked.connect(self.export_csv_dialog)
        self.pdf_button = QPushButton("Save &PDF report...")
        self.pdf_button.clicked.connect(self.export_pdf_dialog)
        self.open_folder_button = QPushButton("Show scanned folder")
        self.open_folder_button.clicked.connect(
            lambda: self.folder and QDesktopServices.openUrl(QUrl.fromLocalFile(self.folder))
        )
        export.addWidget(self.anonymize)
        export.addWidget(self.study_pages)
        export.addStretch(1)
        export.addWidget(self.open_folder_button)
        export.addWidget(self.csv_button)
        export.addWidget(self.pdf_button)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.saved_label)
        layout.addLayout(filt)
        layout.addWidget(split, 1)
        layout.addLayout(export)
        self._update_buttons()

    # --- the folder scan's state (core) -------------------------------------------
    @property
    def folder(self) -> str | None:
        return self.state.folder if self.state is not None else None

    @property
    def results_csv(self) -> Path | None:
        return self.state.results_csv if self.state is not None else None

    @property
    def results(self) -> list[ScanResult]:
        """Every result so far (the table plus those waiting for the next refresh)."""
        return list(self.state.rows.values()) if self.state is not None else []

    def _on_filter(self, _index: int) -> None:
        self.proxy.set_mode(str(self.filter_combo.currentData()))

    def set_filter(self, mode: str) -> None:
        """Show "all", "positive", "negative" or "failed" rows."""
        self.filter_combo.setCurrentIndex(max(self.filter_combo.findData(mode), 0))

    # --- folder -------------------------------------------------------------
    def choose_folder(self, *, start: bool = False) -> None:
        """Ask for a folder; with ``start``, scan it at once unless it has saved results to resume."""
        folder = QFileDialog.getExistingDirectory(
            self, "Choose a folder of chest X-rays", self.settings.last_folder("batch")
        )
        if not folder:
            return
        self.set_folder(folder)
        if start and self.state is not None and not self.state.rows:
            self.start_scan()

    def set_folder(self, folder: str | os.PathLike[str]) -> None:
        """Show ``folder`` and, if it was scanned before (here or with the CLI), its saved results."""
        if self.is_running():
            self.errors.show_message("A scan is running", "Cancel the running scan before choosing another folder.")
            return
        folder = os.fspath(folder)
        self.state = FolderScan(folder)
        self.folder_edit.setText(folder)
        self.settings.set_last_folder("batch", folder)
        self._reset_rows()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.saved_label.setText(f"Results are saved in {self.state.results_csv.parent}")
        self.saved_label.setToolTip(str(self.state.results_csv))
        try:
            rows = self.state.load_saved()
        except Exception as exc:
            self.errors.handle(exc, "Reading the saved results")
            rows = []
        if rows:
            self._show_rows(rows)
            self.progress.setRange(0, len(rows))
            self.progress.setValue(len(rows))
            self.progress.setTextVisible(True)
            self.status.setText(
                f"This folder was scanned before: {len(rows)} file(s) already checked. "
                "Resume to check the remaining files, or Start scan to check all again."
            )
        else:
            self.status.setText("Ready. Press Start scan.")
        self._update_counts()
        self._update_buttons()

    # --- scan -------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.worker is not None and not self.worker.is_done

    def start_scan(self, resume: bool = False) -> None:
        if self.is_running():
            return
        if self.state is None:
            self.choose_folder()
            if self.state is None:
                return
        bundle, op = self._model_fn()
        if bundle is None:
            self.errors.show_message(
                "No model installed", "A folder scan needs a model. Install a model bundle first."
            )
            return
        state = self.state
        if not Path(state.folder).is_dir():
            self.errors.show_message("Folder not found", f"The folder {state.folder} does not exist any more.")
            return
        try:  # a site chosen on the Image tab: its profile, checked again now (edited, or for another model?)
            site, decide_at = resolve_site(bundle, op)
        except CXRError as exc:  # SiteProfileError: says why and what to do
            self.errors.handle(exc, "Using the site's threshold for the folder scan")
            return
        if resume:
            conflict = state.resume_conflict(choice_for(bundle, decide_at))
            if conflict is not None:
                self.errors.show_message("Resume with the same model", conflict + " (The model is chosen on the Image tab.)")
                return
        if not resume:
            self._reset_rows()
            # A fresh scan goes to the window's own per-user file (a CLI's DIR/cxr_results is only resumed).
            state.results_csv = user_results_csv(state.folder)
            self.saved_label.setText(f"Results are saved in {state.results_csv.parent}")
            self.saved_label.setToolTip(str(state.results_csv))
        state.positive_class = self.model.positive_class = bundle.card.positive_class
        state.finished = state.cancelled = False
        self.scan_bundle, self.scan_operating_point, self.scan_site = bundle, op, site
        self.cancel_token = CancelToken()
        self.started_at = _dt.datetime.now().astimezone()
        self._ignored = []
        self.scan_progress.reset()
        self._shown_version = -1
        self.progress.setRange(0, 0)
        self.progress.setTextVisible(True)
        self.status.setText("Listing the files...")
        worker = create_worker(
            scan_folder, state.folder, bundle, op, self.predictors, state.results_csv, resume,
            self.cancel_token, self.scan_progress, self.settings.operator, self.decode_workers, site=site,
            _start=False,
        )
        worker.signals.yielded.connect(self._add)
        worker.signals.returned.connect(self._on_returned)
        worker.signals.errored.connect(lambda exc: self.errors.handle(exc, "Scanning the folder"))
        worker.signals.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()
        self._progress_timer.start()
        self._update_buttons()
        self.scan_started.emit()

    def cancel_scan(self) -> None:
        if self.cancel_token is not None and self.is_running():
            if self.state is not None:
                self.state.cancelled = True
            self.cancel_token.cancel()
            self.status.setText("Cancelling after the current file...")
            self.cancel_button.setEnabled(False)

    def _show_progress(self) -> None:
        """Timer tick: put new rows in the table, redraw the bar from the shared progress state."""
        self._flush_rows()
        if self.scan_progress.version == self._shown_version:
            return
        self._shown_version = self.scan_progress.version
        state = self.scan_progress.snapshot()
        if not state.started:
            return
        # QProgressBar.setValue repaints synchronously; with updates off it only schedules a paint.
        self.progress.setUpdatesEnabled(False)
        self.progress.setRange(0, max(state.total, 1))
        self.progress.setValue(state.done)
        self.progress.setUpdatesEnabled(True)
        self.progress.update()
        if self.is_running() and not (self.state is not None and self.state.cancelled):
            self.status.setText(describe(state))

    def _on_returned(self, ignored: Any) -> None:
        self._ignored = list(ignored or [])

    def _on_finished(self) -> None:
        self._progress_timer.stop()
        self._show_progress()
        state = self.state
        n = len(self.model.rows)
        if state is None:
            return
        if not state.cancelled:
            state.mark_finished()  # nothing left to resume (remembered beside the results)
            if self.progress.maximum() == 0:
                self.progress.setRange(0, max(n, 1))
            self.progress.setValue(self.progress.maximum())
        self.status.setToolTip(f"Saved results: {state.results_csv}")
        self.status.setText(state.summary(ignored=self._ignored, where=False))  # saved_label says where
        self._update_buttons()
        self.scan_finished.emit(n)

    def _add(self, result: ScanResult) -> None:
        """A result from the scan: counted now, shown in the table with the next refresh."""
        if self.state is not None:
            self.state.add([result])
        self._pending_rows.append(result)

    def _flush_rows(self) -> None:
        """Put the buffered results in the table (one insertion per refresh keeps painting cheap)."""
        rows, self._pending_rows = self._pending_rows, []
        if rows:
            self._show_rows(rows)
            self._update_counts()

    def _show_rows(self, rows: list[ScanResult]) -> None:
        self.model.add_many(rows)
        for result in rows:
            if not result.ok and result.status != REJECTED:
                self.failed_list.addItem(f"{display_name(result.relpath or result.path)}: {problem(result)}")
        if any(getattr(r, "site", None) for r in rows):  # results.csv may carry a site column
            self.table.setColumnHidden(COLUMNS.index("Site"), False)

    def _reset_rows(self) -> None:
        self._pending_rows = []
        self.model.clear()
        self.failed_list.clear()
        if self.state is not None:
            self.state.clear()

    def _update_counts(self) -> None:
        c = self.state.counts() if self.state is not None else {}
        total = sum(c.values())
        text = (f"{total} files: {c.get('positive', 0)} positive, {c.get('negative', 0)} negative, "
                f"{c.get('failed', 0)} could not be read")
        if c.get("not_assessable"):
            text += f", {c['not_assessable']} not assessable"
        self.counts.setText(text)
        if total <= 1:
            self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.is_running()
        has_folder = self.state is not None
        has_rows = bool(self.model.rows)
        self.choose_button.setEnabled(not running)
        self.start_button.setEnabled(has_folder and not running)
        self.resume_button.setEnabled(has_folder and not running and self.state is not None and self.state.can_resume())
        self.cancel_button.setEnabled(running)
        self.csv_button.setEnabled(has_rows and not running)
        self.pdf_button.setEnabled(has_rows and not running)
        self.open_folder_button.setEnabled(has_folder)

    def _open_index(self, index: QModelIndex) -> None:
        source = self.proxy.mapToSource(index)
        if not source.isValid():
            return
        r = self.model.rows[source.row()]
        self.open_requested.emit(r.path)

    # --- exports ------------------------------------------------------------------
    def _export_path(self, title: str, suffix: str, filt: str) -> str | None:
        stem = Path(self.folder or "scan").name or "scan"
        default = Path(self.settings.last_folder("export")) / f"CXR-scan_{stem}_{_dt.date.today().isoformat()}{suffix}"
        path, _ = QFileDialog.getSaveFileName(self, title, str(default), filt)
        if not path:
            return None
        if not path.lower().endswith(suffix):
            path += suffix
        self.settings.set_last_folder("export", str(Path(path).parent))
        return path

    def export_csv_dialog(self) -> None:
        path = self._export_path("Save results as CSV", ".csv", "CSV (*.csv)")
        if path:
            self.export_csv(path, overwrite=True)

    def export_csv(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path | None:
        """Write the results now in the table (scan order) as CSV, atomically (pseudonyms if ticked)."""
        try:
            target = export_csv(self.model.rows, path, anonymize=self.anonymize.isChecked(), overwrite=overwrite)
        except Exception as exc:
            self.errors.handle(exc, "Saving the CSV")
            return None
        self.status.setText(f"Results saved as {target}.")
        return target

    def export_pdf_dialog(self) -> None:
        path = self._export_path("Save scan report", ".pdf", "PDF (*.pdf)")
        if path:
            self.export_pdf(path, overwrite=True)

    def export_pdf(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Any:
        """Write the batch PDF in a worker; returns the worker (``returned`` gives the path)."""
        from desktop.core.report import ReportInfo, write_batch_report

        bundle = self.scan_bundle
        op = self.scan_operating_point
        if bundle is None:
            bundle, op = self._model_fn()
        if bundle is None or not self.model.rows:
            self.errors.show_message("Nothing to report", "Scan a folder first.")
            return None
        info = ReportInfo(
            clinic_name=self.settings.clinic_name,
            clinic_address=self.settings.clinic_address,
            operator=self.settings.operator,
        )
        worker = create_worker(
            write_batch_report, os.fspath(path), list(self.model.rows),
            folder=self.folder or "", bundle=bundle, operating_point=op,
            started=self.started_at or _dt.datetime.now().astimezone(), info=info,
            study_pages=self.study_pages.isChecked(), anonymize=self.anonymize.isChecked(),
            overwrite=overwrite, predictor=lambda: self.predictors.get(bundle),  # the scan's cached model
            site=self.scan_site if bundle is self.scan_bundle else None, _start=False,
        )
        worker.signals.returned.connect(lambda p: self.status.setText(f"PDF report saved as {p}."))
        worker.signals.errored.connect(lambda exc: self.errors.handle(exc, "Saving the PDF report"))
        worker.signals.finished.connect(self._update_buttons)
        self.status.setText("Writing the PDF report...")
        self.pdf_button.setEnabled(False)
        worker.start()
        self.pdf_worker = worker
        return worker


__all__ = ["QtBatchWidget", "QtResultsFilter", "QtResultsModel", "results_csv_for", "scan_state_dir"]

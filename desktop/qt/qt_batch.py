"""The Folder scan tab: scan a folder with progress, rate, ETA and Cancel; results table; exports; resume.

The scan is :func:`desktop.core.batch.scan`, the generator the CLI uses, run
in a worker. Each result is appended to a ``results.csv`` in the per-user
data folder as it comes (kept per scanned folder), so a cancelled or crashed
scan loses nothing and can be resumed: files already in the CSV are skipped.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QDesktopServices
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

from desktop.core.batch import CancelToken, ScanResult, read_results, scan
from desktop.core.filenames import display_name
from desktop.core.paths import user_data_dir

from . import _core_bridge as bridge
from .qt_errors import QtErrorHandler
from .qt_settings import AppSettings
from .qt_workers import REPORT_PROGRESS, QtWorker, create_worker

log = logging.getLogger(__name__)

COLUMNS = ("File", "Result", "COVID-19 probability", "Threshold", "Model", "Problem")
FILTERS = (
    ("all", "All files"),
    ("positive", "Positive screens"),
    ("negative", "Negative screens"),
    ("failed", "Could not be read"),
)
#: The progress bar and status line are refreshed at most this often (ms).
PROGRESS_MS = 150
POSITIVE_BG = QColor(250, 222, 214)
FAILED_BG = QColor(235, 235, 235)

ModelFn = Callable[[], tuple[Any, str | None]]


def scan_state_dir(folder: str | os.PathLike[str]) -> Path:
    """Where the results of scanning ``folder`` are kept (per user, per folder)."""
    resolved = str(Path(folder).resolve())
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(resolved).name or "root")[:40]
    return user_data_dir() / "scans" / f"{name}-{digest}"


def results_csv_for(folder: str | os.PathLike[str]) -> Path:
    return scan_state_dir(folder) / "results.csv"


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "estimating..."
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"about {seconds} s left"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"about {minutes} min {sec:02d} s left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min left"


def _scan_body(
    folder: str,
    bundle: Any,
    operating_point: str | None,
    cache: bridge.PredictorCache,
    results_csv: Path,
    resume: bool,
    cancel: CancelToken,
    progress: Callable[..., None],
    operator: str,
    workers: int | None,
) -> Iterator[ScanResult]:
    """Worker body: the core scan, with an audit log entry per file."""
    from desktop.core.audit import AuditLog

    predictor = cache.get(bundle)
    results_csv.parent.mkdir(parents=True, exist_ok=True)
    with AuditLog(operator=operator or None) as audit:
        yield from scan(
            folder,
            predictor,
            operating_point=operating_point,
            results_csv=results_csv,
            resume=resume,
            overwrite=not resume,
            cancel=cancel,
            progress=progress,
            audit=audit,
            workers=workers,
        )


class QtResultsModel(QAbstractTableModel):
    """The scan results as a table; one row per :class:`ScanResult`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[ScanResult] = []
        self._index: dict[str, int] = {}
        self.positive_class = "covid"

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def result_text(self, r: ScanResult) -> str:
        if not r.ok:
            return "Could not be read"
        return "POSITIVE screen" if r.label == self.positive_class else "negative"

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return display_name(r.relpath or Path(r.path).name)
            if col == 1:
                return self.result_text(r)
            if col == 2:
                return "" if r.p_covid is None else f"{100 * r.p_covid:.1f}%"
            if col == 3:
                return "" if r.threshold is None else f"{100 * r.threshold:.1f}%"
            if col == 4:
                return f"{r.model} {r.model_version}".strip()
            if col == 5:
                return _reason(r)
        if role == Qt.ItemDataRole.UserRole:  # sort key
            if col == 2:
                return -1.0 if r.p_covid is None else r.p_covid
            if col == 3:
                return -1.0 if r.threshold is None else r.threshold
            if col == 1:
                return 0 if not r.ok else (2 if r.label == self.positive_class else 1)
            return self.data(index, Qt.ItemDataRole.DisplayRole)
        if role == Qt.ItemDataRole.ToolTipRole:
            return display_name(r.path) if r.ok else f"{display_name(r.path)}\n{_reason(r)}"
        if role == Qt.ItemDataRole.BackgroundRole:
            if not r.ok:
                return QBrush(FAILED_BG)
            if r.label == self.positive_class:
                return QBrush(POSITIVE_BG)
        if role == Qt.ItemDataRole.ForegroundRole and (not r.ok or r.label == self.positive_class):
            return QBrush(QColor(0, 0, 0))
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (2, 3):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def add(self, result: ScanResult) -> None:
        key = result.relpath or result.path
        existing = self._index.get(key)
        if existing is not None:
            self.rows[existing] = result
            self.dataChanged.emit(self.index(existing, 0), self.index(existing, len(COLUMNS) - 1))
            return
        n = len(self.rows)
        self.beginInsertRows(QModelIndex(), n, n)
        self.rows.append(result)
        self._index[key] = n
        self.endInsertRows()

    def add_many(self, results: Sequence[ScanResult]) -> None:
        """Append new rows in one insertion (replacing rows of files already listed)."""
        fresh: list[ScanResult] = []
        where: dict[str, int] = {}
        for result in results:
            key = result.relpath or result.path
            if key in self._index:
                self.add(result)
            elif key in where:
                fresh[where[key]] = result
            else:
                where[key] = len(fresh)
                fresh.append(result)
        if not fresh:
            return
        n = len(self.rows)
        self.beginInsertRows(QModelIndex(), n, n + len(fresh) - 1)
        for i, result in enumerate(fresh):
            self.rows.append(result)
            self._index[result.relpath or result.path] = n + i
        self.endInsertRows()

    def set_rows(self, rows: Sequence[ScanResult]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self._index = {(r.relpath or r.path): i for i, r in enumerate(self.rows)}
        self.endResetModel()

    def clear(self) -> None:
        self.set_rows([])


def _reason(r: ScanResult) -> str:
    if r.ok:
        return ""
    text = r.error or r.error_kind or "unknown problem"
    # The path is already in the File column: keep the reason only.
    names = (r.path, display_name(r.path), r.relpath or "", display_name(r.relpath or ""))
    for prefix in (name + ": " for name in names):
        if prefix.strip(": ") and text.startswith(prefix):
            text = text[len(prefix):]
    return text


class QtResultsFilter(QSortFilterProxyModel):
    """Show all rows, positives, negatives or failures; sorts on the model's UserRole keys."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = "all"
        self.setSortRole(Qt.ItemDataRole.UserRole)

    def set_mode(self, mode: str) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9
            self.beginFilterChange()
            self.mode = mode
            self.endFilterChange()
        else:
            self.mode = mode
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        model = self.sourceModel()
        if not isinstance(model, QtResultsModel) or self.mode == "all":
            return True
        r = model.rows[source_row]
        if self.mode == "failed":
            return not r.ok
        if not r.ok:
            return False
        positive = r.label == model.positive_class
        return positive if self.mode == "positive" else not positive


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
        self.folder: str | None = None
        self.results_csv: Path | None = None
        self.worker: QtWorker | None = None
        self.cancel_token: CancelToken | None = None
        self.started_at: _dt.datetime | None = None
        self.scan_bundle: Any = None
        self.scan_operating_point: str | None = None
        #: Decoding processes for the scan (None: the core's default).
        self.decode_workers: int | None = None
        self._cancelled = False
        self._kinds: dict[str, str] = {}
        self._counts = {"positive": 0, "negative": 0, "failed": 0}
        self._pending_progress: tuple[int, int, float, float] | None = None
        self._pending_rows: list[ScanResult] = []
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
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
        self.choose_button.clicked.connect(self.choose_folder)
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
        self.progress.setFormat("%v of %m files")
        self.progress.setAccessibleName("Scan progress")
        self.status = QLabel("Choose a folder to scan.")
        self.status.setWordWrap(True)

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
        header.resizeSection(0, 320)
        header.resizeSection(1, 140)
        header.resizeSection(2, 150)
        header.resizeSection(3, 90)
        header.resizeSection(4, 170)
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
        self.anonymize.setToolTip("Replace file names (which may contain patient names) by pseudonyms in the PDF")
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
        layout.addLayout(filt)
        layout.addWidget(split, 1)
        layout.addLayout(export)
        self._update_buttons()

    def _on_filter(self, _index: int) -> None:
        self.proxy.set_mode(str(self.filter_combo.currentData()))

    def set_filter(self, mode: str) -> None:
        """Show "all", "positive", "negative" or "failed" rows."""
        self.filter_combo.setCurrentIndex(max(self.filter_combo.findData(mode), 0))

    # --- folder -------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Choose a folder of chest X-rays", self.settings.last_folder("batch")
        )
        if folder:
            self.set_folder(folder)

    def set_folder(self, folder: str | os.PathLike[str]) -> None:
        """Show ``folder`` and, if it was scanned before, its saved results (ready to resume)."""
        if self.is_running():
            self.errors.show_message("A scan is running", "Cancel the running scan before choosing another folder.")
            return
        folder = os.fspath(folder)
        self.folder = folder
        self.folder_edit.setText(folder)
        self.settings.set_last_folder("batch", folder)
        self.results_csv = results_csv_for(folder)
        self._reset_rows()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        if self.results_csv.is_file():
            try:
                rows = read_results(self.results_csv, folder=folder)
            except Exception as exc:
                self.errors.handle(exc, "Reading the saved results")
                rows = []
            for r in rows:
                self._add(r)
            self._flush_rows()
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
        if not self.folder:
            self.choose_folder()
            if not self.folder:
                return
        bundle, op = self._model_fn()
        if bundle is None:
            self.errors.show_message(
                "No model installed", "A folder scan needs a model. Install a model bundle first."
            )
            return
        if not Path(self.folder).is_dir():
            self.errors.show_message("Folder not found", f"The folder {self.folder} does not exist any more.")
            return
        assert self.results_csv is not None
        if resume:
            made_with = {(r.model, r.operating_point or "") for r in self.results if r.ok and r.model}
            if made_with and (bundle.name, op or bundle.card.default_operating_point) not in made_with:
                before = ", ".join(f"{m} at operating point {o or 'default'}" for m, o in sorted(made_with))
                self.errors.show_message(
                    "Resume with the same model",
                    f"The saved results of this folder were made with {before}; now {bundle.name} at "
                    f"operating point {op or 'default'} is chosen. Choose the same model and operating point "
                    "again (on the Image tab) to resume, or press Start scan to check every file with the "
                    "current choice.",
                )
                return
        if not resume:
            self._reset_rows()
        self.model.positive_class = bundle.card.positive_class
        self.scan_bundle, self.scan_operating_point = bundle, op
        self.cancel_token = CancelToken()
        self._cancelled = False
        self.started_at = _dt.datetime.now().astimezone()
        self.progress.setRange(0, 0)
        self.status.setText("Listing the files...")
        worker = create_worker(
            _scan_body, self.folder, bundle, op, self.predictors, self.results_csv, resume,
            self.cancel_token, REPORT_PROGRESS, self.settings.operator, self.decode_workers, _start=False,
        )
        worker.signals.yielded.connect(self._add)
        worker.signals.progress.connect(self._on_progress)
        worker.signals.errored.connect(lambda exc: self.errors.handle(exc, "Scanning the folder"))
        worker.signals.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()
        self._update_buttons()
        self.scan_started.emit()

    def cancel_scan(self) -> None:
        if self.cancel_token is not None and self.is_running():
            self._cancelled = True
            self.cancel_token.cancel()
            self.status.setText("Cancelling after the current file...")
            self.cancel_button.setEnabled(False)

    def _on_progress(self, values: tuple[int, int, float, float]) -> None:
        # Coalesced: the display is refreshed at most every PROGRESS_MS (see _show_progress).
        self._pending_progress = values
        if not self._progress_timer.isActive():
            self._progress_timer.start()

    def _show_progress(self) -> None:
        self._flush_rows()
        values, self._pending_progress = self._pending_progress, None
        if values is None:
            return
        done, total, rate, eta = values
        # QProgressBar.setValue repaints synchronously; with updates off it only schedules a paint.
        self.progress.setUpdatesEnabled(False)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setUpdatesEnabled(True)
        self.progress.update()
        rate_text = f"{rate:.1f} images/s" if rate > 0 else "starting..."
        self.status.setText(f"Checked {done} of {total} files - {rate_text} - {_fmt_duration(eta)}")

    def _on_finished(self) -> None:
        self._progress_timer.stop()
        self._show_progress()
        n = len(self.model.rows)
        failed = sum(not r.ok for r in self.model.rows)
        where = " Results are saved automatically." if self.results_csv else ""
        self.status.setToolTip(f"Saved results: {self.results_csv}" if self.results_csv else "")
        if self._cancelled:
            self.status.setText(
                f"Cancelled: {n} file(s) checked so far ({failed} could not be read). "
                f"Press Resume to check the rest.{where}"
            )
        else:
            if self.progress.maximum() == 0:
                self.progress.setRange(0, max(n, 1))
            self.progress.setValue(self.progress.maximum())
            self.status.setText(f"Done: {n} file(s) checked, {failed} could not be read.{where}")
        self._update_buttons()
        self.scan_finished.emit(n)

    def _add(self, result: ScanResult) -> None:
        """A result from the scan: counted now, shown in the table with the next refresh."""
        key = result.relpath or result.path
        previous = self._kinds.get(key)
        if previous is not None:
            self._counts[previous] -= 1
        kind = "failed" if not result.ok else ("positive" if result.label == self.model.positive_class else "negative")
        self._kinds[key] = kind
        self._counts[kind] += 1
        self._pending_rows.append(result)
        if not self._progress_timer.isActive():
            self._progress_timer.start()

    def _flush_rows(self) -> None:
        """Put the buffered results in the table (one insertion per refresh keeps painting cheap)."""
        rows, self._pending_rows = self._pending_rows, []
        if not rows:
            return
        self.model.add_many(rows)
        for result in rows:
            if not result.ok:
                self.failed_list.addItem(f"{display_name(result.relpath or result.path)}: {_reason(result)}")
        self._update_counts()

    @property
    def results(self) -> list[ScanResult]:
        """Every result so far (the table plus those waiting for the next refresh)."""
        return [*self.model.rows, *self._pending_rows]

    def _reset_rows(self) -> None:
        self._pending_rows = []
        self.model.clear()
        self.failed_list.clear()
        self._kinds.clear()
        self._counts = {"positive": 0, "negative": 0, "failed": 0}

    def _update_counts(self) -> None:
        c = self._counts
        total = c["positive"] + c["negative"] + c["failed"]
        self.counts.setText(
            f"{total} files: {c['positive']} positive, {c['negative']} negative, {c['failed']} could not be read"
        )
        if total <= 1:
            self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.is_running()
        has_folder = bool(self.folder)
        has_rows = bool(self.model.rows)
        self.choose_button.setEnabled(not running)
        self.start_button.setEnabled(has_folder and not running)
        self.resume_button.setEnabled(
            has_folder and not running and self.results_csv is not None and self.results_csv.is_file()
        )
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
        """Write the results now in the table (scan order) as CSV, atomically.

        With "Anonymise file names" ticked, the path column holds pseudonyms.
        """
        from desktop.core.results_csv import write_results

        try:
            target = write_results(path, self.model.rows, anonymize=self.anonymize.isChecked(), overwrite=overwrite)
        except Exception as exc:
            self.errors.handle(exc, "Saving the CSV")
            return None
        self.status.setText(f"Results saved as {target}.")
        return Path(target)

    def export_pdf_dialog(self) -> None:
        path = self._export_path("Save scan report", ".pdf", "PDF (*.pdf)")
        if path:
            self.export_pdf(path, overwrite=True)

    def export_pdf(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> QtWorker | None:
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
            overwrite=overwrite, _start=False,
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

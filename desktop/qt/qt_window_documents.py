"""The main window's opened images: open, read and analyse in a worker, show, close.

A mixin of :class:`desktop.qt.qt_main_window.QtMainWindow`. The state (which
studies are open, which one is shown, which films keep their pixels) is the
Qt-free :class:`desktop.core.session.Session`; this module keeps the list
widget, the viewer and the result panel in step with it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QListWidgetItem, QMainWindow

from desktop.core.session import Study
from desktop.core.session_work import analyze_files

from . import _core_bridge as bridge
from .qt_workers import create_worker

#: The open dialog's filters. The first (default) one shows every file: DICOM files from CDs
#: and modalities often have no extension, and Qt's filter patterns are case-sensitive on Linux.
OPEN_FILTERS = (
    "Chest X-rays: PNG, JPEG, DICOM (with or without extension) (*)",
    "PNG, JPEG or DICOM by extension (*.png *.PNG *.jpg *.JPG *.jpeg *.JPEG *.dcm *.DCM *.dicom *.DICOM)",
)
OPEN_FILTER = ";;".join(OPEN_FILTERS)


class QtWindowDocuments(QMainWindow):
    """Opening, showing and closing images (mixed into the main window)."""

    session: Any
    settings: Any
    errors: Any
    view: Any
    panel: Any
    metadata: Any
    file_list: Any
    tabs: Any
    predictors: bridge.PredictorCache
    panel_scroll: Any
    _pending_open: list[str]

    def open_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self, "Open chest X-rays", self.settings.last_folder("open"), OPEN_FILTER, OPEN_FILTERS[0]
        )
        if files:
            self.settings.set_last_folder("open", str(Path(files[0]).parent))
            self.open_files(files)

    def open_files(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        """Open files (shown in the Image tab) and folders (scanned in the Folder scan tab)."""
        w: Any = self
        names = [os.fspath(p) for p in paths]
        folders = [p for p in names if Path(p).is_dir()]
        files = [p for p in names if not Path(p).is_dir()]
        if folders:
            w.scan_folder(folders[0])
        if not files:
            return
        if not self.session.models_known:
            self._pending_open.extend(files)
            return
        self.tabs.setCurrentIndex(0)
        known = set(self.session.studies)
        keys = self.session.open(files)
        for key in keys:
            if key not in known:
                known.add(key)
                item = QListWidgetItem(Path(key).name)
                item.setData(Qt.ItemDataRole.UserRole, key)
                item.setToolTip(key)
                self.file_list.addItem(item)
            self.settings.add_recent_file(key)
        if keys:
            self._select_path(keys[0])
        self._run_analysis(self.session.needs_work(dict.fromkeys(keys)))

    def _run_analysis(self, keys: Sequence[str]) -> None:
        if not keys:
            self._show_current()
            return
        bundle = self.session.bundle
        if keys[0] == self.session.current_path and bundle is not None:
            self.panel.set_busy("Reading the X-ray...")
        worker = create_worker(
            analyze_files, list(keys), bundle, self.session.decision_point, self.predictors, _start=False
        )
        worker.signals.yielded.connect(self._on_analysis_item)
        worker.signals.errored.connect(lambda exc: self.errors.handle(exc, "Analysing the X-ray"))
        n = len(keys)
        w: Any = self
        w._start(worker, f"Analysing {n} image{'s' if n > 1 else ''}...")

    def _on_analysis_item(self, item: tuple[str, str, Any]) -> None:
        kind, path, payload = item
        session = self.session
        study = session.studies.get(path)
        if study is None:  # closed meanwhile
            return
        if kind == "error":
            study.error = payload
            self.errors.handle(payload, f"Opening {Path(path).name}")
            self._remove_study(path)
            return
        if kind == "loaded":
            session.loaded(path, payload)
            if path == session.current_path:
                self._show_image(study)
                if session.bundle is not None and session.model_name not in study.analyses:
                    self.panel.set_busy("Analysing...")
            return
        model, analysis = payload
        session.analysed(path, model, analysis)
        self._update_item(path)
        if path == session.current_path and model == session.model_name:
            self._show_result()

    def _evict(self) -> None:
        self.session.evict()

    def _select_path(self, key: str) -> None:
        for row in range(self.file_list.count()):
            item = self.file_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == key:
                self.file_list.setCurrentRow(row)
                return

    def _on_file_selected(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        key = current.data(Qt.ItemDataRole.UserRole) if current is not None else None
        self.session.current_path = key
        self._show_current()

    def _show_current(self) -> None:
        session = self.session
        w: Any = self
        study = session.current
        if study is None:
            self.view.set_xray(None)
            self.metadata.set_xray(None)
            self.panel.clear("No image open" if session.bundles or not session.models_known else "No model installed")
            w._fill_presets()
            w._update_actions()
            return
        if study.xray is None:
            self.view.set_xray(None)
            self.view.set_placeholder("Reading the X-ray...")
            self._run_analysis([study.path])
            return
        self._show_image(study)
        if session.bundle is not None and session.model_name not in study.analyses:
            self._run_analysis([study.path])
            return
        self._show_result()

    def _show_image(self, study: Study) -> None:
        w: Any = self
        if self.view.xray is not study.xray:
            self.view.set_xray(study.xray)
            self.metadata.set_xray(study.xray)
            w._fill_presets()
            self.setWindowTitle(f"{Path(study.path).name} - CXR Screener")
            # A new film: its headline must be in view, whatever the previous one scrolled to.
            self.panel_scroll.verticalScrollBar().setValue(0)
        w._update_actions()

    def _show_result(self) -> None:
        session = self.session
        w: Any = self
        study = session.current
        bundle = session.bundle
        if study is None or bundle is None:
            return
        analysis = session.analysis(study)
        if analysis is None:
            return
        if analysis.rejected:  # the input gate: a reason and a code, no result at any operating point
            self.panel.set_not_assessable(analysis.gate, f"{bundle.card.name} {bundle.card.version}")
            self.view.clear_heatmap()
            self.panel.set_heatmap_note("No heatmap: the film was not assessed.")
            self._update_item(study.path)
            w._update_actions()
            w.result_shown.emit(analysis.gate)
            return
        prediction = session.prediction(study)
        self.panel.set_prediction(prediction, bundle.card.positive_class, analysis.caution)
        w._show_heatmap(analysis)
        self._update_item(study.path)
        w._update_actions()
        w.result_shown.emit(prediction)

    def _update_item(self, path: str) -> None:
        if path not in self.session.studies or self.session.bundle is None:
            return
        for row in range(self.file_list.count()):
            item = self.file_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == path:
                item.setText(self.session.list_label(path))

    def _remove_study(self, path: str) -> None:
        w: Any = self
        was_current = self.session.close(path)
        for row in range(self.file_list.count()):
            item = self.file_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == path:
                self.file_list.takeItem(row)
                break
        if was_current:
            current = self.file_list.currentItem()
            self.session.current_path = current.data(Qt.ItemDataRole.UserRole) if current is not None else None
            self._show_current()
        w._update_actions()

    def close_current(self) -> None:
        if self.session.current_path:
            self._remove_study(self.session.current_path)

    def open_from_batch(self, path: str) -> None:
        self.open_files([path])


__all__ = ["OPEN_FILTER", "OPEN_FILTERS", "QtWindowDocuments"]

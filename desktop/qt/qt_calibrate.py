"""The "Calibrate for this site..." dialog: a site threshold from the site's own normal films.

Two tabs. *Calibrate*: site name, operator, the folder of confirmed-normal films (and,
optionally, of confirmed COVID-19 films), the target specificity; "Screen films" runs
:func:`desktop.core.gate.screen_folder` off the GUI thread (a :class:`QtWorker`) with a
progress bar; then the local normals' scores are drawn against the validation normals'
with the chosen threshold, the sentence of :func:`desktop.core.site.threshold_basis` and
the files left out are shown, and "Save profile" writes it. *Profiles*: every profile on
this PC (unusable ones say why), with "Remove".

All the arithmetic is in :mod:`desktop.core.site`; this module only wires it to widgets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .qt_workers import QtWorker, create_worker

log = logging.getLogger(__name__)


def _calibration_body(
    bundle: Any, get_predictor: Callable[[], Any], normals: str, positives: str
) -> Generator[Any, None, Any]:
    """Off the GUI thread: yield (kind, done, total, item) for every film, return the stats."""
    from desktop.core.gate import screen_folder
    from desktop.core.input_stats import load_for

    predictor = get_predictor()
    stats = load_for(bundle)
    for kind, folder in (("normals", normals), ("positives", positives)):
        if not folder:
            continue
        for done, total, item in screen_folder(folder, predictor, stats=stats):
            yield kind, done, total, item
    return stats


class QtScoreChart(QWidget):
    """The local normals' p(covid) against the validation normals', with the thresholds (matplotlib)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(5.6, 2.4), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)
        self.setMinimumHeight(200)
        self.draw([], None, None, None)

    def draw(self, local: list[float], validation: Any, threshold: float | None, default: float | None,
             reference: str = "validation normals") -> None:
        import numpy as np

        self.figure.clear()
        ax = self.figure.add_subplot(111)
        bins = [float(b) for b in np.linspace(0, 1, 26)]
        if validation is not None and len(validation):
            ax.hist(validation, bins=bins, density=True, color="#9aa7b5", alpha=0.6,
                    label=f"{reference} ({len(validation)})")
        if local:
            ax.hist(local, bins=bins, density=True, histtype="step", linewidth=2, color="#1f5fa8",
                    label=f"this site's normals ({len(local)})")
        if default is not None:
            ax.axvline(default, color="#666666", linestyle="--", linewidth=1, label=f"model default {default:.2f}")
        if threshold is not None:
            ax.axvline(threshold, color="#c0392b", linewidth=2, label=f"site threshold {threshold:.2f}")
        ax.set_xlim(0, 1)
        ax.set_xlabel("p(COVID-19)")
        ax.set_yticks([])
        if local or (validation is not None and len(validation)):
            ax.legend(fontsize=7, loc="best", frameon=True, framealpha=0.85)
        else:
            ax.text(0.5, 0.5, "Screen the site's normal films to see their scores", ha="center", va="center",
                    transform=ax.transAxes, color="#666666")
        self.canvas.draw_idle()


class QtCalibrateDialog(QDialog):
    """Calibrate ``bundle`` for a site; ``get_predictor()`` gives its Predictor (called off the GUI thread)."""

    profile_saved = Signal(object)
    profiles_changed = Signal()

    def __init__(self, bundle: Any, get_predictor: Callable[[], Any] | None = None, *, operator: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bundle = bundle
        if get_predictor is None:
            def get_predictor() -> Any:
                from desktop.core.inference import Predictor

                return Predictor(bundle)
        self.get_predictor = get_predictor
        self.worker: QtWorker | None = None
        self._screening = False  # from Screen films until the worker's result (or error) arrives
        self.scores: dict[str, list[float]] = {"normals": [], "positives": []}
        self.left_out: list[str] = []
        self.counts = {"unreadable": 0, "rejected": 0}
        self.stats: Any = None
        self.preview: dict[str, Any] | None = None
        self.setWindowTitle(f"Calibrate for this site - {bundle.card.name} {bundle.card.version}")
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self._calibrate_tab(operator), "Calibrate")
        self.tabs.addTab(self._profiles_tab(), "Profiles")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs)
        lay.addWidget(buttons)
        self.resize(720, 640)
        self.refresh_profiles()
        self._update_buttons()

    # ------------------------------------------------------------------ layout

    def _folder_row(self, edit: QLineEdit, caption: str) -> QWidget:
        box = QWidget(self)
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        browse = QPushButton("Browse...", box)
        browse.clicked.connect(lambda: self._browse(edit, caption))
        row.addWidget(browse)
        edit.textChanged.connect(self._update_buttons)
        return box

    def _calibrate_tab(self, operator: str) -> QWidget:
        tab = QWidget(self)
        form = QFormLayout()
        self.site_edit = QLineEdit(tab)
        self.site_edit.setPlaceholderText("e.g. Clinic North")
        self.site_edit.textChanged.connect(self._update_buttons)
        self.operator_edit = QLineEdit(operator, tab)
        self.normals_edit = QLineEdit(tab)
        self.normals_edit.setPlaceholderText("folder of at least 30 confirmed-normal chest films of this site")
        self.positives_edit = QLineEdit(tab)
        self.positives_edit.setPlaceholderText("optional: confirmed COVID-19 films of this site")
        self.target_spin = QDoubleSpinBox(tab)
        self.target_spin.setRange(0.80, 0.99)
        self.target_spin.setSingleStep(0.01)
        self.target_spin.setValue(0.95)
        self.target_spin.valueChanged.connect(self._recompute)
        form.addRow("Site name", self.site_edit)
        form.addRow("Operator", self.operator_edit)
        form.addRow("Normal films", self._folder_row(self.normals_edit, "Folder of confirmed-normal films"))
        form.addRow("COVID-19 films", self._folder_row(self.positives_edit, "Folder of confirmed COVID-19 films"))
        form.addRow("Target specificity", self.target_spin)
        self.screen_button = QPushButton("Screen films", tab)
        self.screen_button.clicked.connect(self.start_screening)
        self.cancel_button = QPushButton("Cancel", tab)
        self.cancel_button.clicked.connect(self.cancel_screening)
        self.save_button = QPushButton("Save profile", tab)
        self.save_button.clicked.connect(self.save)
        self.progress = QProgressBar(tab)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Choose the folder of this site's confirmed-normal films, then Screen films.", tab)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.chart = QtScoreChart(tab)
        self.details = QPlainTextEdit(tab)
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(90)
        self.details.setPlaceholderText("Files left out (unreadable) or not counted (rejected by the input gate)")
        row = QHBoxLayout()
        row.addWidget(self.screen_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.save_button)
        lay = QVBoxLayout(tab)
        lay.addLayout(form)
        lay.addLayout(row)
        lay.addWidget(self.status)
        lay.addWidget(self.chart, 1)
        lay.addWidget(self.details)
        return tab

    def _profiles_tab(self) -> QWidget:
        tab = QWidget(self)
        self.profile_list = QListWidget(tab)
        self.profile_list.currentRowChanged.connect(lambda _row: self._update_buttons())
        self.remove_button = QPushButton("Remove", tab)
        self.remove_button.clicked.connect(self.remove_selected)
        lay = QVBoxLayout(tab)
        lay.addWidget(QLabel("Site profiles on this computer (a profile is used only with the model it was made with):", tab))
        lay.addWidget(self.profile_list, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.remove_button)
        lay.addLayout(row)
        return tab

    # ------------------------------------------------------------------ actions

    def _browse(self, edit: QLineEdit, caption: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, caption, edit.text())
        if folder:
            edit.setText(folder)

    def is_running(self) -> bool:
        return self._screening

    def start_screening(self) -> None:
        if self.is_running() or not self.normals_edit.text().strip():
            return
        self.scores = {"normals": [], "positives": []}
        self.left_out, self.counts, self.preview = [], {"unreadable": 0, "rejected": 0}, None
        self.details.clear()
        self.progress.setRange(0, 0)
        self.status.setText("Screening the films...")
        worker = create_worker(_calibration_body, self.bundle, self.get_predictor, self.normals_edit.text().strip(),
                               self.positives_edit.text().strip(), _start=False)
        worker.signals.yielded.connect(self._on_item)
        worker.signals.returned.connect(self._on_done)
        worker.signals.errored.connect(self._on_error)
        worker.signals.aborted.connect(self._on_aborted)
        self.worker = worker
        self._screening = True
        worker.start()
        self._update_buttons()

    def cancel_screening(self) -> None:
        if self.worker is not None:
            self.worker.quit()
            self.status.setText("Cancelled.")

    def _on_item(self, value: tuple[str, int, int, Any]) -> None:
        kind, done, total, item = value
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        if item.status == "ok" and item.p_covid is not None:
            self.scores[kind].append(float(item.p_covid))
        else:
            key = "rejected" if item.status == "rejected" else "unreadable"
            self.counts[key] += 1
            what = f"{item.code}: {item.reason}" if item.status == "rejected" else item.reason
            self.left_out.append(f"{item.path}: {what}")
            self.details.appendPlainText(self.left_out[-1])
        self.status.setText(f"Screening the {kind}: {done} of {total} files...")

    def _on_aborted(self) -> None:
        self._screening = False
        self.progress.setRange(0, 1)
        self._update_buttons()

    def _on_done(self, stats: Any) -> None:
        self._screening = False
        self.stats = stats
        self._recompute()

    def _on_error(self, exc: BaseException) -> None:
        self._screening = False
        self._update_buttons()
        self.progress.setRange(0, 1)
        self.status.setText(f"Screening failed: {exc}")

    def _recompute(self) -> None:
        from desktop.core.site import (
            SiteProfile,
            SiteProfileError,
            make_profile,
            reference_films,
            threshold_basis,
            validation_normal_scores,
        )

        if self._screening or self.worker is None:
            return
        default = float(self.bundle.card.operating_point(None).threshold)
        validation = validation_normal_scores(self.bundle, self.stats)
        try:
            self.preview = make_profile(
                self.site_edit.text().strip() or "this site", self.bundle, self.scores["normals"],
                target_specificity=float(self.target_spin.value()),
                positive_scores=self.scores["positives"] or None, operator=self.operator_edit.text().strip(),
                stats=self.stats, excluded=dict(self.counts),
            )
        except SiteProfileError as exc:
            self.preview = None
            self.status.setText(f"Cannot calibrate: {exc.reason}.")
            self.chart.draw(self.scores["normals"], validation, None, default, reference_films(self.bundle))
        else:
            thr = float(self.preview["threshold"])
            left = (f" {self.counts['unreadable']} unreadable file(s) left out, {self.counts['rejected']} film(s) "
                    "rejected by the input gate and not counted." if any(self.counts.values()) else "")
            self.status.setText(f"Threshold p(COVID-19) >= {thr:.3f}: {threshold_basis(SiteProfile(self.preview))}.{left}")
            self.chart.draw(self.scores["normals"], validation, thr, default, reference_films(self.bundle))
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self._update_buttons()

    def save(self) -> None:
        from desktop.core.site import profile_path, save_profile

        if self.preview is None:
            return
        name = self.site_edit.text().strip()
        if not name:
            self.status.setText("Give the site a name before saving.")
            return
        self.preview["site"] = name
        self.preview["operator"] = self.operator_edit.text().strip()
        path = profile_path(name, self.bundle.card.name)
        if path.exists():
            answer = QMessageBox.question(self, "Replace the profile?",
                                          f"Site '{name}' already has a profile for this model. Replace it?")
            if answer != QMessageBox.StandardButton.Yes:
                return
        profile = save_profile(self.preview, overwrite=True)
        self.status.setText(f"Saved the profile of site '{profile.site}' ({profile.path}).")
        self.refresh_profiles()
        self.profile_saved.emit(profile)
        self.profiles_changed.emit()

    def refresh_profiles(self) -> None:
        from desktop.core.site import SiteProfile, list_profiles

        self.profile_list.clear()
        sha = str(self.bundle.card.data["sha256"])
        for entry in list_profiles():
            if isinstance(entry, SiteProfile):
                d = entry.data
                mine = d["model"]["sha256"] == sha
                text = (f"{entry.site} - {d['model']['name']} {d['model']['version']} - {entry.date} - "
                        f"{entry.n_normals} normals - threshold {entry.threshold:.3f}"
                        + ("" if mine else "  (for another model: not used with this one)"))
                item = QListWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, entry.path)
            else:
                path, why = entry
                item = QListWidgetItem(f"{path.name} - unusable: {why}")
                item.setData(Qt.ItemDataRole.UserRole, path)
            self.profile_list.addItem(item)
        self._update_buttons()

    def remove_selected(self, *, confirm: bool = True) -> None:
        from desktop.core.site import remove_profile

        item = self.profile_list.currentItem()
        if item is None:
            return
        path = item.data(Qt.ItemDataRole.UserRole)
        if confirm:
            answer = QMessageBox.question(self, "Remove the profile?", f"Remove {path.name}? Scans with this site "
                                          "will need a new calibration.")
            if answer != QMessageBox.StandardButton.Yes:
                return
        remove_profile(path)
        self.refresh_profiles()
        self.profiles_changed.emit()

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.screen_button.setEnabled(not running and bool(self.normals_edit.text().strip()))
        self.cancel_button.setEnabled(running)
        self.save_button.setEnabled(not running and self.preview is not None and bool(self.site_edit.text().strip()))
        self.remove_button.setEnabled(self.profile_list.currentItem() is not None)

    def reject(self) -> None:  # Close / Esc: stop the worker first
        if self.worker is not None and self._screening:
            self.worker.quit()
        super().reject()


__all__ = ["QtCalibrateDialog", "QtScoreChart"]

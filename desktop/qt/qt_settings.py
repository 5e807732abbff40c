"""User settings (QSettings) and the Settings dialog.

:class:`AppSettings` is a typed view over a ``QSettings``: the real one
(organisation "CXRScreener", application "CXR Screener"), or an ini file
given by ``CXR_SCREENER_SETTINGS`` or by the caller (tests never touch the
real settings).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from desktop.core.overlay import COLORBLIND_SAFE as _CORE_COLORBLIND_SAFE
from desktop.core.overlay import SHOW_BELOW_THRESHOLD

ORGANIZATION = "CXRScreener"
APPLICATION = "CXR Screener"
MAX_RECENT = 10

#: Heatmap colour maps offered: (matplotlib name, what the user reads).
COLORMAPS: tuple[tuple[str, str], ...] = (
    ("jet", "Rainbow (jet): classic, blue = low, red = high"),
    ("inferno", "Inferno: colour-blind safe, dark = low, yellow = high"),
    ("viridis", "Viridis: colour-blind safe, purple = low, yellow = high"),
    ("cividis", "Cividis: safest for colour-blind readers"),
)
#: The core's list (desktop.core.overlay), not a copy of it.
COLORBLIND_SAFE = frozenset(_CORE_COLORBLIND_SAFE)


@dataclass(frozen=True)
class ModelChoice:
    """A model as the settings dialog lists it."""

    name: str
    label: str
    operating_points: tuple[str, ...]
    default_operating_point: str


def open_qsettings(path: str | os.PathLike[str] | None = None) -> QSettings:
    """The QSettings to use: ``path`` or ``$CXR_SCREENER_SETTINGS`` (ini), else the user's."""
    path = path or os.environ.get("CXR_SCREENER_SETTINGS")
    if path:
        return QSettings(os.fspath(path), QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, APPLICATION)


class AppSettings:
    """Typed access to the stored settings."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings if qsettings is not None else open_qsettings()

    @classmethod
    def from_ini(cls, path: str | os.PathLike[str]) -> AppSettings:
        return cls(QSettings(os.fspath(path), QSettings.Format.IniFormat))

    # --- helpers ----------------------------------------------------------
    def _str(self, key: str, default: str = "") -> str:
        value = self.q.value(key, default)
        return default if value is None else str(value)

    def _set(self, key: str, value: Any) -> None:
        self.q.setValue(key, value)
        self.q.sync()

    # --- clinic -----------------------------------------------------------
    @property
    def clinic_name(self) -> str:
        return self._str("clinic/name")

    @clinic_name.setter
    def clinic_name(self, value: str) -> None:
        self._set("clinic/name", value)

    @property
    def clinic_address(self) -> str:
        return self._str("clinic/address")

    @clinic_address.setter
    def clinic_address(self, value: str) -> None:
        self._set("clinic/address", value)

    @property
    def site(self) -> str:
        """The calibrated site whose threshold the window uses ("" for the model's operating points)."""
        return self._str("clinic/site")

    @site.setter
    def site(self, value: str) -> None:
        self._set("clinic/site", value)

    @property
    def operator(self) -> str:
        return self._str("clinic/operator")

    @operator.setter
    def operator(self, value: str) -> None:
        self._set("clinic/operator", value)

    @property
    def clinic_phone(self) -> str:
        return self._str("clinic/phone")

    @clinic_phone.setter
    def clinic_phone(self, value: str) -> None:
        self._set("clinic/phone", value)

    @property
    def clinic_email(self) -> str:
        return self._str("clinic/email")

    @clinic_email.setter
    def clinic_email(self, value: str) -> None:
        self._set("clinic/email", value)

    @property
    def prevalence(self) -> float | None:
        """Share of COVID-19 among the patients this clinic screens (0-1), or None when not set."""
        try:
            value = float(self._str("clinic/prevalence", ""))
        except ValueError:
            return None
        return value if 0.0 < value < 1.0 else None

    @prevalence.setter
    def prevalence(self, value: float | None) -> None:
        self._set("clinic/prevalence", "" if value is None else f"{float(value):.4f}")

    # --- model ------------------------------------------------------------
    @property
    def default_model(self) -> str:
        return self._str("model/default")

    @default_model.setter
    def default_model(self, value: str) -> None:
        self._set("model/default", value)

    @property
    def default_operating_point(self) -> str:
        return self._str("model/operating_point")

    @default_operating_point.setter
    def default_operating_point(self, value: str) -> None:
        self._set("model/operating_point", value)

    @property
    def models_folder(self) -> str:
        return self._str("model/folder")

    @models_folder.setter
    def models_folder(self, value: str) -> None:
        self._set("model/folder", value)

    # --- heatmap ----------------------------------------------------------
    @property
    def colormap(self) -> str:
        value = self._str("heatmap/colormap", "jet")
        return value if value in dict(COLORMAPS) else "jet"

    @colormap.setter
    def colormap(self, value: str) -> None:
        self._set("heatmap/colormap", value)

    @property
    def heatmap_opacity(self) -> float:
        try:
            value = float(self._str("heatmap/opacity", "0.45"))
        except ValueError:
            value = 0.45
        return min(max(value, 0.0), 1.0)

    @heatmap_opacity.setter
    def heatmap_opacity(self, value: float) -> None:
        self._set("heatmap/opacity", f"{min(max(float(value), 0.0), 1.0):.2f}")

    @property
    def show_heatmap(self) -> bool:
        return self._str("heatmap/show", "true").lower() in ("1", "true", "yes")

    @show_heatmap.setter
    def show_heatmap(self, value: bool) -> None:
        self._set("heatmap/show", "true" if value else "false")

    @property
    def heatmap_below_threshold(self) -> bool:
        """Draw the heatmap of a negative result too (off: hidden, the panel says why)."""
        return self._str("heatmap/below_threshold", "false").lower() in ("1", "true", "yes")

    @heatmap_below_threshold.setter
    def heatmap_below_threshold(self, value: bool) -> None:
        self._set("heatmap/below_threshold", "true" if value else "false")

    # --- folders and files --------------------------------------------------
    def last_folder(self, kind: str) -> str:
        """The last folder used for ``kind`` ("open", "batch", "report", "export")."""
        folder = self._str(f"folders/{kind}")
        return folder if folder and Path(folder).is_dir() else str(Path.home())

    def set_last_folder(self, kind: str, folder: str | os.PathLike[str]) -> None:
        self._set(f"folders/{kind}", os.fspath(folder))

    @property
    def recent_files(self) -> list[str]:
        value: Any = self.q.value("recent/files", [])
        if isinstance(value, str):
            value = [value] if value else []
        if not isinstance(value, (list, tuple)):
            return []
        return [str(v) for v in value][:MAX_RECENT]

    def add_recent_file(self, path: str | os.PathLike[str]) -> None:
        path = os.fspath(path)
        files = [f for f in self.recent_files if f != path]
        self._set("recent/files", [path, *files][:MAX_RECENT])

    def clear_recent_files(self) -> None:
        self._set("recent/files", [])

    # --- first run ----------------------------------------------------------
    @property
    def notice_accepted(self) -> bool:
        return self._str("app/notice_accepted", "false").lower() in ("1", "true", "yes")

    @notice_accepted.setter
    def notice_accepted(self, value: bool) -> None:
        self._set("app/notice_accepted", "true" if value else "false")


class QtSettingsDialog(QDialog):
    """Edit clinic, operator, default model, heatmap and folders; saved on OK."""

    def __init__(
        self,
        settings: AppSettings,
        models: Sequence[ModelChoice] = (),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self._models = list(models)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)

        clinic = QGroupBox("Clinic (printed on every report)")
        form = QFormLayout(clinic)
        self.clinic_name = QLineEdit(settings.clinic_name)
        self.clinic_name.setPlaceholderText("e.g. Riverside Health Centre")
        self.clinic_address = QPlainTextEdit(settings.clinic_address)
        self.clinic_address.setPlaceholderText("Street, town, phone")
        self.clinic_address.setFixedHeight(70)
        self.clinic_address.setTabChangesFocus(True)
        self.operator = QLineEdit(settings.operator)
        self.operator.setPlaceholderText("Your name as it should appear on reports")
        form.addRow("Clinic &name:", self.clinic_name)
        form.addRow("Clinic &address:", self.clinic_address)
        form.addRow("&Operator:", self.operator)

        model_box = QGroupBox("Model")
        mform = QFormLayout(model_box)
        self.model = QComboBox()
        for choice in self._models:
            self.model.addItem(choice.label, choice.name)
        idx = self.model.findData(settings.default_model)
        if idx >= 0:
            self.model.setCurrentIndex(idx)
        self.operating_point = QComboBox()
        self.model.currentIndexChanged.connect(self._fill_operating_points)
        self._fill_operating_points()
        idx = self.operating_point.findData(settings.default_operating_point)
        if idx >= 0:
            self.operating_point.setCurrentIndex(idx)
        folder_row = QHBoxLayout()
        self.models_folder = QLineEdit(settings.models_folder)
        self.models_folder.setPlaceholderText("(optional) a folder with extra model bundles")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse_models)
        folder_row.addWidget(self.models_folder, 1)
        folder_row.addWidget(browse)
        mform.addRow("Default &model:", self.model)
        mform.addRow("Default o&perating point:", self.operating_point)
        mform.addRow("Extra models folder:", folder_row)
        note = QLabel("A change of model folder applies the next time the application starts.")
        note.setWordWrap(True)
        note.setEnabled(False)
        mform.addRow("", note)

        heat = QGroupBox("Heatmap")
        hform = QFormLayout(heat)
        self.colormap = QComboBox()
        for name, label in COLORMAPS:
            self.colormap.addItem(label, name)
        self.colormap.setCurrentIndex(max(self.colormap.findData(settings.colormap), 0))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(settings.heatmap_opacity * 100))
        self.below_threshold = QCheckBox(SHOW_BELOW_THRESHOLD)
        self.below_threshold.setChecked(settings.heatmap_below_threshold)
        hform.addRow("&Colours:", self.colormap)
        hform.addRow("O&pacity:", self.opacity)
        hform.addRow("", self.below_threshold)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(clinic)
        layout.addWidget(model_box)
        layout.addWidget(heat)
        layout.addWidget(buttons)

    def _fill_operating_points(self) -> None:
        self.operating_point.clear()
        name = self.model.currentData()
        for choice in self._models:
            if choice.name == name:
                for op in choice.operating_points:
                    suffix = " (model's default)" if op == choice.default_operating_point else ""
                    self.operating_point.addItem(op + suffix, op)
                idx = self.operating_point.findData(choice.default_operating_point)
                self.operating_point.setCurrentIndex(max(idx, 0))

    def _browse_models(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with model bundles", self.models_folder.text())
        if folder:
            self.models_folder.setText(folder)

    def accept(self) -> None:
        s = self.settings
        s.clinic_name = self.clinic_name.text().strip()
        s.clinic_address = self.clinic_address.toPlainText().strip()
        s.operator = self.operator.text().strip()
        if self.model.currentData():
            s.default_model = str(self.model.currentData())
        if self.operating_point.currentData():
            s.default_operating_point = str(self.operating_point.currentData())
        s.models_folder = self.models_folder.text().strip()
        s.colormap = str(self.colormap.currentData())
        s.heatmap_opacity = self.opacity.value() / 100.0
        s.heatmap_below_threshold = self.below_threshold.isChecked()
        super().accept()


__all__ = [
    "APPLICATION",
    "COLORBLIND_SAFE",
    "COLORMAPS",
    "ORGANIZATION",
    "AppSettings",
    "ModelChoice",
    "QtSettingsDialog",
    "open_qsettings",
]

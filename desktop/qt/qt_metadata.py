"""Side panel with what the file says: format, size, bit depth, window, DICOM patient/study fields."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.core.imaging import XRay

FIELD_LABELS = {
    "patient_name": "Patient name",
    "patient_id": "Patient ID",
    "patient_sex": "Sex",
    "patient_birth_date": "Birth date",
    "patient_age": "Age",
    "study_date": "Study date",
    "study_time": "Study time",
    "accession_number": "Accession number",
    "institution": "Institution",
    "modality": "Modality",
    "view_position": "View",
    "body_part": "Body part",
    "manufacturer": "Manufacturer",
    "study_description": "Study description",
    "photometric": "Photometric interpretation",
    "transfer_syntax": "Transfer syntax",
    "number_of_frames": "Frames",
}


#: DICOM date (DA) fields, shown as YYYY-MM-DD.
DATE_FIELDS = frozenset({"patient_birth_date", "study_date"})
#: A break opportunity that prints nothing: lets long paths wrap after each separator.
_ZWSP = "\u200b"


def format_time(text: str) -> str:
    """A DICOM time (TM) ``HHMMSS.frac`` as ``HH:MM:SS``; anything else unchanged."""
    digits = str(text).strip().split(".")[0]
    if digits.isdigit() and len(digits) in (4, 6):
        parts = [digits[i:i + 2] for i in range(0, len(digits), 2)]
        return ":".join(parts)
    return str(text).strip()


def display_value(key: str, value: object) -> str:
    """How a DICOM field is shown: dates and times formatted, everything else as stored."""
    from desktop.core.phi import format_date

    if key in DATE_FIELDS:
        return format_date(str(value))
    if key == "study_time":
        return format_time(str(value))
    return str(value)


def wrappable(text: str) -> str:
    """``text`` with invisible break points after path separators (long folders wrap, not cut)."""
    return text.replace("/", "/" + _ZWSP).replace("\\", "\\" + _ZWSP)


def metadata_rows(xray: XRay) -> list[tuple[str, str]]:
    """(label, value) rows for the panel: file facts first, then the non-empty DICOM fields.

    Values are complete (the sha256 in full, in groups of 16): the panel wraps them.
    """
    h, w = xray.shape
    rows = [
        ("File", Path(xray.source).name if xray.source else "(from memory)"),
        ("Folder", str(Path(xray.source).parent) if xray.source else ""),
        ("Format", xray.format.upper()),
        ("Size", f"{w} x {h} pixels"),
        ("Bit depth", f"{xray.bit_depth} bits"),
        ("Default window", f"{xray.window.name or 'window'}: centre {xray.window.center:.0f}, width {xray.window.width:.0f}"),
        ("sha256", " ".join(xray.sha256[i:i + 16] for i in range(0, len(xray.sha256), 16)) if xray.sha256 else ""),
    ]
    meta = xray.metadata.as_dict()
    for key, label in FIELD_LABELS.items():
        value = meta.get(key)
        if value in (None, "") or (key == "number_of_frames" and value == 1):
            continue
        rows.append((label, display_value(key, value)))
    for note in xray.warnings:
        rows.append(("Note", note))
    return rows


class QtMetadataPanel(QWidget):
    """A read-only two-column table of the open image's details."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Field", "Value"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideNone)  # full values, wrapped
        self.table.horizontalHeader().sectionResized.connect(lambda *_: self.table.resizeRowsToContents())
        self.table.setAlternatingRowColors(True)
        self.table.setAccessibleName("Image details")
        self.note = QLabel("Patient details shown here stay on this computer.")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(self.note)

    def set_xray(self, xray: XRay | None) -> None:
        self.table.setRowCount(0)
        if xray is None:
            return
        rows = metadata_rows(xray)
        self.table.setRowCount(len(rows))
        for i, (label, value) in enumerate(rows):
            key = QTableWidgetItem(label)
            val = QTableWidgetItem(wrappable(value))
            val.setData(Qt.ItemDataRole.UserRole, value)
            val.setToolTip(value)
            key.setFlags(key.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.table.setItem(i, 0, key)
            self.table.setItem(i, 1, val)
        self.table.resizeRowsToContents()

    def value(self, label: str) -> str | None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.text() == label:
                cell = self.table.item(row, 1)
                return str(cell.data(Qt.ItemDataRole.UserRole)) if cell is not None else ""
        return None


__all__ = ["QtMetadataPanel", "display_value", "format_time", "metadata_rows"]

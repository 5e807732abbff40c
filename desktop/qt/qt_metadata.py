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


def metadata_rows(xray: XRay) -> list[tuple[str, str]]:
    """(label, value) rows for the panel: file facts first, then the non-empty DICOM fields."""
    h, w = xray.shape
    rows = [
        ("File", Path(xray.source).name if xray.source else "(from memory)"),
        ("Folder", str(Path(xray.source).parent) if xray.source else ""),
        ("Format", xray.format.upper()),
        ("Size", f"{w} x {h} pixels"),
        ("Bit depth", f"{xray.bit_depth} bits"),
        ("Default window", f"{xray.window.name or 'window'}: centre {xray.window.center:.0f}, width {xray.window.width:.0f}"),
        ("sha256", xray.sha256[:16] + "..." if xray.sha256 else ""),
    ]
    meta = xray.metadata.as_dict()
    for key, label in FIELD_LABELS.items():
        value = meta.get(key)
        if value in (None, "") or (key == "number_of_frames" and value == 1):
            continue
        rows.append((label, str(value)))
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
            val = QTableWidgetItem(value)
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
                return cell.text() if cell is not None else ""
        return None


__all__ = ["QtMetadataPanel", "metadata_rows"]

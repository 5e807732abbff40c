"""The Folder scan tab's table: one row per :class:`~desktop.core.batch.ScanResult`, filtered and sorted.

Every row says which operating point decided it (and the site, when the
results name one); a file that could not be read shows why, in plain words,
and no probability, threshold or model; an accepted film unlike the training films
says so in the Problem column (its result stands).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QWidget

from desktop.core.batch import ScanResult
from desktop.core.filenames import display_name
from desktop.core.plain_errors import plain_text
from desktop.core.session import reason

COLUMNS = ("File", "Result", "COVID-19 probability", "Threshold", "Operating point", "Site", "Model", "Problem")
FILTERS = (
    ("all", "All files"),
    ("positive", "Positive screens"),
    ("negative", "Negative screens"),
    ("failed", "Could not be read"),
    ("rejected", "Not assessable (not a chest film...)"),
)
#: ``status`` of a file the input gate refused (not a chest film): read, but given no result.
REJECTED = "rejected"
POSITIVE_BG = QColor(250, 222, 214)
FAILED_BG = QColor(235, 235, 235)


def operating_point_label(name: str | None) -> str:
    """``high_sensitivity`` -> ``high sensitivity`` (the card's names, readable)."""
    return (name or "default").replace("_", " ")


def row_site(r: ScanResult) -> str:
    """The site a row was read for; ``site`` is a column results.csv may carry (site calibration)."""
    return str(getattr(r, "site", None) or "")


def problem(r: ScanResult) -> str:
    """Why the file could not be read (or assessed), in plain words (the CSV keeps the technical reason)."""
    if r.ok:
        return ""
    if r.status == REJECTED:  # the input gate's words are meant for the user already
        return reason(r)
    return plain_text(r.error_kind, reason(r))


def caution(r: ScanResult) -> str:
    """The OOD flag of an accepted film ("unlike the films the model was trained on: ..."), else ""."""
    return r.caution or ""


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
        if r.status == REJECTED:
            return "Not assessable"
        if not r.ok:
            return "Could not be read"
        return "POSITIVE screen" if r.label == self.positive_class else "negative"

    def column(self, name: str) -> int:
        return COLUMNS.index(name)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            name = COLUMNS[col]
            if name == "File":
                return display_name(r.relpath or Path(r.path).name)
            if name == "Result":
                return self.result_text(r)
            if not r.ok:  # a file that was not read has no probability, threshold or model
                return problem(r) if name == "Problem" else ""
            if name == "COVID-19 probability":
                return "" if r.p_covid is None else f"{100 * r.p_covid:.1f}%"
            if name == "Threshold":
                return "" if r.threshold is None else f"{100 * r.threshold:.1f}%"
            if name == "Operating point":
                return operating_point_label(r.operating_point)
            if name == "Site":
                return row_site(r)
            if name == "Model":
                return f"{r.model} {r.model_version}".strip()
            if name == "Problem":  # an accepted film's OOD flag: the result stands, read with more caution
                return caution(r)
            return ""
        if role == Qt.ItemDataRole.UserRole:  # sort key
            if col == 2:
                return -1.0 if r.p_covid is None else r.p_covid
            if col == 3:
                return -1.0 if r.threshold is None else r.threshold
            if col == 1:
                return 0 if not r.ok else (2 if r.label == self.positive_class else 1)
            return self.data(index, Qt.ItemDataRole.DisplayRole)
        if role == Qt.ItemDataRole.ToolTipRole:
            note = problem(r) or caution(r)
            return f"{display_name(r.path)}\n{note}" if note else display_name(r.path)
        if role == Qt.ItemDataRole.BackgroundRole:
            if not r.ok:
                return QBrush(FAILED_BG)
            if r.label == self.positive_class:
                return QBrush(POSITIVE_BG)
        if role == Qt.ItemDataRole.ForegroundRole and (not r.ok or r.label == self.positive_class):
            return QBrush(QColor(0, 0, 0))
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (2, 3):  # probability, threshold
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
            return not r.ok and r.status != REJECTED
        if self.mode == REJECTED:
            return r.status == REJECTED
        if not r.ok:
            return False
        positive = r.label == model.positive_class
        return positive if self.mode == "positive" else not positive



__all__ = ["COLUMNS", "FILTERS", "REJECTED", "QtResultsFilter", "QtResultsModel", "caution", "operating_point_label", "problem",
           "row_site"]

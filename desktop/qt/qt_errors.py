"""The one place that shows errors to the user.

Every worker error, failed action and unexpected exception goes through
:meth:`QtErrorHandler.handle`: a dialog with a short message in plain words
(what failed, why, what to do) and a "Show Details..." section with the
technical details (file path, error kind, traceback) for support. The dialog
is window-modal but opened without a nested event loop, so running work (a
batch scan) carries on; errors arriving while one is shown wait in a queue.
"""

from __future__ import annotations

import logging
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from desktop.core.errors import CXRError, ImageLoadError, ModelError, OutputError
from desktop.core.plain_errors import plain_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorRecord:
    """What was shown: the title, the short text, the details."""

    title: str
    text: str
    details: str
    kind: str


def describe(exc: BaseException, context: str = "") -> ErrorRecord:
    """Plain-language title and text for an exception, plus technical details."""
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).strip()
    if isinstance(exc, CXRError):
        name = Path(exc.path).name if exc.path else "the input"
        reason = exc.reason[:1].upper() + exc.reason[1:]
        if isinstance(exc, ImageLoadError):
            # Plain words (no transfer-syntax UIDs or library names); the reason stays in the details.
            title = f"Could not open {name}"
            headline, advice = plain_error(exc.kind, exc.reason)
            header = f"File: {exc.path}\nKind: {exc.kind}\nReason: {exc.reason}\n" if exc.path else f"Kind: {exc.kind}\n"
            return ErrorRecord(title, f"{headline}.\n\n{advice}", header + "\n" + details, exc.kind)
        elif isinstance(exc, ModelError):
            title = "The model could not be used"
            what = "Choose another model, or reinstall the application."
        elif isinstance(exc, OutputError):
            title = f"Could not save {name}"
            what = "Choose another file name or folder."
        else:
            title = context or "Something went wrong"
            what = ""
        text = reason + "."
        if exc.hint:
            text += f"\n\nWhat to do: {exc.hint[:1].upper() + exc.hint[1:]}."
        elif what:
            text += f"\n\n{what}"
        header = f"File: {exc.path}\nKind: {exc.kind}\n" if exc.path else f"Kind: {exc.kind}\n"
        return ErrorRecord(title, text, header + "\n" + details, exc.kind)
    if isinstance(exc, MemoryError):
        return ErrorRecord(
            context or "Out of memory",
            "The computer ran out of memory. Close other programs or open a smaller image.",
            details,
            "memory",
        )
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return ErrorRecord(
            context or "A file could not be read or written",
            f"{exc.strerror or exc}{where}.",
            details,
            "os",
        )
    text = (
        f"An unexpected problem occurred{' while ' + context.lower() if context else ''}. "
        "The window is still usable; nothing already saved was lost.\n\n"
        "If it happens again, copy the details below for support."
    )
    return ErrorRecord("Unexpected error", text, f"{type(exc).__name__}: {exc}\n\n{details}", "bug")


class QtErrorDialog(QMessageBox):
    """Short message, expandable details, one OK button."""

    def __init__(self, record: ErrorRecord, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.record = record
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle(f"CXR Screener: {record.title}")
        self.setText(f"<b>{_html(record.title)}</b>")
        self.setInformativeText(record.text)
        self.setDetailedText(record.details)
        self.setStandardButtons(QMessageBox.StandardButton.Ok)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setWindowModality(Qt.WindowModality.WindowModal)
        # QMessageBox sizes itself to its text; keep it wide enough to read the reason at a glance.
        self.setStyleSheet("QLabel#qt_msgbox_informativelabel { min-width: 420px; }")


class QtErrorHandler(QObject):
    """Shows errors one at a time; records them in :attr:`history`.

    ``dialog_shown`` is emitted with each dialog as it opens (tests answer it).
    """

    dialog_shown = Signal(object)

    def __init__(self, parent_widget: QWidget | None = None) -> None:
        super().__init__(parent_widget)
        self._parent_widget = parent_widget
        self._queue: deque[ErrorRecord] = deque()
        self._current: QtErrorDialog | None = None
        self.history: list[ErrorRecord] = []

    def handle(self, exc: BaseException, context: str = "") -> ErrorRecord:
        record = describe(exc, context)
        if record.kind == "bug":
            log.error("unexpected error%s", f" ({context})" if context else "", exc_info=exc)
        else:
            log.warning("%s: %s", record.title, exc)
        self.show_record(record)
        return record

    def show_message(self, title: str, text: str, details: str = "") -> ErrorRecord:
        record = ErrorRecord(title, text, details, "message")
        self.show_record(record)
        return record

    def show_record(self, record: ErrorRecord) -> None:
        self.history.append(record)
        self._queue.append(record)
        if self._current is None:
            self._show_next()

    @property
    def current_dialog(self) -> QtErrorDialog | None:
        return self._current

    def _show_next(self) -> None:
        if not self._queue:
            self._current = None
            return
        record = self._queue.popleft()
        dialog = QtErrorDialog(record, self._parent_widget)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(self._on_finished)
        self._current = dialog
        self._present(dialog)
        self.dialog_shown.emit(dialog)

    def _present(self, dialog: QtErrorDialog) -> None:
        dialog.open()  # window-modal, no nested event loop

    def _on_finished(self, _result: int) -> None:
        self._current = None
        self._show_next()


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["ErrorRecord", "QtErrorDialog", "QtErrorHandler", "describe"]

"""Append-only audit log: one JSON object per line in the user data folder.

Every screening result the application produces (``predict``, ``scan``,
reports, the GUI) leaves a line here, so a clinic can later show which model
said what about which image, when, and who ran it::

    {"time": "2026-11-26T12:00:00.123Z", "event": "predict", "app_version": "0.1.0",
     "operator": "clinic-pc", "file_sha256": "...", "model": "mobilenet",
     "model_version": "1.0.0", "model_sha256": "...", "operating_point": "screening",
     "threshold": 0.3, "result": {"status": "ok", "label": "covid", "p_covid": 0.91}}

Patient data never goes in: no patient name, ID or birth date, no DICOM
metadata and no path. The image is identified by the sha256 of its bytes
only; its file name (never the folder) is added when the settings allow it
(``include_file_names=True`` or ``CXR_SCREENER_AUDIT_FILE_NAMES=1``), since
clinics often name files after the patient. Error results keep their kind
(``"corrupt"``, ``"not_an_image"``...), not their message, which names the
path.

Appends are safe from several processes at once: the file is opened with
``O_APPEND`` and each entry is one ``write`` of one line, then ``fsync``;
on POSIX each append also holds an advisory ``flock``, so that the check for
a line torn by a crash (made when a writer opens the file) cannot see
another process's line half-written and end it with a stray newline.
An audit log that cannot be written is logged as a warning and does not stop
the screening (``AuditLog.failed`` tells the caller, which reports it).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from desktop import __version__

from .paths import audit_log_path

log = logging.getLogger(__name__)

#: Environment switch that allows the file *name* (not the folder) in entries.
FILE_NAMES_ENV = "CXR_SCREENER_AUDIT_FILE_NAMES"
#: Environment override of the operator recorded in entries.
OPERATOR_ENV = "CXR_SCREENER_OPERATOR"

#: Keys an entry may carry (anything else passed in is refused, so that a
#: caller cannot slip patient data in by accident).
ALLOWED_KEYS = frozenset(
    {
        "time",
        "event",
        "app_version",
        "operator",
        "file_sha256",
        "file_name",
        "model",
        "model_version",
        "model_sha256",
        "operating_point",
        "threshold",
        "result",
        "anonymized",
        "output_sha256",
        "count",
        "source",
    }
)
#: Keys allowed inside ``result``.
RESULT_KEYS = frozenset({"status", "label", "p_covid", "error_kind", "probabilities"})


def default_operator() -> str:
    """The operator recorded when none is given: ``$CXR_SCREENER_OPERATOR``, else the OS login."""
    env = os.environ.get(OPERATOR_ENV, "").strip()
    if env:
        return env
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no login name (service account, odd container)
        return "unknown"


def file_names_allowed() -> bool:
    return os.environ.get(FILE_NAMES_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    """An exclusive advisory lock on the audit file for one append (POSIX ``flock``; elsewhere none:
    ``O_APPEND`` alone keeps lines whole, only the torn-line check may then add a blank line)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class AuditLog:
    """Writer of the audit log; cheap to create, opens the file on the first entry.

    ``path`` defaults to :func:`desktop.core.paths.audit_log_path`;
    ``include_file_names`` defaults to the environment switch (off).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        operator: str | None = None,
        include_file_names: bool | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else audit_log_path()
        self.operator = operator.strip() if operator and operator.strip() else default_operator()
        self.include_file_names = file_names_allowed() if include_file_names is None else include_file_names
        self.failed: str | None = None  # first failure, for the caller's summary
        self.count = 0
        self._fd: int | None = None
        self._lock = threading.Lock()

    # -- writing -----------------------------------------------------------

    def record(
        self,
        event: str,
        *,
        file_sha256: str | None = None,
        file_path: str | os.PathLike[str] | None = None,
        model: str | None = None,
        model_version: str | None = None,
        model_sha256: str | None = None,
        operating_point: str | None = None,
        threshold: float | None = None,
        result: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> bool:
        """Append one entry; True if it was written.

        ``file_path`` is reduced to its file name, and kept only when file
        names are allowed. ``extra`` keys must be in :data:`ALLOWED_KEYS`.
        """
        unknown = set(extra) - ALLOWED_KEYS
        if unknown:
            raise ValueError(f"audit entries take no {sorted(unknown)} (only {sorted(ALLOWED_KEYS)})")
        entry: dict[str, Any] = {
            "time": _now(),
            "event": event,
            "app_version": __version__,
            "operator": self.operator,
            "file_sha256": file_sha256 or None,
        }
        if self.include_file_names and file_path is not None:
            entry["file_name"] = Path(os.fspath(file_path)).name
        entry.update(
            {
                "model": model,
                "model_version": model_version,
                "model_sha256": model_sha256,
                "operating_point": operating_point,
                "threshold": threshold,
            }
        )
        if result is not None:
            bad = set(result) - RESULT_KEYS
            if bad:
                raise ValueError(f"audit results take no {sorted(bad)} (only {sorted(RESULT_KEYS)})")
            entry["result"] = dict(result)
        entry.update(extra)
        return self._append(entry)

    def _append(self, entry: Mapping[str, Any]) -> bool:
        line = (json.dumps(entry, ensure_ascii=True, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            try:
                if self._fd is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
                    self._fd = os.open(self.path, flags, 0o600)
                    with _locked(self._fd):
                        self._end_torn_line(self._fd)
                with _locked(self._fd):
                    written = os.write(self._fd, line)  # one write per line: atomic under O_APPEND
                if written != len(line):
                    raise OSError(f"short write ({written} of {len(line)} bytes)")
                os.fsync(self._fd)
            except OSError as exc:
                if self.failed is None:
                    self.failed = f"{self.path}: cannot write the audit log ({exc.strerror or exc})"
                    log.warning("%s", self.failed)
                return False
        self.count += 1
        return True

    def _end_torn_line(self, fd: int) -> None:
        """After a crash mid-write the file may end inside a line: end it, so ours stays whole."""
        size = os.fstat(fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as fh:
            fh.seek(size - 1)
            last = fh.read(1)
        if last != b"\n":
            os.write(fd, b"\n")

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                finally:
                    self._fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_audit_log(path: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """All entries (a torn last line from a crash is skipped)."""
    return list(iter_audit_log(path))


#: An audit entry is a few hundred bytes; longer lines are damage (or an attack) and are skipped.
MAX_LINE_BYTES = 64 * 1024


def iter_audit_log(path: str | os.PathLike[str] | None = None) -> Iterator[dict[str, Any]]:
    target = Path(path) if path is not None else audit_log_path()
    if not target.exists():
        return
    from .jsonio import JSONLimitError, loads_bounded

    with target.open("rb") as fh:
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            if len(raw) > MAX_LINE_BYTES:
                log.warning("%s: skipping an audit line over %d bytes", target, MAX_LINE_BYTES)
                while raw and not raw.endswith(b"\n"):  # the rest of that line, in bounded pieces
                    raw = fh.readline(MAX_LINE_BYTES + 1)
                continue
            if not raw.endswith(b"\n"):
                break  # torn by a crash mid-write: not an entry
            if not raw.strip():
                continue
            try:
                item = loads_bounded(raw.decode("utf-8"), target, max_depth=8)
            except (JSONLimitError, UnicodeDecodeError):
                log.warning("%s: skipping a damaged audit line", target)
                continue
            if isinstance(item, dict):
                yield item


__all__ = [
    "ALLOWED_KEYS",
    "FILE_NAMES_ENV",
    "OPERATOR_ENV",
    "AuditLog",
    "default_operator",
    "file_names_allowed",
    "iter_audit_log",
    "read_audit_log",
]

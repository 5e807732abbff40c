"""``results.csv``: the one writer and the one reader.

- Rows are written by the csv module (RFC 4180: fields quoted as needed,
  ``\\r\\n`` after each row), so a file name holding a comma, a quote, a line
  feed, a carriage return, a form feed or ``U+2028`` stays inside its field.
- File names are stored losslessly with :func:`desktop.core.filenames.encode_name`
  (names that are not valid UTF-8 included) and read back with
  :func:`~desktop.core.filenames.decode_name`; every text cell also gets the
  spreadsheet formula guard (:func:`csv_text`).
- Records are found by a quote-aware scan and parsed by the csv module; no
  code here or elsewhere splits this file by lines. A row that parses is never
  cut off. *Damaged* means only a torn tail: bytes after the last complete
  record (a write cut by a kill). On resume the tail is kept aside in
  ``results.csv.damaged-<time>`` and then cut off; it is never just deleted.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import OutputError, OutputExistsError
from .filenames import decode_name, display_name, encode_name
from .results import STATUSES, ScanResult

log = logging.getLogger(__name__)

#: The columns of ``results.csv``, in order (the first nine are the documented contract).
CSV_COLUMNS = (
    "path",
    "sha256",
    "status",
    "label",
    "p_covid",
    "model",
    "model_version",
    "threshold",
    "error",
    "operating_point",
    "error_kind",
    "reject_code",
    "site",
    "ood_flag",
)
RESULTS_NAME = "results.csv"
_LINE_END = "\r\n"

#: A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_text(value: str) -> str:
    """``value`` made safe for spreadsheets: a leading formula character gets a ``'`` before it."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_value(cell: str) -> str:
    """The inverse of :func:`csv_text` (what the file name or message really is)."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_FORMULA_START) else cell


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _text(value: str | None) -> str:
    return csv_text(encode_name(value or ""))


def _from_text(cell: str) -> str:
    return decode_name(csv_value(cell))


def row_cells(result: ScanResult, *, path: str | None = None, error: str | None = None) -> list[str]:
    """The cells of ``result``'s row; ``path``/``error`` override what is written (exports)."""

    def num(value: float | None, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    return [
        _text(result.relpath or result.path if path is None else path),
        result.sha256,
        result.status,
        _text(result.label),
        num(result.p_covid, ".6f"),
        _text(result.model),
        _text(result.model_version),
        num(result.threshold, ".6g"),
        _text(_one_line(result.error or "" if error is None else error)),
        _text(result.operating_point),
        _text(result.error_kind),
        _text(result.reject_code),
        _text(result.site),
        "" if result.ood_flag is None else str(bool(result.ood_flag)).lower(),
    ]


def _csv_line(values: Sequence[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=_LINE_END).writerow(values)
    return buf.getvalue().encode("utf-8")


# --------------------------------------------------------------------------
# Reading: a quote-aware split into records, each parsed by the csv module
# --------------------------------------------------------------------------

_QUOTE_OR_LF = re.compile(rb'["\n]')


def _split_records(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """``([(offset, record bytes)], tail_offset)``: complete records and where the torn tail starts.

    A record ends at a line feed outside quotes. ``"`` and ``\\n`` never occur
    inside a multi-byte UTF-8 sequence, so scanning the bytes is exact.
    """
    records: list[tuple[int, bytes]] = []
    start = 0
    quoted = False
    for m in _QUOTE_OR_LF.finditer(data):
        if m.group() == b'"':
            quoted = not quoted
        elif not quoted:
            records.append((start, data[start : m.end()]))
            start = m.end()
    return records, start


def _parse(record: bytes) -> list[str] | None:
    try:
        text = record.decode("utf-8")
        return next(csv.reader(io.StringIO(text, newline="")), [])
    except (UnicodeDecodeError, csv.Error):
        return None


class _Contents:
    """A parsed results file: header, valid rows, invalid complete rows, the torn tail's offset."""

    def __init__(self, path: Path, data: bytes) -> None:
        records, self.tail = _split_records(data)
        self.size = len(data)
        self.header: list[str] | None = None
        self.rows: list[list[str]] = []
        self.bad_rows: list[int] = []  # 1-based row numbers (after the header)
        if not records:
            return
        self.header = _parse(records[0][1])
        if self.header is None:
            raise OutputError(path, "is not a CXR Screener results file; cannot read it")
        status_at = self.header.index("status") if "status" in self.header else None
        for n, (_, record) in enumerate(records[1:], start=1):
            row = _parse(record)
            if row is None or status_at is None or len(row) != len(self.header) or row[status_at] not in STATUSES:
                self.bad_rows.append(n)
                continue
            self.rows.append(row)


def _load(path: Path) -> _Contents:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OutputError(path, f"cannot read it ({exc.strerror or exc})") from exc
    return _Contents(path, data)


def read_results(path: str | os.PathLike[str], *, folder: str | os.PathLike[str] | None = None) -> list[ScanResult]:
    """The rows of a ``results.csv`` (a torn tail and rows that do not parse are left out).

    When a path appears twice (a file changed between a scan and its
    resume), the later row wins. ``folder`` turns relative paths into full ones.
    """
    contents = _load(Path(path))
    if contents.header is None:
        return []
    index = {name: i for i, name in enumerate(contents.header)}
    rows: dict[str, ScanResult] = {}
    for row in contents.rows:

        def get(name: str, row: list[str] = row) -> str:
            i = index.get(name)
            return _from_text(row[i]) if i is not None else ""

        rel = get("path")
        full = str(Path(folder) / rel) if folder is not None else rel
        rows.pop(rel, None)
        rows[rel] = ScanResult(
            path=full,
            sha256=row[index["sha256"]] if "sha256" in index else "",
            status=row[index["status"]],
            label=get("label") or None,
            p_covid=float(get("p_covid")) if get("p_covid") else None,
            model=get("model"),
            model_version=get("model_version"),
            operating_point=get("operating_point") or None,
            threshold=float(get("threshold")) if get("threshold") else None,
            error=get("error") or None,
            error_kind=get("error_kind") or None,
            relpath=rel,
            reject_code=get("reject_code") or None,
            site=get("site") or None,
            ood_flag={"true": True, "false": False}.get(get("ood_flag")),
        )
    return list(rows.values())


def anonymized_cells(result: ScanResult) -> list[str]:
    """``result``'s row with its file named by a pseudonym, in the path column and in the error."""
    from .phi import file_label

    label = file_label(result.path, anonymize=True)
    error = result.error or ""
    names = {result.path, result.relpath, Path(result.path).name}
    for name in sorted(names | {display_name(n) for n in names} - {""}, key=len, reverse=True):
        error = error.replace(name, label)
    return row_cells(result, path=label, error=error)


def write_results(
    path: str | os.PathLike[str],
    results: Iterable[ScanResult],
    *,
    anonymize: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``results`` as a complete results file, atomically (the GUI's "Save as CSV").

    With ``anonymize`` the path column holds pseudonyms of the file names, and
    the file's name is replaced in error messages too.
    """
    from .fileio import atomic_write_bytes

    chunks = [_csv_line(CSV_COLUMNS)]
    chunks += [_csv_line(anonymized_cells(r) if anonymize else row_cells(r)) for r in results]
    return Path(atomic_write_bytes(path, b"".join(chunks), overwrite=overwrite))


# --------------------------------------------------------------------------
# Writing as the scan goes
# --------------------------------------------------------------------------


class ResultsWriter:
    """Append rows to ``results.csv``: one ``write`` per row, then ``fsync``.

    Opening never destroys an existing file unless ``overwrite``; with
    ``resume`` an existing file is checked: a torn tail (a kill mid-write) is
    kept aside in ``<name>.damaged-<time>`` and cut off (:attr:`damaged_copy`).
    Complete rows that do not parse (a hand-edited file) stay in the file; their
    files count as not done.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.done: dict[str, str] = {}  # relpath -> sha256 of rows already in the file
        #: the thresholds its ok rows were decided at, per (model, version, operating point) (:attr:`models`):
        #: a site profile calibrated again keeps its name and moves its threshold
        self.thresholds: dict[tuple[str, str, str], set[float]] = {}
        self.rows_before = 0
        self.repaired = False
        self.damaged_copy: Path | None = None
        self._fd: int | None = None
        self._size = 0
        self._open(resume=resume, overwrite=overwrite)

    @property
    def models(self) -> set[tuple[str, str, str]]:
        """(model, version, operating point) of the ok rows already in the file."""
        return set(self.thresholds)

    def _open(self, *, resume: bool, overwrite: bool) -> None:
        p = self.path
        if p.is_dir():
            raise OutputError(p, "is a folder; give a file name")
        exists = p.exists()
        if exists and not resume and not overwrite:
            raise OutputExistsError(p, "already exists", "resume it with --resume or replace it with --overwrite")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(p, f"cannot create the folder {p.parent} ({exc.strerror or exc})") from exc
        if exists and resume:
            self._repair_and_load()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)
        if overwrite and not resume:
            flags |= os.O_TRUNC
        try:
            self._fd = os.open(p, flags, 0o644)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise OutputError(p, f"cannot write ({exc.strerror or exc})") from exc
        if self._size == 0:
            self._write(_csv_line(CSV_COLUMNS))

    def _repair_and_load(self) -> None:
        p = self.path
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise OutputError(p, f"cannot read it to resume ({exc.strerror or exc})") from exc
        if not data:
            return
        contents = _Contents(p, data)
        header = contents.header
        if header is not None:
            if tuple(header[: len(CSV_COLUMNS)]) != CSV_COLUMNS[: len(header)] or len(header) < 9:
                raise OutputError(p, "is not a CXR Screener results file; cannot resume it", "choose another --out")
            if tuple(header) != CSV_COLUMNS:
                raise OutputError(p, "was written by another version (different columns); cannot resume it")
        for n in contents.bad_rows:
            log.warning("%s: row %d does not parse; kept as it is, its file is screened again", p, n)
        for row in contents.rows:
            self.done[_from_text(row[0])] = row[1]
            if row[2] == "ok":
                seen = self.thresholds.setdefault((_from_text(row[5]), _from_text(row[6]), _from_text(row[9])), set())
                try:
                    seen.add(float(row[7]))
                except ValueError:  # an empty or edited cell: nothing to compare
                    pass
            self.rows_before += 1
        if contents.tail != len(data):
            self._keep_aside(data[contents.tail :])
            self._truncate_file(contents.tail)
            log.warning("%s: the last row was cut by an interruption (kept in %s); its file is screened again",
                        p, self.damaged_copy)

    def _keep_aside(self, tail: bytes) -> None:
        from .fileio import atomic_write_bytes

        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}")
        atomic_write_bytes(target, tail)
        self.damaged_copy = target

    def _truncate_file(self, size: int) -> None:
        try:
            with open(self.path, "r+b") as fh:
                fh.truncate(size)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise OutputError(self.path, f"cannot repair it ({exc.strerror or exc})") from exc
        self.repaired = True

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)  # never leave half a row
            if exc.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1)):
                raise OutputError(self.path, "disk full: the scan stopped; the rows written so far are kept",
                                  "free some space and run again with --resume") from exc
            raise OutputError(self.path, f"cannot write ({exc.strerror or exc}); the rows written so far are kept") from exc
        self._size += len(data)

    def append(self, result: ScanResult) -> None:
        self._write(_csv_line(row_cells(result)))
        self.done[result.relpath or result.path] = result.sha256

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "CSV_COLUMNS",
    "RESULTS_NAME",
    "ResultsWriter",
    "csv_text",
    "csv_value",
    "read_results",
    "anonymized_cells",
    "row_cells",
    "write_results",
]

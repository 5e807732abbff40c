"""Batch scan of a folder: a generator of :class:`ScanResult`, a crash-safe ``results.csv``.

::

    for result in scan(folder, predictor, results_csv=out / "results.csv"):
        ...

- **Files**: the folder is walked recursively in a deterministic order
  (sorted relative paths); hidden files and folders, the scan's own output
  folder and folders marked as our output (:data:`OUTPUT_MARKER`) are
  skipped. Images are recognised by content, so any other file gets an error
  row saying it is not an image. Symlink loops are followed once; broken
  links, unreadable files and folders get error rows.
- **Decoding overlaps inference**: worker *processes* read, decode and
  preprocess the next files while the main thread runs ONNX Runtime (which
  releases the GIL). At most ``window`` files are in flight, so memory stays
  flat however large the folder. Each file has a decode timeout: a hung or
  crashing decoder is killed, recorded as an error row, and replaced.
- **Nothing lost**: each result is appended to ``results.csv`` as one write
  of one line, flushed and fsynced, so a kill at any moment leaves a valid
  CSV with every finished row (a torn last line is repaired on resume).
  ``resume=True`` skips files whose path and sha256 are already recorded,
  without duplicating rows. A disk full or unwritable output raises
  :class:`~desktop.core.errors.OutputError`; the rows already written stay.

The CSV columns are :data:`CSV_COLUMNS`: ``path`` is relative to the scanned
folder (POSIX separators), so the file stays meaningful when the folder is
moved or shared; :attr:`ScanResult.path` is the full path.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import logging
import math
import multiprocessing
import os
import signal
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .errors import CXRError, OutputError, OutputExistsError

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
    # [site/gate hook, issue 16]
    "reject_code",
    "site",
    "ood_flag",
)
RESULTS_NAME = "results.csv"
#: A file that marks a folder as written by CXR Screener: scans skip such folders.
OUTPUT_MARKER = ".cxr-screener-output"
#: Seconds one file may take to read, decode and preprocess before it is given up.
DEFAULT_DECODE_TIMEOUT = 60.0
#: Files run through the model together.
DEFAULT_BATCH_SIZE = 8

ProgressFn = Callable[[int, int, float, float], None]
#: ``(path, expected_sha256_or_None, spec, want_xray) -> _Decoded``
DecodeFn = Callable[[str, "str | None", Any, bool], Any]


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanResult:
    """The outcome for one file. ``status`` is ``"ok"``, ``"rejected"`` (input gate) or ``"error"``."""

    path: str
    sha256: str
    status: str
    label: str | None
    p_covid: float | None
    model: str
    model_version: str
    operating_point: str | None
    threshold: float | None
    error: str | None
    error_kind: str | None
    #: The heatmap PNG written for this file, if heatmaps were asked for.
    heatmap: str | None = None
    #: The path as written in results.csv (relative to the scanned folder).
    relpath: str = ""
    # [site/gate hook, issue 16] the gate's code (status "rejected"), the site profile, the OOD flag
    reject_code: str | None = None
    site: str | None = None
    ood_flag: bool | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        """An error (a rejected film is not a failure: the gate did its job)."""
        return self.status == "error"

    def csv_row(self) -> list[str]:
        def num(value: float | None, fmt: str) -> str:
            return "" if value is None else format(value, fmt)

        return [
            csv_text(self.relpath or self.path),
            self.sha256,
            self.status,
            self.label or "",
            num(self.p_covid, ".6f"),
            self.model,
            self.model_version,
            num(self.threshold, ".6g"),
            csv_text(_one_line(self.error or "")),
            self.operating_point or "",
            self.error_kind or "",
            self.reject_code or "",
            csv_text(self.site or ""),
            "" if self.ood_flag is None else str(bool(self.ood_flag)).lower(),
        ]


class CancelToken:
    """Ask a running scan to stop between files (thread-safe)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class ScanStats:
    """Counts of the last scan (filled while :func:`scan` runs)."""

    total: int = 0
    done: int = 0
    ok: int = 0
    errors: int = 0
    #: [site/gate hook, issue 16] films the input gate rejected
    rejected: int = 0
    skipped: int = 0
    #: documents left out (README, PDF, CSV... whose content is not an image)
    ignored: int = 0
    cancelled: bool = False
    elapsed_s: float = 0.0
    labels: dict[str, int] = field(default_factory=dict)


def _one_line(text: str) -> str:
    return " ".join(text.split())


#: A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_text(value: str) -> str:
    """``value`` made safe for spreadsheets: a leading formula character gets a ``'`` before it."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_value(cell: str) -> str:
    """The inverse of :func:`csv_text` (what the file name or message really is)."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_FORMULA_START) else cell


# --------------------------------------------------------------------------
# The model, as the scan sees it
# --------------------------------------------------------------------------


class _Model:
    """What the scan needs from a Predictor: its spec, names, and a batch forward pass.

    Reads ``predictor.bundle`` (a :class:`desktop.core.bundle.Bundle`); a
    stand-in without a bundle may provide ``spec``, ``name`` and ``version``.
    """

    def __init__(self, predictor: Any, operating_point: Any, input_stats: Any = None, site: str | None = None) -> None:
        self.predictor = predictor
        # [site/gate hook, issue 16] learnt gate + OOD statistics; the site's name (its OperatingPoint comes in)
        self.input_stats = input_stats
        self.site = site
        self.op_object = operating_point if not isinstance(operating_point, (str, type(None))) else None
        bundle = getattr(predictor, "bundle", None)
        card = getattr(bundle, "card", None)
        self.spec: Any = getattr(predictor, "spec", None)
        if self.spec is None:
            self.spec = card.preprocess  # type: ignore[union-attr]
        self.name = str(getattr(bundle, "name", None) or getattr(predictor, "name", ""))
        self.version = str(getattr(bundle, "version", None) or getattr(predictor, "version", ""))
        self.sha256: str | None = getattr(card, "sha256", None)
        self.operating_point = operating_point
        self.threshold: float | None = None
        if self.op_object is not None:
            self.operating_point = self.op_object.name
            self.threshold = float(self.op_object.threshold)
        elif card is not None:
            op = card.operating_point(operating_point)  # ModelError if unknown: before any work
            self.operating_point = op.name
            self.threshold = float(op.threshold)
        self.fast = callable(getattr(predictor, "predict_inputs", None))
        self.ood: dict[int, bool | None] = {}  # [site/gate hook, issue 16] id(prediction) -> OOD flag

    def spec_dict(self) -> dict[str, Any]:
        return dict(self.spec.to_dict())

    @property
    def _op(self) -> Any:
        return self.op_object if self.op_object is not None else self.operating_point

    def predict_inputs(self, inputs: Sequence[Any]) -> list[Any]:
        import numpy as np

        batch = np.stack(list(inputs))
        if self.input_stats is not None and callable(getattr(self.predictor, "forward_raw", None)):
            # [site/gate hook, issue 16] one run gives features too: learnt gate and OOD score.
            # Returns a Prediction, or the GateResult of a film the learnt gate rejects; OOD in self.ood.
            from .gate import check_learnt
            from .ood import assess

            fmap, probs = self.predictor.forward_raw(batch)
            op = self.predictor.operating_point(self._op)
            out: list[Any] = []
            for j in range(len(batch)):
                verdict = check_learnt(fmap[j : j + 1], self.input_stats)
                if verdict.rejected:
                    out.append(verdict)
                    continue
                pred = self.predictor._prediction(probs[j], op)
                res = assess(fmap[j : j + 1], self.input_stats)
                self.ood[id(pred)] = None if res is None else res.flagged
                out.append(pred)
            self._remember([p for p in out if hasattr(p, "p_covid")])
            return out
        preds = self.predictor.predict_inputs(batch, operating_point=self._op)
        self._remember(preds)
        return list(preds)

    def predict_xrays(self, xrays: Sequence[Any]) -> list[Any]:
        preds = self.predictor.predict(list(xrays), operating_point=self._op)
        self._remember(preds)
        return list(preds)

    def explain(self, xray: Any) -> tuple[Any, Any]:
        if self.input_stats is not None and callable(getattr(self.predictor, "forward_raw", None)):
            # [site/gate hook, issue 16] the learnt gate before the heatmap (one more forward pass)
            from .gate import screen

            (verdict,) = screen(self.predictor, [xray], stats=self.input_stats, operating_point=self._op)
            if verdict.gate.rejected:
                return verdict.gate, None
        pred, heatmap = self.predictor.explain(xray, operating_point=self._op)
        self._remember([pred])
        return pred, heatmap

    def _remember(self, preds: Sequence[Any]) -> None:
        if preds and self.threshold is None:
            self.threshold = float(preds[0].threshold)
            self.operating_point = str(preds[0].operating_point)


# --------------------------------------------------------------------------
# Walking the folder
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    path: str  # full path as found (links not resolved)
    rel: str  # POSIX path relative to the scanned folder
    error: str | None = None
    error_kind: str | None = None


def _is_hidden(entry: os.DirEntry[str]) -> bool:
    if entry.name.startswith("."):
        return True
    attrs = 0
    with contextlib.suppress(OSError):
        attrs = getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)
    return bool(attrs & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))


#: Files with these extensions are documents that sit beside images (README, attribution,
#: older results, reports): skipped silently *unless their content is an image*.
DOCUMENT_EXTENSIONS = frozenset(
    {".md", ".txt", ".csv", ".tsv", ".json", ".jsonl", ".pdf", ".html", ".htm", ".xml", ".log",
     ".ini", ".yaml", ".yml", ".doc", ".docx", ".xls", ".xlsx", ".rtf", ".odt"}
)


def _is_document(path: str) -> bool:
    """A README, a report, a CSV...: not to be screened (an image by content never is one)."""
    if os.path.splitext(path)[1].lower() not in DOCUMENT_EXTENSIONS:
        return False
    from .imaging import detect_format

    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False  # let the loader report it
    return detect_format(head) is None


def list_files(
    folder: str | os.PathLike[str],
    *,
    exclude: Sequence[str | os.PathLike[str]] = (),
    ignored: list[str] | None = None,
) -> list[_Entry]:
    """Every candidate file under ``folder``, sorted by relative path.

    Folders that cannot be listed and broken links come back as entries with
    an error. ``exclude`` folders (our own outputs) are skipped; documents
    (:data:`DOCUMENT_EXTENSIONS` whose content is not an image) are left out
    and their relative paths added to ``ignored``. Any other file is a
    candidate: images are recognised by content, so a non-image gets an
    error row from the scan.
    """
    root = Path(folder)
    excluded = set()
    for item in exclude:
        with contextlib.suppress(OSError):
            excluded.add(os.path.realpath(item))
    out: list[_Entry] = []
    seen_dirs: set[tuple[int, int]] = set()

    def walk(directory: str, rel: str) -> None:
        try:
            st = os.stat(directory)
        except OSError as exc:
            out.append(_Entry(directory, rel or ".", f"{directory}: cannot open the folder ({exc.strerror or exc})", "access"))
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            log.debug("%s: folder already scanned (link loop), skipped", directory)
            return
        seen_dirs.add(key)
        if os.path.realpath(directory) in excluded or os.path.exists(os.path.join(directory, OUTPUT_MARKER)):
            log.debug("%s: output folder, skipped", directory)
            return
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.append(_Entry(directory, rel or ".", f"{directory}: cannot list the folder ({exc.strerror or exc})", "access"))
            return
        for entry in entries:
            if _is_hidden(entry):
                continue
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = not is_dir and entry.is_file(follow_symlinks=True)
            except OSError:
                is_dir = is_file = False
            if is_dir:
                walk(entry.path, child_rel)
            elif is_file:
                if os.path.realpath(entry.path) in excluded:
                    continue
                if _is_document(entry.path):
                    if ignored is not None:
                        ignored.append(child_rel)
                    continue
                out.append(_Entry(entry.path, child_rel))
            elif entry.is_symlink():
                out.append(_Entry(entry.path, child_rel, f"{entry.path}: broken link (its target does not exist)", "access"))
            # sockets, fifos, devices: not files, silently skipped

    walk(os.fspath(root), "")
    out.sort(key=lambda e: e.rel)
    return out


# --------------------------------------------------------------------------
# results.csv
# --------------------------------------------------------------------------


class ResultsWriter:
    """Append rows to ``results.csv``: one ``write`` per row, then ``fsync``.

    Opening never destroys an existing file unless ``overwrite``; with
    ``resume`` an existing file is checked and a torn last line (a kill
    mid-write) is cut off.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.done: dict[str, str] = {}  # relpath -> sha256 of rows already in the file
        self.models: set[tuple[str, str, str]] = set()  # (model, version, operating point) of its ok rows
        self.rows_before = 0
        self.repaired = False
        self._fd: int | None = None
        self._size = 0
        self._open(resume=resume, overwrite=overwrite)

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
        good_end = data.rfind(b"\n") + 1
        text = data[:good_end].decode("utf-8", errors="replace")
        lines = text.splitlines(keepends=True)
        if not lines:  # only a torn header
            self._truncate_file(0)
            return
        header = next(csv.reader([lines[0]]))
        if tuple(header[: len(CSV_COLUMNS)]) != CSV_COLUMNS[: len(header)] or len(header) < 9:
            raise OutputError(p, "is not a CXR Screener results file; cannot resume it", "choose another --out")
        if tuple(header) != CSV_COLUMNS:
            raise OutputError(p, "was written by another version (different columns); cannot resume it")
        offset = len(lines[0].encode())
        for line in lines[1:]:
            row = next(csv.reader([line]), [])
            if len(row) != len(CSV_COLUMNS) or row[2] not in ("ok", "error", "rejected"):  # [issue 16 hook]
                log.warning("%s: damaged row after %d rows, cut off", p, self.rows_before)
                break
            self.done[csv_value(row[0])] = row[1]
            if row[2] == "ok":
                self.models.add((row[5], row[6], row[9]))
            self.rows_before += 1
            offset += len(line.encode())
        if offset != len(data):
            self._truncate_file(offset)

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
        self._write(_csv_line(result.csv_row()))
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


def _csv_line(values: Sequence[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode("utf-8")


def read_results(path: str | os.PathLike[str], *, folder: str | os.PathLike[str] | None = None) -> list[ScanResult]:
    """The rows of a ``results.csv`` (a torn or damaged tail is ignored).

    When a path appears twice (a file changed between a scan and its
    resume), the later row wins. ``folder`` turns relative paths into full ones.
    """
    rows: dict[str, ScanResult] = {}
    data = Path(path).read_bytes()
    text = data[: data.rfind(b"\n") + 1].decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return []
    index = {name: i for i, name in enumerate(header)}
    for row in reader:
        if len(row) != len(header) or row[index["status"]] not in ("ok", "error", "rejected"):
            break

        def get(name: str, row: list[str] = row) -> str:
            i = index.get(name)
            return row[i] if i is not None else ""

        rel = csv_value(get("path"))
        full = str(Path(folder) / rel) if folder is not None else rel
        rows[rel] = ScanResult(
            path=full,
            sha256=get("sha256"),
            status=get("status"),
            label=get("label") or None,
            p_covid=float(get("p_covid")) if get("p_covid") else None,
            model=get("model"),
            model_version=get("model_version"),
            operating_point=get("operating_point") or None,
            threshold=float(get("threshold")) if get("threshold") else None,
            error=csv_value(get("error")) or None,
            error_kind=get("error_kind") or None,
            relpath=rel,
            reject_code=get("reject_code") or None,
            site=csv_value(get("site")) or None,
            ood_flag={"true": True, "false": False}.get(get("ood_flag")),
        )
    return list(rows.values())


# --------------------------------------------------------------------------
# Decoding (runs in worker processes, or inline with workers=0)
# --------------------------------------------------------------------------


@dataclass
class _Decoded:
    status: str  # "ok" | "skip" | "error" | "rejected" (error: the gate's text, error_kind: its code)
    sha256: str = ""
    input: Any = None  # (H, W, C) float32 model input
    xray: Any = None  # the XRay itself, when heatmaps (or the slow path) need it
    error: str | None = None
    error_kind: str | None = None


def _sha256_file(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _decode_one(path: str, expected_sha: str | None, spec: Any, want_xray: bool) -> _Decoded:
    from .imaging import load_xray
    from .preprocess import model_input

    try:
        before = os.stat(path)
        if expected_sha:
            try:
                if _sha256_file(path) == expected_sha:
                    return _Decoded("skip", expected_sha)
            except OSError:
                pass  # load_xray reports it properly
        xray = load_xray(path)
        try:
            after = os.stat(path)
        except FileNotFoundError:
            return _Decoded("error", xray.sha256, error=f"{path}: file vanished while it was being read", error_kind="changed")
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            return _Decoded("error", xray.sha256, error=f"{path}: file changed while it was being read; scan it again",
                            error_kind="changed")
        # [site/gate hook, issue 16] DICOM tags and pixel checks before the model
        from .gate import check as gate_check

        verdict = gate_check(xray)
        if verdict.rejected:
            return _Decoded("rejected", xray.sha256, error=verdict.text, error_kind=verdict.code)
        inp = None if want_xray else model_input(xray, spec)
        return _Decoded("ok", xray.sha256, input=inp, xray=xray if want_xray else None)
    except FileNotFoundError:
        return _Decoded("error", error=f"{path}: file vanished before it could be read", error_kind="access")
    except CXRError as exc:
        sha = ""
        with contextlib.suppress(OSError):
            sha = _sha256_file(path) if exc.kind != "access" else ""
        # [site/gate hook, issue 16] a CT/MR refused by the loader is rejected (not_radiograph), not failed
        from .gate import from_load_error

        refused = from_load_error(exc)
        if refused.code not in (None, "unreadable"):
            return _Decoded("rejected", sha, error=refused.text, error_kind=refused.code)
        return _Decoded("error", sha, error=str(exc), error_kind=exc.kind)
    except OSError as exc:
        return _Decoded("error", error=f"{path}: cannot read the file ({exc.strerror or exc})", error_kind="access")
    except MemoryError:
        return _Decoded("error", error=f"{path}: not enough memory to decode this image", error_kind="too_large")
    except Exception as exc:  # a bug: keep the scan alive, say what happened
        log.exception("unexpected error decoding %s", path)
        return _Decoded("error", error=f"{path}: unexpected error ({type(exc).__name__})", error_kind="internal")


def _worker_main(conn: Connection, spec_dict: dict[str, Any], want_xray: bool, decode_fn: DecodeFn) -> None:
    """A decoding worker: receives (task id, path, expected sha256), sends back a _Decoded."""
    with contextlib.suppress(Exception):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    with contextlib.suppress(AttributeError, OSError):
        os.nice(5)  # under contention, the GUI and inference come first (POSIX only)
    logging.getLogger().setLevel(logging.WARNING)
    parent = os.getppid()

    def watchdog() -> None:  # die with the parent, even while stuck in a decoder
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    if hasattr(os, "getppid") and os.name == "posix":
        threading.Thread(target=watchdog, daemon=True).start()
    from .preprocess import PreprocessSpec

    spec = PreprocessSpec.from_dict(spec_dict)
    import desktop.core.imaging  # noqa: F401  (pay the import before the first task's clock)

    try:
        conn.send("ready")
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        task_id, path, expected = msg
        result = decode_fn(path, expected, spec, want_xray)
        try:
            conn.send((task_id, result))
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    #: queued (task id, path, expected sha256); the head is being decoded
    tasks: deque[tuple[int, str, str | None]] = field(default_factory=deque)
    started: float = 0.0  # when the head task started (or the worker was started)
    ready: bool = False  # its start-up "ready" message has arrived


class _PoolUnavailable(RuntimeError):
    """Worker processes could not be started here."""


class _DecodePool:
    """Worker processes, two files queued each, a per-file timeout; a hung or dead worker is replaced.

    The second queued file lets a worker go on decoding while the main
    process is busy with the model and does not collect results at once.
    """

    DEPTH = 2

    def __init__(self, n: int, spec_dict: dict[str, Any], want_xray: bool, timeout: float,
                 start_timeout: float = 60.0, decode_fn: DecodeFn | None = None) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.decode_fn = decode_fn or _decode_one
        self.spec_dict = spec_dict
        self.want_xray = want_xray
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.workers: list[_Worker] = []
        try:
            self.workers = [self._start() for _ in range(n)]
            for w in self.workers:
                if not w.conn.poll(start_timeout) or w.conn.recv() != "ready":
                    raise _PoolUnavailable("a decoding worker did not start")
                w.ready = True
        except (OSError, EOFError, RuntimeError, ValueError) as exc:
            self.close()
            raise _PoolUnavailable(str(exc)) from exc

    def _start(self) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(
            target=_worker_main, args=(child, self.spec_dict, self.want_xray, self.decode_fn), daemon=True, name="cxr-decode"
        )
        proc.start()
        child.close()
        return _Worker(proc, parent, started=time.monotonic())

    def idle(self) -> _Worker | None:
        free = [w for w in self.workers if len(w.tasks) < self.DEPTH]
        return min(free, key=lambda w: len(w.tasks)) if free else None

    def submit(self, worker: _Worker, task_id: int, path: str, expected: str | None) -> None:
        if not worker.tasks and worker.ready:
            worker.started = time.monotonic()
        worker.tasks.append((task_id, path, expected))
        try:
            worker.conn.send((task_id, path, expected))
        except (BrokenPipeError, OSError):
            pass  # noticed as a dead worker by poll()

    def _deadline(self, w: _Worker) -> float:
        return w.started + (self.timeout if w.ready else self.start_timeout + self.timeout)

    def poll(self, timeout: float) -> list[tuple[int, _Decoded]]:
        busy = [w for w in self.workers if w.tasks]
        if not busy:
            return []
        nearest = min(self._deadline(w) for w in busy) - time.monotonic()
        ready = wait([w.conn for w in busy], timeout=max(0.0, min(timeout, nearest)))
        out: list[tuple[int, _Decoded]] = []
        for w in busy:
            if w.conn in ready:
                try:
                    while w.tasks and w.conn.poll():
                        got = w.conn.recv()
                        now = time.monotonic()
                        if got == "ready":
                            w.ready, w.started = True, now
                        elif isinstance(got, tuple) and w.tasks and got[0] == w.tasks[0][0]:
                            w.tasks.popleft()
                            out.append((got[0], got[1]))
                            w.started = now
                except (EOFError, OSError):
                    task_id, path, _ = w.tasks.popleft()
                    out.append((task_id, _Decoded("error", error=f"{path}: the decoder crashed on this file",
                                                  error_kind="crash")))
                    self._replace(w)
                    continue
            if w.tasks and time.monotonic() > self._deadline(w):
                task_id, path, _ = w.tasks.popleft()
                out.append((task_id, _Decoded("error", error=f"{path}: decoding took longer than {self.timeout:g} s; given up",
                                              error_kind="timeout")))
                self._replace(w)
        return out

    def _replace(self, w: _Worker) -> None:
        """Kill ``w``, start a new worker and hand it the files ``w`` still had queued."""
        self._kill(w)
        fresh = self._start()
        self.workers[self.workers.index(w)] = fresh
        for task_id, path, expected in w.tasks:
            self.submit(fresh, task_id, path, expected)

    @staticmethod
    def _kill(w: _Worker) -> None:
        with contextlib.suppress(Exception):
            w.proc.kill()
        with contextlib.suppress(Exception):
            w.proc.join(2.0)
        with contextlib.suppress(Exception):
            w.conn.close()

    def close(self) -> None:
        for w in self.workers:
            if not w.tasks:
                with contextlib.suppress(Exception):
                    w.conn.send(None)
        deadline = time.monotonic() + 2.0
        for w in self.workers:
            if not w.tasks:
                with contextlib.suppress(Exception):
                    w.proc.join(max(0.0, deadline - time.monotonic()))
            self._kill(w)
        self.workers = []


class _ThreadPool:
    """Fallback where processes cannot be started: decoding threads (no hard timeout)."""

    def __init__(self, n: int, spec: Any, want_xray: bool, timeout: float, decode_fn: DecodeFn | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.decode_fn = decode_fn or _decode_one
        self.executor = ThreadPoolExecutor(max_workers=n, thread_name_prefix="cxr-decode")
        self.n = n
        self.spec = spec
        self.want_xray = want_xray
        self.timeout = timeout
        self.running: dict[Any, tuple[int, str, float]] = {}
        self.abandoned = 0

    def idle(self) -> bool | None:
        return True if len(self.running) < self.n else None

    def submit(self, worker: object, task_id: int, path: str, expected: str | None) -> None:
        fut = self.executor.submit(self.decode_fn, path, expected, self.spec, self.want_xray)
        self.running[fut] = (task_id, path, time.monotonic())

    def poll(self, timeout: float) -> list[tuple[int, _Decoded]]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as fwait

        if not self.running:
            return []
        fwait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        out: list[tuple[int, _Decoded]] = []
        for fut, (task_id, path, started) in list(self.running.items()):
            if fut.done():
                del self.running[fut]
                out.append((task_id, fut.result()))
            elif time.monotonic() - started > self.timeout:
                del self.running[fut]  # the thread cannot be stopped; its result is dropped
                self.abandoned += 1
                out.append((task_id, _Decoded("error", error=f"{path}: decoding took longer than {self.timeout:g} s; given up",
                                              error_kind="timeout")))
        return out

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def available_cpus() -> int:
    """Cores this process may run on (affinity and container limits aside from cgroups)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Decoding processes: one per core, at most four.

    Decoding a full-size X-ray costs several times a MobileNet forward pass,
    so decoders get every core and ONNX Runtime (:func:`inference_threads`)
    fits in between: measured on 2 cores (benchmarks/bench_scan.py), 2
    decoders + 1 inference thread scan ~1.9x faster than 1 + 1.
    """
    return max(1, min(4, available_cpus()))


def inference_threads() -> int:
    """ONNX Runtime threads for a scan: half the cores (1 to 4)."""
    return max(1, min(4, available_cpus() // 2))


# --------------------------------------------------------------------------
# The scan
# --------------------------------------------------------------------------


def scan(
    folder: str | os.PathLike[str],
    predictor: Any,
    *,
    operating_point: str | None = None,
    results_csv: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    heatmap_dir: str | os.PathLike[str] | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    workers: int | None = None,
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT,
    batch_size: int = DEFAULT_BATCH_SIZE,
    audit: Any = None,
    stats: ScanStats | None = None,
    exclude: Sequence[str | os.PathLike[str]] = (),
    decode_fn: DecodeFn | None = None,
    input_stats: Any = None,
    site: Any = None,
) -> Iterator[ScanResult]:
    """Scan ``folder`` recursively; yield one :class:`ScanResult` per file, in path order.

    ``workers`` decoding processes (default :func:`default_workers`; 0 decodes
    inline, without a timeout). Files skipped by ``resume`` are not yielded
    (they are in the CSV already) but count in ``progress`` and ``stats``.
    ``audit`` is an :class:`~desktop.core.audit.AuditLog` (or None) that gets
    one entry per result. ``decode_fn`` replaces the per-file decoder (tests
    and tools; a module-level function, so that worker processes can import
    it). Raises :class:`OutputError` if ``results_csv``
    cannot be written (before any work, or mid-scan on a full disk).
    [site/gate hook, issue 16] ``input_stats`` (:mod:`desktop.core.input_stats`): the learnt gate
    and the OOD flag; ``site``: a :class:`~desktop.core.site.SiteProfile` whose threshold is used.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CXRError(root, "is not a folder" if root.exists() else "folder not found")
    stats = stats if stats is not None else ScanStats()
    model = _Model(predictor, site.operating_point() if site is not None else operating_point,
                   input_stats=input_stats, site=None if site is None else site.site)
    writer = ResultsWriter(results_csv, resume=resume, overwrite=overwrite) if results_csv is not None else None
    if writer is not None and writer.models:
        current = (model.name, model.version, model.operating_point or "")
        known_op = model.operating_point is not None  # a stand-in without a card may not know it yet
        others = sorted(m for m in writer.models if m[:2] != current[:2] or (known_op and m[2] != current[2]))
        if others:
            writer.close()
            name, version, op = others[0]
            raise OutputError(
                writer.path,
                f"holds results of model {name} {version} at operating point {op!r}; this scan uses "
                f"{current[0]} {current[1]} at {current[2]!r} and would mix them",
                "resume with the same --model and --operating-point, or choose another --out",
            )
    heat_root = Path(heatmap_dir) if heatmap_dir is not None else None
    pool: _DecodePool | _ThreadPool | None = None
    try:
        excluded = [*exclude]
        if results_csv is not None:
            csv_dir = Path(results_csv).parent
            same = os.path.realpath(csv_dir) == os.path.realpath(root)
            excluded.append(results_csv if same else csv_dir)  # never skip the scanned folder itself
        if heat_root is not None:
            heat_root.mkdir(parents=True, exist_ok=True)
            excluded.append(heat_root)
        ignored: list[str] = []
        entries = list_files(root, exclude=excluded, ignored=ignored)
        stats.ignored = len(ignored)
        done = writer.done if writer is not None else {}
        stats.total = len(entries)
        want_xray = heat_root is not None or not model.fast
        n_workers = default_workers() if workers is None else max(0, workers)
        if n_workers:
            try:
                pool = _DecodePool(n_workers, model.spec_dict(), want_xray, decode_timeout, decode_fn=decode_fn)
            except _PoolUnavailable as exc:
                log.warning("decoding processes unavailable (%s): decoding in threads instead", exc)
                pool = _ThreadPool(n_workers, model.spec, want_xray, decode_timeout, decode_fn=decode_fn)
        window = max(2, (n_workers or 1) * _DecodePool.DEPTH + (1 if want_xray else batch_size))
        yield from _run(entries, done, model, pool, writer, heat_root, cancel, progress, window,
                        max(1, batch_size), want_xray, audit, stats, decode_fn or _decode_one)
    finally:
        if pool is not None:
            pool.close()
        if writer is not None:
            writer.close()


def _run(
    entries: list[_Entry],
    done: dict[str, str],
    model: _Model,
    pool: _DecodePool | _ThreadPool | None,
    writer: ResultsWriter | None,
    heat_root: Path | None,
    cancel: CancelToken | None,
    progress: ProgressFn | None,
    window: int,
    batch_size: int,
    want_xray: bool,
    audit: Any,
    stats: ScanStats,
    decode_fn: DecodeFn,
) -> Iterator[ScanResult]:
    from .preprocess import PreprocessSpec

    spec = PreprocessSpec.from_dict(model.spec_dict())
    n = len(entries)
    ready: dict[int, _Decoded] = {}
    queue: deque[int] = deque()  # dispatched but not yet handed to a worker (inline mode)
    next_dispatch = 0
    next_out = 0
    t0 = time.monotonic()
    processed = 0

    def report() -> None:
        if progress is None:
            return
        elapsed = max(time.monotonic() - t0, 1e-9)
        rate = processed / elapsed if processed else 0.0
        remaining = n - stats.done
        eta = remaining / rate if rate > 0 else math.inf
        try:
            progress(stats.done, n, rate, eta)
        except Exception:  # a broken progress display must not stop the scan
            log.exception("progress callback failed")

    report()
    def fill() -> None:
        """Hand out work, keeping at most ``window`` files between dispatch and output."""
        nonlocal next_dispatch
        while next_dispatch < n and next_dispatch - next_out < window:
            entry = entries[next_dispatch]
            recorded = done.get(entry.rel)
            if entry.error is not None:
                if recorded is not None:
                    ready[next_dispatch] = _Decoded("skip")
                else:
                    ready[next_dispatch] = _Decoded("error", error=entry.error, error_kind=entry.error_kind)
            elif recorded == "" and entry.rel in done:
                ready[next_dispatch] = _Decoded("skip")  # recorded as unreadable before
            elif pool is not None:
                worker: Any = pool.idle()
                if worker is None:
                    return
                pool.submit(worker, next_dispatch, entry.path, recorded)
            else:
                queue.append(next_dispatch)
            next_dispatch += 1

    while next_out < n:
        if cancel is not None and cancel.cancelled:
            stats.cancelled = True
            break
        fill()
        if pool is not None:
            # Collect whatever is finished (wait only if the next file is not), then give the
            # freed workers new files *before* the model runs, so decoding overlaps inference.
            for task_id, got in pool.poll(0.0 if next_out in ready else 0.2):
                ready[task_id] = got
            fill()
        elif next_out not in ready and queue:
            i = queue.popleft()
            ready[i] = decode_fn(entries[i].path, done.get(entries[i].rel), spec, want_xray)
        if next_out not in ready:
            continue
        # Take the consecutive finished files, run the ok ones through the model together.
        group: list[int] = []
        while next_out + len(group) in ready and len(group) < batch_size:
            group.append(next_out + len(group))
        decoded = [ready.pop(i) for i in group]
        next_out += len(group)
        for result in _infer(group, decoded, entries, model, heat_root, spec):
            if result is None:
                stats.skipped += 1
                stats.done += 1
                report()
                continue
            if writer is not None:
                writer.append(result)
            _audit(audit, result, model)
            processed += 1
            stats.done += 1
            if result.ok:
                stats.ok += 1
                if result.label:
                    stats.labels[result.label] = stats.labels.get(result.label, 0) + 1
            elif result.status == "rejected":  # [site/gate hook, issue 16]
                stats.rejected += 1
            else:
                stats.errors += 1
            stats.elapsed_s = time.monotonic() - t0
            report()
            yield result
            if cancel is not None and cancel.cancelled:
                stats.cancelled = True
                return
    stats.elapsed_s = time.monotonic() - t0


def _infer(
    group: list[int],
    decoded: list[_Decoded],
    entries: list[_Entry],
    model: _Model,
    heat_root: Path | None,
    spec: Any,
) -> list[ScanResult | None]:
    """Results for a run of consecutive files (None for a resume skip), in order."""
    out: list[ScanResult | None] = [None] * len(group)
    ok = [k for k, d in enumerate(decoded) if d.status == "ok"]
    preds: dict[int, Any] = {}
    heatmaps: dict[int, str | None] = {}
    errors: dict[int, tuple[str, str]] = {}
    rejected: dict[int, Any] = {}  # [site/gate hook, issue 16] k -> GateResult of the learnt gate
    if ok:
        try:
            if heat_root is not None:
                for k in ok:
                    entry = entries[group[k]]
                    try:
                        pred, heatmap = model.explain(decoded[k].xray)
                        if heatmap is None:  # [site/gate hook, issue 16] rejected by the learnt gate
                            rejected[k] = pred
                            continue
                        preds[k] = pred
                        heatmaps[k] = _write_heatmap(heat_root, entry, decoded[k].xray, heatmap, spec)
                    except CXRError as exc:
                        if k not in preds:
                            errors[k] = (str(exc), exc.kind)
                        else:
                            errors[k] = (f"heatmap not written: {exc}", "heatmap")
            elif model.fast:
                for k, pred in zip(ok, model.predict_inputs([decoded[k].input for k in ok]), strict=True):
                    if getattr(pred, "rejected", False):  # [site/gate hook, issue 16]
                        rejected[k] = pred
                    else:
                        preds[k] = pred
            else:
                for k, pred in zip(ok, model.predict_xrays([decoded[k].xray for k in ok]), strict=True):
                    preds[k] = pred
        except CXRError as exc:
            if isinstance(exc, OutputError):
                raise
            for k in ok:
                errors.setdefault(k, (f"{entries[group[k]].path}: {exc.reason}", exc.kind))
    for k, d in enumerate(decoded):
        entry = entries[group[k]]
        if d.status == "skip":
            continue
        if d.status == "rejected" or k in rejected:  # [site/gate hook, issue 16] a code, never a p(covid)
            verdict = rejected.get(k)
            out[k] = ScanResult(
                path=entry.path,
                sha256=d.sha256,
                status="rejected",
                label=None,
                p_covid=None,
                model=model.name,
                model_version=model.version,
                operating_point=model.operating_point,
                threshold=model.threshold,
                error=verdict.text if verdict is not None else d.error,
                error_kind=None,
                relpath=entry.rel,
                reject_code=verdict.code if verdict is not None else d.error_kind,
                site=model.site,
            )
            continue
        pred = preds.get(k)
        if d.status == "ok" and pred is not None and not (k in errors and errors[k][1] != "heatmap"):
            err = errors.get(k)
            out[k] = ScanResult(
                path=entry.path,
                sha256=d.sha256,
                status="ok",
                label=str(pred.label),
                p_covid=float(pred.p_covid),
                model=str(getattr(pred, "model", model.name)),
                model_version=str(getattr(pred, "model_version", model.version)),
                operating_point=str(pred.operating_point),
                threshold=float(pred.threshold),
                error=err[0] if err else None,
                error_kind=err[1] if err else None,
                heatmap=heatmaps.get(k),
                relpath=entry.rel,
                site=model.site,  # [site/gate hook, issue 16]
                ood_flag=model.ood.pop(id(pred), None),
            )
        else:
            message, kind = errors.get(k) or (d.error or f"{entry.path}: failed", d.error_kind or "error")
            out[k] = ScanResult(
                path=entry.path,
                sha256=d.sha256,
                status="error",
                label=None,
                p_covid=None,
                model=model.name,
                model_version=model.version,
                operating_point=model.operating_point,
                threshold=model.threshold,
                error=message,
                error_kind=kind,
                relpath=entry.rel,
                site=model.site,  # [site/gate hook, issue 16]
                reject_code="unreadable",
            )
    return out


def _write_heatmap(heat_root: Path, entry: _Entry, xray: Any, heatmap: Any, spec: Any) -> str:
    from .fileio import atomic_write_bytes
    from .overlay import heatmap_panel, png_bytes

    target = heat_root / (entry.rel + ".heatmap.png")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(target, f"cannot create the folder ({exc.strerror or exc})") from exc
    gray = xray.pixels
    atomic_write_bytes(target, png_bytes(heatmap_panel(gray, heatmap.upsample(gray.shape))), overwrite=True)
    return str(target)


def _audit(audit: Any, result: ScanResult, model: _Model) -> None:
    if audit is None:
        return
    res: dict[str, Any] = {"status": result.status}
    if result.ok:
        res.update(label=result.label, p_covid=result.p_covid)
    elif result.status == "rejected":  # [site/gate hook, issue 16]
        res["error_kind"] = result.reject_code
    else:
        res["error_kind"] = result.error_kind
    try:
        audit.record(
            "scan",
            file_sha256=result.sha256 or None,
            file_path=result.path,
            model=result.model,
            model_version=result.model_version,
            model_sha256=_model_sha(model),
            operating_point=result.operating_point,
            threshold=result.threshold,
            result=res,
        )
    except Exception:
        log.exception("audit log entry failed")


def _model_sha(model: _Model) -> str | None:
    return model.sha256


def mark_output_folder(folder: str | os.PathLike[str]) -> None:
    """Mark ``folder`` as CXR Screener output so that later scans of a parent skip it."""
    with contextlib.suppress(OSError):
        Path(folder, OUTPUT_MARKER).write_text("Results written by CXR Screener; folder scans skip it.\n")


__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_DECODE_TIMEOUT",
    "DOCUMENT_EXTENSIONS",
    "OUTPUT_MARKER",
    "RESULTS_NAME",
    "CancelToken",
    "ResultsWriter",
    "csv_text",
    "csv_value",
    "ScanResult",
    "ScanStats",
    "available_cpus",
    "default_workers",
    "inference_threads",
    "list_files",
    "mark_output_folder",
    "read_results",
    "scan",
]

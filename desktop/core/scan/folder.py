"""The folder scan: walk a folder, screen every file, keep a crash-safe ``results.csv``.

::

    for result in scan(folder, predictor, results_csv=out / "results.csv"):
        ...

The walk is :func:`.walk.list_files`, the screening :func:`.pipeline.screen_files`;
this module adds what a folder scan needs on top:

- **one writer per output folder**: the folder of ``results_csv`` is locked
  (:class:`.lock.OutputLock`) before results.csv is opened, so a second scan,
  ``--resume`` or ``--overwrite`` there is refused, naming the owner;
- **nothing lost**: each result is appended to ``results.csv`` as one write of
  one line, fsynced (:class:`~desktop.core.results_csv.ResultsWriter`);
  ``resume=True`` skips files whose path and sha256 are recorded, and refuses
  to mix results of another model or operating point;
- **anonymised outputs** (``anonymize=True``): the path column, heatmap file
  names, error messages and audit entries name files by pseudonyms
  (:func:`anonymized_rel`), never by their names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from desktop.core.errors import CXRError, OutputError
from desktop.core.filenames import display_name
from desktop.core.progress import CancelToken, Progress, ProgressFn
from desktop.core.results import ScanResult, same_threshold
from desktop.core.results_csv import ResultsWriter

from .heatmaps import heatmap_path
from .lock import OutputLock
from .pipeline import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODE_TIMEOUT,
    ModelView,
    ScanStats,
    ScreenOptions,
    screen_files,
)
from .pool import DecodeFn
from .walk import Entry, list_files


def anonymized_rel(rel: str, key: bytes | None = None) -> str:
    """The pseudonym of a relative path: each folder by its pseudonym, the file by :func:`~desktop.core.phi.file_label`.

    Deterministic for one installation (its key), so a resumed anonymised scan finds its rows again.
    """
    from desktop.core.phi import file_label, pseudonym

    parts = rel.split("/")
    return "/".join([*(pseudonym(p, key=key) or p for p in parts[:-1]), file_label(parts[-1], anonymize=True, key=key)])


def _anonymize_entries(entries: list[Entry]) -> tuple[list[Entry], dict[str, str]]:
    """Entries named by pseudonyms, and {pseudonym path: real relative path}."""
    out: list[Entry] = []
    real: dict[str, str] = {}
    for e in entries:
        rel = anonymized_rel(e.rel)
        base, n = rel, 2
        while rel in real:  # two names with one pseudonym (8 hex digits): keep both rows apart
            rel = f"{base}-{n}"
            n += 1
        real[rel] = e.rel
        out.append(replace(e, rel=rel, error=_scrub(e.error, e.path, e.rel, rel) if e.error else None))
    return out, real


def _scrub(text: str, path: str, rel: str, label: str) -> str:
    """``text`` with the file's path, relative path and name replaced by ``label``."""
    names = {path, rel, os.path.basename(path), os.path.dirname(path)}
    names |= {display_name(n) for n in names}
    for name in sorted((n for n in names if n), key=len, reverse=True):
        text = text.replace(name, label)
    return text


def _looks_anonymized(rel: str) -> bool:
    from desktop.core.phi import is_pseudonym

    return all(is_pseudonym(part[:13]) for part in rel.split("/"))


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
    progress: Progress | ProgressFn | None = None,
    workers: int | None = None,
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT,
    batch_size: int = DEFAULT_BATCH_SIZE,
    audit: Any = None,
    stats: ScanStats | None = None,
    exclude: Sequence[str | os.PathLike[str]] = (),
    decode_fn: DecodeFn | None = None,
    anonymize: bool = False,
    keep_display: bool = False,
    explain: bool = False,
    lock: bool = True,
    input_stats: Any = None,
    site: Any = None,
) -> Iterator[ScanResult]:
    """Scan ``folder`` recursively; yield one :class:`ScanResult` per file, in path order.

    ``workers`` decoding processes (default :func:`desktop.core.cpu.decode_workers`;
    0 decodes inline, without a timeout). Files skipped by ``resume`` are not
    yielded (they are in the CSV already) but count in ``progress`` and
    ``stats``. ``audit`` is an :class:`~desktop.core.audit.AuditLog` (or None)
    that gets one entry per result. ``decode_fn`` replaces the per-file
    decoder (tests and tools; a module-level function, so that worker
    processes can import it). ``keep_display``/``explain``: each result keeps
    its display image, prediction and heatmap (reports, GUI). Raises
    :class:`OutputError` if ``results_csv`` cannot be written or its folder
    is in use by another scan (before any work), or mid-scan on a full disk.
    ``input_stats`` (:mod:`desktop.core.input_stats`): the learnt input gate and
    the OOD flag; ``site``: a :class:`~desktop.core.site.SiteProfile` whose threshold is used.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CXRError(root, "is not a folder" if root.exists() else "folder not found")
    stats = stats if stats is not None else ScanStats()
    model = ModelView(predictor, operating_point, input_stats, site)  # unknown operating point: before any output
    held = OutputLock(Path(results_csv).parent) if results_csv is not None and lock else None
    writer: ResultsWriter | None = None
    try:
        if held is not None:
            held.acquire()
        if results_csv is not None:
            writer = ResultsWriter(results_csv, resume=resume, overwrite=overwrite)
            _check_same_model(writer, model)
            _check_same_naming(writer, anonymize)
        heat_root = Path(heatmap_dir) if heatmap_dir is not None else None
        excluded = [*exclude]
        if results_csv is not None:
            csv_dir = Path(results_csv).parent
            same = os.path.realpath(csv_dir) == os.path.realpath(root)
            excluded.append(results_csv if same else csv_dir)  # never skip the scanned folder itself
        if heat_root is not None:
            try:
                heat_root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(heat_root, f"cannot create the folder ({exc.strerror or exc})") from exc
            excluded.append(heat_root)
        ignored: list[str] = []
        entries = list_files(root, exclude=excluded, ignored=ignored)
        stats.ignored = len(ignored)
        real: dict[str, str] = {}
        if anonymize:
            entries, real = _anonymize_entries(entries)
        options = ScreenOptions(
            operating_point=model.operating_point, workers=workers, decode_timeout=decode_timeout,
            batch_size=batch_size, keep_display=keep_display, explain=explain, audit=audit, audit_event="scan",
            heatmap_target=(lambda e: heatmap_path(heat_root, e.rel)) if heat_root is not None else None,
            audit_name=(lambda r: r.relpath) if anonymize else None, decode_fn=decode_fn,
            input_stats=input_stats, site=site,
        )

        def clean(result: ScanResult) -> ScanResult:
            if not anonymize or not result.error:
                return result
            return replace(result, error=_scrub(result.error, result.path, real.get(result.relpath, ""), result.relpath))

        def sink(result: ScanResult) -> None:
            if writer is not None:
                writer.append(clean(result))

        results = screen_files(entries, predictor, options, done=writer.done if writer is not None else {},
                               sink=sink, progress=progress, cancel=cancel, stats=stats)
        yield from (clean(r) for r in results)
    finally:
        if writer is not None:
            writer.close()
        if held is not None:
            held.release()


def _check_same_model(writer: ResultsWriter, model: ModelView) -> None:
    if not writer.models:
        return
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
    if model.threshold is None:
        return
    moved = sorted(t for t in writer.thresholds.get(current, ()) if not same_threshold(t, model.threshold))
    if moved:  # the same name at another threshold: a site profile calibrated again since
        writer.close()
        raise OutputError(
            writer.path,
            f"holds results of {current[0]} {current[1]} at {current[2]!r} decided at threshold {moved[0]:.4g}; "
            f"{current[2]!r} is now at {model.threshold:.4g} and the two would mix",
            "start the scan again with --overwrite, or choose another --out",
        )


def _check_same_naming(writer: ResultsWriter, anonymize: bool) -> None:
    """Refuse to resume an anonymised results file in the clear, or the other way round."""
    rels = list(writer.done)
    if not rels:
        return
    anonymized = [_looks_anonymized(r) for r in rels]
    if anonymize and not all(anonymized):
        writer.close()
        raise OutputError(writer.path, "was written without --anonymize (its rows name the files); resuming it "
                          "anonymised would mix names and pseudonyms", "resume without --anonymize, or choose another --out")
    if not anonymize and all(anonymized):
        writer.close()
        raise OutputError(writer.path, "was written with --anonymize; resuming it without would add rows that name "
                          "the files", "resume with --anonymize, or choose another --out")


__all__ = ["anonymized_rel", "scan"]

"""A scanned folder's saved state: where its results live, whether they can be resumed, how they are exported.

These are the rules both front ends follow (``cxr-screener scan`` and the
Folder scan tab), so that a scan started in one can be read and resumed in
the other:

- :func:`user_scan_dir` is *the* per-user folder of a scanned folder (one
  hash, used by the CLI's read-only fallback and by the GUI);
- :func:`resume_conflict` says, in plain words, why saved results cannot be
  resumed with the chosen model (the same rule :func:`desktop.core.batch.scan`
  enforces when it opens ``results.csv``: one model, one version, one
  operating point per results file);
- :func:`export_csv` writes results as CSV, with file names pseudonymised
  when asked (the path column and the file names inside error messages).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .batch import CSV_COLUMNS, RESULTS_NAME, ScanResult, read_results
from .paths import user_data_dir
from .results import same_threshold


def user_scan_dir(folder: str | os.PathLike[str]) -> Path:
    """The per-user folder that keeps the results of scanning ``folder`` (CLI and GUI alike).

    ``<user data>/scans/<folder name>-<10 hex digits of sha256(resolved path)>``;
    the name is reduced to safe characters so any folder name gives a valid path.
    """
    resolved = str(Path(folder).resolve())
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(resolved).name or "root")[:40]
    return user_data_dir() / "scans" / f"{name}-{digest}"


def user_results_csv(folder: str | os.PathLike[str]) -> Path:
    return user_scan_dir(folder) / RESULTS_NAME


#: ``cxr-screener scan DIR`` writes to ``DIR/cxr_results/`` when DIR is writable.
CLI_OUT_NAME = "cxr_results"


def saved_results_csv(folder: str | os.PathLike[str]) -> Path:
    """The results file a scan of ``folder`` continues: the per-user one, else the CLI's default.

    The per-user file (:func:`user_results_csv`) when it exists or when there is
    nothing saved yet; the CLI's ``DIR/cxr_results/results.csv`` when only that
    exists, so a scan started with ``cxr-screener scan DIR`` is shown and resumed.
    """
    mine = user_results_csv(folder)
    cli = Path(folder) / CLI_OUT_NAME / RESULTS_NAME
    return cli if not mine.is_file() and cli.is_file() else mine


@dataclass(frozen=True)
class ModelChoice:
    """The model a scan runs with: bundle name, version and operating point."""

    name: str
    version: str
    operating_point: str
    #: the threshold when it is not fixed by the name (a site's, ``site:<name>``); None: not compared
    threshold: float | None = None

    def describe(self) -> str:
        text = f"{self.name} {self.version}".strip() + f" at operating point {self.operating_point or 'default'}"
        return text + (f" (threshold {self.threshold:.4g})" if self.threshold is not None else "")


def recorded_models(rows: Iterable[ScanResult]) -> set[ModelChoice]:
    """The models (name, version, operating point) that made the successful rows."""
    return {ModelChoice(r.model, r.model_version, r.operating_point or "") for r in rows if r.ok and r.model}


def resume_conflict(rows: Iterable[ScanResult], current: ModelChoice) -> str | None:
    """Why ``rows`` cannot be resumed with ``current`` (None: they can).

    A results file holds one model's results: resuming with another model,
    version or operating point would mix them (:func:`desktop.core.batch.scan`
    refuses it too). Failed rows name no model and never conflict.
    """
    rows = list(rows)
    made = recorded_models(rows)
    others = sorted(
        (m for m in made if (m.name, m.version) != (current.name, current.version)
         or m.operating_point != current.operating_point),
        key=lambda m: (m.name, m.version, m.operating_point),
    )
    if not others and current.threshold is not None:
        # the same site name, calibrated again since: its rows were decided at another threshold
        moved = sorted({r.threshold for r in rows if r.ok and r.threshold is not None
                        and r.operating_point == current.operating_point
                        and not same_threshold(r.threshold, current.threshold)})
        others = [replace(current, threshold=t) for t in moved]
    if not others:
        return None
    before = ", ".join(m.describe() for m in others)
    return (
        f"The saved results of this folder were made with {before}; now {current.describe()} is chosen. "
        "Choose the same model and operating point again to resume, or start the scan from the "
        "beginning to check every file with the current choice."
    )


def load_saved(folder: str | os.PathLike[str], results_csv: str | os.PathLike[str]) -> list[ScanResult]:
    """The rows saved for ``folder`` (none if there is no results file yet)."""
    path = Path(results_csv)
    if not path.is_file():
        return []
    return read_results(path, folder=folder)


def csv_rows(rows: Sequence[ScanResult], *, anonymize: bool) -> list[list[str]]:
    """The CSV cells of ``rows`` (header first); anonymised: pseudonyms instead of file names."""
    from .results_csv import anonymized_cells

    return [list(CSV_COLUMNS), *(anonymized_cells(r) if anonymize else r.csv_row() for r in rows)]


def export_csv(
    rows: Sequence[ScanResult], path: str | os.PathLike[str], *, anonymize: bool = False, overwrite: bool = False
) -> Path:
    """Write ``rows`` (in their order) as a results CSV, atomically; returns the path written."""
    from .results_csv import write_results

    return write_results(path, rows, anonymize=anonymize, overwrite=overwrite)


def ignored_documents(folder: str | os.PathLike[str], results_csv: str | os.PathLike[str] | None = None) -> list[str]:
    """The documents (README, PDF, CSV...) a scan of ``folder`` leaves out, by relative path."""
    from .batch import list_files

    ignored: list[str] = []
    exclude = [Path(results_csv).parent] if results_csv is not None else []
    list_files(folder, exclude=exclude, ignored=ignored)
    return ignored


def name_list(names: Sequence[str], limit: int = 3) -> str:
    """``a.pdf, b.txt and 2 more``."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


__all__ = [
    "CLI_OUT_NAME",
    "ModelChoice",
    "csv_rows",
    "export_csv",
    "ignored_documents",
    "load_saved",
    "name_list",
    "recorded_models",
    "saved_results_csv",
    "resume_conflict",
    "user_results_csv",
    "user_scan_dir",
]

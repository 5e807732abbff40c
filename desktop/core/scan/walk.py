"""Walking a folder for files to screen: a deterministic list of :class:`Entry`.

The folder is walked recursively in sorted order; hidden files and folders,
our own output folders (:data:`OUTPUT_MARKER`, the ``exclude`` list) and
documents (:data:`DOCUMENT_EXTENSIONS` whose content is not an image) are
left out. Symlink loops are followed once. Broken links, folders that cannot
be listed and things that are not regular files (FIFOs, sockets, devices)
come back as entries with an error, so the scan gives them an error row.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from desktop.core.imaging.source import special_file_kind

log = logging.getLogger(__name__)

#: A file that marks a folder as written by CXR Screener: scans skip such folders.
OUTPUT_MARKER = ".cxr-screener-output"

#: Files with these extensions are documents that sit beside images (README, attribution,
#: older results, reports): skipped silently *unless their content is an image*.
DOCUMENT_EXTENSIONS = frozenset(
    {".md", ".txt", ".csv", ".tsv", ".json", ".jsonl", ".pdf", ".html", ".htm", ".xml", ".log",
     ".ini", ".yaml", ".yml", ".doc", ".docx", ".xls", ".xlsx", ".rtf", ".odt"}
)


@dataclass(frozen=True)
class Entry:
    """One file to screen: its full path as found (links not resolved) and its path in results.csv."""

    path: str
    rel: str  # POSIX path relative to the scanned folder (or the name given)
    error: str | None = None
    error_kind: str | None = None


def _is_hidden(entry: os.DirEntry[str]) -> bool:
    if entry.name.startswith("."):
        return True
    attrs = 0
    with contextlib.suppress(OSError):
        attrs = getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)
    return bool(attrs & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))


def is_document(path: str) -> bool:
    """A README, a report, a CSV...: not to be screened (an image by content never is one)."""
    if os.path.splitext(path)[1].lower() not in DOCUMENT_EXTENSIONS:
        return False
    from desktop.core.imaging import detect_format

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
) -> list[Entry]:
    """Every candidate file under ``folder``, sorted by relative path.

    Folders that cannot be listed, broken links and special files come back
    as entries with an error. ``exclude`` folders (our own outputs) are
    skipped; documents are left out and their relative paths added to
    ``ignored``. Any other file is a candidate: images are recognised by
    content, so a non-image gets an error row from the scan.
    """
    root = Path(folder)
    excluded = set()
    for item in exclude:
        with contextlib.suppress(OSError):
            excluded.add(os.path.realpath(item))
    out: list[Entry] = []
    seen_dirs: set[tuple[int, int]] = set()

    def walk(directory: str, rel: str) -> None:
        try:
            st = os.stat(directory)
        except OSError as exc:
            out.append(Entry(directory, rel or ".", f"{directory}: cannot open the folder ({exc.strerror or exc})", "access"))
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
            out.append(Entry(directory, rel or ".", f"{directory}: cannot list the folder ({exc.strerror or exc})", "access"))
            return
        for entry in entries:
            if _is_hidden(entry):
                continue
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            try:
                mode = entry.stat(follow_symlinks=True).st_mode
            except OSError:
                mode = None
            if mode is None:
                if entry.is_symlink():
                    out.append(Entry(entry.path, child_rel, f"{entry.path}: broken link (its target does not exist)", "access"))
                continue
            if stat.S_ISDIR(mode):
                walk(entry.path, child_rel)
            elif stat.S_ISREG(mode):
                if os.path.realpath(entry.path) in excluded:
                    continue
                if is_document(entry.path):
                    if ignored is not None:
                        ignored.append(child_rel)
                    continue
                out.append(Entry(entry.path, child_rel))
            else:  # FIFOs, sockets, devices: never opened (a FIFO would block the scan)
                what = special_file_kind(mode)
                out.append(Entry(entry.path, child_rel, f"{entry.path}: {what}, not a file; not read", "not_a_file"))

    walk(os.fspath(root), "")
    out.sort(key=lambda e: e.rel)
    return out


def mark_output_folder(folder: str | os.PathLike[str]) -> None:
    """Mark ``folder`` as CXR Screener output so that later scans of a parent skip it."""
    with contextlib.suppress(OSError):
        Path(folder, OUTPUT_MARKER).write_text("Results written by CXR Screener; folder scans skip it.\n")


__all__ = ["DOCUMENT_EXTENSIONS", "OUTPUT_MARKER", "Entry", "is_document", "list_files", "mark_output_folder",
           "special_file_kind"]

"""Heatmap PNGs: their names (bounded length) and the one writer (scan and predict).

A heatmap is named after its file, ``<relative path>.heatmap.png``. A file
name already near the file system's 255-byte limit would overflow with the
suffix (``OSError: File name too long``), so such names are shortened to fit,
keeping a hash of the full name so that two long names never collide and the
same file always gets the same heatmap name (a resumed scan finds it again).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from desktop.core.errors import OutputError
from desktop.core.hashing import sha256_text

SUFFIX = ".heatmap.png"
#: Bytes a file name may have on the common file systems (ext4, NTFS in UTF-16 units, APFS).
NAME_MAX = 255


def heatmap_name(name: str, suffix: str = SUFFIX) -> str:
    """``name + suffix``, shortened (with a hash of ``name``) when it would exceed :data:`NAME_MAX` bytes."""
    full = name + suffix
    if len(os.fsencode(full)) <= NAME_MAX and len(full.encode("utf-16-le", "surrogatepass")) // 2 <= NAME_MAX:
        return full
    tag = "~" + sha256_text(name, 12)
    budget = NAME_MAX - len(tag) - len(suffix)
    keep = name
    while keep and (len(os.fsencode(keep)) > budget or len(keep.encode("utf-16-le", "surrogatepass")) // 2 > budget):
        keep = keep[:-1]
    return keep + tag + suffix


def heatmap_path(root: str | os.PathLike[str], rel: str) -> Path:
    """Where the heatmap of the file at ``rel`` (POSIX, relative) goes under ``root``."""
    parts = rel.split("/")
    return Path(root, *parts[:-1], heatmap_name(parts[-1]))


def write_heatmap_png(target: str | os.PathLike[str], gray: Any, heatmap: Any, *, overwrite: bool = True) -> Path:
    """The Grad-CAM overlay with its colour bar, drawn on ``gray`` (uint8 or float HxW), written atomically.

    Raises :class:`OutputError` if the folder or the file cannot be written.
    """
    from desktop.core.fileio import atomic_write_bytes
    from desktop.core.overlay import heatmap_panel, png_bytes

    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(target, f"cannot create the folder ({exc.strerror or exc})") from exc
    png = png_bytes(heatmap_panel(gray, heatmap.upsample(gray.shape)))
    try:
        return Path(atomic_write_bytes(target, png, overwrite=overwrite))
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(target, f"cannot write ({exc.strerror or exc})") from exc


__all__ = ["NAME_MAX", "SUFFIX", "heatmap_name", "heatmap_path", "write_heatmap_png"]

"""Atomic file output: write to a temporary file beside the target, then rename.

A reader (or a crash) never sees a half-written report, PNG or model card.
Existing files are not overwritten unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputError, OutputExistsError


def check_writable(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Fail early, with a clear message, if ``path`` cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(target, "is a folder; give a file name")
    if target.exists() and not overwrite:
        raise OutputExistsError(target, "already exists", "choose another name or ask to overwrite")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        raise OutputError(target, f"folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(target, f"folder {parent} is not writable")
    return target


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", *, overwrite: bool = False, encoding: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it replaces ``path`` in one rename."""
    target = check_writable(path, overwrite=overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{_tmp_stem(target.name)}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        if not overwrite and target.exists():
            raise OutputExistsError(target, "already exists", "choose another name or ask to overwrite")
        os.replace(tmp, target)
    except OSError as exc:
        _discard(tmp)
        if exc.errno == errno.ENOSPC:
            raise OutputError(target, "disk full: nothing was written") from exc
        raise OutputError(target, f"cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        _discard(tmp)
        raise


def _tmp_stem(name: str, limit: int = 200) -> str:
    """``name`` cut to ``limit`` bytes, so that the temporary file's name (name + 14) fits in 255."""
    while len(os.fsencode(name)) > limit:
        name = name[:-1]
    return name


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> Path:
    with atomic_open(path, "wb", overwrite=overwrite) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def atomic_write_with(
    path: str | os.PathLike[str], writer: Callable[[IO[bytes]], None], *, overwrite: bool = False
) -> Path:
    """Let ``writer`` fill a binary file object; the result appears atomically."""
    with atomic_open(path, "wb", overwrite=overwrite) as fh:
        writer(fh)
    return Path(path)


def _default_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _discard(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)

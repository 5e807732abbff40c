"""Sniffing and bounded reads: which format a file is (by content, never by name), and its bytes.

``read_file`` reads at most :data:`~.limits.MAX_FILE_BYTES` (a growing or special file
cannot make it read forever) and turns every OS error into a :class:`FileAccessError`
naming the file.
"""

from __future__ import annotations

import os
import stat

from desktop.core.errors import CXRError, FileAccessError, ImageTooLargeError

from . import limits

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"


def detect_format(head: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"dicom"`` or None, from the first bytes of a file (>= 132)."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if _looks_like_raw_dicom(head):
        return "dicom"
    return None


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A DICOM data set without preamble: starts with a plausible (group, element) tag."""
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    if group not in (0x0002, 0x0008):
        return False
    if element > 0x1000:
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():  # explicit VR
        return True
    length = int.from_bytes(head[4:8], "little")  # implicit VR: a sane length
    return length < 1024


def special_file_kind(mode: int) -> str | None:
    """``"a FIFO"``, ``"a socket"``, ``"a device"`` for what is not a regular file or folder."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "not a regular file"


def read_regular(path: str | os.PathLike[str], limit: int | None = None) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file ``path`` (one open, bounded by ``limit``) and its stat.

    The one bounded reader (``load_xray`` of a path and the scan pipeline both
    use it). Opened non-blocking, then checked with ``fstat``: a folder, FIFO,
    socket or device is refused with :class:`FileAccessError` before any read,
    and a growing file cannot make it read past the limit.
    """
    limit = limits.MAX_FILE_BYTES if limit is None else limit
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise FileAccessError(path, "file not found") from exc
    except IsADirectoryError as exc:
        raise FileAccessError(path, "is a folder, not a file") from exc
    except PermissionError as exc:
        raise FileAccessError(path, "permission denied: cannot read the file") from exc
    except OSError as exc:
        raise FileAccessError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileAccessError(path, "is a folder, not a file")
        what = special_file_kind(st.st_mode)
        if what is not None:
            raise FileAccessError(path, f"{what}, not a file; not read")
        if st.st_size > limit:
            raise ImageTooLargeError(path, f"file is {st.st_size / 2**20:.0f} MiB, over the {limit // 2**20} MiB limit")
        parts: list[bytes] = []
        total = 0
        want = st.st_size + 1 if st.st_size > 0 else 1 << 20
        while True:
            chunk = os.read(fd, min(want, limit + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ImageTooLargeError(path, f"file is over the {limit // 2**20} MiB limit")
            want = 16 << 20
        return b"".join(parts), st
    except OSError as exc:
        if isinstance(exc, CXRError):
            raise
        raise FileAccessError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes (:func:`read_regular`)."""
    return read_regular(path)[0]


def other_format(head: bytes) -> str | None:
    known = {
        b"II*\x00": "TIFF",
        b"MM\x00*": "TIFF",
        b"BM": "BMP",
        b"GIF8": "GIF",
        b"RIFF": "WebP/RIFF",
        b"%PDF": "PDF",
        b"PK\x03\x04": "ZIP",
    }
    for sig, fmt in known.items():
        if head.startswith(sig):
            return fmt
    return None



__all__ = ["JPEG_SIGNATURE", "PNG_SIGNATURE", "detect_format", "other_format", "read_file"]

"""Sniffing and bounded reads: which format a file is (by content, never by name), and its bytes.

``read_file`` reads at most :data:`~.limits.MAX_FILE_BYTES` (a growing or special file
cannot make it read forever) and turns every OS error into a :class:`FileAccessError`
naming the file.
"""

from __future__ import annotations

from pathlib import Path

from desktop.core.errors import FileAccessError, ImageTooLargeError

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


def read_file(path: Path) -> bytes:
    try:
        if path.is_dir():
            raise FileAccessError(path, "is a folder, not a file")
        size = path.stat().st_size
        if size > limits.MAX_FILE_BYTES:
            raise ImageTooLargeError(
                path, f"file is {size / 2**20:.0f} MiB, over the {limits.MAX_FILE_BYTES // 2**20} MiB limit"
            )
        with path.open("rb") as fh:
            # Read what stat() announced (read(n) reserves n bytes up front), then whatever
            # a growing or special file still has, up to the limit.
            data = fh.read(size + 1) if size > 0 else b""
            if len(data) <= size and size > 0:
                return data
            parts = [data]
            total = len(data)
            while total <= limits.MAX_FILE_BYTES:
                chunk = fh.read(min(16 * 2**20, limits.MAX_FILE_BYTES + 1 - total))
                if not chunk:
                    break
                parts.append(chunk)
                total += len(chunk)
            if total > limits.MAX_FILE_BYTES:
                raise ImageTooLargeError(
                    path, f"file is over the {limits.MAX_FILE_BYTES // 2**20} MiB limit"
                )
            return b"".join(parts)
    except FileNotFoundError as exc:
        raise FileAccessError(path, "file not found") from exc
    except PermissionError as exc:
        raise FileAccessError(path, "permission denied: cannot read the file") from exc
    except IsADirectoryError as exc:
        raise FileAccessError(path, "is a folder, not a file") from exc
    except OSError as exc:
        raise FileAccessError(path, f"cannot read the file ({exc.strerror or exc})") from exc


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

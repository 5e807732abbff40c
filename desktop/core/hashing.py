"""The one sha256 helper: of bytes, of a (regular) file, of a text.

Every file hash in the application (the scan's ``sha256`` column, the audit
log, bundle integrity, report ids) goes through here, so "the hash of a file"
means one thing everywhere: the hex sha256 of its bytes.
"""

from __future__ import annotations

import hashlib
import os
import stat

CHUNK = 1 << 20


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str, length: int | None = None) -> str:
    """Hex sha256 of ``text`` as UTF-8 (lone surrogates kept), cut to ``length`` hex digits if given."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:length] if length else digest


def sha256_file(path: str | os.PathLike[str], *, limit: int | None = None) -> str:
    """Hex sha256 of a regular file's bytes, read in chunks.

    Refuses what is not a regular file (a FIFO would block, ``/dev/zero``
    never ends) with :class:`OSError`, and stops at ``limit`` bytes if given
    (``OSError`` EFBIG), so hashing is always bounded.
    """
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{os.fspath(path)}: not a regular file")
        h = hashlib.sha256()
        total = 0
        while block := os.read(fd, CHUNK):
            total += len(block)
            if limit is not None and total > limit:
                import errno

                raise OSError(errno.EFBIG, f"over the {limit} byte limit")
            h.update(block)
        return h.hexdigest()
    finally:
        os.close(fd)


__all__ = ["sha256_bytes", "sha256_file", "sha256_text"]

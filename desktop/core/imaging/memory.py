"""A per-process memory ceiling for decode workers.

A decoder handed a hostile or simply enormous file can allocate far more than the file's
size. :func:`set_memory_ceiling` caps the address space of the calling process
(``RLIMIT_AS``), so such an allocation fails with a ``MemoryError`` (reported by
:func:`~desktop.core.imaging.load_xray` as "not enough memory to decode this image")
instead of pushing the machine into swap. Call it at the start of a worker process, never
in the GUI process: the cap is on virtual memory, which thread stacks and ONNX Runtime
arenas also reserve. A decode worker's address space after importing the imaging package,
numpy, Pillow and pydicom is ~210 MB (measured on 2 cores; numpy's BLAS threads add some per
core, so a worker should also run with one BLAS thread); a full-resolution 49 MP film needs
~600 MB more (``benchmarks/results/memory.md``): hence the 3 GiB default.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

#: A ceiling that decodes the largest accepted film (50 MP) at full resolution with room to spare.
DEFAULT_WORKER_CEILING_MB = 3072


def set_memory_ceiling(megabytes: int | None = DEFAULT_WORKER_CEILING_MB) -> bool:
    """Cap this process's address space at ``megabytes`` MiB; True if a cap is now in force.

    POSIX: lowers the soft ``RLIMIT_AS`` (never raises it above the hard limit or an existing
    lower soft limit). Elsewhere (Windows), or with ``megabytes`` None or 0, it does nothing
    and logs one line saying so.
    """
    if not megabytes:
        log.info("memory ceiling not set (none asked)")
        return False
    if megabytes < 64:
        raise ValueError(f"memory ceiling too small to run Python. Received: megabytes={megabytes!r}")
    try:
        import resource
    except ImportError:
        log.info("memory ceiling of %d MiB not set: not supported on %s", megabytes, sys.platform)
        return False
    want = int(megabytes) * 2**20
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft != resource.RLIM_INFINITY and soft <= want:
        log.debug("memory ceiling already %d MiB", soft // 2**20)
        return True
    try:
        resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    except (ValueError, OSError) as exc:
        log.info("memory ceiling of %d MiB not set: %s", megabytes, exc)
        return False
    log.debug("memory ceiling set to %d MiB", want // 2**20)
    return True


__all__ = ["DEFAULT_WORKER_CEILING_MB", "set_memory_ceiling"]

"""The one thread-count policy: how many cores, decoders and ONNX Runtime threads.

Measured on 2 cores (benchmarks/bench_scan.py): decoding a full-size X-ray
costs several times a MobileNet forward pass, so a scan gives decoders every
core and ONNX Runtime half of them; 2 decoders + 1 inference thread scan
~1.9x faster than 1 + 1. The GUI leaves one core to the window; a single
prediction (``predict``, ``selftest``) takes every core up to 4 (more gives
little on these small models).
"""

from __future__ import annotations

import os

#: More threads or decoders than this give little on the bundled models.
MAX_THREADS = 4


def available_cpus() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def decode_workers() -> int:
    """Decoding processes of a scan: one per core, at most :data:`MAX_THREADS`."""
    return max(1, min(MAX_THREADS, available_cpus()))


def scan_inference_threads() -> int:
    """ONNX Runtime threads while decoders run beside it: half the cores (1 to 4)."""
    return max(1, min(MAX_THREADS, available_cpus() // 2))


def single_inference_threads() -> int:
    """ONNX Runtime threads when inference runs alone: every core up to 4."""
    return max(1, min(MAX_THREADS, available_cpus()))


def gui_inference_threads() -> int:
    """ONNX Runtime threads in the GUI: one core is left to the window (1 to 4)."""
    return max(1, min(MAX_THREADS, available_cpus() - 1))


__all__ = [
    "MAX_THREADS",
    "available_cpus",
    "decode_workers",
    "gui_inference_threads",
    "scan_inference_threads",
    "single_inference_threads",
]

"""Reduced-resolution decoding: how much a ``target`` load may shrink a film, and the box filter.

A caller that only needs the model input (e.g. 224x224) passes ``target=(224, 224)`` to
:func:`~desktop.core.imaging.load_xray`. The loader then picks the largest power-of-two
factor that keeps both sides at least :data:`REDUCE_MARGIN` times the target, so the
model's anti-aliased resize still has at least two source pixels per output pixel and
p(covid) stays what the full decode gives (``tests/test_imaging_reduced.py``). The codec
shrinks where it can (JPEG DCT scaling, JPEG 2000 resolution levels); what is left is
done by :func:`box_reduce` after a full decode.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Each side of a reduced decode stays at least this many times the target side.
REDUCE_MARGIN = 2
#: Largest reduction (JPEG 2000 files usually have 5 resolution levels: 32).
MAX_FACTOR = 32
#: Rows converted to float32 at a time by :func:`box_reduce` (bounds the temporary memory).
STRIPE_ROWS = 512


#: A scan asks for twice the model input (an effective margin of 4): with the bundled model 4.0, decoding
#: at the input size itself (margin 2) moved p(covid) by up to 0.056 on the JPEG 2000 test films; at
#: twice the input size the shift stays under 0.02 (tests/test_imaging_reduced.py).
SCAN_OVERSAMPLE = 2


def scan_target(height: int, width: int) -> tuple[int, int]:
    """The ``target`` a scan that only needs the model input (``height`` x ``width``) asks the loader for."""
    return (SCAN_OVERSAMPLE * int(height), SCAN_OVERSAMPLE * int(width))


def parse_target(target: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``(height, width)`` from an int (square) or a pair; None stays None."""
    if target is None:
        return None
    if isinstance(target, int):
        pair = (target, target)
    else:
        pair = tuple(int(v) for v in target)  # type: ignore[assignment]
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"target must be a positive size or (height, width). Received: target={target!r}")
    return pair[0], pair[1]


def reduction_factor(shape: tuple[int, int], target: tuple[int, int] | None) -> int:
    """The power-of-two factor a ``target`` load decodes ``shape`` (rows, columns) at (1: full)."""
    if target is None:
        return 1
    (h, w), (th, tw) = shape, target
    k = 1
    while k < MAX_FACTOR and -(-h // (2 * k)) >= REDUCE_MARGIN * th and -(-w // (2 * k)) >= REDUCE_MARGIN * tw:
        k *= 2
    return k


def reduced_shape(shape: tuple[int, int], k: int) -> tuple[int, int]:
    """Each side divided by ``k``, rounded up (what JPEG, JPEG 2000 and :func:`box_reduce` give)."""
    return -(-shape[0] // k), -(-shape[1] // k)


def box_reduce(arr: np.ndarray, k: int) -> np.ndarray:
    """Mean of each ``k`` x ``k`` block of a 2-D array, as float32 (edge blocks: their own pixels).

    Works in stripes of :data:`STRIPE_ROWS` rows, so a 16-bit film never exists as a full
    float32 (let alone float64) copy; the averaging itself is Pillow's ``Image.reduce``.
    """
    if k <= 1:
        return np.asarray(arr, dtype=np.float32)
    h, w = arr.shape
    out = np.empty(reduced_shape((h, w), k), dtype=np.float32)
    step = max(k, (STRIPE_ROWS // k) * k)
    for r0 in range(0, h, step):
        block = np.ascontiguousarray(arr[r0 : r0 + step], dtype=np.float32)
        small = np.asarray(Image.fromarray(block).reduce(k), dtype=np.float32)
        out[r0 // k : r0 // k + small.shape[0]] = small
    return out


__all__ = ["MAX_FACTOR", "REDUCE_MARGIN", "SCAN_OVERSAMPLE", "scan_target", "box_reduce", "parse_target", "reduced_shape", "reduction_factor"]

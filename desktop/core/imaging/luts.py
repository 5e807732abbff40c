"""DICOM modality LUT, VOI LUT and windows: stored values to image units to the default view.

LUT sequences are applied by pydicom (``pydicom.pixels.apply_modality_lut`` and
``apply_voi``). Two float32 paths are kept, each held to pydicom by a parity test
(``tests/test_imaging_luts.py``, on the real DICOMs of ``shared/data/dicom`` and on
synthetic ones): the linear rescale (:func:`modality_lut`) and windowing
(:meth:`~.types.Window.apply`, pydicom's ``apply_windowing``), because pydicom computes
both in float64: twice the memory of the float32 image units the viewer keeps anyway
(392 MB instead of 196 MB for a 49-megapixel film).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from desktop.core.errors import CorruptImageError

from .dicom_tags import int_tag, text
from .types import Window

log = logging.getLogger(__name__)


def modality_lut(arr: np.ndarray, ds: Any, label: str | None = None) -> tuple[np.ndarray, float, float]:
    """Stored values to image units; returns them (float32) and the output range of the stored range.

    A Modality LUT Sequence goes through ``pydicom.pixels.apply_modality_lut``. The linear
    rescale is done here in float32, in place on the one copy (pydicom's float64 would double
    the memory): equal to pydicom's result rounded to float32 (parity test). A Rescale Slope of
    0, NaN or infinity, or one that is not a number, is refused naming the file: read as 1 it
    would show a wrong image without a word.
    """
    from pydicom.pixels import apply_modality_lut

    stored = int_tag(ds, "BitsStored", 16) or 16
    signed = (int_tag(ds, "PixelRepresentation", 0) or 0) == 1
    if signed:
        smin, smax = -(2 ** (stored - 1)), 2 ** (stored - 1) - 1
    else:
        smin, smax = 0, 2**stored - 1
    if "ModalityLUTSequence" in ds:
        item = ds.ModalityLUTSequence[0]
        ints = arr if np.issubdtype(arr.dtype, np.integer) else np.rint(arr).astype(np.int32)
        out = apply_modality_lut(ints, ds).astype(np.float32)
        return out, 0.0, float(2 ** lut_bits(item) - 1)
    slope = _rescale_value(ds, "RescaleSlope", 1.0, label)
    intercept = _rescale_value(ds, "RescaleIntercept", 0.0, label)
    if slope == 0.0:
        raise CorruptImageError(
            label, "invalid Rescale Slope 0 (every pixel would have the same value): damaged modality LUT"
        )
    lo, hi = sorted((smin * slope + intercept, smax * slope + intercept))
    if max(abs(lo), abs(hi)) > 1e30:
        raise CorruptImageError(
            label, f"invalid Rescale Slope/Intercept {slope:g}/{intercept:g}: damaged modality LUT"
        )
    out = arr.astype(np.float32)  # the one copy: integers to float32 image units
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out, float(lo), float(hi)


def _rescale_value(ds: Any, keyword: str, default: float, label: str | None) -> float:
    """Rescale Slope or Intercept as a finite float; absent or empty gives ``default``."""
    name = "Rescale Slope" if keyword == "RescaleSlope" else "Rescale Intercept"
    try:
        raw = ds.get(keyword, None)
    except Exception as exc:
        raise CorruptImageError(label, f"unreadable {name}: damaged modality LUT") from exc
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise CorruptImageError(label, f"invalid {name} {str(raw)[:20]!r}: not a number") from exc
    if not math.isfinite(value):
        raise CorruptImageError(label, f"invalid {name} {value}: damaged modality LUT")
    return value


def lut_bits(item: Any) -> int:
    try:
        bits = int(item.LUTDescriptor[2])
        return bits if 1 <= bits <= 16 else 16
    except Exception:
        return 16


def windows(ds: Any) -> list[Window]:
    centers = ds.get("WindowCenter")
    widths = ds.get("WindowWidth")
    if centers is None or widths is None:
        return []
    cs = list(centers) if isinstance(centers, (list, tuple)) or type(centers).__name__ == "MultiValue" else [centers]
    ws = list(widths) if isinstance(widths, (list, tuple)) or type(widths).__name__ == "MultiValue" else [widths]
    names_raw = ds.get("WindowCenterWidthExplanation")
    if names_raw is None:
        names: list[str] = []
    elif isinstance(names_raw, (list, tuple)) or type(names_raw).__name__ == "MultiValue":
        names = [str(n) for n in names_raw]
    else:
        names = [str(names_raw)]
    function = text(ds, "VOILUTFunction").upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    out = []
    for i, (c, w) in enumerate(zip(cs, ws, strict=False)):
        try:
            cf, wf = float(c), float(w)
        except (TypeError, ValueError):
            continue
        if wf <= 0 or not np.isfinite(cf) or not np.isfinite(wf):
            continue
        label = names[i] if i < len(names) and names[i] else f"DICOM window {i + 1}"
        out.append(Window(cf, wf, label, function))
    return out


def voi_lut_sequence(ds: Any, values: np.ndarray, notes: list[str]) -> np.ndarray | None:
    """The first VOI LUT of the sequence applied by ``pydicom.pixels.apply_voi``: float32 [0, 1].

    None when there is none, or when it cannot be read (a note says so and the window is
    used). A first mapped value written as US for signed data (e.g. 65535 for -1) is read
    as the negative number it stands for.
    """
    if "VOILUTSequence" not in ds:
        return None
    from pydicom.pixels import apply_voi

    try:
        item = ds.VOILUTSequence[0]
        desc = item.LUTDescriptor
        n_entries = int(desc[0]) or 65536
        first = int(desc[1])  # as pydicom reads it, and subtracts it
        ints = np.rint(values).astype(np.int32)
        if first >= 32768 and (int_tag(ds, "PixelRepresentation", 0) or 0) == 1:
            ints += 65536  # a US-written negative first value (65535 for -1): shift the input alike
        np.clip(ints, first, first + n_entries - 1, out=ints)  # no wrap-around in pydicom's uint16 index
        out = apply_voi(ints, ds)
        if out is ints:
            raise ValueError("pydicom applied no VOI LUT")
        scaled = out.astype(np.float32)
        scaled *= np.float32(1.0 / float(2 ** lut_bits(item) - 1))
        return np.clip(scaled, 0.0, 1.0, out=scaled)
    except Exception as exc:
        notes.append("unreadable VOI LUT sequence ignored: using the window instead")
        log.debug("VOI LUT sequence ignored: %s", type(exc).__name__)
        return None


__all__ = ["lut_bits", "modality_lut", "voi_lut_sequence", "windows"]

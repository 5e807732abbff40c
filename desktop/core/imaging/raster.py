"""PNG and JPEG files (Pillow): checked, decoded, turned to grayscale image units.

With a reduction factor ``k > 1`` (a ``target`` load), a JPEG is decoded by libjpeg's
DCT scaling (``Image.draft``, up to 1/8 per side) and whatever factor is left, or all
of it for a PNG, is applied by :func:`~.resolution.box_reduce` (to the luma of a colour
image, in stripes of rows), so no full-size float32 copy is made.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from desktop.core.errors import CorruptImageError, ImageLoadError, ImageTooLargeError

from . import limits
from .codestream import check_png, jpeg_size
from .resolution import box_reduce, reduced_shape
from .types import StudyMetadata, Window, XRay

_COLOUR_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
#: Pixels of an image converted to float32 gray at a time (bounds the temporaries: ~25 MB
#: for a colour stripe).
_STRIPE_PIXELS = 2 * 1024 * 1024


def load_pil(data: bytes, label: str | None, fmt: str, k: int = 1) -> XRay:
    """A PNG or JPEG as an :class:`XRay`, decoded at 1/``k`` of its size (``k`` a power of two)."""
    name = fmt.upper()
    if fmt == "png":
        check_png(data, label)
    else:
        size = jpeg_size(data)
        if size is not None:
            limits.check_size(size[0], size[1], label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(io.BytesIO(data))
            width, height = im.size
            limits.check_size(width, height, label)
            drafted = 1
            if k > 1 and fmt == "jpeg":
                want = reduced_shape((height, width), min(k, 8))
                im.draft(None, (want[1], want[0]))
                drafted = _applied_scale((height, width), (im.size[1], im.size[0]))
            im.load()
            before = im.size
            exif_warn: list[str] = []
            try:
                # in place: without it Pillow returns a full copy even when nothing turns
                ImageOps.exif_transpose(im, in_place=True)
            except Exception:  # broken EXIF: keep the pixels as stored
                exif_warn.append("unreadable EXIF orientation ignored")
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(label, f"refused as a possible decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or isinstance(exc, EOFError):
            reason = f"truncated {name}"
        elif "crc" in msg.lower():
            reason = f"damaged {name} (checksum error)"
        elif "cannot identify image file" in msg:
            reason = f"damaged {name} (the image decoder cannot read it)"
        else:
            reason = f"damaged {name} ({limits.short(msg)})"
        raise CorruptImageError(label, reason) from exc

    swapped = im.size == before[::-1] and before[0] != before[1]
    full = (width, height) if swapped else (height, width)
    values, bit_depth = pil_to_gray(im, max(k // drafted, 1))
    scale = max(k, drafted) if k > 1 else 1
    maxval = float(2**bit_depth - 1)
    window = Window.from_range(0.0, maxval, "Full range")
    presets = [window]
    lo, hi = float(values.min()), float(values.max())
    if hi > lo and (lo > 0 or hi < maxval):
        presets.append(Window.from_range(lo, hi, "Image min-max"))
    meta = StudyMetadata(modality="", photometric="MONOCHROME2")
    return XRay(
        pixels=window.apply(values),
        values=values,
        bit_depth=bit_depth,
        window=window,
        presets=tuple(presets),
        invert=False,
        format=fmt,
        metadata=meta,
        source=label,
        warnings=tuple(exif_warn),
        decode_scale=scale,
        stored_shape=full if scale > 1 else None,
    )


def _applied_scale(full: tuple[int, int], got: tuple[int, int]) -> int:
    """The DCT scale libjpeg applied (1, 2, 4 or 8), from the sizes before and after ``draft``."""
    for s in (8, 4, 2):
        if reduced_shape(full, s) == got:
            return s
    return 1


def pil_to_gray(im: Image.Image, k: int = 1) -> tuple[np.ndarray, int]:
    """Grayscale float32 values in the image's own units (box-reduced by ``k``), and the bit depth.

    Converted in stripes of rows (``Image.crop`` of the decoded image), so that besides
    Pillow's own decoded image only the float32 result exists in full: no full-size numpy
    copy, no float32 copy of three colour channels.
    """
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    gray: Callable[[Image.Image], np.ndarray]
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        gray, bits = np.asarray, 16
    elif mode in ("LA", "La"):
        gray, bits = (lambda s: np.asarray(s.getchannel("L"))), 8
    elif mode in _COLOUR_MODES:
        gray, bits = (lambda s: _luma(np.asarray(s if s.mode == "RGB" else s.convert("RGB")))), 8
    elif mode == "L":
        gray, bits = np.asarray, 8
    else:  # "1" and anything else Pillow can turn to 8-bit gray
        gray, bits = (lambda s: np.asarray(s.convert("L"))), 8
    width, height = im.size
    step = max(k, (max(_STRIPE_PIXELS // max(width, 1), 1) // k) * k)
    out = np.empty(reduced_shape((height, width), k), dtype=np.float32)
    for r0 in range(0, height, step):
        small = box_reduce(gray(im.crop((0, r0, width, min(height, r0 + step)))), k)
        out[r0 // k : r0 // k + small.shape[0]] = small
    if mode == "I" and out.max(initial=0) > 65535:
        bits = 32
    if mode == "F":
        lo, hi = float(out.min()), float(out.max())
        out -= np.float32(lo)
        out *= np.float32(65535.0 / max(hi - lo, 1e-12))
    return out, bits


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of uint8 RGB, as Pillow's convert("L") without its rounding to 8 bits."""
    part = rgb.astype(np.float32)
    gray = part[..., 0] * 0.299 + part[..., 1] * 0.587 + part[..., 2] * 0.114
    return np.clip(gray, 0.0, 255.0, out=gray)


__all__ = ["load_pil", "pil_to_gray"]

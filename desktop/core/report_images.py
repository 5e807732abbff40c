"""Pictures for the PDF reports: the X-ray as displayed, its Grad-CAM overlay, thumbnails.

Images are resampled to the pixel size their printed box needs at
:data:`PRINT_DPI` and embedded as JPEG, so a report stays small (a single
study is a few hundred kB; a 500-image batch report a few MB) and sharp on
paper. The overlay comes from :mod:`desktop.core.overlay`, the same code the
GUI and ``render --heatmap`` use (same colour map lookup table, same blend,
same fixed scale and "influence" labels), with the user's colour map and
opacity, so all three look alike. Batch pages reuse what the scan already
made (a display image, the heatmap PNG) instead of decoding the file again.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image

from .imaging import Window, XRay

#: Resolution of the study images at their printed size (the issue asks >= 150).
PRINT_DPI = 200
#: Thumbnails in the batch table.
THUMB_DPI = 150
JPEG_QUALITY = 90
THUMB_QUALITY = 80


def pixels_for(points: float, dpi: int = PRINT_DPI) -> int:
    """Pixels needed to print ``points`` (1/72 inch) at ``dpi``."""
    return max(1, math.ceil(points / 72.0 * dpi))


def fit(shape: tuple[int, int], max_w: float, max_h: float) -> tuple[float, float]:
    """Largest (width, height) in points with the image's aspect ratio inside the box."""
    h, w = shape
    scale = min(max_w / w, max_h / h)
    return w * scale, h * scale


def display_uint8(xray: XRay, window: Window | None = None) -> np.ndarray:
    """The X-ray as the viewer shows it (uint8, bones white)."""
    return xray.to_uint8(window)


def resample_gray(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 image to ``size`` = (width, height) with a high-quality filter."""
    im = Image.fromarray(np.ascontiguousarray(gray), mode="L")
    if im.size != size:
        # reduce() first: a fast box pre-shrink before Lanczos on very large images.
        factor = min(im.size[0] // max(size[0], 1), im.size[1] // max(size[1], 1))
        if factor >= 3:
            im = im.reduce(factor // 2)
        im = im.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(im)


def jpeg_bytes(arr: np.ndarray, *, quality: int = JPEG_QUALITY) -> bytes:
    mode = "L" if arr.ndim == 2 else "RGB"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr), mode=mode).save(
        buf, format="JPEG", quality=quality, optimize=True, subsampling=0 if quality >= 90 else 2
    )
    return buf.getvalue()


def heatmap_array(heatmap: Any, shape: tuple[int, int]) -> np.ndarray:
    """The heatmap as float32 in [0, 1] at ``shape`` (uses ``Heatmap.upsample``)."""
    up = heatmap.upsample(shape) if hasattr(heatmap, "upsample") else heatmap
    arr = getattr(up, "values", up)
    arr = np.asarray(arr, dtype=np.float32)
    if arr.shape != tuple(shape):
        im = Image.fromarray(arr, mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.float32)
    return np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0)


def overlay(gray: np.ndarray, heat: np.ndarray, cmap: str | None = None, alpha: float | None = None,
            floor: float | None = None) -> np.ndarray:
    """RGB uint8 overlay of ``heat`` on ``gray``: the application's shared renderer (drawn from DRAW_FROM)."""
    from .overlay import DEFAULT_ALPHA, DEFAULT_CMAP, DRAW_FROM, overlay_rgb

    return np.asarray(
        overlay_rgb(gray, heat, cmap=cmap or DEFAULT_CMAP, alpha=DEFAULT_ALPHA if alpha is None else alpha,
                    floor=DRAW_FROM if floor is None else floor),
        dtype=np.uint8,
    )


def colour_stops(cmap: str | None = None, n: int = 128) -> list[tuple[float, float, float]]:
    """RGB stops (0-1) of the overlay colour map, low to high, for the PDF's vector colour bar."""
    from .overlay import DEFAULT_CMAP, colormap_lut

    lut = colormap_lut(cmap or DEFAULT_CMAP)
    idx = np.linspace(0, len(lut) - 1, n).round().astype(int)
    return [(r / 255.0, g / 255.0, b / 255.0) for r, g, b in lut[idx].tolist()]


def influence_labels() -> tuple[str, str]:
    from .overlay import DEFAULT_LABELS

    low, high = DEFAULT_LABELS
    return str(low), str(high)


def study_images(
    xray: XRay | np.ndarray, heatmap: Any, box_w: float, box_h: float, *, window: Window | None = None,
    dpi: int = PRINT_DPI, cmap: str | None = None, alpha: float | None = None, draw: bool = True,
) -> tuple[bytes, bytes | None, float, float, float | None]:
    """(display JPEG, overlay JPEG or None, printed width, printed height, lung share) for a box in points.

    ``xray`` is the X-ray or its display image (uint8 HxW, as the scan kept
    it). ``draw=False`` (a negative result, the heatmap not asked for) gives
    no overlay; the lung share is measured on the map either way (None when
    the map is empty).
    """
    from .overlay import lung_fraction

    gray_full = display_uint8(xray, window) if isinstance(xray, XRay) else np.asarray(xray, dtype=np.uint8)
    w_pt, h_pt = fit(gray_full.shape[:2], box_w, box_h)
    size = (pixels_for(w_pt, dpi), pixels_for(h_pt, dpi))
    gray = resample_gray(gray_full, size)
    heat = heatmap_array(heatmap, (size[1], size[0])) if heatmap is not None else None
    share = lung_fraction(heat) if heat is not None else None
    over = jpeg_bytes(overlay(gray, heat, cmap, alpha)) if draw and heat is not None else None
    return jpeg_bytes(gray), over, w_pt, h_pt, share


def image_file_jpeg(path: str, box_w: float, box_h: float, *, dpi: int = PRINT_DPI,
                    quality: int = JPEG_QUALITY) -> tuple[bytes, float, float]:
    """A picture the scan already wrote (display image, heatmap PNG) as a JPEG fitting a box."""
    with Image.open(path) as im:
        im.load()
        rgb = np.asarray(im.convert("L" if im.mode in ("L", "I;16", "I") else "RGB"))
    w_pt, h_pt = fit(rgb.shape[:2], box_w, box_h)
    size = (pixels_for(w_pt, dpi), pixels_for(h_pt, dpi))
    pil = Image.fromarray(np.ascontiguousarray(rgb))
    if pil.size != size:
        pil = pil.resize(size, Image.Resampling.LANCZOS)
    return jpeg_bytes(np.asarray(pil), quality=quality), w_pt, h_pt


def thumbnail(xray: XRay | np.ndarray, box_pt: float, *, dpi: int = THUMB_DPI) -> tuple[bytes, float, float]:
    """A small JPEG of the displayed X-ray (or a display image) fitting a square box of ``box_pt`` points."""
    gray_full = display_uint8(xray) if isinstance(xray, XRay) else np.asarray(xray, dtype=np.uint8)
    w_pt, h_pt = fit(gray_full.shape[:2], box_pt, box_pt)
    size = (pixels_for(w_pt, dpi), pixels_for(h_pt, dpi))
    gray = resample_gray(gray_full, size)
    return jpeg_bytes(gray, quality=THUMB_QUALITY), w_pt, h_pt



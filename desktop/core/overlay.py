"""Heatmap overlay and colour bar, shared by the GUI, the CLI and the PDF report.

Colour maps come from matplotlib (imported lazily, Agg only: never a GUI
backend). ``jet`` is the Grad-CAM convention; ``cividis`` and ``viridis`` are
perceptually uniform and readable with colour-vision deficiency; ``inferno``
is cut at 85% of its range, so its hot end stays orange-yellow instead of
near-white (which vanishes on the grey of a film).

The heatmap has a fixed meaning: :class:`desktop.core.inference.Heatmap`
maps the Grad-CAM evidence for COVID-19 onto a scale shared by every image
(0 = none, 1 = the model's reference amount of evidence), so the same colour
means the same evidence on every film. Only the upper part of that scale
(from :data:`DRAW_FROM`) is drawn; below it the film shows untinted, so a
clear negative shows no colour at all. :func:`lung_fraction` says how much of
the map lies inside the lung fields. The one word for it, in the GUI and the
PDF, is :data:`WORD` ("influence"). A negative result's map is not drawn
unless asked for (:data:`SHOW_BELOW_THRESHOLD`); the GUI and the PDF say why
in the same words (:data:`HIDDEN_BELOW_THRESHOLD`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .imaging import Window, XRay
    from .inference import Heatmap, Prediction

#: Colour maps offered to users (first: the default).
COLORMAPS = ("jet", "cividis", "viridis", "inferno", "turbo")
#: Colour-blind-safe choices among them.
COLORBLIND_SAFE = ("cividis", "viridis", "inferno")
DEFAULT_CMAP = "jet"
DEFAULT_ALPHA = 0.45
#: The one word for what the heatmap shows, everywhere (GUI, PDF, CLI).
WORD = "influence"
DEFAULT_LABELS = (f"low {WORD}", f"high {WORD}")
#: Title of the colour bar: the word and the scale.
SCALE_TITLE = f"Grad-CAM {WORD} (fixed scale 0\u20131)"
#: Only values from here up (on the fixed 0-1 scale) are drawn by default.
DRAW_FROM = 0.5
#: Why a negative result's heatmap is not drawn unless asked for: the same sentence in the GUI and the PDF.
HIDDEN_BELOW_THRESHOLD = f"Grad-CAM heatmap not shown: the score is below the threshold, so no region's {WORD} led to a flag."
#: The option that draws it anyway (the result panel, the report dialog; ``--heatmap-below-threshold``).
SHOW_BELOW_THRESHOLD = "Show the heatmap for a negative result too"
#: Width of the soft edge above DRAW_FROM (no hard contour line on the film).
_RAMP = 0.06
#: Colour maps cut short of their end (fraction of the range kept): hot end visible on grey.
_CMAP_TOP = {"inferno": 0.85}
#: The lung fields as two boxes (fractions of height, width) on a frontal film: the
#: stand-in used while no lung segmenter ships. Mediastinum, heart, the area below the
#: diaphragm and the corners lie outside.
LUNG_BOXES = ((0.10, 0.78, 0.08, 0.46), (0.10, 0.78, 0.54, 0.92))
#: Below this share inside the lung fields the report and the panel warn.
LUNG_WARN_BELOW = 0.5


def _mpl() -> None:
    """Nothing here uses pyplot: figures are drawn on an Agg canvas directly, so the
    process-wide backend (the GUI's, if any) is never touched."""


@lru_cache(maxsize=16)
def colormap_lut(cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """The colour map as a (256, 3) uint8 lookup table."""
    if cmap not in COLORMAPS:
        raise ValueError(f"cmap must be one of {COLORMAPS}. Received: cmap={cmap!r}")
    _mpl()
    from matplotlib import colormaps

    rgba = colormaps[cmap](np.linspace(0.0, _CMAP_TOP.get(cmap, 1.0), 256))
    lut = np.round(rgba[:, :3] * 255.0).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def _as_unit(gray: np.ndarray) -> np.ndarray:
    g = np.asarray(gray)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image. Received shape {g.shape}")
    if g.dtype == np.uint8:
        return g.astype(np.float32) / 255.0
    return np.clip(g.astype(np.float32, copy=False), 0.0, 1.0)


def overlay_rgb(
    gray: np.ndarray, heat: np.ndarray, cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA,
    *, floor: float = 0.0,
) -> np.ndarray:
    """Blend a heatmap over a grayscale image: uint8 (H, W, 3).

    ``gray`` is HxW (float in [0, 1] or uint8); ``heat`` float in [0, 1],
    either the same size or any size (then upsampled bicubic). ``alpha`` is
    the heatmap's opacity (0: the image only; 1: the heatmap only).
    ``floor``: heat below it is not drawn (the film shows untinted), with a
    soft edge just above; the colour of a value does not depend on it.
    """
    if not 0.0 <= floor < 1.0:
        raise ValueError(f"floor must be in [0, 1). Received: floor={floor!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}")
    g = _as_unit(gray) if np.asarray(gray).dtype != np.uint8 else np.asarray(gray)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image. Received shape {g.shape}")
    h = np.asarray(heat, dtype=np.float32)
    if h.ndim != 2:
        raise ValueError(f"expected a 2-D heatmap. Received shape {h.shape}")
    if h.shape != g.shape:
        from .inference import _resize

        h = _resize(h, g.shape[0], g.shape[1])
    hi = np.clip(np.nan_to_num(h), 0.0, 1.0)
    hi *= 255.0
    idx = np.rint(hi).astype(np.uint16)
    raw = np.asarray(gray)
    gi = raw.astype(np.uint16) if raw.dtype == np.uint8 else np.rint(g * 255.0).astype(np.uint16)
    # One gather from a (gray level x heat level) table instead of float maths per pixel.
    table = _blend_table(cmap, round(float(alpha), 4), round(float(floor), 4))
    return table[(gi << 8) | idx]


@lru_cache(maxsize=16)
def _blend_table(cmap: str, alpha: float, floor: float = 0.0) -> np.ndarray:
    """(65536, 3) uint8: the blend of gray level g and heat level h at index g * 256 + h."""
    lut = colormap_lut(cmap).astype(np.float32)
    gray = np.arange(256, dtype=np.float32)[:, None, None]
    level = np.arange(256, dtype=np.float32) / 255.0
    if floor > 0:
        weight = np.clip((level - floor) / _RAMP, 0.0, 1.0)
    else:
        weight = np.ones_like(level)
    a = (alpha * weight)[None, :, None]
    out = (1.0 - a) * gray + a * lut[None, :, :]
    table = np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(65536, 3)
    table.setflags(write=False)
    return table


def colorbar_rgb(
    cmap: str = DEFAULT_CMAP,
    height: int = 512,
    width: int = 96,
    labels: Sequence[str] = DEFAULT_LABELS,
    *,
    title: str | None = "Grad-CAM",
    floor: float = 0.0,
) -> np.ndarray:
    """A vertical, labelled colour bar image, uint8 (height, width, 3), white background.

    ``labels`` are (bottom, top) texts: low values at the bottom. The part
    below ``floor`` (not drawn on the film) is shown light grey.
    """
    if height < 32 or width < 24:
        raise ValueError(f"colour bar too small. Received: {height}x{width}")
    lut = colormap_lut(cmap)
    if floor > 0:
        lut = lut.copy()
        lut[: int(round(floor * 255))] = (225, 225, 225)
    _mpl()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100.0
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    low, high = (list(labels) + ["", ""])[:2]
    words = [w for text in (low, high, title or "") for w in text.split()] or ["x"]
    longest = max(len(w) for w in words)
    # font size in pixels: readable, bounded by the height and by the longest word's width
    fs_px = float(np.clip(min(height / 36.0, (width - 8) / (0.62 * longest)), 7.0, 18.0))
    fs_pt = fs_px * 72.0 / dpi
    line = 1.25 * fs_px

    def wrap(text: str) -> str:
        return text if 0.62 * fs_px * len(text) <= width - 8 else "\n".join(text.split())

    high_t, low_t = wrap(high), wrap(low)
    pad = max(3.0, fs_px * 0.4)
    y = pad
    if title:
        fig.text(0.5, 1.0 - y / height, wrap(title), ha="center", va="top", fontsize=fs_pt, weight="bold")
        y += line * (wrap(title).count("\n") + 1) + pad
    fig.text(0.5, 1.0 - y / height, high_t, ha="center", va="top", fontsize=fs_pt, linespacing=1.0)
    bar_top = y + line * (high_t.count("\n") + 1) + pad
    bar_bottom = height - (pad + line * (low_t.count("\n") + 1) + pad)
    fig.text(0.5, (pad + line * (low_t.count("\n") + 1)) / height, low_t, ha="center", va="top",
             fontsize=fs_pt, linespacing=1.0)  # fmt: skip
    bar_px = max(10.0, min(0.35 * width, 36.0))
    bar_h = max(bar_bottom - bar_top, 8.0)
    ax = fig.add_axes(((width - bar_px) / 2 / width, (height - bar_top - bar_h) / height, bar_px / width, bar_h / height))
    ax.imshow(lut[::-1, None, :].repeat(2, axis=1), aspect="auto", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_linewidth(0.6)
    canvas = fig.canvas
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[attr-defined]
    img = np.ascontiguousarray(rgba[..., :3])
    if img.shape[:2] != (height, width):  # rounding of the figure size
        from PIL import Image

        img = np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.BILINEAR))
    return img


def heatmap_panel(
    gray: np.ndarray,
    heat: np.ndarray,
    cmap: str = DEFAULT_CMAP,
    alpha: float = DEFAULT_ALPHA,
    labels: Sequence[str] = ("0 none", f"1 strong {WORD}"),
    *,
    floor: float = DRAW_FROM,
) -> np.ndarray:
    """Overlay and colour bar side by side: uint8 (H, W + bar, 3).

    ``heat`` is on the fixed scale (``Heatmap.upsample``); only values from
    ``floor`` up are drawn, and the bar greys the rest.
    """
    ov = overlay_rgb(gray, heat, cmap=cmap, alpha=alpha, floor=floor)
    h = ov.shape[0]
    bar_w = int(np.clip(h // 5, 80, 240))
    bar = colorbar_rgb(cmap, max(h, 32), bar_w, labels, title=f"{WORD} (fixed scale)", floor=floor)
    if bar.shape[0] != h:
        bar = bar[:h]
    return np.concatenate([ov, bar], axis=1)


def lung_fraction(heat: np.ndarray, boxes: Sequence[tuple[float, float, float, float]] = LUNG_BOXES) -> float | None:
    """Share (0-1) of the heatmap's mass that lies inside the lung fields, or None for an empty map.

    ``heat`` is the map on the image (any size; fixed scale). The lung fields
    are :data:`LUNG_BOXES` (two boxes on a frontal film) until a lung
    segmenter ships; a mask of the same shape can be passed as ``boxes``'s
    replacement through :func:`mask_fraction`.
    """
    h = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0.0, None)
    if h.ndim != 2:
        raise ValueError(f"expected a 2-D heatmap. Received shape {h.shape}")
    mask = np.zeros(h.shape, dtype=bool)
    rows, cols = h.shape
    for y0, y1, x0, x1 in boxes:
        mask[int(round(y0 * rows)) : int(round(y1 * rows)), int(round(x0 * cols)) : int(round(x1 * cols))] = True
    return mask_fraction(h, mask)


def mask_fraction(heat: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the heatmap's mass inside ``mask`` (bool, same shape), or None for an empty map."""
    h = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0.0, None)
    total = float(h.sum())
    if not total > 0:
        return None
    return float(h[np.asarray(mask, dtype=bool)].sum() / total)


def lung_sentence(fraction: float | None) -> tuple[str, bool]:
    """(text, warn) for the panel and the PDF: how much of the heatmap lies in the lung fields."""
    if fraction is None:
        return f"No region had any {WORD} on the COVID-19 score.", False
    pct = round(100 * fraction)
    text = f"{pct}% of the heatmap lies inside the lung fields (approximate lung boxes)."
    if fraction < LUNG_WARN_BELOW:
        return (text + " Most of it lies outside the lungs (heart, diaphragm, edges or labels): "
                "the score may rest on something other than lung findings."), True
    return text, False


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def render_heatmap(
    xray: XRay,
    model: str | None = None,
    window: Window | None = None,
    *,
    cmap: str = DEFAULT_CMAP,
    alpha: float = DEFAULT_ALPHA,
    predictor: object | None = None,
) -> tuple[np.ndarray, Prediction, Heatmap]:
    """Explain ``xray`` with the named (or default) model: (panel RGB, prediction, heatmap)."""
    from .inference import Predictor

    pred_obj = predictor if isinstance(predictor, Predictor) else Predictor.from_name(model)
    prediction, heat = pred_obj.explain(xray)
    gray = xray.render(window)
    panel = heatmap_panel(gray, heat.upsample(gray.shape), cmap=cmap, alpha=alpha)
    return panel, prediction, heat


def render_heatmap_png(
    xray: XRay,
    model: str | None = None,
    window: Window | None = None,
    *,
    cmap: str = DEFAULT_CMAP,
    alpha: float = DEFAULT_ALPHA,
) -> bytes:
    """PNG bytes of the Grad-CAM overlay with its colour bar (``cxr-screener render --heatmap``)."""
    panel, _, _ = render_heatmap(xray, model, window, cmap=cmap, alpha=alpha)
    return png_bytes(panel)


__all__ = [
    "COLORBLIND_SAFE",
    "COLORMAPS",
    "DEFAULT_ALPHA",
    "DEFAULT_CMAP",
    "DRAW_FROM",
    "HIDDEN_BELOW_THRESHOLD",
    "LUNG_BOXES",
    "SHOW_BELOW_THRESHOLD",
    "WORD",
    "lung_fraction",
    "lung_sentence",
    "mask_fraction",
    "colorbar_rgb",
    "colormap_lut",
    "heatmap_panel",
    "overlay_rgb",
    "png_bytes",
    "render_heatmap",
    "render_heatmap_png",
]

"""Heatmap overlay and colour bar, shared by the GUI, the CLI and the PDF report.

Colour maps come from matplotlib (imported lazily, Agg only: never a GUI
backend). ``jet`` is the Grad-CAM convention; ``cividis`` and ``viridis`` are
perceptually uniform and readable with colour-vision deficiency.
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
DEFAULT_LABELS = ("low attention", "high attention")


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

    rgba = colormaps[cmap](np.linspace(0.0, 1.0, 256))
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
    gray: np.ndarray, heat: np.ndarray, cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """Blend a heatmap over a grayscale image: uint8 (H, W, 3).

    ``gray`` is HxW (float in [0, 1] or uint8); ``heat`` float in [0, 1],
    either the same size or any size (then upsampled bicubic). ``alpha`` is
    the heatmap's opacity (0: the image only; 1: the heatmap only).
    """
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
    table = _blend_table(cmap, round(float(alpha), 4))
    return table[(gi << 8) | idx]


@lru_cache(maxsize=8)
def _blend_table(cmap: str, alpha: float) -> np.ndarray:
    """(65536, 3) uint8: the blend of gray level g and heat level h at index g * 256 + h."""
    lut = colormap_lut(cmap).astype(np.float32)
    gray = np.arange(256, dtype=np.float32)[:, None, None]
    out = (1.0 - alpha) * gray + alpha * lut[None, :, :]
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
) -> np.ndarray:
    """A vertical, labelled colour bar image, uint8 (height, width, 3), white background.

    ``labels`` are (bottom, top) texts: low values at the bottom.
    """
    if height < 32 or width < 24:
        raise ValueError(f"colour bar too small. Received: {height}x{width}")
    lut = colormap_lut(cmap)
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
    labels: Sequence[str] = DEFAULT_LABELS,
) -> np.ndarray:
    """Overlay and colour bar side by side: uint8 (H, W + bar, 3)."""
    ov = overlay_rgb(gray, heat, cmap=cmap, alpha=alpha)
    h = ov.shape[0]
    bar_w = int(np.clip(h // 5, 80, 240))
    bar = colorbar_rgb(cmap, max(h, 32), bar_w, labels)
    if bar.shape[0] != h:
        bar = bar[:h]
    return np.concatenate([ov, bar], axis=1)


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
    "colorbar_rgb",
    "colormap_lut",
    "heatmap_panel",
    "overlay_rgb",
    "png_bytes",
    "render_heatmap",
    "render_heatmap_png",
]

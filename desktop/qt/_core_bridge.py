"""The few calls from the Qt layer into the core, in one place (no Qt here, no core logic either).

Re-exports the desktop's work (:mod:`desktop.core.session_work`) and state
(:mod:`desktop.core.session`) for the widgets, and turns a heatmap into the
RGBA image and colour bar the viewer draws.
"""

from __future__ import annotations

import logging

import numpy as np

from desktop.core.session import Analysis, Study, at_operating_point
from desktop.core.session_work import (
    PredictorCache,
    analyze,
    discover,
    display_size,
)

log = logging.getLogger(__name__)

def colorize(heat: np.ndarray, cmap: str) -> np.ndarray:
    """RGBA uint8 image of a [0, 1] heatmap with the core's colour map (the viewer blends it)."""
    from desktop.core.overlay import colormap_lut

    idx = np.round(np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)
    rgb = colormap_lut(cmap)[idx]
    # only the upper part of the fixed scale is drawn (soft edge): no full-film tint
    from desktop.core.overlay import DRAW_FROM

    weight = np.clip((idx.astype(np.float32) / 255.0 - DRAW_FROM) / 0.06, 0.0, 1.0)
    alpha = np.round(weight * 255.0).astype(np.uint8)[..., None]
    return np.concatenate([rgb, alpha], axis=-1)


def colorbar(cmap: str, n: int = 256) -> np.ndarray:
    """(n, 3) uint8 ramp of the colour map, low to high."""
    from desktop.core.overlay import DRAW_FROM, colormap_lut

    lut = colormap_lut(cmap)
    ramp = np.array(lut[np.linspace(0, 255, n).round().astype(int)], dtype=np.uint8)
    ramp[: int(round(DRAW_FROM * n))] = (225, 225, 225)  # the part not drawn (below DRAW_FROM): light grey
    return ramp


__all__ = [
    "Analysis",
    "PredictorCache",
    "Study",
    "analyze",
    "at_operating_point",
    "colorbar",
    "colorize",
    "discover",
    "display_size",
]

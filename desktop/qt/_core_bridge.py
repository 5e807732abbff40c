"""The few calls from the Qt layer into the core, in one place (no Qt here, no core logic either).

Everything in this module runs in worker threads or is cheap; it only
composes core functions (bundle discovery, Predictor, overlay) and keeps the
per-image state the window shows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from desktop.core.cpu import gui_inference_threads
from desktop.core.imaging import XRay

log = logging.getLogger(__name__)

#: Longest side of the heatmap image handed to the viewer (it is stretched smoothly over the X-ray).
HEATMAP_DISPLAY_MAX = 768


@dataclass
class Analysis:
    """One model's output on one image."""

    prediction: Any
    heatmap: Any
    heat: np.ndarray  # float32 [0, 1] at display resolution
    predictor: Any = None  # the Predictor that made it (decides at other operating points)


@dataclass
class Study:
    """An opened file: its X-ray (None until loaded) and the analyses by model name."""

    path: str
    xray: XRay | None = None
    analyses: dict[str, Analysis] = field(default_factory=dict)
    error: BaseException | None = None


def discover(models_folder: str = "", dirs: Sequence[tuple[Path, str]] | None = None) -> Any:
    """``BundleDiscovery`` of the bundled, user and (optional) extra models folders.

    ``dirs`` replaces the standard folders (tests point it at their own bundles).
    """
    from desktop.core.bundle import discover_bundles, model_dirs

    searched = list(model_dirs() if dirs is None else dirs)
    if models_folder and Path(models_folder).is_dir():
        extra = Path(models_folder).resolve()
        if all(extra != d.resolve() for d, _ in searched if d.exists()):
            searched.append((extra, "user"))
    return discover_bundles(searched)


def gui_threads() -> int:
    """ONNX Runtime threads in the GUI: one core is left to the window (and the decoders)."""
    return gui_inference_threads()


class PredictorCache:
    """One ``Predictor`` per bundle, created on first use in whichever worker needs it."""

    def __init__(self, threads: int | None = None) -> None:
        self._lock = threading.Lock()
        self._predictors: dict[str, Any] = {}
        self.threads = gui_threads() if threads is None else threads

    def get(self, bundle: Any) -> Any:
        from desktop.core.inference import Predictor

        key = str(bundle.path)
        with self._lock:
            predictor = self._predictors.get(key)
            if predictor is None:
                predictor = Predictor(bundle, threads=self.threads)
                self._predictors[key] = predictor
            return predictor

    def clear(self) -> None:
        with self._lock:
            self._predictors.clear()


def display_size(shape: tuple[int, int], limit: int = HEATMAP_DISPLAY_MAX) -> tuple[int, int]:
    h, w = shape
    scale = min(1.0, limit / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def analyze(xray: XRay, predictor: Any, operating_point: str | None) -> Analysis:
    """Prediction and Grad-CAM for one X-ray (runs in a worker)."""
    prediction, heatmap = predictor.explain(xray, operating_point=operating_point)
    heat = np.asarray(heatmap.upsample(display_size(xray.shape)), dtype=np.float32)
    return Analysis(prediction, heatmap, heat, predictor)


def at_operating_point(prediction: Any, predictor: Any, name: str | None) -> Any:
    """The same prediction decided at another operating point of its model (no model run)."""
    if not name or name == prediction.operating_point:
        return prediction
    op = predictor.operating_point(name)
    return replace(
        prediction, operating_point=op.name, threshold=op.threshold, label=predictor.decide(prediction.p_covid, op)
    )


def colorize(heat: np.ndarray, cmap: str) -> np.ndarray:
    """RGBA uint8 image of a [0, 1] heatmap with the core's colour map (the viewer blends it)."""
    from desktop.core.overlay import colormap_lut

    idx = np.round(np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)
    rgb = colormap_lut(cmap)[idx]
    alpha = np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)
    return np.concatenate([rgb, alpha], axis=-1)


def colorbar(cmap: str, n: int = 256) -> np.ndarray:
    """(n, 3) uint8 ramp of the colour map, low to high."""
    from desktop.core.overlay import colormap_lut

    lut = colormap_lut(cmap)
    return np.asarray(lut[np.linspace(0, 255, n).round().astype(int)], dtype=np.uint8)


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

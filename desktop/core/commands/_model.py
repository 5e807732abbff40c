"""What the predict/scan/selftest commands share: pick a bundle, build its Predictor.

Imported only inside command handlers (it pulls in numpy and ONNX Runtime).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoadedModel:
    """A verified bundle, its predictor and the operating point chosen on the command line."""

    bundle: Any
    predictor: Any
    operating_point: str
    threshold: float

    @property
    def name(self) -> str:
        return str(self.bundle.name)

    @property
    def version(self) -> str:
        return str(self.bundle.version)

    @property
    def sha256(self) -> str:
        return str(self.bundle.card.sha256)


def load_model(name: str | None, operating_point: str | None, *, threads: int | None = None) -> LoadedModel:
    """The bundle ``name`` (default bundle when None) and its predictor.

    Raises :class:`~desktop.core.errors.ModelError` subclasses (exit code 2)
    for an unknown or broken bundle and an unknown operating point, before
    any file is touched. ``threads``: ONNX Runtime intra-op threads (its default when None).
    """
    from desktop.core.bundle import get_bundle
    from desktop.core.inference import Predictor

    bundle = get_bundle(name)
    op = bundle.card.operating_point(operating_point)
    predictor = Predictor(bundle, threads=threads)
    return LoadedModel(bundle, predictor, op.name, float(op.threshold))


def prediction_fields(pred: Any) -> dict[str, Any]:
    """The contract fields of one prediction (JSON-ready)."""
    return {
        "label": str(pred.label),
        "p_covid": round(float(pred.p_covid), 6),
        "model": str(pred.model),
        "model_version": str(pred.model_version),
        "operating_point": str(pred.operating_point),
        "threshold": float(pred.threshold),
    }


def write_overlay(target: str | os.PathLike[str], xray: Any, heatmap: Any, *, overwrite: bool) -> Path:
    """The Grad-CAM overlay PNG of ``xray`` (the one heatmap PNG writer), written atomically."""
    from desktop.core.scan.heatmaps import write_heatmap_png

    return write_heatmap_png(target, xray.pixels, heatmap, overwrite=overwrite)

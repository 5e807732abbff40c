"""The desktop's long work as plain generators and functions (run by the GUI's workers, testable without Qt).

- :func:`discover` the installed models; :class:`PredictorCache` keeps one
  ``Predictor`` per bundle;
- :func:`analyze_files` reads each opened file, then yields its prediction
  and Grad-CAM (:func:`analyze`), or the error, file by file;
- :func:`scan_folder` is :func:`desktop.core.batch.scan` with an audit
  entry per file, returning the documents the scan left out.

The Qt layer (:mod:`desktop.qt.qt_workers`) only runs these off the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .batch import CancelToken, ScanResult, ScanStats, scan
from .imaging import XRay, load_xray
from .progress import Progress
from .scan_state import ignored_documents
from .session import Analysis

log = logging.getLogger(__name__)

#: Longest side of the heatmap image handed to the viewer (it is stretched smoothly over the X-ray).
HEATMAP_DISPLAY_MAX = 768


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
    from .cpu import gui_inference_threads

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
    from .overlay import lung_fraction

    heat = np.asarray(heatmap.upsample(display_size(xray.shape)), dtype=np.float32)
    return Analysis(prediction, heatmap, heat, predictor, lung_fraction(heat))


def analyze_files(
    paths: Sequence[str], bundle: Any, operating_point: str | None, cache: PredictorCache
) -> Iterator[tuple[str, str, Any]]:
    """Worker body: load each file, yield it, then its analysis (or the error)."""
    for path in paths:
        try:
            xray = load_xray(path)
        except Exception as exc:  # reported per file, the others go on
            yield ("error", path, exc)
            continue
        yield ("loaded", path, xray)
        if bundle is None:
            continue
        try:
            predictor = cache.get(bundle)
            yield ("analysis", path, (bundle.name, analyze(xray, predictor, operating_point)))
        except Exception as exc:
            yield ("error", path, exc)


def scan_folder(
    folder: str,
    bundle: Any,
    operating_point: str | None,
    cache: PredictorCache,
    results_csv: Path,
    resume: bool,
    cancel: CancelToken,
    progress: Progress,
    operator: str,
    workers: int | None,
) -> Generator[ScanResult, None, list[str]]:
    """The core scan as the desktop runs it: one predictor per bundle, audited, with an audit log entry per file; returns the ignored documents."""
    from desktop.core.audit import AuditLog

    predictor = cache.get(bundle)
    results_csv.parent.mkdir(parents=True, exist_ok=True)
    stats = ScanStats()
    with AuditLog(operator=operator or None) as audit:
        yield from scan(
            folder,
            predictor,
            operating_point=operating_point,
            results_csv=results_csv,
            resume=resume,
            overwrite=not resume,
            cancel=cancel,
            progress=progress,
            audit=audit,
            workers=workers,
            stats=stats,
        )
    return ignored_documents(folder, results_csv) if stats.ignored else []


__all__ = [
    "HEATMAP_DISPLAY_MAX",
    "PredictorCache",
    "analyze",
    "analyze_files",
    "discover",
    "display_size",
    "gui_threads",
    "scan_folder",
]

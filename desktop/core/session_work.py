"""The desktop's long work as plain generators and functions (run by the GUI's workers, testable without Qt).

- :func:`discover` the installed models; :class:`PredictorCache` keeps one
  ``Predictor`` per bundle;
- :func:`analyze_files` reads each opened file, then yields its analysis
  (:func:`analyze`: the input gate, then prediction, Grad-CAM and OOD flag
  from one forward pass), or the error, file by file;
- :func:`scan_folder` is :func:`desktop.core.batch.scan` with an audit
  entry per file, the bundle's input statistics and the chosen site
  (:func:`resolve_site`), returning the documents the scan left out.

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
    """One ``Predictor`` (and its input statistics) per bundle, created on first use in whichever worker needs it."""

    def __init__(self, threads: int | None = None) -> None:
        self._lock = threading.Lock()
        self._predictors: dict[str, Any] = {}
        self._stats: dict[str, Any] = {}
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

    def stats(self, bundle: Any) -> Any:
        """The bundle's :mod:`~desktop.core.input_stats` (None: learnt gate and OOD flag off), read once."""
        from .input_stats import load_for

        key = str(bundle.path)
        with self._lock:
            if key not in self._stats:
                self._stats[key] = load_for(bundle)
            return self._stats[key]

    def clear(self) -> None:
        with self._lock:
            self._predictors.clear()
            self._stats.clear()


def display_size(shape: tuple[int, int], limit: int = HEATMAP_DISPLAY_MAX) -> tuple[int, int]:
    h, w = shape
    scale = min(1.0, limit / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def analyze(xray: XRay, predictor: Any, operating_point: Any, input_stats: Any = None) -> Analysis:
    """The input gate, then prediction, Grad-CAM and OOD flag for one X-ray (runs in a worker).

    As the CLI does (:func:`desktop.core.gate.screen`): DICOM tags and pixel
    checks before the model; then one forward pass, whose feature map feeds
    the learnt check and the OOD score (with ``input_stats``) and, for an
    accepted film, Grad-CAM (:meth:`~desktop.core.inference.Predictor.explain_outputs`):
    the model runs once per film. A rejected film gets
    :meth:`Analysis.not_assessable`: no probability, no heatmap.
    ``operating_point``: a card operating point's name or an OperatingPoint (a site's).
    """
    from .gate import check
    from .ood import assess
    from .overlay import lung_fraction

    verdict = check(xray)
    if verdict.rejected:
        return Analysis.not_assessable(verdict, predictor)
    fmap, probs = predictor.forward_raw(predictor.preprocess(xray)[None])
    verdict = check(xray, fmap, stats=input_stats, passed=verdict)  # the learnt check only
    if verdict.rejected:
        return Analysis.not_assessable(verdict, predictor)
    prediction, heatmap = predictor.explain_outputs(fmap, probs, operating_point)
    heat = np.asarray(heatmap.upsample(display_size(xray.shape)), dtype=np.float32)
    return Analysis(prediction, heatmap, heat, predictor, lung_fraction(heat), gate=verdict,
                    ood=assess(fmap, input_stats))


def analyze_files(
    paths: Sequence[str], bundle: Any, operating_point: Any, cache: PredictorCache
) -> Iterator[tuple[str, str, Any]]:
    """Worker body: load each file, yield it, then its analysis (or the error).

    ``operating_point``: a card operating point's name or a site's OperatingPoint
    (:attr:`desktop.core.session.Session.decision_point`).
    """
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
            analysis = analyze(xray, predictor, operating_point, cache.stats(bundle))
            yield ("analysis", path, (bundle.name, analysis))
        except Exception as exc:
            yield ("error", path, exc)


def resolve_site(bundle: Any, operating_point: str | None) -> tuple[Any, Any]:
    """The window's operating-point choice for a scan: ``(site profile or None, what to decide at)``.

    ``site:NAME`` gives that site's profile, read and checked again now
    (:func:`desktop.core.site.resolve`; a profile edited by hand, missing or
    made for another model raises :class:`~desktop.core.site.SiteProfileError`),
    and its OperatingPoint; a card operating point's name comes back as it is.
    """
    from .session import SITE_PREFIX
    from .site import resolve

    if operating_point and operating_point.startswith(SITE_PREFIX):
        return resolve(operating_point[len(SITE_PREFIX):], bundle)
    return None, operating_point


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
    site: Any = None,
) -> Generator[ScanResult, None, list[str]]:
    """The core scan as the desktop runs it; returns the ignored documents.

    One predictor per bundle, an audit log entry per file, the bundle's input
    statistics (the learnt gate and the OOD flag, as the CLI's scan) and
    ``site``, a :class:`~desktop.core.site.SiteProfile` (:func:`resolve_site`)
    whose threshold replaces ``operating_point`` (a card operating point's name).
    """
    from desktop.core.audit import AuditLog

    predictor = cache.get(bundle)
    input_stats = cache.stats(bundle)
    results_csv.parent.mkdir(parents=True, exist_ok=True)
    stats = ScanStats()
    with AuditLog(operator=operator or None) as audit:
        yield from scan(
            folder,
            predictor,
            operating_point=None if site is not None else operating_point,  # the site's threshold decides
            results_csv=results_csv,
            resume=resume,
            overwrite=not resume,
            cancel=cancel,
            progress=progress,
            audit=audit,
            workers=workers,
            stats=stats,
            input_stats=input_stats,
            site=site,
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
    "resolve_site",
    "scan_folder",
]

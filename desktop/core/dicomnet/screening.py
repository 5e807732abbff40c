"""The one adapter from "a folder of films" to the scan pipeline, and the DICOM results of a row.

:func:`screen_folder` is the only place the listener, the watched folder and
the GUI's receiving panel call the screening pipeline: it runs
:func:`desktop.core.batch.scan` over the folder with ``resume=True``, so each
result is appended to ``results.csv`` with the scan's own columns and a film
already recorded (same path and sha256) is never screened twice. When the
pipeline gains a per-file entry point, only this function changes.

:class:`ResultsMaker` turns a finished row into the film's DICOM results
(:mod:`.results`), from the heatmap PNG the scan wrote, and hands them to the
sender's outbox.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import (
    ResultInfo,
    WrittenResults,
    is_dicom_film,
    panel_from_png,
    results_names,
    write_results,
)

log = logging.getLogger(__name__)

HEATMAPS_NAME = "heatmaps"


def screen_folder(
    folder: str | os.PathLike[str],
    loaded: Any,
    *,
    results_csv: str | os.PathLike[str],
    heatmap_dir: str | os.PathLike[str] | None = None,
    exclude: Sequence[str | os.PathLike[str]] = (),
    cancel: Any = None,
    workers: int | None = None,
    audit: Any = None,
    site: str | None = None,
) -> Iterator[Any]:
    """Screen every film under ``folder`` not yet in ``results_csv``; yield each new ScanResult.

    ``loaded`` is a :class:`~desktop.core.commands._model.LoadedModel`.
    ``exclude``: files and folders left out of this pass (still being
    written, already done). ``cancel`` a :class:`~desktop.core.batch.CancelToken`.
    ``site``: a calibrated site's name: its profile's threshold is used and named in every row
    (:func:`desktop.core.site.resolve`: a missing or edited profile raises). The bundle's input
    statistics (learnt gate, OOD flag) apply as in ``scan``.
    """
    from desktop.core import batch
    from desktop.core.input_stats import load_for
    from desktop.core.site import resolve

    profile, _ = resolve(site, loaded.bundle)

    yield from batch.scan(
        folder,
        loaded.predictor,
        operating_point=loaded.operating_point,
        results_csv=results_csv,
        resume=True,
        heatmap_dir=heatmap_dir,
        cancel=cancel,
        workers=workers,
        exclude=exclude,
        audit=audit,
        input_stats=load_for(loaded.bundle),
        site=profile,
    )


def heatmap_path(heatmap_dir: str | os.PathLike[str], relpath: str) -> Path:
    """Where the scan writes the heatmap panel of the file ``relpath`` (the scan's own naming)."""
    from desktop.core.scan.heatmaps import heatmap_path as scan_heatmap_path

    return scan_heatmap_path(heatmap_dir, relpath)


@dataclass
class ResultsMaker:
    """Writes the SC and SR of each screened DICOM film, and queues them for sending.

    ``outbox``: a :class:`~desktop.core.dicomnet.sender.Outbox` or None.
    """

    out_dir: Path
    loaded: Any
    heatmap_dir: Path
    anonymize: bool = False
    site: str | None = None
    outbox: Any = None

    def __post_init__(self) -> None:
        from desktop.core.batch import mark_output_folder
        from desktop.core.errors import OutputError

        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.out_dir, f"cannot create the folder ({exc.strerror or exc})") from exc
        mark_output_folder(self.out_dir)  # a scan or watch of a folder above never screens our results

    def exists(self, film: str | os.PathLike[str], sop_instance_uid: str) -> bool:
        sc, sr = results_names(sop_instance_uid)
        return (self.out_dir / sc).exists() and (self.out_dir / sr).exists()

    def make(self, result: Any, film: str | os.PathLike[str] | None = None) -> WrittenResults | None:
        """The results of one row (None when it failed or the file is not a DICOM film).

        ``film``: where the file is now (default ``result.path``). Errors are
        logged and returned as None: the row stays, the film is kept.
        """
        from desktop.core.errors import CXRError

        path = Path(film if film is not None else result.path)
        if not result.ok or result.p_covid is None or not is_dicom_film(path):
            return None
        try:
            info = ResultInfo.from_result(result, model_sha256=self.loaded.sha256, site=self.site)
            written = write_results(path, self._panel(result, path), info, self.out_dir,
                                    anonymize=self.anonymize)
        except (CXRError, OSError, ValueError, TypeError, AttributeError) as exc:
            log.error("%s: DICOM results not written (%s)", path.name, exc)
            return None
        if self.outbox is not None:
            self.outbox.add(written.paths)
        return written

    def _panel(self, result: Any, film: Path) -> Any:
        """The heatmap panel the scan wrote; made again if it is missing (a crash in between)."""
        candidates = [result.heatmap] if getattr(result, "heatmap", None) else []
        candidates.append(str(heatmap_path(self.heatmap_dir, result.relpath or film.name)))
        for candidate in candidates:
            if candidate and os.path.exists(candidate):
                return panel_from_png(candidate)
        from desktop.core.imaging import load_xray
        from desktop.core.overlay import heatmap_panel

        log.info("%s: heatmap not found, computed again for the DICOM results", film.name)
        xray = load_xray(film)
        _, heat = self.loaded.predictor.explain(xray, operating_point=self.loaded.operating_point)
        return heatmap_panel(xray.pixels, heat.upsample(xray.pixels.shape))


def results_for_prediction(
    film: str | os.PathLike[str],
    xray: Any,
    prediction: Any,
    heatmap: Any,
    out_dir: str | os.PathLike[str],
    *,
    model_sha256: str | None = None,
    anonymize: bool = False,
    site: str | None = None,
) -> WrittenResults | None:
    """The DICOM results of one film screened with ``Predictor.explain`` (``report``, the GUI).

    ``model_sha256``: the bundle's ``card.sha256``. None when ``film`` is not
    a DICOM file (PNG and JPEG have no study to join).
    """
    from desktop.core.overlay import heatmap_panel

    if not is_dicom_film(film):
        return None
    panel = heatmap_panel(xray.pixels, heatmap.upsample(xray.pixels.shape))
    info = ResultInfo.from_result(prediction, model_sha256=model_sha256, site=site)
    return write_results(film, panel, info, out_dir, anonymize=anonymize)


__all__ = ["HEATMAPS_NAME", "ResultsMaker", "heatmap_path", "results_for_prediction", "screen_folder"]

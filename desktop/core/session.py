"""What the desktop window holds, without Qt: the opened studies, the shown film, the model choice, a folder scan.

The widgets in :mod:`desktop.qt` only *show* a :class:`Session` (and its
:class:`FolderScan`) and forward the user's clicks to it; every rule lives
here and is tested headless:

- studies are kept in the order opened; only the :attr:`Session.keep_loaded`
  most recently loaded films (plus the shown one) keep their pixels, the
  others are re-read when selected (:meth:`Session.evict`);
- the model, operating point and site choice: a saved default wins when the
  model has it, else the model card's default; changing the operating point
  re-decides the stored predictions without running the model;
- a folder scan: where its results are kept (:func:`~desktop.core.scan_state.user_scan_dir`,
  the same folder the CLI uses), whether it can be resumed, the counts, what
  the summary says.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .batch import ScanResult
from .filenames import display_name
from .scan_state import ModelChoice, load_saved, resume_conflict, saved_results_csv

log = logging.getLogger(__name__)

#: Opened images whose pixels stay in memory (older ones are re-read when selected).
KEEP_LOADED = 4


@dataclass
class Analysis:
    """One model's output on one image: a prediction with its heatmap, or the input gate's refusal.

    A film the gate rejected (:attr:`rejected`) has ``gate`` (its code and
    reason) and no prediction, heatmap or OOD result: no p(COVID-19) to show,
    re-decide or report.
    """

    prediction: Any
    heatmap: Any
    heat: Any  # float32 [0, 1] at display resolution (the fixed scale)
    predictor: Any = None  # the Predictor that made it (decides at other operating points)
    #: share of the heatmap inside the lung fields (None: empty map); for the panel's note
    lung_share: float | None = None
    #: the input gate's :class:`~desktop.core.gate.GateResult` (None: not gated)
    gate: Any = None
    #: the :class:`~desktop.core.ood.OODResult` of an accepted film (None: no input statistics)
    ood: Any = None

    @classmethod
    def not_assessable(cls, gate: Any, predictor: Any = None) -> Analysis:
        """The analysis of a film the input gate rejected: its reason, nothing else."""
        return cls(None, None, None, predictor, None, gate=gate)

    @property
    def rejected(self) -> bool:
        return bool(getattr(self.gate, "rejected", False))

    @property
    def caution(self) -> str | None:
        """The OOD flag's sentence for an accepted film that is unlike the training films (else None)."""
        return None if self.ood is None or self.rejected else self.ood.text

    def lung_note(self) -> tuple[str, bool]:
        """(text, warn) for the result panel: how much of the heatmap lies in the lung fields."""
        from .overlay import lung_sentence

        return lung_sentence(self.lung_share)


@dataclass
class Study:
    """An opened file: its X-ray (None until loaded, or after eviction) and the analyses by model name."""

    path: str
    xray: Any = None
    analyses: dict[str, Analysis] = field(default_factory=dict)
    error: BaseException | None = None


#: Operating-point names that stand for a site profile's threshold.
SITE_PREFIX = "site:"


def at_operating_point(prediction: Any, predictor: Any, name: Any) -> Any:
    """The same prediction decided at another operating point of its model (no model run).

    ``name``: a card operating point's name, or an OperatingPoint (a site's threshold).
    """
    if not name or name == prediction.operating_point or getattr(name, "name", None) == prediction.operating_point:
        return prediction
    op = predictor.operating_point(name)
    return replace(
        prediction, operating_point=op.name, threshold=op.threshold, label=predictor.decide(prediction.p_covid, op)
    )


def choice_for(bundle: Any, operating_point: Any) -> ModelChoice:
    """The model choice a scan with ``bundle`` at ``operating_point`` records in results.csv.

    ``operating_point``: a card operating point's name, or an OperatingPoint (a site's
    threshold, recorded as ``site:<name>``; its threshold is compared too, so results read
    before the site was calibrated again are not resumed at the new threshold).
    """
    name = getattr(operating_point, "name", operating_point)
    threshold = getattr(operating_point, "threshold", None)
    return ModelChoice(bundle.name, str(bundle.version), str(name or bundle.card.default_operating_point),
                       None if threshold is None else float(threshold))


def study_key(path: str | os.PathLike[str]) -> str:
    return str(Path(path).absolute())


class Session:
    """The window's state: studies, the shown one, the installed models and the choice among them."""

    def __init__(self, *, keep_loaded: int = KEEP_LOADED) -> None:
        self.keep_loaded = keep_loaded
        self.studies: dict[str, Study] = {}
        self.current_path: str | None = None
        self.bundles: list[Any] = []
        self.bundle_problems: list[BaseException] = []
        self.models_known = False
        self.model_name: str | None = None
        self.operating_point: str | None = None
        #: The site profile the results are read for (None until site calibration sets one).
        self.site: str | None = None
        #: That profile's threshold as an operating point (``site:<name>``), or None.
        self.site_op: Any = None

    # --- models ----------------------------------------------------------------
    def set_bundles(
        self, bundles: Sequence[Any], problems: Sequence[BaseException] = (), *,
        default_model: str = "", default_operating_point: str = "",
    ) -> None:
        """The installed models; choose the saved default model (else the card's default, else the first)."""
        self.bundles = list(bundles)
        self.bundle_problems = list(problems)
        self.models_known = True
        names = [b.name for b in self.bundles]
        wanted = default_model if default_model in names else ""
        if not wanted:
            default = next((b for b in self.bundles if b.card.default), self.bundles[0] if self.bundles else None)
            wanted = default.name if default is not None else ""
        self.model_name = wanted or None
        bundle = self.bundle
        self.operating_point = (
            self._pick_operating_point(bundle, default_operating_point, None) if bundle is not None else None
        )

    @property
    def bundle(self) -> Any:
        return next((b for b in self.bundles if b.name == self.model_name), None)

    @staticmethod
    def _pick_operating_point(bundle: Any, default: str | None, keep: str | None) -> str:
        ops = [o.name for o in bundle.card.operating_points]
        if keep in ops:
            return str(keep)
        if default in ops:
            return str(default)
        return str(bundle.card.default_operating_point)

    def set_model(self, name: str, *, default_operating_point: str = "") -> bool:
        """Choose model ``name``; keeps the operating point if the new model has one of that name."""
        if name == self.model_name or name not in [b.name for b in self.bundles]:
            return False
        self.model_name = name
        self.operating_point = self._pick_operating_point(self.bundle, default_operating_point, self.operating_point)
        return True

    def set_operating_point(self, name: str) -> bool:
        """Decide at the card's operating point ``name``, or at a site's threshold (``site:<name>``).

        A site profile that is missing, edited or made for another model is refused
        (:class:`desktop.core.site.SiteProfileError`, for the caller to show).
        """
        bundle = self.bundle
        if bundle is None:
            return False
        if name.startswith(SITE_PREFIX):
            from .site import load_profile

            profile = load_profile(name[len(SITE_PREFIX):], bundle)
            self.site, self.site_op = profile.site, profile.operating_point()
            self.operating_point = self.site_op.name
            return True
        if name not in [o.name for o in bundle.card.operating_points]:
            return False
        self.operating_point, self.site, self.site_op = name, None, None
        return True

    def site_choices(self) -> list[str]:
        """The sites calibrated for the chosen model (their profiles' names)."""
        from .site import site_names

        return site_names(self.bundle) if self.bundle is not None else []

    def model_choice(self) -> ModelChoice | None:
        """The chosen model as a scan records it (name, version, operating point)."""
        bundle = self.bundle
        if bundle is None:
            return None
        return choice_for(bundle, self.decision_point)

    # --- studies -----------------------------------------------------------------
    def open(self, paths: Iterable[str | os.PathLike[str]]) -> list[str]:
        """Add files (already open ones are kept as they are); returns their keys in order."""
        keys = []
        for path in paths:
            key = study_key(path)
            if key not in self.studies:
                self.studies[key] = Study(key)
            keys.append(key)
        return keys

    def needs_work(self, keys: Iterable[str]) -> list[str]:
        """The studies that must be (re)read or analysed with the chosen model."""
        return [
            k for k in keys
            if k in self.studies and (self.studies[k].xray is None
                                       or (self.bundle is not None and self.model_name not in self.studies[k].analyses))
        ]

    def close(self, key: str) -> bool:
        """Forget a study; returns True if it was the shown one (the caller picks the next)."""
        self.studies.pop(key, None)
        if key == self.current_path:
            self.current_path = None
            return True
        return False

    @property
    def current(self) -> Study | None:
        return self.studies.get(self.current_path or "")

    def loaded(self, key: str, xray: Any) -> Study | None:
        """A film was read: keep it, and let older films go (see :meth:`evict`)."""
        study = self.studies.get(key)
        if study is None:  # closed meanwhile
            return None
        study.xray = xray
        study.error = None
        self.evict()
        return study

    def analysed(self, key: str, model: str, analysis: Analysis) -> Study | None:
        study = self.studies.get(key)
        if study is not None:
            study.analyses[model] = analysis
        return study

    def evict(self) -> list[str]:
        """Drop the pixels of all but the ``keep_loaded`` newest loaded films (never the shown one)."""
        loaded = [s for s in self.studies.values() if s.xray is not None and s.path != self.current_path]
        dropped = loaded[: max(0, len(loaded) - self.keep_loaded)]
        for study in dropped:
            study.xray = None
        return [s.path for s in dropped]

    def analysis(self, study: Study | None = None) -> Analysis | None:
        study = study if study is not None else self.current
        if study is None or self.model_name is None:
            return None
        return study.analyses.get(self.model_name)

    @property
    def decision_point(self) -> Any:
        """What predictions are decided at: the site's OperatingPoint, else the card's operating point name."""
        return self.site_op or self.operating_point

    def prediction(self, study: Study | None = None) -> Any:
        """The study's prediction with the chosen model, at the chosen operating point.

        None if not analysed yet, and for a film the input gate rejected (see :meth:`analysis`).
        """
        analysis = self.analysis(study)
        if analysis is None or analysis.prediction is None:
            return None
        return at_operating_point(analysis.prediction, analysis.predictor, self.decision_point)

    def list_label(self, key: str) -> str:
        """``name.png`` or ``name.png / POSITIVE 87%`` as the list of opened images shows it."""
        study = self.studies.get(key)
        name = Path(key).name
        bundle = self.bundle
        analysis = self.analysis(study) if study is not None else None
        if analysis is not None and analysis.rejected:
            return f"{name}\n   not assessable"
        pred = self.prediction(study) if study is not None else None
        if pred is None or bundle is None:
            return name
        mark = "POSITIVE" if pred.label == bundle.card.positive_class else "negative"
        return f"{name}\n   {mark}  {100 * pred.p_covid:.0f}%"


class FolderScan:
    """One folder's scan as the Folder scan tab shows it: the rows, the counts, the resume rule."""

    def __init__(self, folder: str | os.PathLike[str], results_csv: str | os.PathLike[str] | None = None) -> None:
        self.folder = os.fspath(folder)
        self.results_csv = Path(results_csv) if results_csv is not None else saved_results_csv(folder)
        self.rows: dict[str, ScanResult] = {}
        self.positive_class = "covid"
        #: True after a scan of this folder ran to the end (nothing left to resume).
        self.finished = False
        self.cancelled = False

    def load_saved(self) -> list[ScanResult]:
        """Read the saved results (a scan made before, by the GUI or the CLI)."""
        rows = load_saved(self.folder, self.results_csv)
        self.rows = {}
        self.add(rows)
        self.finished = self._finished_marked()
        return rows

    @property
    def _marker(self) -> Path:
        return self.results_csv.with_name("." + self.results_csv.name + ".finished")  # hidden: scans skip it

    def mark_finished(self) -> None:
        """The scan ran to the end: nothing to resume, also after the window is closed and opened again."""
        from .fileio import atomic_write_text

        self.finished = True
        try:
            atomic_write_text(self._marker, "the scan of this folder ran to the end\n", overwrite=True)
        except Exception as exc:  # the marker only spares a needless Resume: never fail the scan for it
            log.warning("%s: not written (%s)", self._marker, exc)

    def _finished_marked(self) -> bool:
        """A marker newer than the results file (a later scan appended rows after it: not finished)."""
        try:
            return self._marker.stat().st_mtime_ns >= self.results_csv.stat().st_mtime_ns
        except OSError:
            return False

    def add(self, results: Iterable[ScanResult]) -> None:
        for r in results:
            self.rows[r.relpath or r.path] = r

    def clear(self) -> None:
        self.rows = {}
        self.finished = False
        self.cancelled = False

    def kind(self, r: ScanResult) -> str:
        if r.status == "rejected":  # the input gate: not a chest film, no result given
            return "not_assessable"
        if not r.ok:
            return "failed"
        return "positive" if r.label == self.positive_class else "negative"

    def counts(self) -> dict[str, int]:
        c = {"positive": 0, "negative": 0, "failed": 0, "not_assessable": 0}
        for r in self.rows.values():
            c[self.kind(r)] += 1
        return c

    def can_resume(self) -> bool:
        """Resume makes sense when results are saved and the last scan did not run to the end."""
        return not self.finished and self.results_csv.is_file()

    def resume_conflict(self, choice: ModelChoice) -> str | None:
        return resume_conflict(self.rows.values(), choice)

    def summary(self, *, ignored: Sequence[str] = (), where: bool = True) -> str:
        """``Done: 30 file(s) checked, 3 could not be read.`` (or Cancelled...), naming ignored documents.

        ``where``: end with the folder the results are saved in.
        """
        from .scan_state import name_list

        n = len(self.rows)
        counts = self.counts()
        failed = counts["failed"]
        if self.cancelled:
            text = f"Cancelled: {n} file(s) checked so far ({failed} could not be read). Press Resume to check the rest."
        else:
            text = f"Done: {n} file(s) checked, {failed} could not be read."
        if counts["not_assessable"]:
            text += f" {counts['not_assessable']} not assessable (not a chest film)."
        if ignored:
            text += f" Not images, left out: {name_list(list(ignored))}."
        return text + (f" Results are saved in {self.results_csv.parent}." if where else "")


def reason(r: ScanResult) -> str:
    """Why a file failed, without its path (the table's File column shows it)."""
    if r.ok:
        return ""
    text = r.error or r.error_kind or "unknown problem"
    names = (r.path, display_name(r.path), r.relpath or "", display_name(r.relpath or ""))
    for prefix in (name + ": " for name in names):
        if prefix.strip(": ") and text.startswith(prefix):
            text = text[len(prefix):]
    return text


__all__ = ["KEEP_LOADED", "SITE_PREFIX", "Analysis", "FolderScan", "Session", "Study", "at_operating_point", "choice_for", "reason", "study_key"]

"""What the model card carries beyond the export itself: validation scores, sensitivity by threshold,
operating points re-chosen on validation, and the exported model's figures on the check set.

A site that calibrates its own threshold (``cxr-screener calibrate``) needs the sensitivity to expect
at *any* threshold: the card carries every validation score (p(covid), label and an anonymous patient
group for the bootstrap) under ``validation_scores``, and a readable sensitivity/specificity-by-threshold
table with patient-bootstrap 95% CIs under ``metrics.validation_by_threshold``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from .data import Dataset
from .metrics import OperatingPoint, choose_operating_points, evaluate_predictions
from .newsite import CHECK_SOURCE, score_summary

log = logging.getLogger(__name__)

#: Thresholds of the card's readable table (the scores themselves allow any other).
TABLE_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 1.0, 0.05))


def validation_scores(y: np.ndarray, p: np.ndarray, patients: np.ndarray) -> dict[str, Any]:
    """The card's ``validation_scores``: p(covid) (6 decimals), label (1 = covid) and patient group per
    validation image, in a fixed order (by score). Patient groups are integers, not the collections' IDs."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=np.float64)
    _, group = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    order = np.argsort(p, kind="mergesort")
    return {
        "description": "p(covid) of every validation image of the exported model (the probabilities the app "
                       "shows), its label (1 = covid, 0 = normal) and its patient group (images of one patient "
                       "share a group; resample groups for bootstrap CIs). Sensitivity at threshold t = share "
                       "of label-1 scores >= t.",
        "p_covid": [round(float(v), 6) for v in p[order]],
        "label": [int(v) for v in y[order]],
        "patient_group": [int(v) for v in group[order]],
    }


def by_threshold(y: np.ndarray, p: np.ndarray, patients: np.ndarray, thresholds: tuple[float, ...] = TABLE_THRESHOLDS,
                 *, n_boot: int = 500) -> dict[str, Any]:
    """Sensitivity and specificity (patient-bootstrap 95% CIs) on validation at each threshold."""
    out: dict[str, Any] = {}
    for t in thresholds:
        ev = evaluate_predictions(y, p, patients, float(t), n_boot=n_boot)
        out[f"{t:.2f}"] = {k: ev[k] for k in ("sensitivity", "sensitivity_ci", "specificity", "specificity_ci")}
    return out


def sensitivity_at(scores: dict[str, Any], threshold: float) -> float:
    """Validation sensitivity at ``threshold`` from a card's ``validation_scores``."""
    p = np.asarray(scores["p_covid"], dtype=np.float64)
    y = np.asarray(scores["label"], dtype=int)
    return float((p[y == 1] >= threshold).mean())


def card_figures(model: Any, dataset: Dataset, *, check: Dataset | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, n_boot: int = 1000) -> dict[str, Any]:
    """Re-choose the model's operating points on validation (the current rule; sets
    ``model.operating_points``) and compute the card's additions. Returns ``{"validation_scores",
    "validation_by_threshold", "check_set"}`` (``check_set``: the exported model's share of the check
    set's normals called COVID-19 and their mean p(covid), at every operating point)."""
    from .train import POSITIVE, new_site_points, predict_dataset

    va = model.operating_set
    out: dict[str, Any] = {}
    if len(va):
        y = dataset.labels(POSITIVE)[va]
        pats = dataset.patients()[va]
        p = predict_dataset(model, dataset, va, cache_dir=cache_dir)
        if model.operating_index:
            sv = np.asarray(model.split.val, dtype=int)
            pv = predict_dataset(model, dataset, sv, cache_dir=cache_dir) if len(sv) else np.zeros(0)
            model.operating_points = new_site_points(dataset, va, p, sv, pv, n_boot=n_boot)
        elif len(set(y.tolist())) == 2:
            model.operating_points = choose_operating_points(y, p, pats, n_boot=n_boot)
        out["validation_scores"] = validation_scores(y, p, pats)
        if model.operating_index:
            srcs = sorted({dataset.records[i].source for i in va})
            out["validation_scores"]["description"] += (
                f" Here the validation images are the films the operating points were chosen on: {len(va)} films "
                f"of {', '.join(srcs)}, sources the model was not trained on.")
        out["validation_by_threshold"] = by_threshold(y, p, pats, n_boot=min(n_boot, 500))
    if check is not None:
        pc = predict_dataset(model, check, cache_dir=cache_dir)
        name = check.records[0].source if check.records else CHECK_SOURCE
        out["check_set"] = {
            "name": name, "folder": os.path.basename(os.path.dirname(check.root)) + "/" + os.path.basename(check.root),
            "description": "normal films of hospitals absent from training (never trained on): the share called "
                           "COVID-19 is the false-positive rate a new site of that kind should expect",
            "at_operating_points": {op.name: score_summary(pc, check.patients(), op.threshold, n_boot)
                                    for op in model.operating_points}}
    return out


def operating_points_ordered(points: list[OperatingPoint]) -> bool:
    """True when ``high_specificity``'s threshold is above ``high_sensitivity``'s (as their names promise)."""
    ops = {op.name: op.threshold for op in points}
    return "high_specificity" not in ops or "high_sensitivity" not in ops or \
        ops["high_specificity"] > ops["high_sensitivity"]

"""Leave-one-source-out and random-split evaluation of recipes, and the README comparison table.

Folds (several sources hold one class only, so sources are held out in
groups that contain both classes, or whose class is unseen in training):

- ``F1``: test = radiographydb (both classes, one processing pipeline).
- ``F2``: test = siim (covid) + shenzhen (normal): both unseen.
- ``F3``: test = ieee8023 + figure1 (+ tbx11k): covid from papers/websites, 12 normals.
- ``F4``: train on radiographydb only, test on every other source: the closest
  thing here to "other hospitals"; its PA-only subset (ieee8023/figure1 PA covid vs
  shenzhen/ieee8023 PA normals) mimics the hard external PA-films test.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import Dataset, patient_split
from .metrics import evaluate_predictions, plot_roc
from .newsite import fold_new_site, new_site_table, normals_by_source_table
from .recipes import Recipe
from .train import POSITIVE, NoTrainingSourceError, TrainedModel, predict_dataset, train

log = logging.getLogger(__name__)

LOSO_FOLDS: dict[str, tuple[str, ...]] = {
    "F1": ("radiographydb",),
    "F2": ("siim", "shenzhen"),
    "F3": ("ieee8023", "figure1", "tbx11k"),
}
TRAIN_ONLY_FOLD = ("F4", "radiographydb")


def is_pa(view: str) -> bool:
    v = view.upper()
    return v.startswith("PA")


def fold_splits(dataset: Dataset, seed: int = 0) -> dict[str, Any]:
    """The LOSO splits that this dataset's sources allow (folds whose sources are absent are skipped)."""
    sources = set(dataset.sources().tolist())
    out = {}
    for name, held in LOSO_FOLDS.items():
        present = tuple(s for s in held if s in sources)
        if present and sources - set(present):
            out[name] = patient_split(dataset, holdout_sources=present, val_fraction=0.15, seed=seed)
    name, keep = TRAIN_ONLY_FOLD
    if keep in sources and len(sources) > 1:
        out[name] = patient_split(dataset, holdout_sources=sorted(sources - {keep}), val_fraction=0.15, seed=seed)
    return out


def summarize_test(model: TrainedModel, dataset: Dataset, index: Sequence[int], p: np.ndarray,
                   *, n_boot: int = 1000) -> dict[str, Any]:
    """Metrics on a test index: overall (threshold = the high-sensitivity point), per source, PA only."""
    idx = np.asarray(index)
    y = dataset.labels(POSITIVE)[idx]
    pats = dataset.patients()[idx]
    srcs = dataset.sources()[idx]
    views = dataset.views()[idx]
    ops = {op.name: op.threshold for op in model.operating_points}
    thr = ops.get("high_sensitivity", 0.5)
    res: dict[str, Any] = {"overall": evaluate_predictions(y, p, pats, thr, n_boot=n_boot)}
    res["overall"]["accuracy_at_0.5"] = float(((p >= 0.5) == (y == 1)).mean())
    res["at_0.5"] = {k: v for k, v in evaluate_predictions(y, p, pats, 0.5, n_boot=n_boot).items()
                     if k.startswith(("accuracy", "sensitivity", "specificity"))}
    res["overall"]["balanced_threshold_metrics"] = {
        k: v for k, v in evaluate_predictions(y, p, pats, ops.get("balanced", 0.5), n_boot=0).items()
        if k in ("accuracy", "sensitivity", "specificity", "threshold")}
    pa = np.array([is_pa(v) for v in views])
    if pa.any() and len(set(y[pa].tolist())) == 2:
        res["pa_only"] = evaluate_predictions(y[pa], p[pa], pats[pa], thr, n_boot=n_boot)
    groups: dict[str, Any] = {}
    for s in sorted(set(srcs.tolist())):
        for lab, name in ((1, "covid"), (0, "normal")):
            m = (srcs == s) & (y == lab)
            if m.any():
                groups[f"{s}/{name}"] = {"n": int(m.sum()), "mean_p_covid": float(p[m].mean()),
                                         "frac_called_covid": float((p[m] >= thr).mean())}
    res["by_source"] = groups
    return res


def run_protocol(dataset: Dataset, recipe: Recipe, *, protocol: str, architecture: str = "mobilenet",
                 weights: str | None = "imagenet", cache_dir: str | os.PathLike[str] | None = None,
                 seed: int = 0, n_boot: int = 1000, show_progress: bool = False,
                 plot_dir: str | os.PathLike[str] | None = None,
                 folds: Sequence[str] | None = None, input_size: int = 224,
                 check: Dataset | None = None) -> dict[str, Any]:
    """``protocol``: ``"random"`` (patient-level 70/15/15) or ``"loso"`` (the folds of :func:`fold_splits`,
    or only ``folds``). Every fold also gets its new-site figures (``new_site``: on the test sources absent
    from its training, and on ``check``, normals never trained on; see :mod:`model_training.newsite`)."""
    if protocol == "random":
        splits = {"random": patient_split(dataset, val_fraction=0.15, test_fraction=0.15, seed=seed)}
    elif protocol == "loso":
        splits = {k: v for k, v in fold_splits(dataset, seed).items() if folds is None or k in folds}
    else:
        raise ValueError(f"protocol must be 'random' or 'loso'. Received: protocol={protocol!r}")
    out: dict[str, Any] = {"recipe": recipe.to_dict(), "protocol": protocol, "folds": {}}
    pooled_y, pooled_p, pooled_pat = [], [], []
    for name, split in splits.items():
        t0 = time.monotonic()
        try:
            model = train(dataset, recipe, split, architecture=architecture, weights=weights,
                          cache_dir=cache_dir, seed=seed, show_progress=show_progress, input_size=input_size)
        except NoTrainingSourceError as exc:
            out.setdefault("skipped_folds", {})[name] = str(exc)
            log.warning("%s %s skipped: %s", recipe.name, name, exc)
            continue
        p = predict_dataset(model, dataset, np.array(split.test), cache_dir=cache_dir)
        res = summarize_test(model, dataset, split.test, p, n_boot=n_boot)
        res["held_out"] = model.split.description
        res["n_train"] = len(model.split.train)
        res["seconds"] = round(time.monotonic() - t0, 1)
        res["temperature"] = model.temperature
        res["operating_points"] = [op.to_dict() for op in model.operating_points]
        check_scores = None
        if check is not None:
            check_scores = (predict_dataset(model, check, cache_dir=cache_dir), check.patients())
        res["new_site"] = fold_new_site(dataset, model.split, p, res["overall"]["threshold"], check=check_scores,
                                        n_boot=n_boot)
        if model.operating_index:  # the threshold came from other films of these (untrained) sources
            res["new_site"]["operating_point_sources"] = sorted(
                {dataset.records[i].source for i in model.operating_index})
        out["folds"][name] = res
        y = dataset.labels(POSITIVE)[np.array(split.test)]
        if plot_dir is not None and len(set(y.tolist())) == 2:
            Path(plot_dir).mkdir(parents=True, exist_ok=True)
            plot_roc(Path(plot_dir) / f"roc_{recipe.name}_{name}.png", {name: (y, p)},
                     title=f"{recipe.name}: {name}")
        if protocol == "loso" and name in LOSO_FOLDS:
            pooled_y.append(y)
            pooled_p.append(p)
            pooled_pat.append(dataset.patients()[np.array(split.test)])
        log.info("%s %s: AUROC %.4f", recipe.name, name, res["overall"]["auroc"])
    if pooled_y and len(pooled_y) == len([f for f in LOSO_FOLDS if f in splits]):
        # F1-F3 test sets are disjoint and cover every image once
        yy, pp, pat = np.concatenate(pooled_y), np.concatenate(pooled_p), np.concatenate(pooled_pat)
        out["pooled_F1_F3"] = evaluate_predictions(yy, pp, pat, 0.5, n_boot=n_boot)
    return out


def fmt_ci(res: dict[str, Any], key: str) -> str:
    v = res.get(key, float("nan"))
    ci = res.get(f"{key}_ci", [float("nan")] * 2)
    if not np.isfinite(v):
        return "n/a"
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def comparison_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per recipe; random split and LOSO folds, with 95% CIs."""
    lines = ["| recipe | random split: AUROC | random split: accuracy (p >= 0.5) | random split: sens / spec "
             "at the high-sensitivity point | F1 radiographydb | F2 siim+shenzhen | F3 ieee8023+figure1 | "
             "F4 trained on radiographydb only | F4, PA films only |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        rnd_fold = r.get("random", {}).get("folds", {}).get("random", {})
        rnd = rnd_fold.get("overall", {})
        loso = r.get("loso", {}).get("folds", {})
        cells = [name, fmt_ci(rnd, "auroc") if rnd else "n/a",
                 fmt_ci(rnd_fold["at_0.5"], "accuracy") if "at_0.5" in rnd_fold else "n/a",
                 f"{rnd['sensitivity']:.3f} / {rnd['specificity']:.3f}" if rnd else "n/a"]
        for f in ("F1", "F2", "F3", "F4"):
            cells.append(fmt_ci(loso[f]["overall"], "auroc") if f in loso else "n/a")
        f4 = loso.get("F4", {})
        cells.append(fmt_ci(f4["pa_only"], "auroc") if f4.get("pa_only") else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def normals_table(results: dict[str, dict[str, Any]]) -> str:
    """Mean p(covid) of the normals of each source when that source was held out (LOSO)."""
    lines = ["| recipe | fold | group | n | mean p(covid) | called covid (high-sens. point) |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        for fold, res in r.get("loso", {}).get("folds", {}).items():
            for g, v in res["by_source"].items():
                lines.append(f"| {name} | {fold} | {g} | {v['n']} | {v['mean_p_covid']:.3f} | "
                             f"{v['frac_called_covid']:.3f} |")
    return "\n".join(lines) + "\n"


def compare(dataset: Dataset, recipes: Sequence[Recipe], *, out_dir: str | os.PathLike[str],
            architecture: str = "mobilenet", weights: str | None = "imagenet",
            cache_dir: str | os.PathLike[str] | None = None, seed: int = 0, n_boot: int = 1000,
            show_progress: bool = False, merge: bool = True,
            protocols: Sequence[str] = ("random", "loso"), folds: Sequence[str] | None = None,
            input_size: int = 224, check: Dataset | None = None) -> dict[str, Any]:
    """Run every recipe on the random split and LOSO; write ``comparison.json`` and ``comparison.md``
    (``merge``: results of recipes already in ``comparison.json`` are kept, so recipes can be run apart)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    if merge and (out / "comparison.json").is_file():  # keep recipes compared earlier (same data/backbone)
        results = json.loads((out / "comparison.json").read_text())
    for recipe in recipes:
        results.setdefault(recipe.name, {})
        for proto in protocols:
            res = run_protocol(
                dataset, recipe, protocol=proto, architecture=architecture, weights=weights, cache_dir=cache_dir,
                seed=seed, n_boot=n_boot, show_progress=show_progress, plot_dir=out, folds=folds,
                input_size=input_size, check=check)
            if folds is not None and proto == "loso" and "loso" in results[recipe.name]:
                merged = results[recipe.name]["loso"]  # add these folds to the ones run before
                merged["folds"].update(res["folds"])
                if "pooled_F1_F3" in res:  # this run covered F1-F3 itself
                    merged["pooled_F1_F3"] = res["pooled_F1_F3"]
                res = merged
            results[recipe.name][proto] = res
            _write(out, results, dataset, architecture, weights, seed, n_boot)  # after each: partial results kept
    _write(out, results, dataset, architecture, weights, seed, n_boot)
    return results


def _write(out: Path, results: dict[str, Any], dataset: Dataset, architecture: str, weights: str | None,
           seed: int, n_boot: int) -> None:
    order = ["linear_probe", "paper", "paper_aug", "ours_frozen", "ours", "ours_spatial", "ours_mixed", "ours_xsite"]
    results = dict(sorted(results.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
    (out / "comparison.json").write_text(json.dumps(results, indent=1, default=float))
    md = ["# Recipe comparison", "",
          f"Data: {len(dataset)} images, {dataset.summary()['patients']} patients; backbone {architecture}, "
          f"weights {Path(weights).name if weights and os.path.exists(weights) else weights}; seed {seed}; "
          f"95% CIs: {n_boot} bootstrap resamples of patients. Generated by `python -m model_training compare`.",
          "", "## What a new site sees (first selection criterion), ranked", "",
          "False-positive rate = share of *normal* films called COVID-19. Held-out = the sources a fold "
          "left out of training (LOSO); JSRT = 93 normal films of Japanese hospitals that no model is "
          "trained on (the check set). Default point = the validation-chosen high-sensitivity threshold of "
          "each fold's own model. Criterion: share of held-out normals above the threshold at which the "
          "held-out COVID-19 films have sensitivity 0.95, mean over the LOSO folds with >= 50 held-out "
          "normals that every ranked recipe has (a recipe may skip a fold); ties broken by random-split AUROC. JSRT is reported, never used to select. Recipes without these figures were not re-run since they were "
          "added.", "", new_site_table(results),
          "", "## AUROC (and random-split accuracy) with 95% CIs; LOSO columns are AUROC", "", comparison_table(results),
          "", "## Normals of every new site: mean p(covid) and share called COVID-19 (95% CIs)", "",
          normals_by_source_table(results),
          "", "## Scores by source in the held-out folds", "", normals_table(results)]
    (out / "comparison.md").write_text("\n".join(md))

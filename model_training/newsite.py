"""What a clinic the model has never seen can expect: new-site figures, the check set, model selection.

A model trained on these collections partly scores *where a film comes from*: a normal film of an
unfamiliar style reads as COVID-19. The figures here measure that on films of sources that were not
in training (held out by leave-one-source-out, and the JSRT normals, which no model is ever trained on):

- the false-positive rate (share of normals called COVID-19) at the model's validation-chosen default
  point, per held-out source and on the check set, with patient-bootstrap 95% CIs;
- the sensitivity at that point on the held-out COVID-19 films;
- the mean p(covid) of the normals of every source (how far an unfamiliar style shifts the scores);
- the false-positive rate at the threshold where the held-out COVID-19 sensitivity is 0.95 (chosen in
  hindsight on the held-out films): how well the model *ranks* new-site normals below COVID films,
  whatever threshold a site later calibrates. On the held-out sources (never on the check set, which
  stays a check) this is the first criterion of :func:`selection_key`.

Every figure is computed on sources absent from the model's training and validation data;
:func:`new_site_figures` refuses a test set that shares a source with training.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import Dataset, Record
from .metrics import bootstrap_indices

log = logging.getLogger(__name__)

#: Source name of the check set's films (never in training).
CHECK_SOURCE = "jsrt"
#: Sensitivity at which the hindsight new-site false-positive rate is read.
SENSITIVITY_TARGET = 0.95
#: Sources with at least this many normals count for the "mean p(covid) within 0.15" target.
MIN_NORMALS = 50


def default_check_dir(data_root: str | os.PathLike[str]) -> Path | None:
    """``<data_root>/../jsrt/normal`` (the shared layout) when it exists."""
    p = Path(data_root).resolve().parent / "jsrt" / "normal"
    return p if p.is_dir() else None


def read_check_set(folder: str | os.PathLike[str], source: str = CHECK_SOURCE) -> Dataset:
    """The check set's normal films (PNG/JPEG/DICOM in ``folder``) as a one-class :class:`Dataset`.

    Every file is its own patient; sha256 values come from ``folder/../MANIFEST.tsv`` when it lists them.
    """
    from .data import IMAGE_SUFFIXES, DatasetError

    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(root, "check-set folder not found", "give a folder of normal films")
    shas: dict[str, str] = {}
    manifest = root.parent / "MANIFEST.tsv"
    if manifest.is_file():
        rows = csv.DictReader(manifest.read_text(encoding="utf-8").splitlines(), delimiter="\t")
        for row in rows:
            name = row.get("filename") or ""
            sha = row.get("sha256") or ""
            if name and len(sha) == 64:
                shas[Path(name).name] = sha
    recs = tuple(
        Record(path=str(p), filename=p.name, label="normal", source=source, patient_id=f"{source}:{p.name}",
               view="PA", sha256=shas.get(p.name, ""))
        for p in sorted(root.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not recs:
        raise DatasetError(root, "no images in the check-set folder")
    return Dataset(root=str(root), records=recs)


def _boot_ci(values: np.ndarray, patients: np.ndarray, stat: Any, n_boot: int, seed: int = 0) -> list[float]:
    if n_boot <= 0 or len(values) < 2:
        return [float("nan"), float("nan")]
    vals = [stat(values[idx]) for idx in bootstrap_indices(patients, n_boot, seed)]
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def rate(called: np.ndarray, patients: np.ndarray, n_boot: int) -> dict[str, Any]:
    """Share of ``called`` (bool) with a patient-bootstrap 95% CI."""
    called = np.asarray(called, dtype=bool)
    if not len(called):
        return {"n": 0, "rate": float("nan"), "rate_ci": [float("nan")] * 2}
    return {"n": int(len(called)), "rate": float(called.mean()),
            "rate_ci": _boot_ci(called.astype(float), patients, np.mean, n_boot)}


def score_summary(p: np.ndarray, patients: np.ndarray, threshold: float, n_boot: int) -> dict[str, Any]:
    """n, share called COVID-19 at ``threshold`` and mean p(covid), each with a 95% CI."""
    r = rate(p >= threshold, patients, n_boot)
    return {"n": r["n"], "called_covid": r["rate"], "called_covid_ci": r["rate_ci"],
            "mean_p_covid": float(np.mean(p)) if len(p) else float("nan"),
            "mean_p_covid_ci": _boot_ci(p, patients, np.mean, n_boot)}


def threshold_at_sensitivity(p_pos: np.ndarray, target: float = SENSITIVITY_TARGET) -> float:
    """The highest threshold at which at least ``target`` of ``p_pos`` is called positive."""
    s = np.sort(np.asarray(p_pos, dtype=np.float64))[::-1]
    if not len(s):
        return float("nan")
    k = int(np.ceil(target * len(s))) - 1
    return float(s[min(max(k, 0), len(s) - 1)])


def new_site_figures(y: np.ndarray, p: np.ndarray, sources: np.ndarray, patients: np.ndarray, threshold: float,
                     *, train_sources: Iterable[str], check: tuple[np.ndarray, np.ndarray] | None = None,
                     check_name: str = CHECK_SOURCE, n_boot: int = 1000) -> dict[str, Any]:
    """New-site figures of one model on a test set of sources it was not trained on (see module doc).

    ``y`` 1 = COVID-19; ``threshold`` the model's validation-chosen default point; ``train_sources`` every
    source in its training and validation data; ``check`` = (p, patients) of the check-set normals.
    Raises ``ValueError`` when a test image comes from a training source.
    """
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=np.float64)
    sources, patients = np.asarray(sources).astype(str), np.asarray(patients).astype(str)
    trained = sorted(set(train_sources))
    shared = sorted(set(sources.tolist()) & set(trained))
    if shared:
        raise ValueError(f"new-site figures need sources absent from training; these were trained on: {shared}")
    if check_name in trained:
        raise ValueError(f"the check set {check_name!r} was in training")
    out: dict[str, Any] = {"threshold": float(threshold), "trained_on": trained,
                           "held_out_sources": sorted(set(sources.tolist())), "normals_by_source": {},
                           "covid_by_source": {}}
    for s in out["held_out_sources"]:
        for lab, key in ((0, "normals_by_source"), (1, "covid_by_source")):
            m = (sources == s) & (y == lab)
            if m.any():
                out[key][s] = score_summary(p[m], patients[m], threshold, n_boot=min(n_boot, 500))
    neg, pos = y == 0, y == 1
    out["held_out_normals"] = score_summary(p[neg], patients[neg], threshold, n_boot)
    sens = rate(p[pos] >= threshold, patients[pos], n_boot)
    out["held_out_covid_sensitivity"] = {"n": sens["n"], "sensitivity": sens["rate"],
                                         "sensitivity_ci": sens["rate_ci"]}
    if check is not None:
        out["check_set"] = {"name": check_name, **score_summary(np.asarray(check[0], np.float64),
                                                                 np.asarray(check[1]).astype(str), threshold, n_boot)}
    if pos.any():
        t95 = threshold_at_sensitivity(p[pos])
        at = {"threshold": t95, "held_out_normals": rate(p[neg] >= t95, patients[neg], n_boot)["rate"] if neg.any()
              else float("nan")}
        if check is not None:
            at["check_set"] = float((np.asarray(check[0]) >= t95).mean())
        pooled = np.concatenate([p[neg], np.asarray(check[0]) if check is not None else np.zeros(0)])
        at["all_new_site_normals"] = float((pooled >= t95).mean()) if len(pooled) else float("nan")
        out[f"at_sensitivity_{SENSITIVITY_TARGET:.2f}"] = at
    return out


def fold_new_site(dataset: Dataset, split: Any, p_test: np.ndarray, threshold: float, *,
                  check: tuple[np.ndarray, np.ndarray] | None, n_boot: int = 1000) -> dict[str, Any]:
    """:func:`new_site_figures` for a split's test set, restricted to the sources absent from its training
    and validation parts (a random split has none: only the check set is then measured)."""
    test = np.asarray(split.test)
    srcs = dataset.sources()
    trained = {str(srcs[i]) for i in (*split.train, *split.val)}
    keep = np.array([str(srcs[i]) not in trained for i in test], dtype=bool)
    idx = test[keep]
    return new_site_figures(dataset.labels()[idx], np.asarray(p_test)[keep], srcs[idx], dataset.patients()[idx],
                            threshold, train_sources=trained, check=check, n_boot=n_boot)


def summarize_recipe(loso_folds: Mapping[str, Any], random_fold: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One recipe's new-site summary over its LOSO folds (each fold's ``new_site`` entry).

    ``criterion``: mean over the folds with at least :data:`MIN_NORMALS` held-out normals of the share of
    them called COVID-19 at the threshold giving held-out COVID-19 sensitivity 0.95 (lower is better). The
    check set is reported, never used to select (it stays a check).
    """
    key = f"at_sensitivity_{SENSITIVITY_TARGET:.2f}"
    crit, sens, fpr, check_fpr, means = [], [], [], [], {}
    crit_by_fold: dict[str, float] = {}
    for name, fold in loso_folds.items():
        ns = fold.get("new_site")
        if not ns:
            continue
        if key in ns and ns["held_out_normals"]["n"] >= MIN_NORMALS and np.isfinite(ns[key]["held_out_normals"]):
            crit.append(ns[key]["held_out_normals"])
            crit_by_fold[name] = float(ns[key]["held_out_normals"])
        if ns["held_out_covid_sensitivity"]["n"]:
            sens.append(ns["held_out_covid_sensitivity"]["sensitivity"])
        if ns["held_out_normals"]["n"] >= MIN_NORMALS:
            fpr.append(ns["held_out_normals"]["called_covid"])
        if "check_set" in ns:
            check_fpr.append(ns["check_set"]["called_covid"])
        for s, v in ns["normals_by_source"].items():
            if v["n"] >= MIN_NORMALS:
                means[f"{name}:{s}"] = v["mean_p_covid"]
    out: dict[str, Any] = {
        "criterion_fpr_at_sens95": float(np.mean(crit)) if crit else float("nan"),
        "criterion_by_fold": crit_by_fold,
        "loso_sensitivity_min": float(min(sens)) if sens else float("nan"),
        "loso_sensitivity_mean": float(np.mean(sens)) if sens else float("nan"),
        "loso_sensitivity_max": float(max(sens)) if sens else float("nan"),
        "loso_fpr_max": float(max(fpr)) if fpr else float("nan"),
        "check_fpr_loso_mean": float(np.mean(check_fpr)) if check_fpr else float("nan"),
        "normals_mean_p_by_heldout_source": means,
    }
    if random_fold and random_fold.get("new_site", {}).get("check_set"):
        out["check_fpr_random_split_model"] = random_fold["new_site"]["check_set"]["called_covid"]
        out["check_mean_p_random_split_model"] = random_fold["new_site"]["check_set"]["mean_p_covid"]
    return out


def selection_key(summary: Mapping[str, Any], auroc: float) -> tuple[float, float]:
    """Sort key (ascending = better): new-site FPR at sensitivity 0.95 first, then AUROC (higher better)."""
    c = summary.get("criterion_fpr_at_sens95", float("nan"))
    return (c if np.isfinite(c) else 9.0, -(auroc if np.isfinite(auroc) else 0.0))


def _pct(v: Any, ci: Sequence[float] | None = None) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    s = f"{100 * v:.1f}%"
    if ci is not None and all(np.isfinite(c) for c in ci):
        s += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return s


def new_site_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: one row per recipe, ranked by :func:`selection_key`, with the new-site figures."""
    rows = []
    for name, r in results.items():
        folds = r.get("loso", {}).get("folds", {})
        rnd = r.get("random", {}).get("folds", {}).get("random", {})
        if not any(f.get("new_site") for f in folds.values()) and not rnd.get("new_site"):
            continue
        rows.append((name, summarize_recipe(folds, rnd), folds, rnd))
    # recipes are ranked on the folds every one of them has (a recipe may skip folds, e.g. ours_mixed F1)
    common = set.intersection(*(set(r[1]["criterion_by_fold"]) for r in rows)) if rows else set()
    ranked = []
    for name, summ, folds, rnd in rows:
        vals = [summ["criterion_by_fold"][k] for k in sorted(common)]
        summ = {**summ, "criterion_fpr_at_sens95": float(np.mean(vals)) if vals else float("nan")}
        ranked.append((selection_key(summ, rnd.get("overall", {}).get("auroc", float("nan"))), name, summ, folds, rnd))
    ranked.sort(key=lambda t: t[0])
    lines = [f"| rank | recipe | new-site FPR at held-out sensitivity 0.95 (criterion; mean of folds "
             f"{', '.join(sorted(common)) or 'n/a'}) | "
             "JSRT normals called COVID (random-split model, default point) | JSRT, LOSO models F1 / F2 / F4 | "
             "held-out normals called COVID, F1 radiographydb / F2 shenzhen / F4 | "
             "held-out COVID sensitivity at the default point, F1 / F2 / F4 | random-split AUROC |",
             "|---|---|---|---|---|---|---|---|"]
    for rank, (_, name, summ, folds, rnd) in enumerate(ranked, 1):
        def called(fold: str, part: str, ci: bool = False, folds: Mapping[str, Any] = folds) -> str:
            ns = folds.get(fold, {}).get("new_site")
            if not ns or part not in ns:
                return "n/a"
            return _pct(ns[part]["called_covid"], ns[part]["called_covid_ci"] if ci else None)

        def sens(fold: str, folds: Mapping[str, Any] = folds) -> str:
            ns = folds.get(fold, {}).get("new_site")
            if not ns or not ns["held_out_covid_sensitivity"]["n"]:
                return "n/a"
            return f"{ns['held_out_covid_sensitivity']['sensitivity']:.3f}"

        chk = rnd.get("new_site", {}).get("check_set")
        auroc = rnd.get("overall", {}).get("auroc", float("nan"))
        lines.append(
            f"| {rank} | {name} | {_pct(summ['criterion_fpr_at_sens95'])} | "
            f"{_pct(chk['called_covid'], chk['called_covid_ci']) if chk else 'n/a'} | "
            f"{' / '.join(called(k, 'check_set') for k in ('F1', 'F2', 'F4'))} | "
            f"{' / '.join(called(k, 'held_out_normals') for k in ('F1', 'F2', 'F4'))} | "
            f"{' / '.join(sens(k) for k in ('F1', 'F2', 'F4'))} | "
            f"{f'{auroc:.3f}' if np.isfinite(auroc) else 'n/a'} |")
    return "\n".join(lines) + "\n"


def normals_by_source_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: mean p(covid) (95% CI) of the normals of every held-out source and of the check set."""
    lines = ["| recipe | fold | normals of | n | mean p(covid) | called COVID at the default point |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        folds = dict(r.get("loso", {}).get("folds", {}))
        rnd = r.get("random", {}).get("folds", {}).get("random")
        if rnd:
            folds = {"random": rnd, **folds}
        for fold, res in folds.items():
            ns = res.get("new_site")
            if not ns:
                continue
            groups = dict(ns["normals_by_source"])
            if "check_set" in ns:
                groups[f"{ns['check_set']['name']} (check set)"] = ns["check_set"]
            for g, v in groups.items():
                ci = v["mean_p_covid_ci"]
                lines.append(f"| {name} | {fold} | {g} | {v['n']} | {v['mean_p_covid']:.3f} "
                             f"[{ci[0]:.3f}, {ci[1]:.3f}] | {_pct(v['called_covid'], v['called_covid_ci'])} |")
    return "\n".join(lines) + "\n"

"""Lever 8 of the new-site work: remove the directions of the features that tell the *source* within a class.

Iterative nullspace projection (INLP; Ravfogel et al. 2020, "Null It Out"), on the cached frozen features of
the bundled preprocessing: within each class, a multinomial logistic regression learns to tell the training
sources apart from the global-average-pooled features; its weight directions (mapped back to the raw feature
space) are projected out of the features, and this is repeated. The COVID-19 / normal classifier is then
trained on the projected features, so that what stays linearly readable of "which collection" within a class
is gone. The projection acts on the 1024 channels and so applies per location as well (a 1x1 convolution):
the spatial head can take it folded into its first kernel, without any change to the app or the bundle.

Measured fast with logistic-regression probes (as lever 1) on the random split and every LOSO fold, each
with the new-site figures of model_training.newsite (threshold = the validation-chosen high-sensitivity
point; JSRT normals as the check set, never used to choose anything). The directions come from the fold's
own training films only. Output: docs/results/invariance_exploration.json and a markdown table.

    .venv/bin/python scripts/explore_invariance.py [--iters 0,1,3,10,30] [--train all,mixed] [--c 1e-3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from explore_newsite import fit_predict, pooled_probe_inputs, table  # noqa: E402

from model_training.data import Split, mixed_sources, restrict_split  # noqa: E402
from model_training.metrics import auroc, choose_operating_points  # noqa: E402
from model_training.newsite import (  # noqa: E402
    fold_new_site,
    summarize_recipe,
)
from model_training.recipes import OURS_MIXED, OURS_SPATIAL  # noqa: E402
from model_training.train import sample_weights  # noqa: E402

MIN_PER_SOURCE = 20


def style_directions(x: np.ndarray, y: np.ndarray, src: np.ndarray, n_iter: int, c: float = 0.01,
                     seed: int = 0) -> tuple[np.ndarray, list[dict[str, float]]]:
    """INLP: orthonormal raw-space directions (k, d) along which the training sources differ within a class.

    Each iteration fits, per class with at least two sources of MIN_PER_SOURCE films, a standardised
    multinomial logistic regression source <- features on the features projected so far, and adds its weight
    rows (divided by the standard deviations: their raw-space directions). Returns the directions and, per
    iteration and class, the balanced accuracy of telling the sources apart on a held-back third.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(seed)
    v = np.zeros((0, x.shape[1]))
    log: list[dict[str, float]] = []
    for _it in range(n_iter):
        step = {}
        new = []
        for lab in (0, 1):
            m = y == lab
            names, counts = np.unique(src[m], return_counts=True)
            ok = names[counts >= MIN_PER_SOURCE]
            if len(ok) < 2:
                continue
            idx = np.flatnonzero(m & np.isin(src, ok))
            xp = x[idx] - (x[idx] @ v.T) @ v if len(v) else x[idx]
            mu, sd = xp.mean(axis=0), xp.std(axis=0) + 1e-6
            hold = rng.random(len(idx)) < 1 / 3
            clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
            clf.fit((xp[~hold] - mu) / sd, src[idx][~hold])
            step[f"class{lab}_source_bacc"] = float(balanced_accuracy_score(
                src[idx][hold], clf.predict((xp[hold] - mu) / sd)))
            clf.fit((xp - mu) / sd, src[idx])
            new.append(clf.coef_ / sd)
        log.append(step)
        if not new:
            break
        q, _ = np.linalg.qr(np.concatenate([v, *new]).T)
        v = q.T[: min(len(v) + sum(len(n) for n in new), x.shape[1])]
    return v, log


def project(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    return x - (x @ v.T) @ v if len(v) else x


def principal_complement(x: np.ndarray, k: int) -> np.ndarray:
    """Orthonormal directions (d - k, d) *outside* the top-``k`` principal subspace of ``x`` (centred on its
    mean): projecting them out keeps only what the training films vary along, so a new site's deviation
    in a direction no training film showed cannot move the score."""
    mu = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mu, full_matrices=True)
    return vt[k:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cxr")
    ap.add_argument("--iters", default="0,1,3,10,30")
    ap.add_argument("--pca", default="", help="instead of INLP: keep only the top-k principal directions, k=...")
    ap.add_argument("--train", default="all,mixed", help="all: every training source; mixed: as ours_mixed")
    ap.add_argument("--c", type=float, default=1e-3, help="inverse L2 strength of the COVID-19 probe")
    ap.add_argument("--out", default="docs/results/invariance_exploration.json")
    ap.add_argument("--n-boot", type=int, default=200)
    args = ap.parse_args()
    ds, check, base, copies, pc, splits = pooled_probe_inputs(args.data)
    y, src = ds.labels(), ds.sources().astype(str)
    results: dict = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    for mode in args.train.split(","):
        grid = [("pca", int(k)) for k in args.pca.split(",")] if args.pca else \
            [("inlp", int(k)) for k in args.iters.split(",")]
        for kind, n_iter in grid:
            name = f"probe_{mode}_{kind}{n_iter}_C{args.c:g}"
            t0 = time.monotonic()
            folds, logs = {}, {}
            for fold, split in splits.items():
                tr, va, te = (np.asarray(p) for p in (split.train, split.val, split.test))
                fit_split: Split = split
                if mode == "mixed":
                    keep = mixed_sources(ds, split.train, OURS_MIXED.mixed_sources_min)
                    if not keep:
                        continue
                    fit_split = restrict_split(ds, split, keep)
                ftr, fva = np.asarray(fit_split.train), np.asarray(fit_split.val)
                if kind == "pca":  # from the classifier's own training films
                    v, logs[fold] = principal_complement(base[ftr], n_iter), []
                else:  # from every training film of the split (their sources are then not new)
                    v, logs[fold] = style_directions(base[tr], y[tr], src[tr], n_iter)
                w = sample_weights(ds, ftr, OURS_SPATIAL)
                p_val, p_te, p_chk = fit_predict([project(base[ftr], v)] + [project(x[ftr], v) for x in copies],
                                                 y[ftr], w, args.c, [project(base[fva], v), project(base[te], v),
                                                                     project(pc, v)])
                ops = {o.name: o for o in choose_operating_points(y[fva], p_val, ds.patients()[fva], n_boot=0)}
                thr = ops["high_sensitivity"].threshold
                # the directions use every training source of the split, so only sources absent from it are new
                ns = fold_new_site(ds, split if kind == "inlp" and n_iter else fit_split, p_te, thr, check=(p_chk, check.patients()),
                                   n_boot=args.n_boot)
                folds[fold] = {"new_site": ns, "val_auroc": auroc(y[fva], p_val), "test_auroc": auroc(y[te], p_te),
                               "directions": len(v), "operating_points": {k: o.to_dict() for k, o in ops.items()}}
            summ = summarize_recipe({k: f for k, f in folds.items() if k != "random"}, folds.get("random"))
            results[name] = {"summary": summ, "folds": folds, "inlp": logs,
                             "seconds": round(time.monotonic() - t0, 1)}
            Path(args.out).write_text(json.dumps(results, indent=1, default=float))
            last = {k: lg[-1] if lg else {} for k, lg in logs.items()}
            print(name, {k: f.get("directions") for k, f in folds.items()}, "source bacc after:",
                  {k: {c: round(b, 2) for c, b in s.items()} for k, s in last.items()}, flush=True)
            print(table({name: results[name]}), flush=True)
    print(table(results))


if __name__ == "__main__":
    main()

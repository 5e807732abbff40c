"""Levers for new-site false positives, measured fast on the cached frozen features (no Keras training).

Heads fitted with scikit-learn on the features of the bundled recipe's preprocessing (histogram
equalisation, MobileNet cut at conv_dw_13_relu, original + 3 photometric copies, all cached in
runs/cache by `train`/`compare`), on every leave-one-source-out fold and the random split, each scored
with the new-site figures of model_training.newsite (threshold = the validation-chosen high-sensitivity
point of the fold's own model; JSRT normals as the check set, never used to select). Output:
docs/results/newsite_exploration.json and a markdown table on stdout.

    .venv/bin/python scripts/explore_newsite.py [--variants probe,probe_srcbal,region3] [--c 1e-4,1e-3,...]
        [--harmonize N]
    .venv/bin/python scripts/explore_newsite.py --recipe NAME BASE [field=value ...] [--folds F2,F4]
                                                   # a Keras recipe variant through run_protocol, e.g.
    .venv/bin/python scripts/explore_newsite.py --recipe mixed_h112 ours_mixed harmonize=112 --folds F2,F4

Variants: ``probe`` = logistic regression on global-average-pooled features (standardised, class
weights); ``probe_srcbal`` = the same with source- and class-balanced weights; ``region3`` = average
pooled over a 3x3 grid of overlapping regions (9 x 1024 features: keeps coarse position, like the
spatial head); ``probe_noaug`` = without the photometric copies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_training.compare import fold_splits  # noqa: E402
from model_training.data import patient_split, read_dataset  # noqa: E402
from model_training.features import dataset_features  # noqa: E402
from model_training.metrics import auroc, choose_operating_points  # noqa: E402
from model_training.newsite import (  # noqa: E402
    default_check_dir,
    fold_new_site,
    read_check_set,
    summarize_recipe,
)
from model_training.recipes import OURS_SPATIAL  # noqa: E402
from model_training.train import sample_weights  # noqa: E402

W = "../shared/weights/mobilenet_v1_1.0_224_imagenet_partial.npz"


def pool(f: np.ndarray, kind: str) -> np.ndarray:
    x = f.astype(np.float32)
    if kind == "region3":
        parts = [x[:, a:a + 3, b:b + 3].mean(axis=(1, 2)) for a in (0, 2, 4) for b in (0, 2, 4)]
        return np.concatenate(parts, axis=1)
    return x.mean(axis=(1, 2))


def pooled_probe_inputs(data: str) -> tuple:
    """What the feature-space levers (8, 9) start from: the dataset, the JSRT check set, the global-average-
    pooled frozen features of the bundled preprocessing (original, 3 photometric copies, check films) and
    the random split plus every LOSO fold."""
    from model_training.compare import fold_splits
    from model_training.data import patient_split

    ds = read_dataset(data)
    check = read_check_set(default_check_dir(data))
    spec = OURS_SPATIAL.preprocess()
    kw = {"architecture": "mobilenet", "weights": W, "cache_dir": "runs/cache"}
    base = pool(dataset_features(ds, spec, **kw)[0], "gap")
    copies = [pool(dataset_features(ds, spec, augment_seed=k, augment_kind="photometric", **kw)[0], "gap")
              for k in (1, 2, 3)]
    pc = pool(dataset_features(check, spec, **kw)[0], "gap")
    splits = {"random": patient_split(ds, val_fraction=0.15, test_fraction=0.15, seed=0), **fold_splits(ds, 0)}
    return ds, check, base, copies, pc, splits


def fit_predict(xs_tr: list[np.ndarray], y_tr: np.ndarray, w_tr: np.ndarray, c: float,
                evals: list[np.ndarray]) -> list[np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate(xs_tr)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit((x - mu) / sd, np.tile(y_tr, len(xs_tr)), sample_weight=np.tile(w_tr, len(xs_tr)))
    return [clf.predict_proba((e - mu) / sd)[:, 1] for e in evals]


def main() -> None:  # noqa: C901
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cxr")
    ap.add_argument("--variants", default="probe,probe_srcbal,region3")
    ap.add_argument("--c", default="1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,1e-1,1")
    ap.add_argument("--out", default="docs/results/newsite_exploration.json")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--harmonize", type=int, default=0, help="PreprocessSpec.harmonize of the features")
    ap.add_argument("--folds", default=None, help="with --recipe: only these LOSO folds (e.g. F2,F4)")
    ap.add_argument("--recipe", nargs="+", default=None, metavar="NAME BASE field=value",
                    help="a Keras recipe variant through run_protocol (random split and every LOSO fold)")
    args = ap.parse_args()
    ds = read_dataset(args.data)
    check = read_check_set(default_check_dir(args.data))
    if args.recipe:
        return run_recipe(ds, check, args)
    spec = OURS_SPATIAL.with_(harmonize=args.harmonize).preprocess()
    kw = {"architecture": "mobilenet", "weights": W, "cache_dir": "runs/cache"}
    base, _ = dataset_features(ds, spec, **kw)
    copies = [dataset_features(ds, spec, augment_seed=k, augment_kind="photometric", **kw)[0] for k in (1, 2, 3)]
    fchk, _ = dataset_features(check, spec, **kw)
    y = ds.labels()
    splits = {"random": patient_split(ds, val_fraction=0.15, test_fraction=0.15, seed=0), **fold_splits(ds, 0)}
    results: dict = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    cs = [float(c) for c in args.c.split(",")]
    for variant in args.variants.split(","):
        kind = "region3" if variant.startswith("region3") else "gap"
        pb, pc = pool(base, kind), pool(fchk, kind)
        pcs = [] if variant.endswith("noaug") else [pool(c, kind) for c in copies]
        recipe = OURS_SPATIAL.with_(source_balance=variant.endswith("srcbal"))
        for c in cs:
            name = f"{variant}_C{c:g}" + (f"_h{args.harmonize}" if args.harmonize else "")
            t0 = time.monotonic()
            folds = {}
            for fold, split in splits.items():
                tr, va, te = (np.asarray(v) for v in (split.train, split.val, split.test))
                w = sample_weights(ds, tr, recipe)
                p_val, p_te, p_chk = fit_predict([pb[tr]] + [x[tr] for x in pcs], y[tr], w, c,
                                                 [pb[va], pb[te], pc])
                ops = {o.name: o for o in choose_operating_points(y[va], p_val, ds.patients()[va], n_boot=0)}
                thr = ops["high_sensitivity"].threshold
                ns = fold_new_site(ds, split, p_te, thr, check=(p_chk, check.patients()), n_boot=args.n_boot)
                folds[fold] = {"new_site": ns, "val_auroc": auroc(y[va], p_val), "test_auroc": auroc(y[te], p_te),
                               "operating_points": {k: o.to_dict() for k, o in ops.items()}}
            summ = summarize_recipe({k: v for k, v in folds.items() if k != "random"}, folds["random"])
            results[name] = {"summary": summ, "folds": folds, "seconds": round(time.monotonic() - t0, 1)}
            Path(args.out).write_text(json.dumps(results, indent=1, default=float))
            print(row(name, results[name]), flush=True)
    print(table(results))


def run_recipe(ds, check, args) -> None:
    """``--recipe NAME BASE field=value ...``: the real pipeline on the random split and every LOSO fold."""
    from model_training.compare import run_protocol
    from model_training.recipes import get_recipe

    name, base, *fields = args.recipe
    changes = {}
    for f in fields:
        k, v = f.split("=", 1)
        changes[k] = next((conv(v) for conv in (int, float, str) if _ok(conv, v)), v)
    rec = get_recipe(base).with_(name=name, **changes)
    results: dict = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    t0 = time.monotonic()
    folds = {}
    for proto in ("random", "loso"):
        res = run_protocol(ds, rec, protocol=proto, weights=W, cache_dir="runs/cache", n_boot=args.n_boot,
                           check=check, folds=args.folds.split(",") if args.folds and proto == "loso" else None)
        for fold, r in res["folds"].items():
            folds[fold] = {"new_site": r["new_site"], "val_auroc": float("nan"),
                           "test_auroc": r["overall"]["auroc"], "pa_auroc": r.get("pa_only", {}).get("auroc"),
                           "operating_points": {o["name"]: o for o in r["operating_points"]}}
    summ = summarize_recipe({k: v for k, v in folds.items() if k != "random"}, folds["random"])
    results[name] = {"summary": summ, "folds": folds, "recipe": rec.to_dict(),
                     "seconds": round(time.monotonic() - t0, 1)}
    Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    print(table({name: results[name]}))


def _ok(conv, v: str) -> bool:
    try:
        conv(v)
        return True
    except ValueError:
        return False


def row(name: str, r: dict) -> str:
    s, f = r["summary"], r["folds"]

    def pct(v: float) -> str:
        return f"{100 * v:.1f}%" if np.isfinite(v) else "n/a"

    def g(fold: str, *path: str) -> float:
        v = f.get(fold, {}).get("new_site", {})
        for k in path:
            v = v.get(k, {})
        return v if isinstance(v, float) else float("nan")

    return (f"| {name} | {pct(s['criterion_fpr_at_sens95'])} | "
            f"{pct(g('random', 'check_set', 'called_covid'))} | "
            f"{' / '.join(pct(g(k, 'check_set', 'called_covid')) for k in ('F1', 'F2', 'F4'))} | "
            f"{' / '.join(pct(g(k, 'held_out_normals', 'called_covid')) for k in ('F1', 'F2', 'F4'))} | "
            f"{' / '.join(num(g(k, 'held_out_covid_sensitivity', 'sensitivity')) for k in ('F1', 'F2', 'F4'))} | "
            f"{num(f['random']['val_auroc'])} | {num(f['random']['test_auroc'])} | "
            f"{' / '.join(num(f.get(k, {}).get('test_auroc', float('nan'))) for k in ('F1', 'F2', 'F4'))} |")


def num(v: float) -> str:
    return f"{v:.3f}" if np.isfinite(v) else "n/a"


def table(results: dict) -> str:
    lines = ["| variant | criterion: held-out FPR at held-out sens 0.95 (F1/F2/F4 mean) | JSRT FPR, random-split "
             "model | JSRT FPR, F1 / F2 / F4 models | held-out FPR at default, F1 / F2 / F4 | held-out sens at "
             "default, F1 / F2 / F4 | random val AUROC | random test AUROC | LOSO AUROC F1 / F2 / F4 |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [row(k, v) for k, v in results.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

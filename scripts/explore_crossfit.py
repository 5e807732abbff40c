"""Lever 6: a cross-fitted operating point (and ensemble) for ``ours_mixed``, measured on new sites.

The bundled model's default threshold is the 5th percentile of about 100 validation COVID-19 scores of one
model, and it moved by a factor of two between models trained on the same source (0.206 vs 0.468). Here the
training source (radiographydb, less the random split's test part) is cut into K patient-level folds; model
k is trained on the other folds and validated (early stopping, Platt scaling) on fold k, so every training
film gets an out-of-fold score. Measured:

- each fold model alone at its own validation-chosen point (the current rule, K times: how much it moves);
- the K-model ensemble (mean of the calibrated p(covid)) at the point chosen on all out-of-fold scores
  (about K times as many COVID-19 films as one validation split).

New-site figures (model_training.newsite) on every film of the sources the models never saw (all but
radiographydb) and on the JSRT normals (the check set: only reported). Output: a JSON file and a table.

    .venv/bin/python scripts/explore_crossfit.py [--k 5] [--recipe ours_mixed] [--out docs/results/crossfit_exploration.json]
    .venv/bin/python scripts/explore_crossfit.py --analyse-only    # the tables again from runs/crossfit_*.npz

After training it also prints (``analyse``) the logit-mean ensemble and lever 7 simulated on the fold models:
the operating point chosen on the siim/shenzhen training and validation films (and cross-fitted over their
patients). The figures in docs/results/experiments.md (sixth session) were made before the collapse guard
of ``fit_keras_head`` existed, so fold model 2 there is the collapsed one and is left out by ``analyse``;
a re-run retrains it instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_training.data import Split, mixed_sources, patient_split, read_dataset  # noqa: E402
from model_training.features import dataset_features  # noqa: E402
from model_training.metrics import auroc, choose_operating_points  # noqa: E402
from model_training.newsite import default_check_dir, new_site_figures, read_check_set  # noqa: E402
from model_training.recipes import get_recipe  # noqa: E402
from model_training.train import predict_dataset, train  # noqa: E402

W = "../shared/weights/mobilenet_v1_1.0_224_imagenet_partial.npz"
CACHE = "runs/cache"


def patient_folds(ds, index: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``index`` cut into ``k`` parts by patient, stratified by class (and source)."""
    by_patient: dict[str, list[int]] = defaultdict(list)
    for i in index:
        by_patient[ds.records[i].patient_id].append(int(i))
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for pid, members in by_patient.items():
        r = ds.records[members[0]]
        strata[(r.label, r.source)].append(pid)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for key in sorted(strata):
        pids = sorted(strata[key])
        rng.shuffle(pids)
        for j, pid in enumerate(pids):
            parts[(j + offset) % k].extend(by_patient[pid])
        offset += len(pids)
    return [np.array(sorted(p)) for p in parts]


def figures(ds, check, y, p, p_chk, threshold, held, trained, n_boot):
    srcs, pats = ds.sources(), ds.patients()
    return new_site_figures(y[held], p[held], srcs[held], pats[held], threshold, train_sources=trained,
                            check=(p_chk, check.patients()), n_boot=n_boot)


def brief(ns: dict) -> dict:
    return {"threshold": ns["threshold"], "jsrt_called": ns["check_set"]["called_covid"],
            "jsrt_called_ci": ns["check_set"]["called_covid_ci"], "jsrt_mean_p": ns["check_set"]["mean_p_covid"],
            "held_normals_called": ns["held_out_normals"]["called_covid"],
            "held_sens": ns["held_out_covid_sensitivity"]["sensitivity"],
            "held_sens_ci": ns["held_out_covid_sensitivity"]["sensitivity_ci"],
            "normals_by_source": {s: (v["n"], v["called_covid"], v["mean_p_covid"])
                                  for s, v in ns["normals_by_source"].items()},
            "covid_by_source": {s: (v["n"], v["called_covid"]) for s, v in ns["covid_by_source"].items()},
            "fpr_at_sens95": ns["at_sensitivity_0.95"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cxr")
    ap.add_argument("--recipe", default="ours_mixed")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--out", default="docs/results/crossfit_exploration.json")
    ap.add_argument("--name", default=None)
    ap.add_argument("--analyse-only", action="store_true", help="only the tables, from runs/crossfit_NAME.npz")
    args = ap.parse_args()
    if args.analyse_only:
        analyse(read_dataset(args.data), args.name or f"{args.recipe}_k{args.k}_s{args.seed}", args.seed)
        return
    ds = read_dataset(args.data)
    check = read_check_set(default_check_dir(args.data))
    rec = get_recipe(args.recipe)
    y = ds.labels()
    srcs = ds.sources()
    rnd = patient_split(ds, val_fraction=0.15, test_fraction=0.15, seed=args.seed)
    pool_all = np.array(sorted((*rnd.train, *rnd.val)))
    keep = mixed_sources(ds, pool_all, rec.mixed_sources_min or 1)
    pool = pool_all[np.isin(srcs[pool_all], keep)]
    test_in = np.array([i for i in rnd.test if srcs[i] in keep])
    held = np.array([i for i in range(len(ds)) if srcs[i] not in keep])
    folds = patient_folds(ds, pool, args.k, args.seed)
    print(f"pool {len(pool)} ({int(y[pool].sum())} covid) from {keep}; in-source test {len(test_in)}; "
          f"held-out {len(held)}; folds {[len(f) for f in folds]}", flush=True)
    p_oof = np.full(len(ds), np.nan)
    p_all, p_chk_all, singles = [], [], {}
    t0 = time.monotonic()
    for k, va in enumerate(folds):
        tr = np.setdiff1d(pool, va)
        split = Split(tuple(int(i) for i in tr), tuple(int(i) for i in va), tuple(int(i) for i in (*test_in, *held)),
                      args.seed, f"cross-fit fold {k} of {args.k}")
        model = train(ds, rec, split, weights=W, cache_dir=CACHE, seed=args.seed)
        p = predict_dataset(model, ds, cache_dir=CACHE)
        fchk, _ = dataset_features(check, model.spec, architecture=model.architecture, weights=W,
                                   layer=model.cache_layer, cache_dir=CACHE)
        p_chk = model.head_probs(fchk)
        p_oof[va] = p[va]
        p_all.append(p)
        p_chk_all.append(p_chk)
        thr = {o.name: o.threshold for o in model.operating_points}["high_sensitivity"]
        ns = figures(ds, check, y, p, p_chk, thr, held, keep, args.n_boot)
        singles[f"fold{k}"] = {**brief(ns), "val_auroc": auroc(y[va], p[va]),
                               "in_source_test_auroc": auroc(y[test_in], p[test_in]),
                               "held_auroc": auroc(y[held], p[held]), "epochs": len(model.history)}
        print(f"fold {k}: thr {thr:.3f} JSRT {100 * ns['check_set']['called_covid']:.1f}% "
              f"held sens {ns['held_out_covid_sensitivity']['sensitivity']:.3f} "
              f"held FPR {100 * ns['held_out_normals']['called_covid']:.1f}% "
              f"({time.monotonic() - t0:.0f} s)", flush=True)
    p_ens = np.mean(p_all, axis=0)
    p_chk_ens = np.mean(p_chk_all, axis=0)
    ops = {o.name: o for o in choose_operating_points(y[pool], p_oof[pool], ds.patients()[pool])}
    out = {"recipe": args.recipe, "k": args.k, "seed": args.seed, "pool": int(len(pool)),
           "pool_covid": int(y[pool].sum()), "singles": singles,
           "oof_auroc": auroc(y[pool], p_oof[pool]),
           "oof_operating_points": {k: o.to_dict() for k, o in ops.items()},
           "ensemble": {}, "seconds": round(time.monotonic() - t0, 1)}
    for name in ("high_sensitivity", "balanced", "high_specificity"):
        ns = figures(ds, check, y, p_ens, p_chk_ens, ops[name].threshold, held, keep, args.n_boot)
        out["ensemble"][name] = brief(ns)
    out["ensemble"]["in_source_test_auroc"] = auroc(y[test_in], p_ens[test_in])
    out["ensemble"]["held_auroc"] = auroc(y[held], p_ens[held])
    out["ensemble"]["oof_covid_p05_over_ensemble"] = float(np.percentile(p_ens[pool][y[pool] == 1], 5))
    name = args.name or f"{args.recipe}_k{args.k}_s{args.seed}"
    path = Path(args.out)
    allres = json.loads(path.read_text()) if path.is_file() else {}
    allres[name] = out
    path.write_text(json.dumps(allres, indent=1, default=float))
    np.savez(f"runs/crossfit_{name}.npz", p_all=np.array(p_all), p_chk=np.array(p_chk_all), p_oof=p_oof)
    e = out["ensemble"]["high_sensitivity"]
    print(json.dumps({"oof_thr": e["threshold"], "jsrt": e["jsrt_called"], "jsrt_ci": e["jsrt_called_ci"],
                      "held_sens": e["held_sens"], "held_fpr": e["held_normals_called"],
                      "fpr_at_sens95": e["fpr_at_sens95"], "held_auroc": out["ensemble"]["held_auroc"],
                      "in_test_auroc": out["ensemble"]["in_source_test_auroc"],
                      "by_source": e["normals_by_source"], "covid": e["covid_by_source"]}, indent=1, default=float))
    analyse(ds, name, args.seed)


def analyse(ds, name: str, seed: int) -> None:
    """Logit-mean ensemble at the out-of-fold point, and lever 7 on each fold model (see module doc)."""
    from model_training.newsite import threshold_at_sensitivity

    z = np.load(f"runs/crossfit_{name}.npz")
    p_all, p_chk, oof = z["p_all"], z["p_chk"], z["p_oof"]
    y, s, pat = ds.labels(), ds.sources(), ds.patients()
    good = [k for k in range(len(p_all)) if np.ptp(p_all[k]) > 1e-3]  # a collapsed model scores a constant
    pool = np.array([i for i in np.where(np.isfinite(oof))[0] if any(oof[i] == p_all[k][i] for k in good)])

    def lg(p):
        return np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))

    held = np.array([i for i in range(len(ds)) if s[i] != "radiographydb"])
    pe, ce = 1 / (1 + np.exp(-lg(p_all[good]).mean(0))), 1 / (1 + np.exp(-lg(p_chk[good]).mean(0)))
    t = {o.name: o.threshold for o in choose_operating_points(y[pool], oof[pool], pat[pool], n_boot=0)}
    t = t["high_sensitivity"]
    hp, hn = held[y[held] == 1], held[y[held] == 0]
    print(f"logit-mean ensemble of folds {good}: out-of-fold threshold {t:.3f}, JSRT {(ce >= t).mean():.3f}, "
          f"held-out sensitivity {(pe[hp] >= t).mean():.3f}, held-out normals {(pe[hn] >= t).mean():.3f}")
    rnd = patient_split(ds, val_fraction=0.15, test_fraction=0.15, seed=seed)
    test = set(rnd.test)
    ext = np.array([i for i in sorted({*rnd.train, *rnd.val}) if s[i] in ("siim", "shenzhen")])
    every = np.array([i for i in range(len(ds)) if s[i] in ("siim", "shenzhen")])
    ups = np.unique(pat[every])
    np.random.default_rng(0).shuffle(ups)
    part = {u: j % 5 for j, u in enumerate(ups)}
    fe = np.array([part[pat[i]] for i in every])
    for k in good:
        p, c = p_all[k], p_chk[k]
        t = {o.name: o.threshold for o in choose_operating_points(y[ext], p[ext], pat[ext], n_boot=0)}
        t = t["high_sensitivity"]

        def share(src, lab, only_test, p=p, t=t):
            m = np.array([i for i in range(len(ds)) if s[i] == src and y[i] == lab and (not only_test or i in test)])
            return (p[m] >= t).mean()

        hits, js = [], []
        for f in range(5):
            a, b = every[fe != f], every[fe == f]
            tf = {o.name: o.threshold for o in choose_operating_points(y[a], p[a], pat[a], n_boot=0)}
            tf = tf["high_sensitivity"]
            hits += list(p[b][y[b] == 1] >= tf)
            js.append((c >= tf).mean())
        print(f"fold model {k}, point on siim+shenzhen: threshold {t:.3f}, JSRT {(c >= t).mean():.3f}, siim test "
              f"sensitivity {share('siim', 1, True):.3f}, shenzhen test normals {share('shenzhen', 0, True):.3f}, "
              f"ieee8023 / figure1 COVID {share('ieee8023', 1, False):.3f} / {share('figure1', 1, False):.3f}, "
              f"radiographydb test sensitivity {share('radiographydb', 1, True):.3f}; cross-fitted over siim "
              f"patients: sensitivity {np.mean(hits):.3f}, JSRT {np.mean(js):.3f}; siim hindsight-0.95 "
              f"threshold {threshold_at_sensitivity(p[(s == 'siim') & (y == 1)]):.3f}")


if __name__ == "__main__":
    main()

# ruff: noqa: T201  (a command-line tool: it prints)
"""Site calibration simulated on a hospital the model has never seen (the JSRT normals).

    python benchmarks/bench_site_calibration.py [--bundle assets/models/mobilenet-covid-v1] \
        [--jsrt ../shared/data/jsrt/normal] [--data ../shared/data/cxr]

Runs the bundled model on the 93 JSRT normal films (never trained on) and on the COVID-19 films
of the bundle's held-out test split (other hospitals). Then, for each calibration size n (30, 50,
70) and 500 random splits: "calibrate" on n JSRT normals exactly as ``cxr-screener calibrate``
does (:func:`desktop.core.site.choose_threshold`, target specificity 0.95), and measure the
specificity on the other JSRT normals and the sensitivity on the test COVID films at that
threshold; with the bootstrap CI the profile would carry, and how often it covers the
specificity measured on the rest. Writes ``benchmarks/results/site_calibration.json`` and ``.md``.
About 1-2 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from desktop.core.imaging import load_xray  # noqa: E402
from desktop.core.inference import Predictor  # noqa: E402
from desktop.core.site import _bootstrap_rate, choose_threshold  # noqa: E402


def _scores(predictor: Predictor, files: list[Path]) -> np.ndarray:
    out: list[float] = []
    for i in range(0, len(files), 16):
        xrays = [load_xray(p) for p in files[i : i + 16]]
        out.extend(p.p_covid for p in predictor.predict(xrays))
    return np.asarray(out)


def simulate(normals: np.ndarray, covid: np.ndarray, n_cal: int, target: float, splits: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    spec, sens, covered, thr, lo = [], [], [], [], []
    for _ in range(splits):
        idx = rng.permutation(len(normals))
        cal, rest = normals[idx[:n_cal]], normals[idx[n_cal:]]
        t = choose_threshold(cal, target)
        s_rest = float((rest < t).mean())
        ci = _bootstrap_rate((cal < t).astype(float), rng, 500)
        spec.append(s_rest)
        sens.append(float((covid >= t).mean()))
        covered.append(ci[0] <= s_rest <= ci[1])
        thr.append(t)
        lo.append(ci[0])
    spec_a, sens_a = np.asarray(spec), np.asarray(sens)
    return {
        "target": target,
        "n_calibration": n_cal,
        "n_measured": int(len(normals) - n_cal),
        "splits": splits,
        "specificity_rest_mean": float(spec_a.mean()),
        "specificity_rest_p05": float(np.percentile(spec_a, 5)),
        "share_splits_specificity_ge_0.90": float((spec_a >= 0.90).mean()),
        "sensitivity_test_covid_mean": float(sens_a.mean()),
        "sensitivity_test_covid_p05": float(np.percentile(sens_a, 5)),
        "share_splits_sensitivity_ge_0.90": float((sens_a >= 0.90).mean()),
        "threshold_median": float(np.median(thr)),
        "ci_lower_mean": float(np.mean(lo)),
        "ci_covers_rest_specificity": float(np.mean(covered)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "assets/models/mobilenet-covid-v1"))
    ap.add_argument("--jsrt", default=str(ROOT.parent / "shared/data/jsrt/normal"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/cxr"))
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--splits", type=int, default=500)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/site_calibration.json"))
    args = ap.parse_args(argv)

    t0 = time.time()
    predictor = Predictor(args.bundle, threads=2)
    card = predictor.card.to_dict()
    jsrt = sorted(Path(args.jsrt).glob("*.png"))
    test_files = set(card["split"]["test"]["files"])
    covid_files = sorted(p for p in (Path(args.data) / "covid").glob("*") if p.name in test_files)
    normals, covid = _scores(predictor, jsrt), _scores(predictor, covid_files)
    default = card["operating_points"]
    op = next(o for o in default if o["name"] == card["default_operating_point"])
    results = {
        "model": predictor.name, "model_version": predictor.version, "model_sha256": card["sha256"],
        "created": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/bench_site_calibration.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "jsrt_normals": int(len(normals)),
        "test_covid_films": int(len(covid)),
        "target_specificity": args.target,
        "default_point": {
            "name": op["name"], "threshold": op["threshold"],
            "jsrt_specificity": float((normals < op["threshold"]).mean()),
            "test_covid_sensitivity": float((covid >= op["threshold"]).mean()),
        },
        "calibrated": [simulate(normals, covid, n, t, args.splits, seed=n)
                       for t in sorted({args.target, 0.90}, reverse=True) for n in (30, 50, 70)],
        "seconds": round(time.time() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    d = results["default_point"]
    lines = [
        "# Site calibration on a hospital the model has never seen (JSRT normals)",
        "",
        f"Model {results['model']} v{results['model_version']}; `{results['command'].strip()}` ({results['created']}, "
        f"{results['seconds']} s). {results['jsrt_normals']} JSRT normal films (never trained on); sensitivity on the "
        f"{results['test_covid_films']} COVID-19 films of the bundle's held-out test split. Target specificity "
        f"{args.target}; {args.splits} random splits per row.",
        "",
        f"Default point `{d['name']}` (p >= {d['threshold']:.3f}), no calibration: specificity on JSRT "
        f"**{d['jsrt_specificity']:.3f}**, sensitivity {d['test_covid_sensitivity']:.3f}.",
        "",
        "| target | calibration normals | measured on | specificity on the rest: mean | 5th pct | splits >= 0.90 | "
        "sensitivity (test COVID): mean | 5th pct | median threshold | profile CI covers the rest's specificity |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["calibrated"]:
        lines.append(
            f"| {r['target']} | {r['n_calibration']} | {r['n_measured']} | {r['specificity_rest_mean']:.3f} | "
            f"{r['specificity_rest_p05']:.3f} | {r['share_splits_specificity_ge_0.90']:.2f} | "
            f"{r['sensitivity_test_covid_mean']:.3f} | {r['sensitivity_test_covid_p05']:.3f} | "
            f"{r['threshold_median']:.3f} | {r['ci_covers_rest_specificity']:.2f} |"
        )
    lines += [
        "",
        "Reading: calibration brings the specificity at this new site from the default point's value to the "
        "target on films it was not calibrated on; the price is sensitivity, because this site's normals score "
        "high and the threshold must rise above them. The sensitivity column is measured on COVID-19 films of "
        "the training hospitals' test split: a site should also calibrate with --positives (its own COVID-19 "
        "films) to see its own.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

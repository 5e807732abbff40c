"""Benchmark: train the bundled default model from scratch on this machine (CPU).

From nothing cached: decode every image, compute the frozen backbone's features
(plus the recipe's augmented copies), train the head, calibrate, choose the
operating points, evaluate. Target: <= 45 min on the 2-core development machine.

    .venv/bin/python benchmarks/bench_training.py --data ../shared/data/cxr \
        --weights ../shared/weights/mobilenet_v1_1.0_224_imagenet_partial.npz

Writes benchmarks/results/training.json and training.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

TARGET_S = 45 * 60


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--weights", required=True, help="backbone weights (.npz/.h5) or 'imagenet'")
    ap.add_argument("--recipe", default=None, help="default: the bundled model's recipe")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--run-dir", default=None, help="keep the run here (default: a temporary folder)")
    args = ap.parse_args()

    from model_training.data import read_dataset
    from model_training.pipeline import train_run
    from model_training.recipes import BUNDLED, get_recipe

    args.recipe = args.recipe or BUNDLED

    tmp = Path(tempfile.mkdtemp(prefix="bench_training_"))
    cache = tmp / "cache"  # empty: nothing precomputed
    run_dir = Path(args.run_dir) if args.run_dir else tmp / "run"
    load_before = os.getloadavg()
    t0 = time.monotonic()
    cpu0 = time.process_time()
    dataset = read_dataset(args.data)
    _, results = train_run(dataset, get_recipe(args.recipe), run_dir, weights=args.weights, cache_dir=cache,
                           seed=0, show_progress=False, n_boot=1000)
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    load_after = os.getloadavg()
    shutil.rmtree(tmp, ignore_errors=True)
    ev = results["evaluation"]
    res = {
        "benchmark": "train the bundled model from scratch (decode, features, head, calibration, evaluation)",
        "recipe": args.recipe,
        "images": len(dataset),
        "wall_seconds": round(wall, 1),
        "process_cpu_seconds": round(cpu, 1),
        "target_seconds": TARGET_S,
        "meets_target": wall <= TARGET_S,
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "machine": platform.platform(),
        "python": platform.python_version(),
        "validation_auroc": ev["validation"]["auroc"],
        "test_auroc": ev.get("test", {}).get("auroc"),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.json").write_text(json.dumps(res, indent=1))
    md = (f"# Training benchmark\n\n{res['benchmark']}, recipe `{args.recipe}`, {res['images']} images.\n\n"
          f"| wall | process CPU | target | met | CPUs | load avg before / after |\n|---|---|---|---|---|---|\n"
          f"| {wall / 60:.1f} min | {cpu / 60:.1f} min | {TARGET_S / 60:.0f} min | {res['meets_target']} | "
          f"{res['cpu_count']} | {res['load_average_before'][0]} / {res['load_average_after'][0]} |\n\n"
          f"The development machine is shared (load average above); wall time on an idle 2-core machine is lower.\n")
    (out / "training.md").write_text(md)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

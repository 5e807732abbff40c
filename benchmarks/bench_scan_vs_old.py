"""The pipeline scan against the batch.py it replaced, in one run: no slower?

    .venv/bin/python benchmarks/bench_scan.py --vs-old            # 120 films of 2000x2000
    .venv/bin/python benchmarks/bench_scan_vs_old.py --n 40 --rounds 3

The old scan is ``desktop/core/batch.py`` at git ``9824684`` (before the
split), loaded as a module of its own (``git show``, its relative imports
pointed at ``desktop.core``); the new one is :func:`desktop.core.scan.folder.scan`.
Both scan the same files (bench_scan.py's generated PNG + DICOM films) with
the same Predictor and worker count, into fresh output folders, in
interleaved rounds (old, new, old, new...), so load from other jobs hits both
alike. Two modes: plain (results.csv + audit) and ``--heatmaps``. Besides
files/s, the bytes the decode workers send back per file are measured: the
old scan pickles the whole XRay for heatmaps, the new one a model input plus
a uint8 display image. Writes benchmarks/results/scan_vs_old.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
RESULTS = REPO / "benchmarks" / "results"
OLD_REV = "9824684"


def load_old(rev: str, where: Path) -> Any:
    """``batch.py`` at ``rev`` as the top-level module ``cxr_old_batch`` (importable by spawned workers)."""
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:desktop/core/batch.py"], check=True,
                         capture_output=True, text=True).stdout
    src = src.replace("from .", "from desktop.core.").replace("from desktop.core. import", "from desktop.core import")
    (where / "cxr_old_batch.py").write_text(src)
    sys.path.insert(0, str(where))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(where), str(REPO), os.environ.get("PYTHONPATH", "")])
    return importlib.import_module("cxr_old_batch")


def one(scan_fn: Any, folder: Path, predictor: Any, out: Path, workers: int, heatmaps: bool) -> float:
    from desktop.core.audit import AuditLog

    t0 = time.perf_counter()
    n = 0
    with AuditLog(out / "audit.jsonl") as audit:
        for _ in scan_fn(folder, predictor, results_csv=out / "results.csv", workers=workers, audit=audit,
                         heatmap_dir=out / "heatmaps" if heatmaps else None):
            n += 1
    return n / (time.perf_counter() - t0)


def sent_bytes(old: Any, path: Path, spec: Any) -> dict[str, int]:
    """Pickled size of what a decode worker returns for one file, old and new, with heatmaps."""
    from desktop.core.scan.decode import WITH_DISPLAY, decode_one

    return {"old_heatmaps": len(pickle.dumps(old._decode_one(str(path), None, spec, True))),
            "new_heatmaps": len(pickle.dumps(decode_one(str(path), None, spec, WITH_DISPLAY))),
            "old_plain": len(pickle.dumps(old._decode_one(str(path), None, spec, False))),
            "new_plain": len(pickle.dumps(decode_one(str(path), None, spec, False)))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=120, help="films (default 120)")
    ap.add_argument("--size", type=int, default=2000, help="film side in pixels (default 2000)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per mode (default 3)")
    ap.add_argument("--workers", type=int, default=None, help="decoding processes (default: the app's)")
    ap.add_argument("--rev", default=OLD_REV, help=f"git revision of the old batch.py (default {OLD_REV})")
    ap.add_argument("--bundle", help="time this bundle folder instead of the installed default")
    ap.add_argument("--out", default=str(RESULTS / "scan_vs_old"), help="results path without extension")
    args = ap.parse_args(argv)

    from bench_scan import make_images
    from bench_startup import bench_bundle

    from desktop.core.bundle import get_bundle
    from desktop.core.cpu import available_cpus, decode_workers, scan_inference_threads
    from desktop.core.inference import Predictor
    from desktop.core.scan.folder import scan as new_scan

    folder = make_images(args.n, args.size)
    rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        old = load_old(args.rev, tmp)
        home = tmp / "home"
        name, described, extra = bench_bundle(home, args.bundle)
        os.environ.update({"CXR_SCREENER_OPERATOR": "benchmark", **extra})
        os.environ.setdefault("CXR_SCREENER_HOME", str(home))
        workers = args.workers if args.workers is not None else decode_workers()
        predictor = Predictor(get_bundle(name), threads=scan_inference_threads())
        sizes = sent_bytes(old, sorted(folder.glob("img_*"))[0], predictor.spec)
        for mode in ("plain", "heatmaps"):
            rows[mode] = {"old": [], "new": []}
            for r in range(args.rounds):
                for label, fn in (("old", old.scan), ("new", new_scan)):
                    rate = one(fn, folder, predictor, tmp / f"{mode}-{label}-{r}", workers, mode == "heatmaps")
                    rows[mode][label].append(round(rate, 3))
                    print(f"{mode:9s} round {r + 1} {label}: {rate:.2f} files/s", flush=True)

    def best(xs: list[float]) -> float:
        return max(xs)

    import statistics

    summary = {m: {"old_files_per_s": best(v["old"]), "new_files_per_s": best(v["new"]),
                   "ratio_new_over_old": round(best(v["new"]) / best(v["old"]), 3),
                   "ratio_of_medians": round(statistics.median(v["new"]) / statistics.median(v["old"]), 3),
                   "rounds": v}
               for m, v in rows.items()}
    res = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {available_cpus()} usable CPUs, Python {platform.python_version()}",
        "model": described, "films": args.n, "size": args.size, "workers": workers, "old_rev": args.rev,
        "worker_result_bytes_per_file": sizes, "modes": summary,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    md = f"""# Scan: the pipeline against the old batch.py ({args.rev}), one run

{res['date']}; {res['machine']}; model {described}; {args.n} films of {args.size}x{args.size}
(PNG and 16-bit DICOM, alternating); {workers} decoding processes; best of {args.rounds} interleaved rounds.
Command: `python benchmarks/bench_scan.py --vs-old --n {args.n} --size {args.size} --rounds {args.rounds}`

| mode | old files/s (best) | new files/s (best) | new / old (best) | new / old (medians) |
|---|---|---|---|---|
""" + "".join(f"| {m} | {s['old_files_per_s']:.2f} | {s['new_files_per_s']:.2f} | {s['ratio_new_over_old']:.2f} "
             f"| {s['ratio_of_medians']:.2f} |\n" for m, s in summary.items()) + f"""
Bytes a decode worker sends back per file (pickled, first film): with heatmaps old
{sizes['old_heatmaps'] / 2**20:.1f} MiB (the whole XRay) vs new {sizes['new_heatmaps'] / 2**20:.2f} MiB (model input +
uint8 display image); without heatmaps old {sizes['old_plain'] / 2**20:.2f} MiB vs new {sizes['new_plain'] / 2**20:.2f} MiB.
"""
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

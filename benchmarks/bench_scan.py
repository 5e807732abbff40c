"""Scan throughput and memory on full-size X-rays: do decoding and inference overlap?

    .venv/bin/python benchmarks/bench_scan.py                 # 500 images, 2000x2000
    .venv/bin/python benchmarks/bench_scan.py --n 60 --rss-at 20,60   # quick look

Images: made from the six bundled samples (assets/samples), upscaled to
SIZE x SIZE with a per-file perturbation (every file has its own sha256),
alternating 8-bit PNG and 16-bit (12 bits stored) uncompressed DICOM. They
are generated once into .cache/bench_scan/ and reused.

In one run, on the same files and with the same decoding pool:

1. decode-only rate: ``batch.scan`` with a model stand-in that returns at
   once (read + decode + preprocess in the worker processes);
2. inference-only rate: ``Predictor.predict_inputs`` on preprocessed inputs,
   batches of 8, as the scan runs them;
3. scan rate: ``cxr-screener scan`` (a fresh process, default workers) over
   all N files; target >= 0.8 x the slower of (1) and (2). The files are read
   once beforehand (warm file cache) and (1) runs before and after the scans,
   the faster run counting, so order effects cannot flatter the ratio;
4. peak memory: the summed RSS of the scan process and its workers, sampled
   every 50 ms, for scans of the first 100 and of all N files (flat = no
   growth with N).

Model: as bench_startup.py (installed default, else a MobileNet 224
``weights=None`` export, timing only). Writes benchmarks/results/scan.json
and scan.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / ".cache" / "bench_scan"
TARGET_RATIO = 0.8


# --------------------------------------------------------------------------- images


def make_images(n: int, size: int) -> Path:
    import numpy as np
    from PIL import Image

    folder = CACHE / f"n{n}_s{size}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    samples = sorted(p for p in (REPO / "assets" / "samples").iterdir() if p.suffix.lower() in (".png", ".jpg"))
    bases = []
    for path in samples:
        with Image.open(path) as im:
            bases.append(np.asarray(im.convert("L").resize((size, size), Image.Resampling.BICUBIC)))
    print(f"generating {n} images of {size}x{size} in {folder} ...", flush=True)
    for i in range(n):
        img = bases[i % len(bases)].copy()
        img[i % size, : 64] = (i * 37) % 256  # unique content, invisible at screening scale
        img[(i // size) % size, 64:128] = (i * 11) % 256
        if i % 2 == 0:
            Image.fromarray(img, mode="L").save(folder / f"img_{i:04d}.png", compress_level=1)
        else:
            _write_dicom(folder / f"img_{i:04d}.dcm", (img.astype(np.uint16) << 4) | (i % 16))
    done.write_text("ok\n")
    return folder


def _write_dicom(path: Path, pixels: Any) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


# --------------------------------------------------------------------------- measures


class _NullPrediction:
    def __init__(self, op: str, threshold: float) -> None:
        self.p_covid = 0.0
        self.label = "normal"
        self.operating_point = op
        self.threshold = threshold
        self.model = "decode-only"
        self.model_version = "0"


class DecodeOnly:
    """A model stand-in: the scan's decoding pipeline with no inference."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.name = "decode-only"
        self.version = "0"

    def predict_inputs(self, batch: Any, operating_point: str | None = None) -> list[_NullPrediction]:
        return [_NullPrediction(operating_point or "none", 0.5) for _ in range(len(batch))]


def decode_only_rate(folder: Path, spec: Any, workers: int | None) -> dict[str, float]:
    from desktop.core.batch import ScanStats, scan

    stats = ScanStats()
    n_ok = sum(1 for r in scan(folder, DecodeOnly(spec), workers=workers, stats=stats) if r.ok)
    return {"files": stats.done, "ok": n_ok, "seconds": round(stats.elapsed_s, 2),
            "rate_per_s": round(stats.done / stats.elapsed_s, 2)}


def inference_only_rate(predictor: Any, folder: Path, n: int) -> dict[str, float]:
    import numpy as np

    from desktop.core.imaging import load_xray

    files = sorted(folder.glob("img_*"))[:8]
    inputs = np.stack([predictor.preprocess(load_xray(f)) for f in files])
    predictor.predict_inputs(inputs)  # warm-up
    done = 0
    t0 = time.perf_counter()
    while done < n:
        predictor.predict_inputs(inputs)
        done += len(inputs)
    elapsed = time.perf_counter() - t0
    return {"images": done, "seconds": round(elapsed, 2), "rate_per_s": round(done / elapsed, 2),
            "batch": len(inputs), "threads": predictor.threads}


def _tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of pid, RSS of pid + its descendants) in bytes, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[1])
        rss[int(entry.name)] = int(statm[1]) * page
    tree = {pid}
    changed = True
    while changed:
        changed = False
        for child, parent in parents.items():
            if parent in tree and child not in tree:
                tree.add(child)
                changed = True
    return rss.get(pid, 0), sum(rss.get(p, 0) for p in tree)


def cli_scan(folder: Path, model: str, env: dict[str, str], workers: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "desktop.core.cli", "scan", str(folder), "--model", model,
               "--out", str(Path(tmp) / "out"), "--no-progress"]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        peak_main = peak_tree = 0
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak_main, peak_tree
            while not stop.is_set():
                main, tree = _tree_rss(proc.pid)
                peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
                samples.append((time.perf_counter() - t0, tree))
                stop.wait(0.05)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, err = proc.communicate()
        stop.set()
        th.join()
        wall = time.perf_counter() - t0
        m = re.search(r"Scanned (\d+) of (\d+) files in ([\d.]+) s", err)
        if proc.returncode not in (0, 1) or not m:
            raise RuntimeError(f"scan failed ({proc.returncode}): {err[-2000:]}")
        files, secs = int(m.group(1)), float(m.group(3))
        # memory in the second half of the scan vs the first: growth would show here
        half = [rss for t, rss in samples if t > wall / 2]
        first = [rss for t, rss in samples if t <= wall / 2]
        return {
            "files": files,
            "seconds": secs,
            "wall_s": round(wall, 2),
            "rate_per_s": round(files / secs, 2),
            "peak_rss_main_mib": round(peak_main / 2**20, 1),
            "peak_rss_total_mib": round(peak_tree / 2**20, 1),
            "peak_rss_total_first_half_mib": round(max(first, default=0) / 2**20, 1),
            "peak_rss_total_second_half_mib": round(max(half, default=0) / 2**20, 1),
        }


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="number of images (default 500)")
    ap.add_argument("--size", type=int, default=2000, help="image side in pixels (default 2000)")
    ap.add_argument("--rss-at", default="100,500", help="scan sizes whose peak memory is compared")
    ap.add_argument("--workers", type=int, default=None, help="decoding processes (default: the app's)")
    ap.add_argument("--bundle", help="time this bundle folder instead of the installed default")
    ap.add_argument("--out", default=str(RESULTS / "scan"), help="results path without extension")
    args = ap.parse_args()

    from bench_startup import bench_bundle

    from desktop.core.batch import available_cpus, default_workers, inference_threads
    from desktop.core.bundle import get_bundle
    from desktop.core.inference import Predictor

    folder = make_images(args.n, args.size)
    sizes = sorted({min(int(s), args.n) for s in args.rss_at.split(",")})
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        name, described, extra = bench_bundle(home, args.bundle)
        env = dict(os.environ, PYTHONPATH=str(REPO), CXR_SCREENER_OPERATOR="benchmark", **extra)
        env.setdefault("CXR_SCREENER_HOME", str(home))
        os.environ.update({k: v for k, v in env.items() if k.startswith("CXR_")})
        workers = args.workers if args.workers is not None else default_workers()
        threads = inference_threads()
        predictor = Predictor(get_bundle(name), threads=threads)  # as the scan configures it
        predictor_all = Predictor(get_bundle(name), threads=available_cpus())
        subsets: dict[int, Path] = {}
        for s in sizes:
            if s == args.n:
                subsets[s] = folder
                continue
            sub = Path(tmp) / f"first{s}"
            sub.mkdir()
            for f in sorted(folder.glob("img_*"))[:s]:
                os.link(f, sub / f.name)
            subsets[s] = sub

        print("reading every file once (warm the OS file cache: no order effect) ...", flush=True)
        for f in sorted(folder.glob("img_*")):
            f.read_bytes()
        print("decode-only ...", flush=True)
        decode_first = decode_only_rate(folder, predictor.spec, args.workers)
        print(f"  {decode_first}", flush=True)
        print("inference-only ...", flush=True)
        infer = inference_only_rate(predictor, folder, min(args.n, 200))
        print(f"  {infer}", flush=True)
        infer_all = inference_only_rate(predictor_all, folder, min(args.n, 200))
        print(f"  all cores: {infer_all}", flush=True)
        spec = predictor.spec
        del predictor, predictor_all
        scans = {}
        for s in sizes:
            print(f"scan of {s} files (cxr-screener scan) ...", flush=True)
            scans[s] = cli_scan(subsets[s], name, env, args.workers)
            print(f"  {scans[s]}", flush=True)
        print("decode-only again (the faster of the two runs is used) ...", flush=True)
        decode_again = decode_only_rate(folder, spec, args.workers)
        print(f"  {decode_again}", flush=True)
        decode = max(decode_first, decode_again, key=lambda d: d["rate_per_s"])

    full = scans[max(sizes)]
    slower = min(decode["rate_per_s"], infer["rate_per_s"])
    ratio = full["rate_per_s"] / slower
    small, big = scans[min(sizes)], scans[max(sizes)]
    growth = big["peak_rss_total_mib"] / small["peak_rss_total_mib"] if small["peak_rss_total_mib"] else float("nan")
    result = {
        "command": "python benchmarks/bench_scan.py " + " ".join(sys.argv[1:]),
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {_usable_cpus()} usable CPUs (of {os.cpu_count()}), Python {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "model": described,
        "images": f"{args.n} x {args.size}x{args.size}: half 8-bit PNG, half 16-bit DICOM (12 bits stored)",
        "cpus": available_cpus(),
        "decode_workers": workers,
        "inference_threads": threads,
        "decode_only": decode,
        "decode_only_runs": [decode_first, decode_again],
        "inference_only": infer,
        "inference_only_all_cores": infer_all,
        "scan_over_slower_ratio_all_core_inference": round(
            full["rate_per_s"] / min(decode["rate_per_s"], infer_all["rate_per_s"]), 3),
        "scans": {str(k): v for k, v in scans.items()},
        "scan_over_slower_ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "peak_rss_growth": round(growth, 3),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(
        f"| scan of {k} | {v['rate_per_s']:.2f} /s ({v['seconds']:.1f} s) | {v['peak_rss_total_mib']:.0f} MiB "
        f"(main {v['peak_rss_main_mib']:.0f}; 1st half {v['peak_rss_total_first_half_mib']:.0f}, "
        f"2nd half {v['peak_rss_total_second_half_mib']:.0f}) |"
        for k, v in scans.items()
    )
    md = f"""# Scan benchmark

`{result['command'].strip()}` on {result['machine']}, {result['when']} (load average at the end: {result['load_average']}).
Images: {result['images']}. Model: {described}. {result['cpus']} cores: {workers} decoding process(es), {threads} ONNX Runtime thread(s).

| measure | rate | peak memory (scan + workers) |
|---|---:|---:|
| decode-only (read + decode + preprocess, same pool; faster of 2 runs: {decode_first['rate_per_s']:.2f}, {decode_again['rate_per_s']:.2f}) | {decode['rate_per_s']:.2f} /s | |
| inference-only (ONNX Runtime, batches of {infer['batch']}, {infer['threads']} thread(s), as in the scan) | {infer['rate_per_s']:.2f} /s | |
| inference-only, all {infer_all['threads']} cores | {infer_all['rate_per_s']:.2f} /s | |
{rows}

Scan / slower of (decode-only, inference-only) = **{ratio:.2f}** (target >= {TARGET_RATIO}: **{'met' if ratio >= TARGET_RATIO else 'NOT met'}**); against all-core inference: {result['scan_over_slower_ratio_all_core_inference']:.2f}.
Peak memory, {max(sizes)} vs {min(sizes)} files: x{growth:.2f} (flat = 1.0).
"""
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scan throughput and memory on full-size X-rays: do decoding and inference overlap?

    .venv/bin/python benchmarks/bench_scan.py                 # 500 images, 2000x2000
    .venv/bin/python benchmarks/bench_scan.py --n 60 --rss-at 20,60   # quick look

Images: made from the six bundled samples (assets/samples), upscaled to
SIZE x SIZE with a per-file perturbation (every file has its own sha256),
alternating 8-bit PNG and 16-bit (12 bits stored) uncompressed DICOM. They
are generated once into .cache/bench_scan/ and reused.

In one run, on the same files and with the same decoding pool, in
interleaved rounds over chunks of the files (noise from other jobs on a
shared machine then hits all three measures alike):

1. decode-only rate: ``batch.scan`` with a model stand-in that returns at
   once (read + decode + preprocess in the worker processes);
2. inference-only rate: ``Predictor.predict_inputs`` on preprocessed inputs,
   batches of 8, with the thread count the scan gives ONNX Runtime;
3. scan rate: ``batch.scan`` with the real predictor, results.csv and audit
   log, as ``cxr-screener scan`` runs it; target >= 0.8 x the slower of (1)
   and (2). The files are read once beforehand (warm file cache);
4. peak memory: the summed RSS of a ``cxr-screener scan`` process and its
   workers, sampled every 50 ms, for scans of the first 100 and of all N
   files (flat = no growth with N).

``--vs-old`` instead compares the scan with the batch.py it replaced, in one
run (benchmarks/bench_scan_vs_old.py).

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


_INPUTS: dict[Any, Any] = {}


def inference_only_rate(predictor: Any, folder: Path, n: int) -> dict[str, float]:
    import numpy as np

    from desktop.core.imaging import load_xray

    key = (str(folder), predictor.spec)
    if key not in _INPUTS:
        files = sorted(folder.glob("img_*"))[:8]
        _INPUTS[key] = np.stack([predictor.preprocess(load_xray(f)) for f in files])
    inputs = _INPUTS[key]
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


def scan_rate(folder: Path, predictor: Any, workers: int | None, tmp: Path) -> dict[str, float]:
    """The scan as the CLI runs it (results.csv + audit log), in this process."""
    from desktop.core.audit import AuditLog
    from desktop.core.batch import ScanStats, scan

    stats = ScanStats()
    out = tmp / f"scan-{time.monotonic_ns()}"
    with AuditLog(out / "audit.jsonl") as audit:
        for _ in scan(folder, predictor, results_csv=out / "results.csv", workers=workers, stats=stats, audit=audit):
            pass
    return {"files": stats.done, "seconds": round(stats.elapsed_s, 2), "rate_per_s": round(stats.done / stats.elapsed_s, 2)}


def _total(parts: list[dict[str, float]], key: str = "files") -> dict[str, float]:
    n = sum(p[key] for p in parts)
    secs = sum(p["seconds"] for p in parts)
    return {key: n, "seconds": round(secs, 2), "rate_per_s": round(n / secs, 2)}


def main() -> int:
    if "--vs-old" in sys.argv[1:]:  # the pipeline against the batch.py it replaced (bench_scan_vs_old.py)
        from bench_scan_vs_old import main as vs_old

        return vs_old([a for a in sys.argv[1:] if a != "--vs-old"])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="number of images (default 500)")
    ap.add_argument("--size", type=int, default=2000, help="image side in pixels (default 2000)")
    ap.add_argument("--chunks", type=int, default=5, help="interleaved rounds (decode-only, inference-only, scan)")
    ap.add_argument("--rss-at", default="100,500", help="scan sizes whose peak memory is compared")
    ap.add_argument("--workers", type=int, default=None, help="decoding processes (default: the app's)")
    ap.add_argument("--bundle", help="time this bundle folder instead of the installed default")
    ap.add_argument("--out", default=str(RESULTS / "scan"), help="results path without extension")
    args = ap.parse_args()

    from bench_startup import bench_bundle

    from desktop.core.bundle import get_bundle
    from desktop.core.cpu import available_cpus
    from desktop.core.cpu import decode_workers as default_workers
    from desktop.core.cpu import scan_inference_threads as inference_threads
    from desktop.core.inference import Predictor

    folder = make_images(args.n, args.size)
    files = sorted(folder.glob("img_*"))
    sizes = sorted({min(int(s), args.n) for s in args.rss_at.split(",")})
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        name, described, extra = bench_bundle(home, args.bundle)
        env = dict(os.environ, PYTHONPATH=str(REPO), CXR_SCREENER_OPERATOR="benchmark", **extra)
        env.setdefault("CXR_SCREENER_HOME", str(home))
        os.environ.update({k: v for k, v in env.items() if k.startswith("CXR_")})
        workers = args.workers if args.workers is not None else default_workers()
        threads = inference_threads()
        predictor = Predictor(get_bundle(name), threads=threads)  # as the scan configures it
        predictor_all = Predictor(get_bundle(name), threads=available_cpus())

        def subset(label: str, chosen: list[Path]) -> Path:
            sub = tmp / label
            sub.mkdir()
            for f in chosen:
                os.link(f, sub / f.name)
            return sub

        k = max(1, args.chunks)
        chunks = [subset(f"chunk{i}", files[i::k]) for i in range(k)]
        subsets = {s: folder if s == args.n else subset(f"first{s}", files[:s]) for s in sizes}

        print("reading every file once (warm the OS file cache: no order effect) ...", flush=True)
        for f in files:
            f.read_bytes()
        # Interleaved rounds: machine noise (other jobs) hits the three measures alike.
        decode_parts, infer_parts, infer_all_parts, scan_parts = [], [], [], []
        for i, chunk in enumerate(chunks):
            n_chunk = len(list(chunk.iterdir()))
            decode_parts.append(decode_only_rate(chunk, predictor.spec, workers))
            infer_parts.append(inference_only_rate(predictor, folder, n_chunk))
            infer_all_parts.append(inference_only_rate(predictor_all, folder, n_chunk))
            scan_parts.append(scan_rate(chunk, predictor, workers, tmp))
            print(f"round {i + 1}/{k}: decode-only {decode_parts[-1]['rate_per_s']}/s, inference-only "
                  f"{infer_parts[-1]['rate_per_s']}/s, scan {scan_parts[-1]['rate_per_s']}/s", flush=True)
        decode = _total(decode_parts)
        infer = _total(infer_parts, "images") | {"batch": 8, "threads": threads}
        infer_all = _total(infer_all_parts, "images") | {"batch": 8, "threads": available_cpus()}
        scanned = _total(scan_parts)
        round_ratios = [sp["rate_per_s"] / min(dp["rate_per_s"], ip["rate_per_s"])
                        for sp, dp, ip in zip(scan_parts, decode_parts, infer_parts, strict=True)]
        del predictor, predictor_all
        scans = {}
        for s in sizes:
            print(f"memory: scan of {s} files (cxr-screener scan, a fresh process) ...", flush=True)
            scans[s] = cli_scan(subsets[s], name, env, args.workers)
            print(f"  {scans[s]}", flush=True)

    slower = min(decode["rate_per_s"], infer["rate_per_s"])
    ratio = scanned["rate_per_s"] / slower
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
        "rounds": k,
        "decode_only": decode,
        "inference_only": infer,
        "inference_only_all_cores": infer_all,
        "scan": scanned,
        "round_ratios": [round(r, 3) for r in round_ratios],
        "scan_over_slower_ratio": round(ratio, 3),
        "scan_over_slower_ratio_all_core_inference": round(scanned["rate_per_s"] / min(decode["rate_per_s"], infer_all["rate_per_s"]), 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "memory_scans": {str(s): v for s, v in scans.items()},
        "peak_rss_growth": round(growth, 3),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(
        f"| `cxr-screener scan` of {s} files | {v['rate_per_s']:.2f} /s | {v['peak_rss_total_mib']:.0f} MiB "
        f"(main {v['peak_rss_main_mib']:.0f}; 1st half {v['peak_rss_total_first_half_mib']:.0f}, "
        f"2nd half {v['peak_rss_total_second_half_mib']:.0f}) |"
        for s, v in scans.items()
    )
    md = f"""# Scan benchmark

`{result['command'].strip()}` on {result['machine']}, {result['when']} (load average at the end: {result['load_average']}).
Images: {result['images']}. Model: {described}. {result['cpus']} cores: {workers} decoding process(es), {threads} ONNX Runtime thread(s).
Rates over all {args.n} files, measured in {k} interleaved rounds (decode-only, inference-only, scan on the same {args.n // k}-file chunk), so that noise from other jobs hits all three alike.

| measure | rate | peak memory (scan + workers) |
|---|---:|---:|
| decode-only (read + decode + preprocess, same process pool) | {decode['rate_per_s']:.2f} /s | |
| inference-only (ONNX Runtime, batches of 8, {threads} thread(s), as in the scan) | {infer['rate_per_s']:.2f} /s | |
| inference-only, all {available_cpus()} cores | {infer_all['rate_per_s']:.2f} /s | |
| scan (decode + inference + results.csv + audit log) | {scanned['rate_per_s']:.2f} /s | |
{rows}

Scan / slower of (decode-only, inference-only) = **{ratio:.2f}** (target >= {TARGET_RATIO}: **{'met' if ratio >= TARGET_RATIO else 'NOT met'}**); per round: {', '.join(f'{r:.2f}' for r in round_ratios)}; against all-core inference: {result['scan_over_slower_ratio_all_core_inference']:.2f}.
Peak memory of `cxr-screener scan`, {max(sizes)} vs {min(sizes)} files: x{growth:.2f} (flat = 1.0).
"""
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

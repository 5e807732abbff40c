"""Listener throughput: films sent by DICOM and screened per second, against ``scan`` on the same files.

    .venv/bin/python benchmarks/bench_listen.py                  # 40 films, 1536x1536, 2 rounds
    .venv/bin/python benchmarks/bench_listen.py --n 16 --rounds 1   # quick look

Films: N CR chest films (12 bits stored, uncompressed, with patient data),
made once into .cache/bench_listen/ from the bundled sample X-rays.

In one run, in interleaved rounds (noise from other jobs on a shared machine
then hits both measures alike):

1. scan rate: ``cxr-screener scan`` of the folder, files per second as its
   summary reports them (model loading excluded);
2. listen rate: ``cxr-screener listen`` started and ready (model loaded),
   then the films C-STOREd in one association as a modality sends them;
   films per second from the first byte sent to the last row in
   ``results.csv`` (receiving, spooling and screening together).

Target: listen rate >= 0.8 x scan rate (median over rounds). All traffic on
127.0.0.1. Model: ``--model`` or the installed default. Writes
benchmarks/results/listen.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / ".cache" / "bench_listen"
TARGET_RATIO = 0.8


def make_films(n: int, size: int) -> Path:
    import numpy as np
    from PIL import Image

    from tests.dicom_factory import write_chest_dicom

    folder = CACHE / f"n{n}_s{size}"
    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    samples = sorted(p for p in (REPO / "assets" / "samples").iterdir() if p.suffix.lower() in (".png", ".jpg"))
    bases = []
    for path in samples:
        with Image.open(path) as im:
            bases.append(np.asarray(im.convert("L").resize((size, size), Image.Resampling.BICUBIC)))
    print(f"generating {n} films of {size}x{size} in {folder} ...", flush=True)
    for i in range(n):
        img = (bases[i % len(bases)].astype(np.uint16) << 4) | (i % 16)
        img[i % size, :64] = (i * 37) % 4096  # unique content
        write_chest_dicom(folder / f"film_{i:04d}.dcm", img, bits_stored=12, PatientName=f"Bench^{i}",
                          PatientID=f"B{i:04d}", StudyDate="20250101", Modality="CR")
    (folder / ".complete").write_text("ok\n")
    return folder


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("CXR_SCREENER_OPERATOR", "benchmark")
    return env


def scan_rate(folder: Path, model: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "desktop.core.cli", "scan", str(folder), *model,
               "--out", str(Path(tmp) / "out"), "--no-progress"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=1800)
    m = re.search(r"Scanned (\d+) of (\d+) files in ([\d.]+) s", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"scan failed ({proc.returncode}): {proc.stderr[-2000:]}")
    files, seconds = int(m.group(1)), float(m.group(3))
    return {"files": files, "seconds": seconds, "rate_per_s": round(files / seconds, 3)}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rows(csv_path: Path) -> int:
    try:
        return max(0, csv_path.read_bytes().count(b"\n") - 1)
    except OSError:
        return 0


def listen_rate(folder: Path, model: list[str]) -> dict[str, Any]:
    from tests.listen_support import send

    films = sorted(folder.glob("film_*.dcm"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        port = _free_port()
        log = Path(tmp) / "listen.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "desktop.core.cli", "listen", "--port", str(port),
                                     "--out", str(out), *model], stdout=subprocess.DEVNULL, stderr=fh, env=_env())
            try:
                deadline = time.monotonic() + 300
                while "Listening on" not in log.read_text(errors="replace"):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"listen did not start: {log.read_text(errors='replace')[-2000:]}")
                    time.sleep(0.1)
                time.sleep(1.0)  # the worker's start-up pass over the empty spool
                sent: dict[str, float] = {}

                def modality() -> None:
                    statuses = send(port, films)
                    sent["done"] = time.perf_counter()
                    sent["ok"] = float(statuses.count(0))

                t0 = time.perf_counter()
                thread = threading.Thread(target=modality, daemon=True)
                thread.start()
                csv_path = out / "results.csv"
                while _rows(csv_path) < len(films):
                    if proc.poll() is not None or time.perf_counter() - t0 > 1800:
                        raise SystemExit(f"listen stopped: {log.read_text(errors='replace')[-2000:]}")
                    time.sleep(0.02)
                t_end = time.perf_counter()
                thread.join(60)
            finally:
                proc.terminate()
                proc.wait(60)
    seconds = t_end - t0
    return {"films": len(films), "acknowledged": int(sent.get("ok", 0)),
            "send_seconds": round(sent.get("done", t_end) - t0, 2), "seconds": round(seconds, 2),
            "rate_per_s": round(len(films) / seconds, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--size", type=int, default=1536)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", help="bundle name (default: the installed default)")
    ap.add_argument("--out", type=Path, default=RESULTS / "listen.json")
    args = ap.parse_args()
    folder = make_films(args.n, args.size)
    model = ["--model", args.model] if args.model else []
    rounds = []
    for r in range(args.rounds):
        s = scan_rate(folder, model)
        li = listen_rate(folder, model)
        ratio = li["rate_per_s"] / s["rate_per_s"]
        print(f"round {r + 1}: scan {s['rate_per_s']:.2f} files/s, listen {li['rate_per_s']:.2f} films/s "
              f"(sent in {li['send_seconds']} s): ratio {ratio:.2f}", flush=True)
        rounds.append({"scan": s, "listen": li, "ratio": round(ratio, 3)})
    ratio = statistics.median(r["ratio"] for r in rounds)
    result = {
        "benchmark": "bench_listen",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count()},
        "films": {"n": args.n, "size": args.size, "format": "CR, 12 bits stored, explicit VR LE"},
        "model": args.model or "installed default",
        "rounds": rounds,
        "ratio_median": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "pass": ratio >= TARGET_RATIO,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median ratio listen/scan {ratio:.2f} (target >= {TARGET_RATIO}); written {args.out}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Load + render speed of the imaging core on a 3000x2500 chest X-ray (generated, not downloaded).

    python benchmarks/bench_imaging.py [--repeats 5]

Writes benchmarks/results/imaging.json and imaging.md: for a 16-bit DICOM (uncompressed,
RLE, JPEG-LS lossless, JPEG 2000 lossless) and a 16-bit and 8-bit PNG of the same synthetic
chest, the median wall time of ``load_xray`` (read, decode, LUTs, default view), of a
re-render with another window (``to_uint8``), and the peak traced memory of one load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"
HEIGHT, WIDTH = 3000, 2500


def make_files(folder: Path) -> dict[str, Path]:
    from tests.hostile import dicom_bytes, png_bytes, quantize, synthetic_chest

    chest = synthetic_chest(HEIGHT, WIDTH, seed=11)
    q16 = quantize(chest, 16)
    q12 = quantize(chest, 12)
    files = {
        "DICOM 16-bit, uncompressed": dicom_bytes(q16, bits_stored=16, window=(32768, 65536)),
        "DICOM 12-bit stored, uncompressed, MONOCHROME1": dicom_bytes(
            (4095 - q12).astype("uint16"), bits_stored=12, photometric="MONOCHROME1"
        ),
        "DICOM 16-bit, RLE": dicom_bytes(q16, bits_stored=16, transfer_syntax="1.2.840.10008.1.2.5"),
        "DICOM 16-bit, JPEG-LS lossless": dicom_bytes(
            q16, bits_stored=16, transfer_syntax="1.2.840.10008.1.2.4.80"
        ),
        "DICOM 16-bit, JPEG 2000 lossless": dicom_bytes(
            q16, bits_stored=16, transfer_syntax="1.2.840.10008.1.2.4.90"
        ),
        "PNG 16-bit": png_bytes(q16),
        "PNG 8-bit": png_bytes(quantize(chest, 8)),
    }
    out = {}
    for i, (name, data) in enumerate(files.items()):
        path = folder / f"bench_{i}.{'png' if name.startswith('PNG') else 'dcm'}"
        path.write_bytes(data)
        out[name] = path
    return out


def measure(path: Path, repeats: int) -> dict[str, Any]:
    from desktop.core.imaging import Window, load_xray

    load_xray(path)  # warm up: imports, decoder initialisation, page cache
    loads, renders = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        xray = load_xray(path)
        t1 = time.perf_counter()
        lo, hi = float(xray.values.min()), float(xray.values.max())
        xray.to_uint8(Window.from_range(lo + (hi - lo) * 0.1, hi - (hi - lo) * 0.1))
        t2 = time.perf_counter()
        loads.append(t1 - t0)
        renders.append(t2 - t1)
    tracemalloc.start()
    load_xray(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "file_mb": round(path.stat().st_size / 2**20, 2),
        "load_s_median": round(statistics.median(loads), 4),
        "load_s_min": round(min(loads), 4),
        "render_s_median": round(statistics.median(renders), 4),
        "load_plus_render_s": round(statistics.median(loads) + statistics.median(renders), 4),
        "peak_traced_mb": round(peak / 2**20, 1),
        "repeats": repeats,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Imaging benchmark",
        "",
        f"`{result['command']}` ({result['date']}; {result['cpu']}, {result['cpus']} CPUs; "
        f"image {WIDTH}x{HEIGHT}, median of {result['repeats']})",
        "",
        "| file | size (MiB) | load (s) | re-render with a new window (s) | peak traced memory (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in result["results"].items():
        lines.append(
            f"| {name} | {r['file_mb']:.1f} | {r['load_s_median']:.3f} | {r['render_s_median']:.3f} "
            f"| {r['peak_traced_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cxr_bench_") as tmp:
        files = make_files(Path(tmp))
        results = {name: measure(path, args.repeats) for name, path in files.items()}
    result = {
        "command": "python benchmarks/bench_imaging.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "image": [HEIGHT, WIDTH],
        "repeats": args.repeats,
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "imaging.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "imaging.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

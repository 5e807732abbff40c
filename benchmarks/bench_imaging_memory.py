"""Peak memory (RSS) of one ``load_xray`` on near-limit and hostile files, each in a fresh process.

    python benchmarks/bench_imaging_memory.py

Writes benchmarks/results/memory.json and memory.md. Each case runs in its own Python
process (so one case's heap cannot hide another's) that imports the imaging package and its
decoders, records its peak RSS (``VmHWM`` of /proc/self/status on Linux, since ``ru_maxrss``
keeps the forking parent's peak across exec there; ``resource.getrusage`` elsewhere) as the
baseline, loads one file, and records it again: the peak RSS of the process, imports included. Files (generated
here, not downloaded): 49-megapixel (7000x7000, just under the 50 MP limit) PNGs of a few
hundred KB, 8-bit gray, 16-bit gray and RGB; a 3000x2500 JPEG 2000 DICOM; a deflated DICOM
"bomb" (1 GiB of zeros behind a 128x112 header, ~1 MB on disk). "scan" loads with the
bundled model's input as ``target`` (what a scan worker does), "full" without (the viewer).
Goal (issue #20): a 49 MP film loaded for a scan peaks under 600 MB. POSIX only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"
SIDE = 7000
from desktop.core.imaging.resolution import scan_target  # noqa: E402  (after the sys.path line)

TARGET = scan_target(224, 224)  # what a scan asks the loader for (twice the bundled model input)
GOAL_MB = 600

CHILD = r"""
import json, resource, sys, time
import numpy, PIL.Image, PIL.PngImagePlugin, PIL.JpegImagePlugin, PIL.Jpeg2KImagePlugin, pydicom  # noqa
from desktop.core.imaging import load_xray
from desktop.core.errors import ImageLoadError
from pydicom.pixels import get_decoder
get_decoder("1.2.840.10008.1.2.4.90").available_plugins
def rss():
    # VmHWM: the peak RSS of this process image. ru_maxrss would do elsewhere, but on Linux it
    # keeps the high-water mark of the forking parent across exec.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
path, target = sys.argv[1], json.loads(sys.argv[2])
base = rss()
t0 = time.perf_counter()
try:
    x = load_xray(path, target=tuple(target) if target else None)
    outcome = f"ok {x.shape[1]}x{x.shape[0]} (1/{x.decode_scale})"
except ImageLoadError as exc:
    outcome = f"refused: {exc.reason}"
print(json.dumps({"baseline_mb": round(base, 1), "peak_mb": round(rss(), 1),
                  "seconds": round(time.perf_counter() - t0, 3), "outcome": outcome}))
"""


def make_files(folder: Path) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    from tests.hostile import dicom_bytes, quantize
    from tests.test_imaging_limits import deflated_bomb

    gradient = Image.linear_gradient("L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    films: dict[str, Any] = {
        "PNG 49 MP 8-bit gray": gradient,
        "PNG 49 MP 16-bit gray": Image.fromarray(np.asarray(gradient).astype(np.uint16) * 257),
        "PNG 49 MP RGB": Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_90), gradient)),
    }
    out: dict[str, Path] = {}
    for i, (name, im) in enumerate(films.items()):
        path = folder / f"big_{i}.png"
        im.save(path, "PNG", optimize=True)
        out[name] = path
    del films, gradient
    from benchmarks.bench_reduced_decode import film

    j2k = folder / "j2k.dcm"
    j2k.write_bytes(
        dicom_bytes(quantize(film(3000, 2500), 16), bits_stored=16, transfer_syntax="1.2.840.10008.1.2.4.90")
    )
    out["DICOM 3000x2500 JPEG 2000"] = j2k
    bomb = folder / "bomb.dcm"
    bomb.write_bytes(deflated_bomb(1024 * 2**20))
    out["Deflated DICOM bomb (1 GiB inflated)"] = bomb
    return out


def run_case(path: Path, target: tuple[int, int] | None) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), json.dumps(target)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    if proc.returncode != 0:
        return {"outcome": f"process failed ({proc.returncode}): {proc.stderr.strip()[-300:]}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["file_kb"] = round(path.stat().st_size / 1024, 1)
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Imaging memory benchmark",
        "",
        f"`{result['command']}` ({result['date']}; {result['cpu']}, {result['cpus']} CPUs; peak RSS of a "
        "fresh process that loads one file, imports included)",
        "",
        "| file | size (KiB) | load | baseline RSS (MB) | peak RSS (MB) | time (s) | outcome |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for r in result["results"]:
        lines.append(
            f"| {r['file']} | {r.get('file_kb', 0):.0f} | {r['load']} | {r.get('baseline_mb', 0):.0f} "
            f"| {r.get('peak_mb', 0):.0f} | {r.get('seconds', 0):.2f} | {r['outcome']} |"
        )
    lines += [
        "",
        f"Goal: a 49 MP film loaded for a scan peaks under {GOAL_MB} MB: "
        + ("met" if result["goal_met"] else "NOT met") + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cxr_mem_") as tmp:
        files = make_files(Path(tmp))
        for name, path in files.items():
            for load, target in (("scan", TARGET), ("full", None)):
                if name.startswith("Deflated") and load == "full":
                    continue  # refused before any decode either way
                rows.append({"file": name, "load": load, **run_case(path, target)})
    scans = [r for r in rows if r["file"].startswith("PNG 49 MP") and r["load"] == "scan"]
    result = {
        "command": "python benchmarks/bench_imaging_memory.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "target": list(TARGET),
        "goal_mb": GOAL_MB,
        "goal_met": bool(scans) and all(r.get("peak_mb", 1e9) < GOAL_MB for r in scans),
        "results": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "memory.md").write_text(markdown(result), encoding="utf-8")
    sys.stdout.write(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the PDF reports: a 500-image batch report, and single-study reports.

    .venv/bin/python benchmarks/bench_report.py            # 500 images
    .venv/bin/python benchmarks/bench_report.py --n 100 --study-pages 20

Images: real chest X-rays from ../shared/data/cxr when present (the first
N/2 COVID-19 and N/2 normal files, mixed sizes and formats), else synthetic
1024x1024 PNGs. Predictions are made up (the report is what is measured, not
the model); study pages run the default bundled model's Predictor (else the
tiny test bundle's).

Writes benchmarks/results/report.json and report.md: wall time, time per
image, peak resident memory (RSS) of this process, PDF size and pages.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"


def _rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


def _images(n: int, tmp: Path) -> tuple[Path, list[Path], str]:
    shared = Path(os.environ.get("CXR_SHARED_DIR", REPO.parent / "shared")) / "data" / "cxr"
    if (shared / "covid").is_dir() and (shared / "normal").is_dir():
        files: list[Path] = []
        for cls in ("covid", "normal"):
            files += sorted(p for p in (shared / cls).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[
                : n // 2 + n % 2 * (cls == "covid")
            ]
        return shared, files[:n], f"real chest X-rays from {shared} ({len(files[:n])} files)"
    import numpy as np
    from PIL import Image

    folder = tmp / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    base = []
    for _ in range(10):
        arr = rng.normal(128, 40, (64, 64)).clip(0, 255).astype(np.uint8)
        base.append(Image.fromarray(arr, mode="L").resize((1024, 1024), Image.Resampling.BICUBIC))
    files = []
    for i in range(n):
        path = folder / f"img_{i:04d}.png"
        base[i % len(base)].save(path)
        files.append(path)
    return folder, files, f"synthetic 1024x1024 PNGs ({n} files)"


def _results(files: list[Path], folder: Path) -> list:
    import hashlib

    from desktop.core.batch import ScanResult

    out = []
    for i, path in enumerate(files):
        p = (hashlib.sha256(path.name.encode()).digest()[0] / 255.0) if i % 50 else None
        if p is None:  # one in 50 fails, as a corrupt file would
            out.append(ScanResult(path=str(path), sha256="", status="error", label=None, p_covid=None,
                                  model="bench", model_version="1", operating_point="balanced", threshold=0.5,
                                  error=f"{path}: truncated PNG", error_kind="corrupt",
                                  relpath=path.name))
            continue
        out.append(ScanResult(path=str(path), sha256=f"{i:064x}", status="ok", label="covid" if p >= 0.5 else "normal",
                              p_covid=p, model="bench", model_version="1", operating_point="balanced",
                              threshold=0.5, error=None, error_kind=None, relpath=path.name))
    return out


def _bundle() -> tuple[object, bool]:
    """The default bundled model, else the tiny test bundle, else a card-only stand-in."""
    from desktop.core.bundle import get_bundle, load_bundle
    from desktop.core.errors import ModelError

    try:
        return get_bundle(None), True
    except ModelError:
        pass
    tiny = REPO / "tests" / "data" / "tiny-mobilenet"
    if (tiny / "model_card.json").exists():
        return load_bundle(tiny), True
    from tests.report_helpers import FakeBundle

    return FakeBundle(), False


def _stage(stage: str, n: int) -> dict[str, object]:
    """One measurement in this (fresh) process: its peak RSS is the stage's own."""
    from pypdf import PdfReader

    from desktop.core.imaging import load_xray
    from desktop.core.report import ReportInfo, write_batch_report, write_study_report
    from tests.report_helpers import FakeHeatmap, FakePrediction

    bundle, real_model = _bundle()
    rss0 = _rss_mib()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder, files, source = _images(n, tmp)
        results = _results(files, folder)
        started = dt.datetime.now().astimezone()
        if stage in ("batch", "pages"):
            if stage == "pages" and not real_model:
                return {"skipped": "no test bundle for a real Predictor"}
            predictor = None
            if stage == "pages":  # the caller's model (the scan's): the report builds none of its own
                from desktop.core.inference import Predictor

                predictor = Predictor(bundle)
            t0 = time.perf_counter()
            out = write_batch_report(tmp / "b.pdf", results, folder=folder, bundle=bundle, operating_point=None,
                                     started=started, info=ReportInfo(clinic_name="Bench"),
                                     study_pages=stage == "pages", predictor=predictor)
            seconds = time.perf_counter() - t0
            res: dict[str, object] = {
                "images": len(results),
                "failed": sum(r.status != "ok" for r in results),
                "seconds": round(seconds, 2),
                "ms_per_image": round(1000 * seconds / len(results), 1),
                "pdf_mib": round(out.stat().st_size / 2**20, 2),
                "pages": len(PdfReader(str(out)).pages),
                "peak_rss_mib": round(_rss_mib(), 1),
                "rss_after_imports_mib": round(rss0, 1),
                "source": source,
            }
            if stage == "pages":
                res["model"] = f"{getattr(bundle, 'name', '?')}: decode + Grad-CAM per page"
            return res
        times, sizes = [], []
        for i, path in enumerate([Path(r.path) for r in results if r.status == "ok"][:n]):
            xray = load_xray(path)
            t0 = time.perf_counter()
            rep = write_study_report(tmp / f"s{i}.pdf", xray, FakePrediction(), FakeHeatmap(), bundle,
                                     ReportInfo(clinic_name="Bench"))
            times.append(time.perf_counter() - t0)
            sizes.append(rep.stat().st_size)
        times.sort()
        return {
            "reports": len(times),
            "median_seconds": round(times[len(times) // 2], 3),
            "max_seconds": round(times[-1], 3),
            "median_kib": round(sorted(sizes)[len(sizes) // 2] / 1024, 1),
            "peak_rss_mib": round(_rss_mib(), 1),
            "note": "the first report includes font registration",
        }


def _run_stage(stage: str, n: int) -> dict[str, object]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--n", str(n)]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="images in the batch report (default 500)")
    ap.add_argument("--study-pages", type=int, default=100, help="images in the batch report with study pages")
    ap.add_argument("--studies", type=int, default=10, help="single-study reports timed")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for report.json / report.md")
    ap.add_argument("--stage", choices=("batch", "pages", "study"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:
        print(json.dumps(_stage(args.stage, args.n)))
        return 0

    figures: dict[str, object] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": "python benchmarks/bench_report.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "note": "each measurement runs in a fresh process; peak_rss_mib is that process's peak resident memory",
    }
    b = figures["batch"] = _run_stage("batch", args.n)
    print(f"batch report, {b['images']} images: {b['seconds']} s, {b['pages']} pages, {b['pdf_mib']} MiB, "
          f"peak RSS {b['peak_rss_mib']} MiB")
    if args.study_pages:
        sp = figures["batch_with_study_pages"] = _run_stage("pages", args.study_pages)
        if "seconds" in sp:
            print(f"batch report with study pages, {sp['images']} images: {sp['seconds']} s, {sp['pages']} pages, "
                  f"{sp['pdf_mib']} MiB, peak RSS {sp['peak_rss_mib']} MiB")
    s = figures["study"] = _run_stage("study", args.studies)
    print(f"single-study report: median {s['median_seconds']} s, {s['median_kib']} KiB")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(figures, indent=2) + "\n")
    lines = [
        "# PDF report benchmark",
        "",
        f"`{figures['command']}` on {figures['machine']}, Python {figures['python']}, {figures['date']}.",
        f"Images: {b['source']}. Each row runs in a fresh process (peak RSS is its own).",
        "",
        "| report | images | time | per image | PDF | pages | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| batch (summary + table + thumbnails) | {b['images']} | {b['seconds']} s | {b['ms_per_image']} ms "
        f"| {b['pdf_mib']} MiB | {b['pages']} | {b['peak_rss_mib']} MiB |",
    ]
    sp = figures.get("batch_with_study_pages")
    if isinstance(sp, dict) and "seconds" in sp:
        lines.append(f"| batch + one study page per image (Grad-CAM each) | {sp['images']} | {sp['seconds']} s | "
                     f"{sp['ms_per_image']} ms | {sp['pdf_mib']} MiB | {sp['pages']} | {sp['peak_rss_mib']} MiB |")
    lines.append(f"| single study | 1 | {s['median_seconds']} s (median of {s['reports']}) | | "
                 f"{s['median_kib']} KiB | 2 | {s['peak_rss_mib']} MiB |")
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

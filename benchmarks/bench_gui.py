"""Benchmark the desktop window: start-up, open -> result, and GUI responsiveness during a folder scan.

    .venv/bin/python benchmarks/bench_gui.py            # 100-image scan
    .venv/bin/python benchmarks/bench_gui.py --n 300

Runs the real QtMainWindow offscreen (QT_QPA_PLATFORM=offscreen) with the
bundled model when assets/models/ has one, else the tiny test bundle.
Images: real chest X-rays from ../shared/data/cxr when present, else copies
of assets/samples. A 20 ms QTimer in the GUI thread records the gaps between
its ticks while the scan runs: the largest gap is how long the window could
not answer a click.

Writes benchmarks/results/gui.json and gui.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"


def _images(n: int, dest: Path) -> tuple[list[Path], str]:
    shared = Path(os.environ.get("CXR_SHARED_DIR", REPO.parent / "shared")) / "data" / "cxr"
    dest.mkdir(parents=True)
    if (shared / "covid").is_dir() and (shared / "normal").is_dir():
        picked: list[Path] = []
        for cls in ("covid", "normal"):
            files = sorted(p for p in (shared / cls).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            picked += files[: (n + 1) // 2 if cls == "covid" else n // 2]
        source = f"real chest X-rays from ../shared/data/cxr ({len(picked)} files)"
    else:
        samples = sorted(p for p in (REPO / "assets" / "samples").iterdir() if p.suffix.lower() in (".png", ".jpg"))
        picked = [samples[i % len(samples)] for i in range(n)]
        source = f"copies of the {len(samples)} bundled samples"
    out = []
    for i, src in enumerate(picked):
        target = dest / f"{i:04d}_{src.name}"
        shutil.copy(src, target)
        out.append(target)
    return out, source


def _wait(cond, timeout: float = 600.0) -> float:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QEventLoop, QTimer

    t0 = time.perf_counter()
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: (cond() or time.perf_counter() - t0 > timeout) and loop.quit())
    timer.start()
    if not cond():
        loop.exec()
    timer.stop()
    if not cond():
        raise SystemExit("timed out")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="images in the scanned folder")
    parser.add_argument("--opens", type=int, default=6, help="single images opened one after the other")
    args = parser.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="cxr-bench-gui-"))
    os.environ["CXR_SCREENER_HOME"] = str(tmp / "home")
    try:
        return _run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, tmp: Path) -> int:
    from PySide6.QtCore import QTimer

    from desktop.core.bundle import discover_bundles, model_dirs
    from desktop.qt.app import create_app
    from desktop.qt.qt_main_window import QtMainWindow
    from desktop.qt.qt_settings import AppSettings

    create_app()
    settings = AppSettings.from_ini(tmp / "settings.ini")
    settings.notice_accepted = True
    dirs = None
    if not discover_bundles(model_dirs()).bundles:
        dirs = [(REPO / "tests" / "data", "user")]
    images, source = _images(args.n, tmp / "scan")

    t0 = time.perf_counter()
    w = QtMainWindow(settings, show_notice=False, model_dirs=dirs)
    w.show()
    _wait(lambda: w._models_known and not w.is_busy())
    startup = time.perf_counter() - t0
    bundle = w.current_bundle()
    model = f"{bundle.name} {bundle.version} ({bundle.card.architecture})" if bundle else "none"

    opens = []
    for path in images[: args.opens]:
        t = time.perf_counter()
        w.open_files([path])
        _wait(lambda: w.current_prediction() is not None and not w.is_busy())
        opens.append(time.perf_counter() - t)
        w.close_current()

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    t = time.perf_counter()
    w.scan_folder(str(tmp / "scan"))
    timer.start()
    _wait(lambda: not w.batch.is_running() and len(w.batch.model.rows) == len(images))
    scan_s = time.perf_counter() - t
    timer.stop()
    gaps = sorted(b - a for a, b in zip(ticks, ticks[1:], strict=False))
    p99 = gaps[int(0.99 * (len(gaps) - 1))] if gaps else 0.0
    rows = w.batch.model.rows
    result = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "qt_platform": os.environ.get("QT_QPA_PLATFORM"),
        "model": model,
        "images": source,
        "startup_to_model_ready_s": round(startup, 3),
        "open_to_result_s": {"median": round(statistics.median(opens), 3), "max": round(max(opens), 3),
                             "n": len(opens)},
        "scan": {
            "files": len(rows),
            "failed": sum(not r.ok for r in rows),
            "seconds": round(scan_s, 2),
            "images_per_s": round(len(rows) / scan_s, 2),
            "gui_gap_max_ms": round(1000 * max(gaps), 1) if gaps else None,
            "gui_gap_p99_ms": round(1000 * p99, 1),
            "gui_ticks": len(ticks),
        },
    }
    w.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gui.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    s = result["scan"]
    md = "\n".join([
        "# Desktop window benchmark",
        "",
        f"`python benchmarks/bench_gui.py --n {args.n}` on {result['machine']}, {result['when']}, "
        f"Qt platform {result['qt_platform']}.",
        f"Model: {model}. Images: {source}.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| start-up to model ready | {result['startup_to_model_ready_s']:.2f} s |",
        f"| open an X-ray to result + heatmap (median of {len(opens)}) | {result['open_to_result_s']['median']:.2f} s |",
        f"| folder scan: {s['files']} files ({s['failed']} unreadable) | {s['seconds']:.1f} s, "
        f"{s['images_per_s']:.1f} images/s |",
        f"| longest GUI-thread pause during the scan (20 ms timer) | {s['gui_gap_max_ms']} ms |",
        f"| 99th percentile timer interval during the scan | {s['gui_gap_p99_ms']} ms |",
        "",
    ])
    (RESULTS / "gui.md").write_text(md, encoding="utf-8")
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Start-up: time from process start to the first JSON line of ``cxr-screener predict``.

    .venv/bin/python benchmarks/bench_startup.py              # default model, 7 runs
    .venv/bin/python benchmarks/bench_startup.py --runs 3 --bundle path/to/bundle

Measures, each as the median (and min) of several fresh processes:

- ``cxr-screener predict SAMPLE`` (the console script): process start to the
  first JSON line on stdout, for the default model (target <= 1.5 s);
- ``cxr-screener --help``: the CLI alone;
- ``import desktop.core.cli`` inside a fresh interpreter, and which heavy
  modules it pulled in (numpy, onnxruntime, pydicom, PIL must stay lazy);
- a bare ``python -c pass`` as the floor.

The model: the default bundle the app finds (assets/models or the user
folder); with none installed, a MobileNet 224 exported once from a
``weights=None`` Keras model into .cache/bench_bundles (needs TensorFlow;
timing only, its predictions mean nothing). Writes
benchmarks/results/startup.json and startup.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / ".cache" / "bench_bundles"
TARGET_S = 1.5


def bench_bundle(home: Path | None, bundle: str | None) -> tuple[str, str, dict[str, str]]:
    """(model name, description, extra env) of the model to time."""
    env: dict[str, str] = {}
    if bundle:
        src = Path(bundle)
        assert home is not None
        (home / "models").mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, home / "models" / src.name)
        env["CXR_SCREENER_HOME"] = str(home)
        card = json.loads((src / "model_card.json").read_text())
        return card["name"], f"{card['name']} {card['version']} ({card['architecture']}, given bundle)", env
    from desktop.core.bundle import discover_bundles, get_bundle

    if discover_bundles().bundles:
        b = get_bundle(None)
        return b.name, f"{b.name} {b.version} ({b.card.architecture}, installed default)", env
    path = CACHE / "bench-mobilenet-224"
    if not (path / "model_card.json").exists():
        from tests.model_fixtures import make_test_bundle

        CACHE.mkdir(parents=True, exist_ok=True)
        print("exporting a MobileNet 224 (weights=None) bundle for timing...", flush=True)
        make_test_bundle(CACHE, arch="mobilenet", input_size=224, name="bench-mobilenet-224", default=True)
    assert home is not None
    (home / "models").mkdir(parents=True, exist_ok=True)
    shutil.copytree(path, home / "models" / path.name)
    env["CXR_SCREENER_HOME"] = str(home)
    return "bench-mobilenet-224", "bench-mobilenet-224 (MobileNet 224, weights=None export: timing only)", env


def time_first_line(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    dt_s = time.perf_counter() - t0
    proc.communicate()
    return dt_s, line


def time_run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - t0


def import_cost(env: dict[str, str]) -> dict[str, object]:
    code = (
        "import sys, time; t = time.perf_counter(); import desktop.core.cli as c; c.build_parser(); "
        "d = time.perf_counter() - t; import json; "
        "print(json.dumps({'s': d, 'heavy': sorted(m for m in ('numpy', 'onnxruntime', 'pydicom', 'PIL', "
        "'matplotlib', 'reportlab') if m in sys.modules)}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def summary(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "runs": len(values)}


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--bundle", help="time this bundle folder instead of the installed default")
    ap.add_argument("--sample", default=str(REPO / "assets" / "samples" / "shenzhen__CHNCXR_0001_0.png"))
    ap.add_argument("--out", default=str(RESULTS / "startup"), help="results path without extension")
    args = ap.parse_args()

    exe = shutil.which("cxr-screener", path=str(Path(sys.executable).parent)) or ""
    cli = [exe] if exe else [sys.executable, "-m", "desktop.core.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        name, described, extra = bench_bundle(home, args.bundle)
        env = dict(os.environ, PYTHONPATH=str(REPO), **extra)
        env.setdefault("CXR_SCREENER_HOME", str(home))
        predict = [*cli, "predict", "--model", name, args.sample]
        _, first = time_first_line(predict, env)  # warm the OS file cache once
        line = json.loads(first)
        assert line["status"] == "ok", line
        first_line = [time_first_line(predict, env)[0] for _ in range(args.runs)]
        helps = [time_run([*cli, "--help"], env) for _ in range(args.runs)]
        floor = [time_run([sys.executable, "-c", "pass"], env) for _ in range(args.runs)]
        imports = [import_cost(env) for _ in range(args.runs)]

    result = {
        "command": "python benchmarks/bench_startup.py " + " ".join(sys.argv[1:]),
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {_usable_cpus()} usable CPUs (of {os.cpu_count()}), Python {platform.python_version()}",
        "model": described,
        "cli": " ".join(Path(c).name for c in cli),
        "target_first_line_s": TARGET_S,
        "predict_first_json_line": summary(first_line),
        "cli_help": summary(helps),
        "python_floor": summary(floor),
        "import_desktop_core_cli": summary([float(i["s"]) for i in imports]),
        "heavy_modules_imported_by_cli": imports[0]["heavy"],
        "meets_target": statistics.median(first_line) <= TARGET_S,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    p, h, f, i = (result[k] for k in ("predict_first_json_line", "cli_help", "python_floor", "import_desktop_core_cli"))
    md = f"""# Start-up benchmark

`{result['command'].strip()}` on {result['machine']}, {result['when']}.
Model: {described}. Sample: `{Path(args.sample).name}`. Median (min-max) of {args.runs} fresh processes.

| measure | median | min | max |
|---|---:|---:|---:|
| `cxr-screener predict`: process start to first JSON line | {p['median_s']:.3f} s | {p['min_s']:.3f} s | {p['max_s']:.3f} s |
| `cxr-screener --help` | {h['median_s']:.3f} s | {h['min_s']:.3f} s | {h['max_s']:.3f} s |
| `import desktop.core.cli` + build the parser | {i['median_s']:.3f} s | {i['min_s']:.3f} s | {i['max_s']:.3f} s |
| `python -c pass` (floor) | {f['median_s']:.3f} s | {f['min_s']:.3f} s | {f['max_s']:.3f} s |

Target: first JSON line <= {TARGET_S} s: **{'met' if result['meets_target'] else 'NOT met'}**.
Heavy modules imported by the CLI before a command runs: {', '.join(result['heavy_modules_imported_by_cli']) or 'none'}.
"""
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

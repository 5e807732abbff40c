"""Frozen-app budgets: bundle size, first prediction, GUI window shown.

    python benchmarks/bench_frozen.py [--bundle dist/CXRScreener] [--runs 5]

Runs the PyInstaller bundle (build it first: ``python scripts/build_bundle.py``) the way a
clinic PC would: a minimal environment with no Python on PATH, a fresh per-user folder,
the current directory outside the repository. Measures

- bundle size on disk (budget <= 350 MB);
- first prediction: from process start to the first JSON line of
  ``CXRScreener predict SAMPLE`` (budget <= 2 s), median of ``--runs`` runs after one
  warm-up run (file cache warm, as on a PC that has started the app before) and the
  very first (cold-ish) run as well;
- GUI window shown: from process start to the first event-loop turn after the main window
  was shown, offscreen (budget <= 2.5 s), through the entry point's startup probe.

Writes ``benchmarks/results/frozen.json`` and ``frozen.md``. The frozen smoke test
(``tests/test_frozen.py``) imports the helpers below and runs one round of this.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
IS_WIN = sys.platform == "win32"
MB = 1024 * 1024

BUDGETS = {"bundle_mb": 350.0, "first_prediction_s": 2.0, "gui_window_shown_s": 2.5}


# --------------------------------------------------------------------------- locating
def bundle_dir() -> Path:
    """The onedir bundle: ``$CXR_FROZEN_BUNDLE`` or ``dist/CXRScreener``."""
    return Path(os.environ.get("CXR_FROZEN_BUNDLE") or REPO / "dist" / "CXRScreener")


def gui_executable(bundle: Path) -> Path:
    return bundle / ("CXRScreener.exe" if IS_WIN else "CXRScreener")


def cli_executable(bundle: Path) -> Path:
    """The console program: the ``-cli`` twin on Windows, the one executable elsewhere."""
    return bundle / ("CXRScreener-cli.exe" if IS_WIN else "CXRScreener")


# --------------------------------------------------------------------------- environment
def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment with no Python on PATH and a fresh per-user folder.

    POSIX: PATH is an empty folder (not even /usr/bin, so no system python3 either).
    Windows: PATH is only the system folders (a Windows runner's Python is not there).
    """
    home.mkdir(parents=True, exist_ok=True)
    bin_dir = home / "empty-bin"
    bin_dir.mkdir(exist_ok=True)
    env: dict[str, str] = {
        "HOME": str(home),
        "CXR_SCREENER_HOME": str(home / "cxr"),
        "CXR_SCREENER_SETTINGS": str(home / "settings.ini"),
        "CXR_SCREENER_OPERATOR": "smoke-test",
        "QT_QPA_PLATFORM": "offscreen",
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    if IS_WIN:
        root = os.environ.get("SystemRoot", r"C:\Windows")
        env.update({
            "PATH": f"{root}\\System32",  # not {root}: py.exe lives there
            "SystemRoot": root,
            "WINDIR": root,
            "SystemDrive": os.environ.get("SystemDrive", "C:"),
            "USERPROFILE": str(home),
            "LOCALAPPDATA": str(home / "AppData" / "Local"),
            "APPDATA": str(home / "AppData" / "Roaming"),
            "TEMP": str(home),
            "TMP": str(home),
        })
        env.pop("LANG")
        env.pop("LC_ALL")
    else:
        env["PATH"] = str(bin_dir)
    env.update(extra)
    return env


def python_on_path(env: dict[str, str]) -> list[str]:
    """Any python the environment's PATH would find (should be none)."""
    names = ("python", "python3", "python3.11", "py")
    return [hit for name in names if (hit := shutil.which(name, path=env["PATH"]))]


# --------------------------------------------------------------------------- running
def run_frozen(exe: Path, args: Sequence[str | os.PathLike[str]], env: dict[str, str], cwd: Path,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe), *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True,
        encoding="utf-8", errors="replace", timeout=timeout, check=False,
    )


def time_first_line(exe: Path, args: Sequence[str | os.PathLike[str]], env: dict[str, str], cwd: Path,
                    timeout: float = 120) -> tuple[float, str, str, int]:
    """(seconds from process start to the first stdout line, that line, stderr, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe), *map(str, args)], env=env, cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    try:
        _rest, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _rest, err = proc.communicate()
    return elapsed, first.strip(), err, proc.returncode


def gui_probe(exe: Path, files: Sequence[Path], env: dict[str, str], cwd: Path,
              screenshot: Path | None = None, timeout: float = 180) -> dict[str, object]:
    """Start the GUI with the startup probe; return its record plus launch-relative times."""
    probe = cwd / f"probe-{time.time_ns()}.json"
    genv = dict(env, CXR_SCREENER_STARTUP_PROBE=str(probe))
    if screenshot is not None:
        genv["CXR_SCREENER_PROBE_SCREENSHOT"] = str(screenshot)
    t0 = time.time()
    proc = subprocess.run(
        [str(exe), *map(str, files)], env=genv, cwd=cwd, capture_output=True, text=True,
        encoding="utf-8", errors="replace", timeout=timeout, check=False,
    )
    record: dict[str, object] = {"returncode": proc.returncode, "stderr_tail": proc.stderr[-2000:]}
    if probe.is_file():
        data = json.loads(probe.read_text(encoding="utf-8"))
        record.update(data)
        for key in ("t_probe_installed", "t_window_shown", "t_first_idle", "t_work_done"):
            if isinstance(data.get(key), float):
                record[key.replace("t_", "s_", 1)] = round(data[key] - t0, 3)
    return record


# --------------------------------------------------------------------------- size
def bundle_size_bytes(bundle: Path) -> int:
    """Size on disk (allocated blocks; symbolic links not followed, hard links once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, _dirs, files in os.walk(bundle):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            blocks = getattr(st, "st_blocks", None)
            total += blocks * 512 if blocks else st.st_size
    return total


# --------------------------------------------------------------------------- test data
def sample_files() -> list[Path]:
    folder = REPO / "assets" / "samples"
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))


def make_decoder_dicoms(out_dir: Path, size: int = 512) -> dict[str, Path]:
    """Chest DICOMs (12-bit CR, MONOCHROME2) needing each decoder, from a bundled sample.

    RLE (pydicom/pylibjpeg-rle), JPEG-LS (pyjpegls), JPEG 2000 (pylibjpeg-openjpeg) are
    encoded with pydicom; JPEG Lossless SV1 with GDCM (pydicom cannot encode it).
    """
    import numpy as np
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ComputedRadiographyImageStorage,
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGLSLossless,
        RLELossless,
        generate_uid,
    )

    src = next(p for p in sample_files() if p.suffix.lower() == ".png")
    img = Image.open(src).convert("L").resize((size, size))
    arr = np.asarray(img).astype(np.uint16) * 16  # 12 bits stored

    def dataset() -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.Modality = "CR"
        ds.BodyPartExamined = "CHEST"
        ds.ViewPosition = "PA"
        ds.PatientName = "SMOKE^TEST"
        ds.PatientID = "SMOKE-0001"
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = arr.tobytes()
        return ds

    out_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, uid in (("rle", RLELossless), ("jpeg_ls", JPEGLSLossless),
                      ("jpeg_2000", JPEG2000Lossless)):
        ds = dataset()
        ds.compress(uid, arr)
        out[name] = out_dir / f"smoke_{name}.dcm"
        ds.save_as(out[name], enforce_file_format=True)
    plain = out_dir / "smoke_uncompressed.dcm"
    dataset().save_as(plain, enforce_file_format=True)
    out["uncompressed"] = plain
    try:
        import gdcm  # BSD; the app ships it too

        reader = gdcm.ImageReader()
        reader.SetFileName(str(plain))
        if not reader.Read():
            raise RuntimeError("gdcm could not read the uncompressed DICOM")
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise RuntimeError("gdcm could not encode JPEG Lossless")
        writer = gdcm.ImageWriter()
        target = out_dir / "smoke_jpeg_lossless.dcm"
        writer.SetFileName(str(target))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise RuntimeError("gdcm could not write the JPEG Lossless DICOM")
        out["jpeg_lossless"] = target
    except ImportError:
        pass
    return out


# --------------------------------------------------------------------------- benchmark
def measure(bundle: Path, runs: int = 5, work: Path | None = None) -> dict[str, Any]:
    """One benchmark round; returns the result document (not yet written)."""
    work = Path(tempfile.mkdtemp(prefix="cxr-frozen-")) if work is None else work
    env = clean_env(work / "home")
    sample = next(p for p in sample_files() if p.suffix.lower() == ".png")
    cli = cli_executable(bundle)

    diag = run_frozen(cli, ["--diagnose"], env, work)
    models = json.loads(diag.stdout).get("bundled_models") if diag.returncode == 0 else None

    first_runs: list[dict[str, Any]] = []
    for i in range(runs + 1):
        seconds, line, err, rc = time_first_line(cli, ["predict", sample], env, work)
        ok = rc == 0 and line.startswith("{") and json.loads(line).get("status") == "ok"
        first_runs.append({"run": i, "seconds": round(seconds, 3), "ok": ok,
                           "stderr_tail": err[-300:] if not ok else ""})
    warm = [r["seconds"] for r in first_runs[1:] if r["ok"]]

    gui_runs: list[dict[str, Any]] = []
    for _ in range(max(1, runs // 2) + 1):
        gui_runs.append(gui_probe(gui_executable(bundle), [], env, work))
    gui_shown = [r["s_first_idle"] for r in gui_runs[1:] if isinstance(r.get("s_first_idle"), float)]

    size = bundle_size_bytes(bundle)
    first_pred = statistics.median(warm) if warm else None
    gui_s = statistics.median(gui_shown) if gui_shown else None
    doc: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_frozen.py",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python_building": platform.python_version()},
        "bundle": str(bundle),
        "budgets": BUDGETS,
        "bundled_models": models,
        "bundle_size_mb": round(size / MB, 1),
        "first_prediction_s": first_pred,
        "first_prediction_first_run_s": first_runs[0]["seconds"],
        "first_prediction_runs_s": warm,
        "gui_window_shown_s": gui_s,
        "gui_window_shown_runs_s": gui_shown,
        "gui_first_run_s": gui_runs[0].get("s_first_idle"),
        "within_budget": {
            "bundle_mb": size / MB <= BUDGETS["bundle_mb"],
            "first_prediction_s": first_pred is not None and first_pred <= BUDGETS["first_prediction_s"],
            "gui_window_shown_s": gui_s is not None and gui_s <= BUDGETS["gui_window_shown_s"],
        },
        "notes": [
            "first prediction: process start to the first JSON line of `CXRScreener predict "
            f"{sample.name}` with the default model; median of {runs} runs after a warm-up run",
            "GUI: process start to the first event-loop turn after the main window's Show "
            "event (QT_QPA_PLATFORM=offscreen), startup probe of scripts/cxr_screener_entry.py",
            "environment: no Python on PATH, fresh per-user folder, cwd outside the repository",
        ],
        "failures": [r for r in first_runs if not r["ok"]]
        + [r for r in gui_runs if r.get("returncode") != 0 or "s_first_idle" not in r],
    }
    return doc


def write_results(doc: dict[str, Any], out_dir: Path = RESULTS, stem: str = "frozen") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    ok = doc["within_budget"]

    def row(label: str, key: str, unit: str, budget_key: str) -> str:
        value = doc.get(key)
        shown = f"{value:.2f} {unit}" if isinstance(value, float) else "not measured"
        verdict = "yes" if ok.get(budget_key) else "NO"
        return f"| {label} | {shown} | <= {BUDGETS[budget_key]:g} {unit} | {verdict} |"

    machine = doc["machine"]
    lines = [
        "# Frozen application budgets",
        "",
        f"Measured {doc['created']} on {machine['platform']} ({machine['cpus']} CPUs) by "
        f"`{doc['command']}` against `{doc['bundle']}` (models: "
        f"{', '.join(doc.get('bundled_models') or []) or 'none'}).",
        "",
        "| what | measured | budget | within |",
        "|---|---|---|---|",
        row("bundle size on disk", "bundle_size_mb", "MB", "bundle_mb"),
        row("first prediction (process start to JSON line)", "first_prediction_s", "s",
            "first_prediction_s"),
        row("GUI main window shown (offscreen)", "gui_window_shown_s", "s", "gui_window_shown_s"),
        "",
        f"First (cold) run: prediction {doc['first_prediction_first_run_s']} s, "
        f"GUI {doc['gui_first_run_s']} s.",
        "",
        *(f"- {n}" for n in doc.get("notes", [])),
        "",
    ]
    (out_dir / f"{stem}.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=bundle_dir())
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--check", action="store_true", help="exit 1 when a budget is exceeded")
    args = parser.parse_args(argv)
    if not cli_executable(args.bundle).is_file():
        print(f"no bundle at {args.bundle}: build it with python scripts/build_bundle.py")
        return 2
    with tempfile.TemporaryDirectory(prefix="cxr-frozen-") as tmp:
        doc = measure(args.bundle, runs=args.runs, work=Path(tmp))
    write_results(doc, args.out)
    print(json.dumps({k: doc[k] for k in ("bundle_size_mb", "first_prediction_s",
                                          "gui_window_shown_s", "within_budget")}, indent=2))
    if doc["failures"]:
        print(f"{len(doc['failures'])} run(s) failed: see {args.out / 'frozen.json'}")
        return 1
    within = doc["within_budget"]
    return 1 if args.check and not all(within.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())

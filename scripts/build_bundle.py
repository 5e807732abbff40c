# ruff: noqa: T201  (a command-line tool: it prints)
"""Build the double-click application: ``dist/CXRScreener/`` (PyInstaller onedir).

    python scripts/build_bundle.py            # venv + pip install . + pyinstaller + checks
    python scripts/build_bundle.py --pack     # ... and the Linux tar.gz (dist/*.tar.gz)
    python scripts/build_bundle.py --fresh    # recreate the build environment first

Steps, each of which stops the build when it fails:

1. A CLEAN virtual environment (``build/bundle-venv``, reused between builds, recreated
   with ``--fresh``) gets only the application's runtime dependencies and PyInstaller:
   ``pip install .[build]``. It must not contain TensorFlow, Keras, pytest & co.
2. ``pyinstaller build.spec`` in it (the spec refuses a polluted analysis too).
3. A manifest of what is inside (``dist/CXRScreener-manifest.txt``: every file and every
   Python module) and a summary with the bundle size (``benchmarks/results/bundle.json``);
   the build FAILS if tensorflow, keras, model_training, tests or test tools got in.
4. With ``--pack`` (Linux): ``dist/CXRScreener-<version>-linux-<arch>.tar.gz`` with the
   bundle, the .desktop launcher, the icon and install/uninstall scripts.

Runs with any Python 3.10+ (the one that creates the environment; 3.11 is what we ship).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "CXRScreener"
#: Distributions that must not be in the build environment (training stack, test tools).
FORBIDDEN_DISTS = frozenset({
    "tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-io-gcs-filesystem",
    "tensorboard", "keras", "tf-keras", "tf2onnx", "pytest", "pytest-qt", "hypothesis",
    "ipython", "pylibjpeg-libjpeg",
})


def _venv_python(venv: Path) -> Path:
    if sys.platform == "win32":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def _run(cmd: list[str], **kwargs: object) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kwargs)  # type: ignore[call-overload]


def make_venv(venv: Path, fresh: bool) -> Path:
    if fresh and venv.exists():
        shutil.rmtree(venv)
    py = _venv_python(venv)
    if not py.exists():
        _run([sys.executable, "-m", "venv", str(venv)])
    return py


def install(py: Path, offline_wheels: Path | None) -> None:
    pip = [str(py), "-m", "pip", "--disable-pip-version-check"]
    extra = ["--no-index", "--find-links", str(offline_wheels)] if offline_wheels else []
    # Runtime dependencies + PyInstaller only (the project's "build" extra), no dev/train extras.
    _run([*pip, "install", "--quiet", *extra, ".[build]"])
    # Always ship the code as it is now (same version number as the last build).
    _run([*pip, "install", "--quiet", "--no-deps", "--force-reinstall", *extra, "."])


def check_venv(py: Path) -> list[str]:
    out = subprocess.run(
        [str(py), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True,
    )
    installed = {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(out.stdout)}
    bad = sorted(n for n in installed if n in FORBIDDEN_DISTS)
    if bad:
        raise SystemExit(
            f"build environment is not clean: {', '.join(bad)} installed. "
            "Run again with --fresh (the environment must hold only the app's dependencies)."
        )
    return [f"{k}=={v}" for k, v in sorted(installed.items())]


def pyinstaller(py: Path, dist: Path, work: Path, clean: bool) -> float:
    start = time.perf_counter()
    cmd = [str(py), "-m", "PyInstaller", "build.spec", "--noconfirm",
           "--distpath", str(dist), "--workpath", str(work), "--log-level", "WARN"]
    if clean:
        cmd.append("--clean")
    _run(cmd)
    return time.perf_counter() - start


_VENDORED = re.compile(r"-[0-9a-f]{8}\.so|\.libs/")  # auditwheel-vendored (patchelf'd) libraries
_DLOPEN_CHECK = """
import ctypes, sys
for path in sys.argv[1:]:
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        print(path + "\\t" + str(exc))
"""


def _not_loadable(py: Path, bundle: Path, paths: list[Path]) -> dict[str, str]:
    """Which of ``paths`` the dynamic loader refuses (path -> reason), in a child process."""
    if not paths:
        return {}
    dirs = sorted({str(p.parent) for p in (bundle / "_internal").rglob("*.so*")})
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(dirs))
    out = subprocess.run([str(py), "-c", _DLOPEN_CHECK, *map(str, paths)], env=env,
                         capture_output=True, text=True, check=False, timeout=300).stdout
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def strip_debug_info(bundle: Path, py: Path) -> int:
    """Linux: drop DWARF debug sections (``strip --strip-debug``) from bundled ELF files.

    Symbols stay (native crash traces keep function names); only debug info goes: ~40 MB,
    mostly libpython and a few wheels built with -g. Libraries vendored by auditwheel
    (``*.libs/``, hashed names) are left alone: they were rewritten with patchelf, and strip
    breaks such files ("ELF load command address/offset not page-aligned"). Every other
    stripped file must still load (dlopen in a child process) or it is put back.
    """
    if not sys.platform.startswith("linux") or shutil.which("strip") is None:
        return 0
    internal = bundle / "_internal"
    candidates: list[Path] = []
    for path in sorted(internal.rglob("*.so*")):
        rel = path.relative_to(internal).as_posix()
        if path.is_symlink() or not path.is_file() or _VENDORED.search(rel):
            continue
        with open(path, "rb") as fh:
            data = fh.read()
        if data[:4] == b"\x7fELF" and b".debug_info" in data:
            candidates.append(path)
    trusted = [p for p in candidates if p.name.startswith("libpython") or "lib-dynload" in p.parts]
    checked = [p for p in candidates if p not in trusted]
    before = _not_loadable(py, bundle, checked)
    backup = Path(tempfile.mkdtemp(prefix="cxr-strip-"))
    saved = 0
    try:
        originals: dict[Path, Path] = {}
        for i, path in enumerate(candidates):
            size = path.stat().st_size
            copy = backup / f"{i}-{path.name}"
            shutil.copy2(path, copy)
            originals[path] = copy
            done = subprocess.run(["strip", "--strip-debug", str(path)], capture_output=True,
                                  check=False)
            if done.returncode != 0:
                shutil.copy2(copy, path)
            else:
                saved += size - path.stat().st_size
        after = _not_loadable(py, bundle, checked)
        for name, reason in after.items():
            if name not in before:
                path = Path(name)
                saved -= originals[path].stat().st_size - path.stat().st_size
                shutil.copy2(originals[path], path)
                print(f"strip broke {path.name} ({reason.strip()}): restored")
    finally:
        shutil.rmtree(backup, ignore_errors=True)
    return saved


def sanity_check(bundle: Path) -> None:
    """The frozen app must start and work: --diagnose, render a sample, selftest (models)."""
    exe = bundle / ("CXRScreener-cli.exe" if sys.platform == "win32" else "CXRScreener")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["QT_QPA_PLATFORM"] = "offscreen"

    def run(*args: str) -> str:
        proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env,
                              timeout=300, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"the frozen app does not work: {exe.name} {' '.join(args)} exited "
                             f"{proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    info = json.loads(run("--diagnose"))
    with tempfile.TemporaryDirectory(prefix="cxr-sanity-") as tmp:
        env["CXR_SCREENER_HOME"] = tmp
        sample = next(iter(sorted((ROOT / "assets" / "samples").glob("*.png"))), None)
        if sample is not None:
            run("render", str(sample), "-o", str(Path(tmp) / "render.png"))
        if info.get("bundled_models"):
            run("selftest")
        else:
            print("WARNING: no model bundle in assets/models: the app cannot screen anything")
    print(f"frozen app works: models {info.get('bundled_models')}, "
          f"Qt platforms {len(info.get('qt_platform_plugins', []))}, "
          f"onnxruntime {info.get('versions', {}).get('onnxruntime')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / "build" / "bundle-venv",
                        help="build environment (default: build/bundle-venv)")
    parser.add_argument("--fresh", action="store_true", help="recreate the build environment")
    parser.add_argument("--skip-install", action="store_true",
                        help="reuse the environment as it is (no pip install)")
    parser.add_argument("--wheels", type=Path,
                        help="install offline from this folder of wheels (pip --no-index)")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--clean", action="store_true", help="empty PyInstaller's cache first")
    parser.add_argument("--pack", action="store_true", help="also make the Linux tar.gz")
    parser.add_argument("--extra-model", type=Path, action="append", default=[], metavar="DIR",
                        help="also bake this model bundle folder into assets/models (repeatable)")
    parser.add_argument("--summary", type=Path, default=ROOT / "benchmarks" / "results" / "bundle.json",
                        help="where to write the size summary (JSON)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    if args.extra_model:
        os.environ["CXR_BUNDLE_EXTRA_MODELS"] = os.pathsep.join(str(p.resolve()) for p in args.extra_model)
    py = make_venv(args.venv.resolve(), args.fresh)
    if not args.skip_install:
        install(py, args.wheels)
    packages = check_venv(py)
    build_s = pyinstaller(py, args.dist.resolve(), (ROOT / "build" / "pyinstaller").resolve(),
                          args.clean)

    bundle = args.dist.resolve() / NAME
    stripped = strip_debug_info(bundle, py)
    if stripped:
        print(f"stripped debug info: {stripped / 1024 / 1024:.0f} MB")
    sanity_check(bundle)
    extra = {
        "build_seconds": round(build_s, 1),
        "debug_info_stripped_mb": round(stripped / 1024 / 1024, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "build_environment": packages,
        "command": "python scripts/build_bundle.py",
        "extra_models": [str(p) for p in args.extra_model],
    }
    # The manifest needs PyInstaller to read the archive: run it in the build environment.
    rc = subprocess.run(
        [str(py), str(ROOT / "scripts" / "bundle_manifest.py"), str(bundle),
         "--txt", str(args.dist.resolve() / f"{NAME}-manifest.txt"),
         "--json", str(args.summary.resolve()), "--extra-json", json.dumps(extra)],
        cwd=ROOT, check=False,
    ).returncode
    if rc != 0:
        return rc
    if args.pack:
        if sys.platform == "win32":
            print("--pack makes the Linux tar.gz; on Windows build installer/cxr-screener.iss")
        else:
            _run([sys.executable, str(ROOT / "installer" / "linux" / "make_tarball.py"),
                  "--bundle", str(bundle), "--out", str(args.dist.resolve())])
    print(f"built {bundle} in {time.perf_counter() - t0:.0f} s "
          f"(pyinstaller {build_s:.0f} s); manifest {args.dist / (NAME + '-manifest.txt')}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUTF8", "1")
    raise SystemExit(main())

"""The packaging tools, without a bundle: entry point dispatch, windowed-mode streams,
the forbidden-package check of the manifest, the Linux tarball and its install script.

Fast (no PyInstaller run); the frozen app itself is tested in tests/test_frozen.py.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(rel: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / rel)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


entry = _load("scripts/cxr_screener_entry.py", "cxr_screener_entry")
manifest_mod = _load("scripts/bundle_manifest.py", "bundle_manifest")
tarball_mod = _load("installer/linux/make_tarball.py", "make_tarball")


# ----------------------------------------------------------------- entry point
@pytest.mark.parametrize(("argv", "cli"), [
    ([], False),                                  # double-click: the window
    (["scan.dcm"], False),                        # a double-clicked .dcm: the window opens it
    (["--smoke-test"], False),                    # a GUI option
    (["selftest"], True),
    (["predict", "a.png", "--model", "m"], True),
    (["gui", "a.png"], True),                     # the CLI's gui command starts the window itself
    (["--version"], True),
    (["-v", "scan", "folder"], True),
    (["--help"], True),
])
def test_entry_dispatch(argv: list[str], cli: bool) -> None:
    assert entry.wants_cli(argv) is cli


def _run_without_streams(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child whose sys.stdout/sys.stderr are None, as in a windowed build."""
    prelude = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(REPO / 'scripts')!r}); "
        "sys.stdout = None; sys.stderr = None\n"
    )
    env = dict(os.environ, CXR_SCREENER_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_windowed_cli_survives_missing_streams(tmp_path: Path) -> None:
    """No stdout/stderr (Windows windowed build): commands run, errors land in the log file."""
    proc = _run_without_streams(
        "import cxr_screener_entry as e\n"
        "def run(argv):\n"
        "    try:\n"
        "        return e.main(argv)\n"
        "    except SystemExit as exc:  # argparse's --version exits\n"
        "        return exc.code\n"
        "rc1 = run(['--version'])\n"
        "sys.stdout = None; sys.stderr = None\n"
        "rc2 = run(['render', 'does-not-exist.png', '-o', 'out.png'])\n"
        "import sys; sys.__stdout__.write(f'{rc1} {rc2}')\n",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == ["0", "1"]  # --version ok; the missing file is an error
    log = tmp_path / "logs" / "stderr.log"
    assert log.is_file()
    assert "does-not-exist.png" in log.read_text(encoding="utf-8")


def test_diagnose_reports_the_runtime() -> None:
    info = entry.diagnose()
    assert info["frozen"] is False
    decoders = info["dicom_decoders"]
    assert any("JPEG 2000" in k and "pylibjpeg" in v for k, v in decoders.items())


# ----------------------------------------------------------------- manifest check
def _fake_bundle(root: Path, extra: list[str]) -> Path:
    bundle = root / "CXRScreener"
    for rel in ["CXRScreener", "_internal/libpython3.11.so.1.0",
                "_internal/assets/models/m/model.onnx", "_internal/numpy/core.so", *extra]:
        path = bundle / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
    os.chmod(bundle / "CXRScreener", 0o755)
    return bundle


@pytest.mark.parametrize("intruder", [
    "_internal/tensorflow/libtensorflow_framework.so.2",
    "_internal/keras-3.15.0.dist-info/METADATA",
    "_internal/model_training/train.pyc",
    "_internal/tests/conftest.pyc",
    "_internal/_pytest/python.pyc",
])
def test_manifest_refuses_forbidden_files(tmp_path: Path, intruder: str) -> None:
    bundle = _fake_bundle(tmp_path, [intruder])
    manifest = manifest_mod.build_manifest(bundle)
    assert any(intruder in p for p in manifest.problems), manifest.problems


def test_manifest_refuses_forbidden_modules(tmp_path: Path) -> None:
    manifest = manifest_mod.Manifest(root=tmp_path)
    manifest.modules = ["numpy", "desktop.core.cli", "keras.src.models", "tests.test_frozen"]
    manifest_mod.check(manifest)
    assert manifest.problems == ["forbidden module: keras.src.models",
                                 "forbidden module: tests.test_frozen"]


def test_manifest_of_a_clean_bundle(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path, ["_internal/PySide6/Qt/plugins/platforms/libqxcb.so"])
    manifest = manifest_mod.build_manifest(bundle)
    assert manifest.problems == []
    summary = manifest_mod.write_outputs(manifest, tmp_path / "m.txt", tmp_path / "m.json")
    assert summary["n_files"] == 5
    assert summary["executables"] == ["CXRScreener"]
    assert "_internal/assets/models/m/model.onnx" in (tmp_path / "m.txt").read_text()
    rc = manifest_mod.main([str(tmp_path / "missing")])
    assert rc == 1


# ----------------------------------------------------------------- Linux tarball + install
@pytest.mark.skipif(sys.platform == "win32", reason="the Linux installer")
def test_tarball_installs_and_uninstalls(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path, ["_internal/assets/icons/cxr-screener-256.png"])
    exe = bundle / "CXRScreener"
    exe.write_text("#!/bin/sh\necho fake-cxr \"$@\"\n")
    os.symlink("libpython3.11.so.1.0", bundle / "_internal" / "libpython3.so")
    out = tmp_path / "out"
    target = tarball_mod.make_tarball(bundle, out, level=1)
    assert (out / (target.name + ".sha256")).is_file()
    with tarfile.open(target) as tar:
        members = {m.name.split("/", 1)[1] if "/" in m.name else "": m for m in tar.getmembers()}
        assert members["install.sh"].mode & 0o111
        assert members["CXRScreener/CXRScreener"].mode & 0o111
        assert members["CXRScreener/_internal/libpython3.so"].issym()
        assert "cxr-screener.png" in members
        assert "cxr-screener.desktop" in members
        tar.extractall(tmp_path / "x", filter="tar")
    top = next((tmp_path / "x").iterdir())
    home = tmp_path / "home"
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(["sh", str(top / "install.sh")], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    app = home / ".local" / "opt" / "cxr-screener"
    desktop = home / ".local" / "share" / "applications" / "cxr-screener.desktop"
    assert (app / "CXRScreener").is_file()
    assert f'Exec="{app}/CXRScreener" %F' in desktop.read_text()
    assert (home / ".local/share/icons/hicolor/256x256/apps/cxr-screener.png").is_file()
    launcher = home / ".local" / "bin" / "cxr-screener"
    assert subprocess.run([str(launcher), "selftest"], capture_output=True, text=True,
                          check=False).stdout.strip() == "fake-cxr selftest"
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True,
                               text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.run(["sh", str(app / "uninstall.sh")], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not app.exists()
    assert not desktop.exists()
    assert not launcher.exists()

"""The layering rules of DEVELOPERS.md, enforced.

- desktop/core never imports PySide6 (or desktop.qt);
- nothing in desktop/ imports model_training, tensorflow or keras;
- the core imports and runs with PySide6 unavailable.

Checked twice: by import-linter's contracts in pyproject.toml (when installed)
and by an AST scan that needs nothing, so a missing tool cannot hide a breach.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DESKTOP = REPO / "desktop"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def _violations(root: Path, forbidden: tuple[str, ...], base: Path = REPO) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        for lineno, module in _imports(path):
            top = module.split(".")[0]
            if top in forbidden or any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(base).as_posix()}:{lineno} imports {module}")
    return bad


def test_core_never_imports_qt() -> None:
    assert _violations(DESKTOP / "core", ("PySide6", "shiboken6", "desktop.qt")) == []


def test_app_never_imports_training_or_tensorflow() -> None:
    assert _violations(DESKTOP, ("model_training", "tensorflow", "keras", "tf2onnx")) == []


def test_scanner_catches_a_violation(tmp_path: Path) -> None:
    """The AST check itself can fail (guards against a check that never fires)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "bad.py").write_text("import os\nfrom PySide6 import QtCore\n")
    assert _violations(pkg, ("PySide6",), base=tmp_path) == ["pkg/bad.py:2 imports PySide6"]


def test_import_linter_contracts() -> None:
    pytest.importorskip("importlinter")
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "importlinter.cli"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]
    assert len(contracts) >= 2
    assert f"Contracts: {len(contracts)} kept, 0 broken" in proc.stdout


CORE_WITHOUT_QT = r"""
import importlib, pkgutil, sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PySide6", "shiboken6", "tensorflow", "keras"):
            raise ImportError(f"blocked for this test: {name}")
        return None

sys.meta_path.insert(0, _Block())
import desktop.core
names = [m.name for m in pkgutil.walk_packages(desktop.core.__path__, "desktop.core.")]
for name in names:
    importlib.import_module(name)
from desktop.core.cli import main
assert main(["--help"]) == 0
""".strip()


def test_core_imports_without_pyside6() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CORE_WITHOUT_QT], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    # argparse's --help exits 0 via SystemExit
    assert proc.returncode == 0, proc.stdout + proc.stderr

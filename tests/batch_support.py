"""Helpers for the batch, CLI, resume and PHI tests: a model bundle, X-ray folders, a CLI runner.

The bundle is the committed tiny MobileNet (``tests/data/tiny-mobilenet``)
when present, else one exported once per session with ``make_test_bundle``
(needs TensorFlow). Tests install it in the per-test user folder
(``CXR_SCREENER_HOME``) and always name it with ``--model``, so bundled
production models never change what the tests see.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "assets" / "samples"


@pytest.fixture(scope="session")
def bundle_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model bundle folder to copy from (built at most once per session)."""
    tiny = REPO / "tests" / "data" / "tiny-mobilenet"
    if (tiny / "model_card.json").exists():
        return tiny
    pytest.importorskip("tensorflow")
    from tests.model_fixtures import make_test_bundle

    return Path(make_test_bundle(tmp_path_factory.mktemp("bundles"), arch="mobilenet", input_size=64,
                                 name="batch-test-mobilenet", default=True))


@pytest.fixture
def model_name(bundle_source: Path) -> str:
    """Install the test bundle in this test's user models folder; its name."""
    from desktop.core.paths import user_models_dir

    card = json.loads((bundle_source / "model_card.json").read_text())
    dest = user_models_dir() / bundle_source.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(bundle_source, dest)
    return str(card["name"])


def sample_images() -> list[Path]:
    files = sorted(p for p in SAMPLES.glob("*") if p.suffix.lower() in {".png", ".jpg"})
    if not files:
        pytest.skip(f"no sample images in {SAMPLES}")
    return files


def make_png(path: Path, seed: int, size: int = 96) -> Path:
    """A small distinct grayscale PNG (unique content: unique sha256)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = (np.sin(xx / (3 + seed % 7)) * 60 + yy + rng.integers(0, 40, (size, size))).clip(0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.astype(np.uint8), mode="L").save(path)
    return path


def make_folder(root: Path, n_good: int = 12, *, nested: bool = True, size: int = 96) -> tuple[list[str], dict[str, str]]:
    """A folder of good PNGs (plus a copy of each real sample) and bad files.

    Returns (relative paths of good images, {relative path of bad file: expected error_kind}).
    """
    good: list[str] = []
    for i in range(n_good):
        rel = f"sub{i % 3}/img_{i:03d}.png" if nested else f"img_{i:03d}.png"
        make_png(root / rel, seed=i, size=size)
        good.append(rel)
    for src in sample_images()[:3]:
        shutil.copy(src, root / src.name)
        good.append(src.name)
    bad = {
        "notes.bin": "not_an_image",
        "empty.png": "not_an_image",
        "sub1/truncated.png": "corrupt",
        "random.dcm": "not_an_image",
    }
    (root / "notes.bin").write_text("not an image\n")
    (root / "README.md").write_text("# a document beside the images: ignored, no row\n")
    (root / "empty.png").write_bytes(b"")
    data = (root / good[0]).read_bytes()
    (root / "sub1" / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "random.dcm").write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (root / ".hidden.png").write_bytes(data)  # hidden: skipped
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(data)
    return sorted(good), bad


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows; fails the test if the file is not a clean CSV."""
    text = path.read_bytes().decode("utf-8")
    assert text.endswith("\n"), "results.csv must end with a complete line"
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    rows = []
    for row in reader:
        assert len(row) == len(header), f"bad row {row!r}"
        rows.append(dict(zip(header, row, strict=True)))
    return header, rows


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("CXR_SCREENER_OPERATOR", "test-operator")
    env.update(extra)
    return env


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "desktop.core.cli", *args]


def run_cli(*args: str, timeout: float = 300, cwd: Path | None = None, **kw: object) -> Run:
    proc = subprocess.run(cli_cmd(*args), capture_output=True, text=True, timeout=timeout, env=cli_env(),
                          cwd=cwd, **kw)  # type: ignore[call-overload]
    return Run(proc.returncode, proc.stdout, proc.stderr)

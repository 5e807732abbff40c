"""Fixtures for the Qt tests: two model bundles, sample images, a DICOM with patient data, the window.

(No tests here; the test_qt_*.py modules import these.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.dicom_factory import write_chest_dicom

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "assets" / "samples"

pytest.importorskip("PySide6.QtWidgets")

#: Patient data written into the test DICOM (the report form must be prefilled with it).
DICOM_PATIENT = {"PatientName": "Testperson^Jane", "PatientID": "PID-4711", "PatientSex": "F",
                 "PatientBirthDate": "19700102", "StudyDate": "20240315"}


def _second_bundle(src: Path, dest_root: Path) -> Path:
    """A copy of ``src`` under another card name (not default): a second model to switch to.

    The card itself is not hashed (only the files it lists), so renaming is valid.
    """
    dest = dest_root / "tiny-second"
    shutil.copytree(src, dest)
    card_path = dest / "model_card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["name"] = "tiny-second"
    card["version"] = "2.0-test"
    card["default"] = False
    # Other thresholds, so that switching model visibly changes the decision rule.
    for op in card["operating_points"]:
        op["threshold"] = 0.99 if op["name"] == "balanced" else 0.01
    card_path.write_text(json.dumps(card, indent=2), encoding="utf-8")
    return dest


@pytest.fixture(scope="session")
def qt_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with two bundles: ``tiny-mobilenet`` (default) and ``tiny-second``."""
    from tests.model_fixtures import tiny_bundle_path

    root = tmp_path_factory.mktemp("qt_models")
    src = tiny_bundle_path()
    first = root / src.name
    shutil.copytree(src, first)
    card = json.loads((first / "model_card.json").read_text(encoding="utf-8"))
    if not card.get("default"):
        card["default"] = True
        (first / "model_card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    _second_bundle(src, root)
    return root


@pytest.fixture(scope="session")
def sample_png() -> Path:
    path = SAMPLES / "shenzhen__CHNCXR_0001_0.png"
    if not path.exists():
        pytest.skip(f"{path} missing")
    return path


def write_test_dicom(path: Path, *, size: int = 256) -> Path:
    """A small 12-bit MONOCHROME2 chest CR with patient fields (real structure, synthetic pixels)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    body = np.exp(-(((xx - size / 2) / (size / 2.6)) ** 2 + ((yy - size / 2) / (size / 2.2)) ** 2))
    lungs = np.exp(-(((np.abs(xx - size / 2) - size / 5) / (size / 9)) ** 2 + ((yy - size / 2.2) / (size / 4)) ** 2))
    pixels = np.clip(3000 * body - 1800 * lungs + 300, 0, 4095).astype(np.uint16)

    return write_chest_dicom(
        path, pixels, Modality="CR", ViewPosition="PA",
        WindowCenter=[2048, 1500], WindowWidth=[4096, 2000], WindowCenterWidthExplanation=["FULL", "LUNG"],
        **DICOM_PATIENT,
    )


@pytest.fixture
def test_dicom(tmp_path: Path) -> Path:
    return write_test_dicom(tmp_path / "chest_test.dcm")


@pytest.fixture
def qt_settings(tmp_path: Path):
    """Settings in a private ini file (never the user's), first-run notice already accepted."""
    from desktop.qt.qt_settings import AppSettings

    settings = AppSettings.from_ini(tmp_path / "settings.ini")
    settings.notice_accepted = True
    settings.clinic_name = "Riverside Health Centre"
    settings.clinic_address = "1 River Road, Springfield"
    settings.operator = "Nurse Ada Example"
    return settings


@pytest.fixture
def main_window(qtbot, qt_settings, qt_bundles):
    """The real window, with the two test bundles only, shown offscreen and ready."""
    from desktop.qt.qt_main_window import QtMainWindow

    window = QtMainWindow(qt_settings, show_notice=False, model_dirs=[(qt_bundles, "user")])
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: bool(window.bundles) and not window.is_busy(), timeout=60000)
    yield window
    window.batch.cancel_scan()
    qtbot.waitUntil(lambda: not window.batch.is_running(), timeout=60000)
    window.wait_idle(30000)


def wait_result(qtbot, window, path: Path | None = None, timeout: int = 60000) -> None:
    """Wait until the shown image's analysis is done and shown (for ``path`` if given).

    Done: the result in the panel and the heatmap made, drawn or not (a
    negative result's map is held back unless asked for).
    """

    def ready() -> bool:
        if path is not None and window.current_path != str(Path(path).absolute()):
            return False
        return window.has_analysis()

    qtbot.waitUntil(ready, timeout=timeout)


def make_batch_folder(root: Path, n_good: int = 27, bad: int = 3) -> Path:
    """``n_good`` sample X-rays (copies of the six samples) and ``bad`` broken files in sub-folders."""
    folder = root / "batch"
    (folder / "ward_a").mkdir(parents=True)
    (folder / "ward_b").mkdir()
    samples = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not samples:
        pytest.skip("no sample images in assets/samples")
    for i in range(n_good):
        src = samples[i % len(samples)]
        sub = folder / ("ward_a" if i % 2 else "ward_b")
        shutil.copy(src, sub / f"img_{i:02d}{src.suffix.lower()}")
    broken = [
        ("ward_a/truncated.png", (SAMPLES / "shenzhen__CHNCXR_0001_0.png").read_bytes()[:300]),
        ("ward_b/notes.dcm", b"this is not a DICOM file, just text\n" * 10),
        ("empty.jpg", b""),
    ]
    for rel, data in broken[:bad]:
        (folder / rel).write_bytes(data)
    return folder

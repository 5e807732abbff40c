"""The gate with the bundled model and its input statistics, on real films and made-up images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from desktop.core import gate
from desktop.core.imaging import load_xray
from tests.conftest import shared_path

BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "models" / "mobilenet-covid-v1"


@pytest.fixture(scope="module")
def model() -> tuple[object, object]:
    from desktop.core.inference import Predictor
    from desktop.core.input_stats import load_for

    predictor = Predictor(BUNDLE, threads=1)
    stats = load_for(predictor)
    if stats is None:
        pytest.skip("the bundled model has no input statistics (run scripts/bundle_stats.py)")
    return predictor, stats


def _screen(model: tuple[object, object], pixels_or_xray: object) -> gate.Screened:
    predictor, stats = model
    xr = pixels_or_xray if not isinstance(pixels_or_xray, np.ndarray) else _as_xray(pixels_or_xray)
    return gate.screen(predictor, [xr], stats=stats)[0]


def _as_xray(pixels: np.ndarray) -> object:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return load_xray(buf.getvalue(), name="made.png")


def test_sample_chest_films_accepted(model: tuple[object, object]) -> None:
    samples = sorted((BUNDLE.parents[1] / "samples").glob("*.png"))
    assert samples
    for path in samples:
        res = _screen(model, load_xray(path))
        assert res.status == "ok", (path.name, res.gate)
        assert res.prediction is not None


def test_inverted_and_turned_films_rejected(model: tuple[object, object]) -> None:
    path = sorted((BUNDLE.parents[1] / "samples").glob("shenzhen*.png"))[0]
    px = load_xray(path).pixels
    assert _screen(model, 1.0 - px).gate.code == "inverted_or_blank"
    assert _screen(model, np.rot90(px)).gate.code == "not_frontal_chest"


def test_document_rejected(model: tuple[object, object]) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("L", (900, 1200), 245)
    draw = ImageDraw.Draw(img)
    for y in range(60, 1150, 34):
        draw.text((50, y), "Patient report: findings normal, signed and dated by the clinic " * 2, fill=20)
    res = _screen(model, np.asarray(img, np.float32) / 255.0)
    assert res.gate.code == "not_radiograph"
    assert res.prediction is None


def test_shared_non_chest_dicoms_rejected_chest_accepted(model: tuple[object, object]) -> None:
    folder = shared_path("data", "dicom")
    codes = {}
    for path in sorted(folder.glob("*.dcm")):
        try:
            xr = load_xray(path)
        except Exception as exc:  # noqa: BLE001 - CT, 12-bit JPEG
            codes[path.name] = gate.from_load_error(exc).code
            continue
        codes[path.name] = _screen(model, xr).gate.code
    for name, code in codes.items():
        if "_hip_" in name and "12bit" not in name:
            assert code == "not_chest", name
        if "extremity" in name:
            assert code == "not_chest", name
        if "_chest_" in name:
            assert code is None, name
    assert codes["pydicom_CT_small_negative_case.dcm"] == "not_radiograph"


def test_jsrt_normals_pass_the_gate(model: tuple[object, object]) -> None:
    """A new hospital's chest films (never trained on) are not rejected."""
    files = sorted(shared_path("data", "jsrt", "normal").glob("*.png"))[:24]
    codes = [_screen(model, load_xray(p)).gate.code for p in files]
    assert codes.count(None) == len(files), codes

"""The input gate: each reject code, DICOM tags first, the learnt check, no p(covid) for a rejected film."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from desktop.core import gate
from desktop.core.errors import UnsupportedImageError
from desktop.core.imaging import load_xray
from desktop.core.input_stats import GATE_CLASSES
from tests.dicom_factory import write_chest_dicom


def _film(seed: int = 0, size: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = 1500 + 900 * np.sin(xx / 9.0) + 4 * yy + rng.integers(0, 200, (size, size))
    return img.clip(0, 4095).astype(np.uint16)


def _dicom(tmp_path: Path, name: str = "f.dcm", **tags: object) -> Path:
    return write_chest_dicom(tmp_path / name, _film(), **tags)


@pytest.mark.parametrize(
    ("tags", "code", "words"),
    [
        ({"BodyPartExamined": "HIP"}, "not_chest", "hip film"),
        ({"BodyPartExamined": "EXTREMITY"}, "not_chest", "extremity film"),
        ({"Modality": "MG"}, "not_chest", "mammogram"),
        ({"ViewPosition": "LL"}, "not_frontal_chest", "lateral"),
        ({"ViewPosition": "LATERAL"}, "not_frontal_chest", "lateral"),
        ({"ViewPosition": "RAO"}, "not_frontal_chest", "oblique"),
        ({"PatientAge": "006Y"}, "paediatric", "age 6"),
        ({"PatientAge": "018M"}, "paediatric", "child"),
        ({"PatientAge": "", "PatientBirthDate": "20150301", "StudyDate": "20261201"}, "paediatric", "age 12"),
    ],
)
def test_dicom_tags_reject_with_code(tmp_path: Path, tags: dict[str, object], code: str, words: str) -> None:
    res = gate.check(load_xray(_dicom(tmp_path, **tags)))
    assert res.rejected
    assert res.code == code
    assert res.by == "dicom"
    assert words in res.text
    assert res.text.startswith("not assessable: ")
    assert code in gate.REJECT_CODES


@pytest.mark.parametrize(
    "tags",
    [
        {"ViewPosition": "PA", "PatientAge": "045Y"},
        {"ViewPosition": "AP", "PatientAge": "016Y"},
        {"BodyPartExamined": "THORAX"},
        {"BodyPartExamined": "", "PatientAge": ""},
    ],
)
def test_adult_frontal_chest_dicom_accepted(tmp_path: Path, tags: dict[str, object]) -> None:
    res = gate.check(load_xray(_dicom(tmp_path, **tags)))
    assert not res.rejected, res
    assert res.text == ""


def test_ct_refused_by_loader_maps_to_not_radiograph(tmp_path: Path) -> None:
    path = _dicom(tmp_path, Modality="CT")
    with pytest.raises(UnsupportedImageError) as info:
        load_xray(path)
    res = gate.from_load_error(info.value)
    assert res.code == "not_radiograph"
    assert "CT" in res.reason


def test_damaged_file_is_unreadable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(Exception) as info:  # noqa: PT011 - any loader error
        load_xray(bad)
    assert gate.from_load_error(info.value).code == "unreadable"


def test_too_small_and_blank_pixels() -> None:
    small = gate.check_pixels(np.random.default_rng(0).random((40, 300)).astype(np.float32))
    assert small.code == "too_small"
    assert "40" in small.reason
    blank = gate.check_pixels(np.full((300, 300), 0.5, np.float32))
    assert blank.code == "inverted_or_blank"
    assert "blank" in blank.text
    ok = gate.check_pixels(np.random.default_rng(1).random((300, 300)).astype(np.float32))
    assert not ok.rejected


@pytest.mark.parametrize(
    ("age", "years"), [("006Y", 6.0), ("018M", 1.5), ("104W", 104 / 52.18), ("030D", 30 / 365.25), ("", None), ("abc", None)]
)
def test_age_string(age: str, years: float | None) -> None:
    got = gate.age_years(age)
    assert (got is None) if years is None else got == pytest.approx(years)


def _stats_for(direction: np.ndarray) -> dict[str, np.ndarray]:
    """Gate weights over 4-dim features: feature k votes for class k (chest when all are 0)."""
    d = len(GATE_CLASSES)
    w = np.zeros((d, d - 1), np.float32)
    for k in range(1, d):
        w[k, k - 1] = 10.0
    return {
        "gate_mean": np.zeros(d - 1, np.float32),
        "gate_scale": np.ones(d - 1, np.float32),
        "gate_weights": w,
        "gate_bias": np.array([5, 0, 0, 0, 0], np.float32),
        "gate_reject_below": np.float32(0.5),
    }


@pytest.mark.parametrize(
    ("cls", "code"),
    [("inverted", "inverted_or_blank"), ("rotated", "not_frontal_chest"), ("other_xray", "not_chest"),
     ("not_xray", "not_radiograph")],
)
def test_learnt_check_codes(cls: str, code: str) -> None:
    stats = _stats_for(np.zeros(4))
    feats = np.zeros((1, 4), np.float32)
    assert not gate.check_learnt(feats, stats).rejected
    feats[0, GATE_CLASSES.index(cls) - 1] = 2.0
    res = gate.check_learnt(feats, stats)
    assert res.code == code
    assert res.by == "learnt"
    assert res.p_chest is not None
    assert res.p_chest < 0.5


def test_learnt_check_skipped_when_dicom_says_chest(tmp_path: Path) -> None:
    stats = _stats_for(np.zeros(4))
    feats = np.array([[0, 0, 0, 3.0]], np.float32)  # the learnt check would say not_xray
    xr = load_xray(_dicom(tmp_path))  # BodyPartExamined CHEST
    assert not gate.check(xr, feats, stats=stats).rejected
    png = tmp_path / "f.png"
    from PIL import Image

    Image.fromarray((_film() // 16).astype(np.uint8)).save(png)
    assert gate.check(load_xray(png), feats, stats=stats).code == "not_radiograph"


def test_screen_gives_no_prediction_for_rejected(tmp_path: Path, tiny_bundle: Path) -> None:
    from desktop.core.inference import Predictor

    predictor = Predictor(tiny_bundle, threads=1)
    films = [load_xray(_dicom(tmp_path, "a.dcm")), load_xray(_dicom(tmp_path, "b.dcm", BodyPartExamined="HIP")),
             load_xray(_dicom(tmp_path, "c.dcm", PatientAge="006Y"))]
    out = gate.screen(predictor, films)
    assert [s.status for s in out] == ["ok", "rejected", "rejected"]
    assert out[0].prediction is not None
    assert 0 <= out[0].prediction.p_covid <= 1
    assert out[1].prediction is None
    assert out[2].prediction is None
    d = out[1].to_dict()
    assert d["reject_code"] == "not_chest"
    assert d["result"] == "not assessable: hip film"
    assert "p_covid" not in d


def test_screen_folder_lists_every_file(tmp_path: Path, tiny_bundle: Path) -> None:
    from desktop.core.inference import Predictor

    folder = tmp_path / "films"
    folder.mkdir()
    _dicom(folder, "a.dcm")
    _dicom(folder, "hip.dcm", BodyPartExamined="HIP")
    _dicom(folder, "ct.dcm", Modality="CT")
    (folder / "notes.txt").write_text("hello")
    items = [item for _, _, item in gate.screen_folder(folder, Predictor(tiny_bundle, threads=1))]
    by_name = {Path(i.path).name: i for i in items}
    assert by_name["a.dcm"].status == "ok"
    assert by_name["hip.dcm"].code == "not_chest"
    assert by_name["ct.dcm"].status == "rejected"
    assert by_name["ct.dcm"].code == "not_radiograph"
    assert by_name["notes.txt"].status == "error"
    assert by_name["notes.txt"].code == "unreadable"


def test_colour_dicom_refusal_maps_to_not_radiograph() -> None:
    exc = UnsupportedImageError("x.dcm", "colour image (RGB, 3 samples per pixel), expected a grayscale radiograph")
    res = gate.from_load_error(exc)
    assert res.code == "not_radiograph"
    assert res.reason == "colour image (RGB, 3 samples per pixel)"

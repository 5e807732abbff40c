"""Predictor (ONNX Runtime): predictions, operating points, input checks, Grad-CAM, heatmaps.

Runs without TensorFlow on the committed tiny bundle. The comparison with
Keras (round trip, GradientTape) is in ``tests/test_export.py``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.core.bundle import CARD_FILE, load_bundle
from desktop.core.errors import ModelError, ModelInputError
from desktop.core.gradcam import gradcam, head_forward, head_logit_grad
from desktop.core.imaging import XRay, load_xray
from desktop.core.inference import DEFAULT_BATCH, Heatmap, Prediction, Predictor
from desktop.core.preprocess import PreprocessSpec
from tests.model_fixtures import tiny_bundle, tiny_bundle_path  # noqa: F401


def _xray(seed: int, shape: tuple[int, int] = (300, 240)) -> XRay:
    rng = np.random.default_rng(seed)
    small = rng.random((6, 5)).astype(np.float32)
    img = Image.fromarray(small, mode="F").resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
    arr = np.clip(np.asarray(img) * 255, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return load_xray(buf.getvalue(), name=f"synthetic-{seed}.png")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(tiny_bundle_path(), threads=1)


def test_predict_batch_of_xrays(predictor: Predictor) -> None:
    xrays = [_xray(i) for i in range(3)]
    preds = predictor.predict(xrays)
    assert len(preds) == 3
    for p in preds:
        assert isinstance(p, Prediction)
        assert 0.0 <= p.p_covid <= 1.0
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.p_covid == p.probabilities["covid"]
        assert p.model == "tiny-mobilenet"
        assert p.model_version == "0.0-test"
        assert p.operating_point == "balanced"
        assert p.threshold == 0.5
        assert p.label == ("covid" if p.p_covid >= 0.5 else "normal")
        json.dumps(p.to_dict())
    assert len({round(p.p_covid, 6) for p in preds}) == 3  # different images, different outputs
    # one image at a time gives the same numbers
    singles = [predictor.predict(x)[0].p_covid for x in xrays]
    np.testing.assert_allclose(singles, [p.p_covid for p in preds], atol=1e-6)


def test_predict_more_than_one_chunk_keeps_order(predictor: Predictor) -> None:
    xs = np.stack([predictor.preprocess(_xray(i % 4)) for i in range(DEFAULT_BATCH + 3)])
    preds = predictor.predict_inputs(xs)
    assert len(preds) == DEFAULT_BATCH + 3
    for i, p in enumerate(preds):
        assert p.p_covid == pytest.approx(preds[i % 4].p_covid, abs=1e-6)
    assert predictor.predict([]) == []


def test_operating_point_changes_the_label_not_the_probability(predictor: Predictor) -> None:
    x = _xray(5)
    p_default = predictor.predict([x])[0]
    p_sens = predictor.predict([x], operating_point="high_sensitivity")[0]
    assert p_sens.p_covid == p_default.p_covid
    assert p_sens.threshold == 0.25
    assert p_sens.operating_point == "high_sensitivity"
    assert p_sens.label == ("covid" if p_sens.p_covid >= 0.25 else "normal")
    with pytest.raises(ModelError, match="no operating point 'nope'"):
        predictor.predict([x], operating_point="nope")


@pytest.mark.parametrize(
    ("p", "op", "label"),
    [(0.5, None, "covid"), (0.4999, None, "normal"), (0.25, "high_sensitivity", "covid"),
     (0.2499, "high_sensitivity", "normal"), (0.3, "high_sensitivity", "covid"), (0.3, "balanced", "normal")],
)  # fmt: skip
def test_decide_applies_the_threshold(predictor: Predictor, p: float, op: str | None, label: str) -> None:
    assert predictor.decide(p, op) == label


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((1, 64, 64, 3), np.float32), r"expects input \(N, 128, 128, 3\). Received: shape \(1, 64, 64, 3\)"),
        (np.zeros((1, 128, 128, 1), np.float32), r"Received: shape \(1, 128, 128, 1\)"),
        (np.zeros((128, 128), np.float32)[None], r"Received: shape \(1, 1, 128, 128\)"),
        (np.zeros((1, 128, 128, 3), np.uint8), "must be floating point"),
        (np.full((1, 128, 128, 3), np.nan, np.float32), "NaN or infinite"),
    ],
)
def test_wrong_input_is_refused(predictor: Predictor, bad: np.ndarray, message: str) -> None:
    with pytest.raises(ModelInputError, match=message):
        predictor.predict_inputs(bad)
    with pytest.raises(ModelInputError):
        predictor.forward_raw(bad)


def test_session_is_checked_against_the_card(tiny_bundle: Path) -> None:  # noqa: F811
    data = json.loads((tiny_bundle / CARD_FILE).read_text())
    data["input"]["preprocess"]["height"] = 96
    (tiny_bundle / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"model.onnx: model input shape .* does not match the card"):
        Predictor(tiny_bundle)


def test_head_weights_are_checked_against_the_card(tiny_bundle: Path) -> None:  # noqa: F811
    data = json.loads((tiny_bundle / CARD_FILE).read_text())
    data["head"][-1]["name"] = "renamed"
    (tiny_bundle / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match="head.npz: missing renamed/kernel"):
        Predictor(tiny_bundle)


def test_file_swapped_after_loading_is_refused(tiny_bundle: Path) -> None:  # noqa: F811
    bundle = load_bundle(tiny_bundle)
    with open(tiny_bundle / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="sha256 mismatch"):
        Predictor(bundle)


def test_forward_raw_gives_features_and_probs(predictor: Predictor) -> None:
    x = np.stack([predictor.preprocess(_xray(1)), predictor.preprocess(_xray(2))])
    feats, probs = predictor.forward_raw(x)
    assert feats.shape == (2, *predictor.feature_shape) == (2, 4, 4, 256)
    assert probs.shape == (2, 2)
    # the numpy head reproduces the ONNX probabilities from the ONNX features
    np.testing.assert_allclose(head_forward(feats, predictor.head, predictor.head_weights).probs, probs, atol=1e-5)


def test_explain_shares_the_prediction_and_computes_gradcam(predictor: Predictor) -> None:
    x = _xray(3)
    pred, heat = predictor.explain(x)
    assert pred.p_covid == pytest.approx(predictor.predict([x])[0].p_covid, abs=1e-6)
    assert isinstance(heat, Heatmap)
    assert heat.cam.shape == predictor.feature_shape[:2]
    assert heat.cam.dtype == np.float32
    assert heat.layer == "conv_pw_13_relu"
    assert heat.class_name == "covid"
    # the same Grad-CAM, step by step
    feats, _ = predictor.forward_raw(predictor.preprocess(x))
    cache = head_forward(feats, predictor.head, predictor.head_weights)
    grads = head_logit_grad(cache, predictor.head, predictor.head_weights, 0)
    cams, raw = gradcam(feats, grads)
    np.testing.assert_allclose(heat.cam, cams[0], atol=1e-6)
    assert heat.raw_max == pytest.approx(float(raw[0]), rel=1e-5)
    if not heat.empty:
        assert heat.cam.max() == pytest.approx(1.0)
        assert heat.cam.min() >= 0.0


def test_explain_other_class(predictor: Predictor) -> None:
    x = predictor.preprocess(_xray(4))
    _, heat = predictor.explain_input(x, class_name="normal")
    assert heat.class_name == "normal"
    feats, _ = predictor.forward_raw(x)
    cache = head_forward(feats, predictor.head, predictor.head_weights)
    cams, _ = gradcam(feats, head_logit_grad(cache, predictor.head, predictor.head_weights, 1))
    np.testing.assert_allclose(heat.cam, cams[0], atol=1e-6)
    with pytest.raises(ModelError, match="no class 'pneumonia'"):
        predictor.explain_input(x, class_name="pneumonia")


def test_explain_refuses_a_batch(predictor: Predictor) -> None:
    with pytest.raises(ModelInputError, match="one image"):
        predictor.explain_input(np.zeros((2, 128, 128, 3), np.float32))


def test_heatmap_upsample_is_smooth_and_in_range() -> None:
    cam = np.zeros((4, 4), np.float32)
    cam[1, 2] = 1.0
    heat = Heatmap(cam=cam, raw_max=2.0, class_name="covid", layer="l", spec=PreprocessSpec(128, 128))
    up = heat.upsample((300, 240))
    assert up.shape == (300, 240)
    assert up.dtype == np.float32
    assert up.min() >= 0.0
    assert up.max() <= 1.0
    peak = np.unravel_index(np.argmax(up), up.shape)
    assert 75 <= peak[0] < 150
    assert 120 <= peak[1] < 180
    assert len(np.unique(np.round(up, 3))) > 20  # smooth, not blocky


def test_heatmap_upsample_undoes_crop_and_letterbox() -> None:
    cam = np.ones((4, 4), np.float32)
    cropped = Heatmap(cam, 1.0, "covid", "l", PreprocessSpec(64, 64, crop=0.1)).upsample((100, 200))
    assert cropped[:10].max() == 0.0
    assert cropped[:, :20].max() == 0.0
    assert cropped[:, -20:].max() == 0.0
    assert cropped[10:90, 20:180].min() > 0.99
    # letterbox: a wide image occupies the middle rows of the square input
    cam = np.zeros((8, 8), np.float32)
    cam[:2] = 1.0  # attention on the padding band only
    lb = Heatmap(cam, 1.0, "covid", "l", PreprocessSpec(64, 64, resize="letterbox")).upsample((100, 400))
    assert lb.shape == (100, 400)
    assert lb.max() < 0.2


def test_predictor_from_name_uses_the_models_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_models_with_tiny: Path
) -> None:
    monkeypatch.setenv("CXR_SCREENER_ASSETS", str(tmp_path / "assets"))  # only the tiny model
    pred = Predictor.from_name()
    assert pred.name == "tiny-mobilenet"
    assert pred.bundle.origin == "user"
    assert pred.threads >= 1

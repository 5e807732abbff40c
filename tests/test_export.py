"""Keras -> bundle export, checked against Keras itself (needs TensorFlow).

- round trip: export -> load -> predict equals Keras (max abs diff <= 1e-4) for
  MobileNet (alpha 1.0, GAP head; and cut at conv_dw_13_relu with the paper's
  Flatten-512-256-2 head) and VGG19 (block5_conv4 + pool + the paper's head),
  all ``weights=None``;
- Grad-CAM computed in numpy from the bundle vs ``tf.GradientTape`` on the Keras
  model: correlation >= 0.999 (gradients and maps);
- temperature folded into the probabilities, refusals (ORT disagreeing,
  unsupported layers, existing folder), atomic write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from desktop.core.bundle import load_bundle  # noqa: E402
from desktop.core.gradcam import gradcam, head_forward, head_logit_grad  # noqa: E402
from desktop.core.inference import Predictor  # noqa: E402
from desktop.core.preprocess import PreprocessSpec  # noqa: E402
from model_training import onnx_direct  # noqa: E402
from model_training.export import ExportError, export_bundle  # noqa: E402
from tests.model_fixtures import calibration_inputs, make_test_bundle, make_test_model  # noqa: E402

pytestmark = pytest.mark.tf

CASES = {
    # name: (arch, input size, head, Grad-CAM layer)
    "mobilenet-gap": ("mobilenet", 96, "gap", "conv_pw_13_relu"),
    "mobilenet-dw13-paper": ("mobilenet", 96, "paper", "conv_dw_13_relu"),
    "vgg19-paper": ("vgg19", 64, "paper", "block5_conv4"),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for name, (arch, size, head, layer) in CASES.items():
        out[name] = make_test_bundle(root, arch, size, name=name, head=head, gradcam_layer=layer, return_model=True)
    return out


def _keras_gradcam(model: Any, layer: str, x: np.ndarray, class_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(d logit / d features, pre-ReLU CAM) with tf.GradientTape on the Keras model."""
    feature_model = keras.Model(model.inputs[0], model.get_layer(layer).output)
    after, seen = [], False
    for lyr in model.layers:
        if seen:
            after.append(lyr)
        seen = seen or lyr.name == layer
    last = after[-1]
    with tf.GradientTape() as tape:
        feats = feature_model(x, training=False)
        tape.watch(feats)
        h = feats
        for lyr in after[:-1]:
            h = lyr(h, training=False)
        logits = tf.matmul(h, last.kernel) + last.bias  # the class score before softmax
        score = logits[:, class_index]
    grads = tape.gradient(score, feats).numpy()
    weights = grads.mean(axis=(1, 2))
    cam = np.einsum("nhwk,nk->nhw", feats.numpy(), weights)
    return grads, cam


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_predict_equals_keras(exported: dict, case: str) -> None:
    path, model = exported[case]
    arch, size, _, _ = CASES[case]
    bundle = load_bundle(path)
    assert bundle.card.architecture == arch
    predictor = Predictor(bundle, threads=1)
    x = calibration_inputs(arch, size, 5, seed=11)
    ours = np.array([[p.probabilities["covid"], p.probabilities["normal"]] for p in predictor.predict_inputs(x)])
    ref = model(x, training=False).numpy()
    assert np.abs(ours - ref).max() <= 1e-4
    assert np.ptp(ref[:, 0]) > 1e-4  # the test model's outputs depend on the input
    # batch size is dynamic
    _, probs1 = predictor.forward_raw(x[:1])
    np.testing.assert_allclose(probs1, ref[:1], atol=1e-4)


@pytest.mark.parametrize("case", list(CASES))
def test_gradcam_matches_gradient_tape(exported: dict, case: str) -> None:
    path, model = exported[case]
    arch, size, _, layer = CASES[case]
    predictor = Predictor(path, threads=1)
    x = calibration_inputs(arch, size, 3, seed=5)
    grads_tf, cam_tf = _keras_gradcam(model, layer, x, class_index=0)
    feats, _ = predictor.forward_raw(x)
    cache = head_forward(feats, predictor.head, predictor.head_weights)
    grads_np = head_logit_grad(cache, predictor.head, predictor.head_weights, predictor.positive_index)
    assert grads_np.shape == grads_tf.shape
    weights = grads_np.mean(axis=(1, 2))
    cam_np = np.einsum("nhwk,nk->nhw", feats, weights)
    for i in range(len(x)):
        assert _corr(grads_np[i], grads_tf[i]) >= 0.999
        assert _corr(cam_np[i], cam_tf[i]) >= 0.999
        pred, heat = predictor.explain_input(x[i])
        relu_tf = np.maximum(cam_tf[i], 0)
        if relu_tf.max() > 0 and np.count_nonzero(relu_tf) > 1:
            assert _corr(heat.cam, relu_tf / relu_tf.max()) >= 0.999
    # normalised maps agree in absolute terms too
    cams, _ = gradcam(feats, grads_np)
    relu = np.maximum(cam_tf, 0)
    scale = np.where(relu.max(axis=(1, 2)) > 0, relu.max(axis=(1, 2)), 1)
    np.testing.assert_allclose(cams, relu / scale[:, None, None], atol=2e-3)


def test_paper_head_is_recorded_in_the_card(exported: dict) -> None:
    card = load_bundle(exported["vgg19-paper"][0]).card
    kinds = [(h["type"], h.get("units"), h.get("activation")) for h in card.head]
    assert kinds == [
        ("max_pool2d", None, None),
        ("flatten", None, None),
        ("dense", 512, "relu"),
        ("dropout", None, None),
        ("dense", 256, "relu"),
        ("dense", 2, "softmax"),
    ]
    assert card.gradcam_layer == "block5_conv4"
    assert card.data["export"]["max_abs_diff_probs"] <= 1e-4


@pytest.fixture(scope="module")
def small_mobilenet() -> tuple[Any, str]:
    return make_test_model("mobilenet", 64, head="gmp", seed=2)


def test_temperature_is_folded_into_probs(small_mobilenet: tuple, tmp_path: Path) -> None:
    model, layer = small_mobilenet
    spec = PreprocessSpec(64, 64, normalization="mobilenet")
    x = calibration_inputs("mobilenet", 64, 4, seed=3)
    path = export_bundle(model, tmp_path / "t2", name="t2", version="1", architecture="mobilenet",
                         backbone_init="none", preprocess=spec, gradcam_layer=layer, temperature=2.0,
                         check_inputs=x)  # fmt: skip
    ref = model(x, training=False).numpy().astype(np.float64)
    logp = np.log(ref)
    expected = np.exp(logp / 2.0) / np.exp(logp / 2.0).sum(axis=1, keepdims=True)
    _, probs = Predictor(path).forward_raw(x)
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    assert load_bundle(path).card.temperature == 2.0


def test_export_refuses_when_onnx_runtime_disagrees(
    small_mobilenet: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Symmetric 'same' padding (a classic NHWC->NCHW export bug) must be caught, nothing written."""
    model, layer = small_mobilenet

    def wrong_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        return total - total // 2, total // 2  # extra pixel on top/left instead of bottom/right

    monkeypatch.setattr(onnx_direct, "_same_pads", wrong_pads)
    # MobileNet's stride-2 convolutions use explicit ZeroPadding; conv1 uses 'same'
    with pytest.raises(ExportError, match="does not reproduce the Keras probabilities"):
        export_bundle(model, tmp_path / "bad", name="bad", version="1", architecture="mobilenet",
                      backbone_init="none", preprocess=PreprocessSpec(64, 64), gradcam_layer=layer,
                      converter="direct")  # fmt: skip
    assert not (tmp_path / "bad").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left behind


def test_export_refuses_unsupported_head_layer(tmp_path: Path) -> None:
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(x)
    h = keras.layers.BatchNormalization(name="head_bn")(h)
    out = keras.layers.Dense(2, activation="softmax")(h)
    model = keras.Model(inp, out)
    with pytest.raises(ExportError, match="head layer 'head_bn' \\(BatchNormalization\\) is not supported"):
        export_bundle(model, tmp_path / "m", name="m", version="1", architecture="mobilenet",
                      backbone_init="none", preprocess=PreprocessSpec(32, 32), gradcam_layer="conv")  # fmt: skip


def test_export_refuses_unsupported_backbone_layer(tmp_path: Path) -> None:
    inp = keras.Input((32, 32, 3))
    x = keras.layers.LayerNormalization(name="odd")(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    with pytest.raises(ExportError, match="layer 'odd' of type LayerNormalization is not supported"):
        export_bundle(model, tmp_path / "m", name="m", version="1", architecture="mobilenet",
                      backbone_init="none", preprocess=PreprocessSpec(32, 32), gradcam_layer="conv",
                      converter="direct")  # fmt: skip


def test_export_with_sigmoid_output_is_refused(tmp_path: Path) -> None:
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ExportError, match="activation 'sigmoid' not supported"):
        export_bundle(keras.Model(inp, out), tmp_path / "m", name="m", version="1", architecture="mobilenet",
                      backbone_init="none", preprocess=PreprocessSpec(32, 32), gradcam_layer="conv")  # fmt: skip


def test_export_arguments_are_checked(small_mobilenet: tuple, tmp_path: Path) -> None:
    model, layer = small_mobilenet
    common: dict[str, Any] = {"name": "m", "version": "1", "architecture": "mobilenet", "backbone_init": "none",
                              "gradcam_layer": layer}  # fmt: skip
    with pytest.raises(ValueError, match="does not match the preprocessing spec"):
        export_bundle(model, tmp_path / "m", preprocess=PreprocessSpec(96, 96), **common)
    with pytest.raises(ValueError, match=r"card_extra may not set \['sha256'\]"):
        export_bundle(model, tmp_path / "m", preprocess=PreprocessSpec(64, 64), card_extra={"sha256": "x"}, **common)
    with pytest.raises(ExportError, match="Grad-CAM layer 'nope' is not in the model"):
        export_bundle(model, tmp_path / "m", preprocess=PreprocessSpec(64, 64), **{**common, "gradcam_layer": "nope"})


def test_existing_bundle_is_replaced_only_when_asked(small_mobilenet: tuple, tmp_path: Path) -> None:
    model, layer = small_mobilenet
    kwargs: dict[str, Any] = {"name": "m", "version": "1", "architecture": "mobilenet", "backbone_init": "none",
                              "gradcam_layer": layer, "preprocess": PreprocessSpec(64, 64)}  # fmt: skip
    path = export_bundle(model, tmp_path / "m", **kwargs)
    first = load_bundle(path).card.created
    with pytest.raises(FileExistsError, match="already exists"):
        export_bundle(model, tmp_path / "m", **kwargs)
    export_bundle(model, tmp_path / "m", overwrite=True, **{**kwargs, "version": "2"})
    again = load_bundle(tmp_path / "m")
    assert again.version == "2"
    assert again.card.created >= first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary or old folders left
    assert sorted(p.name for p in path.iterdir()) == ["MODEL_CARD.md", "head.npz", "model.onnx", "model_card.json"]


# --------------------------------------------------------------------------- library exporter


def test_library_exporter_is_tried_first_and_gated(small_mobilenet: tuple, tmp_path: Path) -> None:
    """keras.Model.export(format="onnx") (tf2onnx) on the two-output model, temperature folded in."""
    pytest.importorskip("tf2onnx")
    model, layer = small_mobilenet
    spec = PreprocessSpec(64, 64, normalization="mobilenet")
    x = calibration_inputs("mobilenet", 64, 4, seed=3)
    path = export_bundle(model, tmp_path / "lib", name="lib", version="1", architecture="mobilenet",
                         backbone_init="none", preprocess=spec, gradcam_layer=layer, temperature=2.0,
                         check_inputs=x)  # fmt: skip
    card = load_bundle(path).card
    assert card.raw["export"]["converter"].startswith("keras.Model.export(format='onnx') (tf2onnx ")
    assert "library_exporter_error" not in card.raw["export"]
    assert card.raw["export"]["max_abs_diff_probs"] <= 1e-4
    ref = model(x, training=False).numpy().astype(np.float64)
    logp = np.log(ref)
    expected = np.exp(logp / 2.0) / np.exp(logp / 2.0).sum(axis=1, keepdims=True)
    predictor = Predictor(path)
    feats, probs = predictor.forward_raw(x)
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    probe = keras.Model(model.inputs[0], model.get_layer(layer).output)
    feats_k = probe(x, training=False).numpy()
    assert np.abs(feats - feats_k).max() <= 1e-3 * max(1.0, float(np.abs(feats_k).max()))
    cache = head_forward(feats, predictor.head, predictor.head_weights)
    np.testing.assert_allclose(cache.probs, probs, atol=1e-4)


def test_library_failure_falls_back_to_the_direct_converter(
    small_mobilenet: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_training import onnx_library

    def missing(*_a: Any, **_k: Any) -> bytes:
        raise ImportError("This requires the tf2onnx module. You can install it via `pip install tf2onnx`")

    monkeypatch.setattr(onnx_library, "convert_library", missing)
    model, layer = small_mobilenet
    common = {"name": "m", "version": "1", "architecture": "mobilenet", "backbone_init": "none",
              "preprocess": PreprocessSpec(64, 64), "gradcam_layer": layer}  # fmt: skip
    path = export_bundle(model, tmp_path / "m", **common)
    export = load_bundle(path).card.raw["export"]
    assert export["converter"] == "model_training.export (direct Keras -> ONNX)"
    assert export["library_exporter_error"].startswith("ImportError: This requires the tf2onnx module")
    with pytest.raises(ExportError, match="the library exporter failed \\(ImportError"):
        export_bundle(model, tmp_path / "n", converter="library", **common)
    assert not (tmp_path / "n").exists()
    with pytest.raises(ValueError, match="converter must be one of"):
        export_bundle(model, tmp_path / "o", converter="tf2onnx", **common)

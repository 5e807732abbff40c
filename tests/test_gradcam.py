"""The numpy head and its gradient, checked without TensorFlow (finite differences).

The comparison with ``tf.GradientTape`` on real Keras models is in
``tests/test_export.py`` (marked ``tf``).
"""

from __future__ import annotations

import numpy as np
import pytest

from desktop.core.gradcam import gradcam, head_forward, head_logit_grad


def _dense(name: str, n_in: int, n_out: int, act: str, rng: np.random.Generator) -> tuple[dict, dict]:
    layer = {"type": "dense", "name": name, "units": n_out, "activation": act}
    w = {f"{name}/kernel": rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)), f"{name}/bias": rng.normal(0, 0.1, n_out)}
    return layer, w


def _head(kind: str, h: int, w: int, k: int, rng: np.random.Generator) -> tuple[list[dict], dict]:
    weights: dict = {}
    if kind == "gap":
        head = [{"type": "global_avg_pool"}, {"type": "dropout"}]
        n = k
    elif kind == "gmp":
        head = [{"type": "global_max_pool"}]
        n = k
    elif kind == "paper":
        head = [{"type": "flatten"}]
        n = h * w * k
    elif kind == "pool_paper":
        head = [{"type": "max_pool2d", "pool_size": [2, 2], "strides": [2, 2], "padding": "valid"}, {"type": "flatten"}]
        n = (h // 2) * (w // 2) * k
    elif kind == "pool_same":
        head = [{"type": "max_pool2d", "pool_size": [3, 3], "strides": [2, 2], "padding": "same"}, {"type": "flatten"}]
        n = (-(-h // 2)) * (-(-w // 2)) * k
    else:
        raise ValueError(kind)
    if kind in ("paper", "pool_paper", "pool_same"):
        for name, units in (("fc1", 16), ("fc2", 8)):
            layer, wt = _dense(name, n, units, "relu", rng)
            head.append(layer)
            weights.update(wt)
            n = units
    layer, wt = _dense("out", n, 2, "softmax", rng)
    head.append(layer)
    weights.update(wt)
    return head, weights


@pytest.mark.parametrize("kind", ["gap", "gmp", "paper", "pool_paper", "pool_same"])
def test_logit_gradient_matches_finite_differences(kind: str) -> None:
    rng = np.random.default_rng(42)
    h, w, k = 5, 5, 3
    head, weights = _head(kind, h, w, k, rng)
    feats = np.abs(rng.normal(0, 1, (2, h, w, k)))  # float64, post-ReLU-like, no ties
    cache = head_forward(feats, head, weights)
    assert np.allclose(cache.probs.sum(axis=1), 1.0)
    for cls in (0, 1):
        grad = head_logit_grad(cache, head, weights, cls)
        assert grad.shape == feats.shape
        eps = 1e-6
        num = np.zeros_like(feats)
        for idx in np.ndindex(*feats.shape):
            plus, minus = feats.copy(), feats.copy()
            plus[idx] += eps
            minus[idx] -= eps
            zp = head_forward(plus, head, weights).logits[idx[0], cls]
            zm = head_forward(minus, head, weights).logits[idx[0], cls]
            num[idx] = (zp - zm) / (2 * eps)
        np.testing.assert_allclose(grad, num, atol=1e-6, rtol=1e-4)


def test_global_max_pool_shares_gradient_between_ties() -> None:
    head = [{"type": "global_max_pool"}, {"type": "dense", "name": "out", "units": 2, "activation": "softmax"}]
    weights = {"out/kernel": np.array([[1.0, -1.0]]), "out/bias": np.zeros(2)}
    feats = np.zeros((1, 2, 2, 1))
    feats[0, 0, 0, 0] = feats[0, 1, 1, 0] = 3.0
    grad = head_logit_grad(head_forward(feats, head, weights), head, weights, 0)
    assert grad[0, :, :, 0].tolist() == [[0.5, 0.0], [0.0, 0.5]]  # as tf.reduce_max


def test_max_pool_sends_gradient_to_first_maximum() -> None:
    head = [
        {"type": "max_pool2d", "pool_size": [2, 2], "strides": [2, 2], "padding": "valid"},
        {"type": "flatten"},
        {"type": "dense", "name": "out", "units": 2, "activation": "softmax"},
    ]
    weights = {"out/kernel": np.array([[2.0, 0.0]]), "out/bias": np.zeros(2)}
    feats = np.zeros((1, 2, 2, 1))  # all tied (a ReLU'd zero window): TF picks the first
    grad = head_logit_grad(head_forward(feats, head, weights), head, weights, 0)
    assert grad[0, :, :, 0].tolist() == [[2.0, 0.0], [0.0, 0.0]]


def test_gradcam_is_relu_of_weighted_sum_normalised() -> None:
    feats = np.zeros((1, 2, 2, 2), np.float32)
    feats[0, 0, 0, 0] = 2.0
    feats[0, 1, 1, 1] = 1.0
    grads = np.zeros_like(feats)
    grads[0, :, :, 0] = 1.0  # weight 1 for channel 0
    grads[0, :, :, 1] = -4.0  # weight -4 for channel 1
    cams, raw = gradcam(feats, grads)
    assert raw[0] == pytest.approx(2.0)
    assert cams[0].tolist() == [[1.0, 0.0], [0.0, 0.0]]  # the negative evidence is cut by the ReLU
    assert cams.dtype == np.float32


def test_gradcam_of_no_positive_evidence_is_empty_not_nan() -> None:
    feats = np.ones((1, 3, 3, 2), np.float32)
    grads = -np.ones_like(feats)
    cams, raw = gradcam(feats, grads)
    assert raw[0] == 0.0
    assert np.all(cams == 0.0)


def test_head_must_end_with_softmax() -> None:
    head = [{"type": "global_avg_pool"}, {"type": "dense", "name": "out", "units": 2, "activation": "linear"}]
    weights = {"out/kernel": np.ones((3, 2)), "out/bias": np.zeros(2)}
    with pytest.raises(ValueError, match="softmax"):
        head_forward(np.ones((1, 2, 2, 3)), head, weights)

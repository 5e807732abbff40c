"""The model head in numpy: forward from the Grad-CAM feature map, and its gradient.

The exported ONNX model gives the feature map ``A`` (N, h, w, K) of the
Grad-CAM layer and the probabilities. Grad-CAM (Selvaraju et al. 2017) needs
``d y_c / d A``, the gradient of the positive class *logit* (before softmax)
with respect to ``A``; the layers after ``A`` are few and simple (pooling,
flatten, dense), so it is computed here by hand from ``head.npz`` and the
card's ``head`` list, without TensorFlow. A test checks it against
``tf.GradientTape`` on the Keras model.

Gradient conventions follow TensorFlow's: ``MaxPool`` sends the gradient to
the first maximum of each window (row-major), ``reduce_max`` (global max
pooling) shares it equally between tied maxima, ReLU passes it where the
output is > 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The card's head: :class:`desktop.core.bundle.HeadLayer` objects or their dicts (both index by key).
HeadSpec = Sequence[Any]


@dataclass
class HeadCache:
    """What the backward pass needs from the forward pass."""

    inputs: list[np.ndarray]  # the input of each head layer
    pre_activations: list[np.ndarray | None]  # dense layers: x @ W + b
    logits: np.ndarray  # pre-softmax output of the last layer (N, n_classes)
    probs: np.ndarray  # softmax(logits)


def _pool_pads(size: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """(pad_before, pad_after, out_size) as TensorFlow computes them."""
    if padding == "valid":
        return 0, 0, (size - k) // s + 1
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2, out


def _max_pool_windows(x: np.ndarray, layer: Mapping[str, Any]) -> tuple[np.ndarray, tuple[int, ...]]:
    """(N, oh, ow, kh*kw, C) windows of a -inf padded NHWC map, and the pad geometry."""
    kh, kw = (int(v) for v in layer["pool_size"])
    sh, sw = (int(v) for v in layer["strides"])
    pad = str(layer.get("padding", "valid"))
    n, h, w, c = x.shape
    pt, pb, oh = _pool_pads(h, kh, sh, pad)
    pl, pr, ow = _pool_pads(w, kw, sw, pad)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf) if pad == "same" else x
    win = np.empty((n, oh, ow, kh * kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            win[:, :, :, i * kw + j, :] = xp[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
    return win, (kh, kw, sh, sw, pt, pl, oh, ow)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def head_forward(features: np.ndarray, head: HeadSpec, weights: Mapping[str, np.ndarray]) -> HeadCache:
    """Run the head on ``features`` (N, h, w, K); returns logits, probabilities and the cache."""
    x = np.asarray(features)
    inputs: list[np.ndarray] = []
    pre: list[np.ndarray | None] = []
    logits: np.ndarray | None = None
    for i, layer in enumerate(head):
        inputs.append(x)
        pre.append(None)
        kind = layer["type"]
        if kind == "dropout":
            continue
        if kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "global_avg_pool":
            x = x.mean(axis=(1, 2), keepdims=bool(layer.get("keepdims", False)))
        elif kind == "global_max_pool":
            x = x.max(axis=(1, 2), keepdims=bool(layer.get("keepdims", False)))
        elif kind == "max_pool2d":
            win, _ = _max_pool_windows(x, layer)
            x = win.max(axis=3)
        elif kind == "dense":
            z = x @ weights[f"{layer['name']}/kernel"] + weights[f"{layer['name']}/bias"]
            pre[-1] = z
            act = layer["activation"]
            if act == "relu":
                x = np.maximum(z, 0)
            elif act == "linear":
                x = z
            elif act == "softmax":
                if i != len(head) - 1:
                    raise ValueError("softmax is only supported on the last head layer")
                logits = z
                x = _softmax(z)
            else:
                raise ValueError(f"unsupported dense activation {act!r}")
        else:
            raise ValueError(f"unsupported head layer type {kind!r}")
    if logits is None:
        raise ValueError("the head must end with a softmax dense layer")
    return HeadCache(inputs=inputs, pre_activations=pre, logits=logits, probs=x)


def head_logit_grad(
    cache: HeadCache, head: HeadSpec, weights: Mapping[str, np.ndarray], class_index: int
) -> np.ndarray:
    """d logits[:, class_index] / d features, shape (N, h, w, K)."""
    n_out = cache.logits.shape[-1]
    g: np.ndarray = np.zeros_like(cache.logits)
    g[:, class_index] = 1.0
    for i in range(len(head) - 1, -1, -1):
        layer, x = head[i], cache.inputs[i]
        kind = layer["type"]
        if kind == "dense":
            z = cache.pre_activations[i]
            assert z is not None
            act = layer["activation"]
            if i == len(head) - 1:
                pass  # the logit itself: no softmax derivative
            elif act == "relu":
                g = g * (z > 0)
            kernel = weights[f"{layer['name']}/kernel"]
            g = g @ kernel.T
        elif kind == "dropout":
            continue
        elif kind == "flatten":
            g = g.reshape(x.shape)
        elif kind == "global_avg_pool":
            h, w = x.shape[1], x.shape[2]
            g = np.broadcast_to(g.reshape(x.shape[0], 1, 1, x.shape[3]) / (h * w), x.shape).copy()
        elif kind == "global_max_pool":
            m = x.max(axis=(1, 2), keepdims=True)
            tie = (x == m).astype(x.dtype)
            g = tie / tie.sum(axis=(1, 2), keepdims=True) * g.reshape(x.shape[0], 1, 1, x.shape[3])
        elif kind == "max_pool2d":
            g = _max_pool_backward(x, g, layer)
        else:
            raise ValueError(f"unsupported head layer type {kind!r}")
    assert n_out == cache.logits.shape[-1]
    return g


def _max_pool_backward(x: np.ndarray, g: np.ndarray, layer: Mapping[str, Any]) -> np.ndarray:
    win, (kh, kw, sh, sw, pt, pl, oh, ow) = _max_pool_windows(x, layer)
    arg = win.argmax(axis=3)  # first maximum, row-major in the window (as TensorFlow)
    n, h, w, c = x.shape
    out = np.zeros((n, h + 2 * pt + kh + sh * oh, w + 2 * pl + kw + sw * ow, c), dtype=g.dtype)
    ni, ci = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for a in range(oh):
        for b in range(ow):
            k = arg[:, a, b, :]
            rows = a * sh + k // kw
            cols = b * sw + k % kw
            np.add.at(out, (ni, rows, cols, ci), g[:, a, b, :])
    return out[:, pt : pt + h, pl : pl + w, :]


def gradcam(features: np.ndarray, grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps from features and gradients (both N, h, w, K).

    Returns ``(cams, raw_max)``: cams (N, h, w) float32 normalised to [0, 1]
    (all zeros where the raw map is all zeros), and the raw maximum per image.
    """
    a = np.asarray(features, dtype=np.float64)
    weights = np.asarray(grads, dtype=np.float64).mean(axis=(1, 2))  # (N, K)
    cam = np.maximum(np.einsum("nhwk,nk->nhw", a, weights), 0.0)
    raw_max = cam.reshape(cam.shape[0], -1).max(axis=1)
    scale = np.where(raw_max > 0, raw_max, 1.0)
    return (cam / scale[:, None, None]).astype(np.float32), raw_max


__all__ = ["HeadCache", "gradcam", "head_forward", "head_logit_grad"]

"""Keras -> ONNX with the library exporter: ``keras.Model.export(format="onnx")`` (tf2onnx).

The bundle's ONNX graph has two outputs, the Grad-CAM feature map and the
class probabilities with the calibration temperature folded in. Keras has
no such model, so :func:`convert_library` builds one: the model's input, the
Grad-CAM layer's output, and a copy of the last Dense layer whose weights
are divided by the temperature (the ``head.npz`` weights) with a softmax.
It is exported by Keras (tf2onnx under the TensorFlow backend), then the
graph's input and outputs are renamed to the bundle contract (``input``,
``features``, ``probs``).

Measured with Keras 3.15.1, TensorFlow 2.21.0, tf2onnx 1.17.0 (2 shared cores):
MobileNet 224 exports in ~5 s, ONNX Runtime reproduces the Keras probabilities
within ~1e-6 and runs it as fast as the direct converter's graph (47.6 vs
43.6 ms per image, within noise on this machine). The caller
(:func:`model_training.export.export_bundle`) still gates the result with
``check_onnx`` and falls back to :mod:`model_training.onnx_direct` when this
raises or fails the gate.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from .onnx_direct import OPSET

log = logging.getLogger(__name__)


def library_version() -> str:
    """``"tf2onnx X.Y.Z"`` (ImportError when it is not installed)."""
    import tf2onnx

    return f"tf2onnx {tf2onnx.__version__}"


def convert_library(
    model: Any,
    gradcam_layer: str,
    final_dense: str,
    head_weights: Mapping[str, np.ndarray],
) -> bytes:
    """Serialized ONNX with outputs ``features`` and ``probs`` through ``keras.Model.export``.

    ``head_weights`` holds ``<final_dense>/kernel`` and ``/bias`` with the
    temperature already folded in (:func:`model_training.export.extract_head`).
    Raises whatever Keras or tf2onnx raise (ImportError without tf2onnx).
    """
    import keras
    import onnx

    library_version()  # ImportError early, with its own message, when tf2onnx is missing
    dense = model.get_layer(final_dense)
    kernel = np.asarray(head_weights[f"{final_dense}/kernel"], np.float32)
    bias = np.asarray(head_weights[f"{final_dense}/bias"], np.float32)
    probs_layer = keras.layers.Dense(kernel.shape[1], activation="softmax", name="cxr_probs")
    probs = probs_layer(dense.input)
    probe = keras.Model(model.inputs[0], [model.get_layer(gradcam_layer).output, probs], name="cxr_bundle")
    probs_layer.set_weights([kernel, bias])
    shape = tuple(int(v) for v in model.inputs[0].shape[1:])
    probe(np.zeros((1, *shape), np.float32), training=False)  # Keras refuses a model "never called"
    with tempfile.TemporaryDirectory(prefix="cxr-onnx-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        probe.export(path, format="onnx", verbose=False, opset_version=OPSET,
                     input_signature=[keras.InputSpec(shape=(None, *shape), dtype="float32", name="input")])  # fmt: skip
        onnx_model = onnx.load(path)
    _rename_io(onnx_model, ["features", "probs"])
    onnx_model.producer_name = f"cxr-screener model_training.export via keras.Model.export ({library_version()})"
    onnx.checker.check_model(onnx_model)
    return bytes(onnx_model.SerializeToString())


def _rename_io(onnx_model: Any, outputs: list[str]) -> None:
    """Name the graph's single input ``input`` and its outputs ``outputs`` (in order), everywhere."""
    graph = onnx_model.graph
    if len(graph.input) != 1 or len(graph.output) != len(outputs):
        raise ValueError(f"expected 1 input and {len(outputs)} outputs, got {len(graph.input)} and {len(graph.output)}")
    mapping = {graph.input[0].name: "input"}
    mapping.update({o.name: new for o, new in zip(graph.output, outputs, strict=True)})
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = mapping.get(value.name, value.name)


__all__ = ["convert_library", "library_version"]

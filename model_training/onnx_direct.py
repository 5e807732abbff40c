"""The hand-written Keras -> ONNX converter (the fallback of :mod:`model_training.export`).

It walks the Keras layers this project uses (the MobileNet v1 and VGG19
backbones and their heads) and writes ONNX with the ``onnx`` helper API: every
supported layer is mapped explicitly, so an unsupported one is refused with
its name instead of being exported wrong.

The ONNX graph runs in NCHW internally (ONNX Runtime's native layout for
CPU convolutions): one transpose after the NHWC ``input``, one before the
NHWC ``features`` output and one before each Flatten (Keras flattens NHWC).
BatchNormalization that follows a linear convolution is folded into it.
Keras' ``same`` padding is written as explicit (asymmetric: bottom/right
first) pads computed from the static input size.

Why it is kept although a library exporter exists: :func:`export_bundle`
tries the library first (``keras.Model.export(format="onnx")``, which needs
``tf2onnx``; see :mod:`model_training.onnx_library`). With the pinned versions
(Keras 3.15.1, TensorFlow 2.21.0, tf2onnx 1.17.0) the library path works and
passes the ONNX-vs-Keras gate. Without tf2onnx installed it fails with the
exact error::

    ImportError: This requires the tf2onnx module. You can install it via `pip install tf2onnx`

(raised from keras/src/export/tf2onnx_lib.py, ``patch_tf2onnx``), and an
earlier attempt without calling the model first failed with
``ValueError: The model provided has never called.``. This converter is the
fallback for both cases (and for a library graph that fails the gate); it
is also ~25x faster to run (0.1-0.2 s against ~5 s for a MobileNet), which
the test fixtures use (``converter="direct"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

OPSET = 17
IR_VERSION = 8  # opset 17; readable by ONNX Runtime >= 1.12


class ExportError(RuntimeError):
    """The model cannot be exported faithfully (unsupported layer, ORT disagrees with Keras...)."""


def convert_direct(model: Any, gradcam_layer: str, final_dense: str, temperature: float = 1.0) -> bytes:
    """Serialized ONNX of ``model`` with outputs ``features`` (``gradcam_layer``) and ``probs``.

    ``final_dense`` is the last Dense layer, whose logits are divided by ``temperature``.
    """
    return _Converter(model, gradcam_layer, final_dense, temperature).convert()


@dataclass
class _Graph:
    nodes: list[Any] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    counter: int = 0

    def name(self, base: str) -> str:
        self.counter += 1
        return f"{base}__{self.counter}"

    def const(self, base: str, value: np.ndarray) -> str:
        n = self.name(base)
        self.arrays[n] = value
        return n

    def node(self, op: str, inputs: list[str], base: str, **attrs: Any) -> str:
        from onnx import helper

        out = self.name(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


@dataclass
class _Tensor:
    name: str
    layout: str  # "nchw" (4-D, kept transposed) or "flat" (2-D)
    shape: tuple[int, ...]  # Keras shape without the batch axis (NHWC for 4-D)


@dataclass
class _ConvRecord:
    weight: str
    bias: str
    consumers: int


def _act_name(layer: Any) -> str:
    cfg = layer.get_config()
    act = cfg.get("activation", "linear")
    if isinstance(act, dict):
        act = act.get("config", {}).get("name") or act.get("class_name")
    return str(act) if act is not None else "linear"


act_name = _act_name


def _same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    out = -(-size // s)
    eff = (k - 1) * d + 1
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def _pads_2d(layer: Any, shape: tuple[int, ...], k: tuple[int, int], s: tuple[int, int],
             d: tuple[int, int] = (1, 1)) -> list[int]:  # fmt: skip
    padding = layer.get_config().get("padding", "valid")
    if padding == "valid":
        return [0, 0, 0, 0]
    if padding != "same":
        raise ExportError(f"layer {layer.name!r}: padding {padding!r} is not supported")
    top, bottom = _same_pads(shape[0], k[0], s[0], d[0])
    left, right = _same_pads(shape[1], k[1], s[1], d[1])
    return [top, left, bottom, right]


class _Converter:
    def __init__(self, model: Any, feature_layer: str, final_dense: str, temperature: float) -> None:
        self.model = model
        self.feature_layer = feature_layer
        self.final_dense = final_dense
        self.temperature = float(temperature)
        self.g = _Graph()
        self.tensors: dict[int, _Tensor] = {}
        self.convs: dict[str, _ConvRecord] = {}  # conv output name -> its weights
        self.consumers: dict[int, int] = {}

    def convert(self) -> bytes:
        from onnx import TensorProto, helper, numpy_helper

        model = self.model
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ExportError("the model must have exactly one input and one output")
        for layer in model.layers:
            for node in layer._inbound_nodes:
                for t in node.input_tensors:
                    self.consumers[id(t)] = self.consumers.get(id(t), 0) + 1
        inp = model.inputs[0]
        in_shape = tuple(int(v) for v in inp.shape[1:])
        if len(in_shape) != 3 or any(v is None for v in inp.shape[1:]):
            raise ExportError(f"the model input must be (N, H, W, C) with a static size. Received: {inp.shape}")
        x = self.g.node("Transpose", ["input"], "input_nchw", perm=[0, 3, 1, 2])
        self.tensors[id(inp)] = _Tensor(x, "nchw", in_shape)
        features: _Tensor | None = None
        for layer in model.layers:
            nodes = layer._inbound_nodes
            if len(nodes) != 1:
                raise ExportError(f"layer {layer.name!r} is used {len(nodes)} times; shared layers are not supported")
            node = nodes[0]
            cls = type(layer).__name__
            if cls == "InputLayer":
                continue
            if hasattr(layer, "layers") and cls not in ("InputLayer",):
                raise ExportError(
                    f"layer {layer.name!r} is a nested model ({cls}); build one flat functional model "
                    "(keras.Model(base.input, head(base.get_layer(cut).output)))"
                )
            missing = [t for t in node.input_tensors if id(t) not in self.tensors]
            if missing:
                raise ExportError(f"layer {layer.name!r}: an input comes from outside the model or out of order")
            ins = [self.tensors[id(t)] for t in node.input_tensors]
            outs = node.output_tensors
            if len(outs) != 1:
                raise ExportError(f"layer {layer.name!r} has {len(outs)} outputs; not supported")
            out_shape = tuple(int(v) for v in outs[0].shape[1:])
            handler = getattr(self, f"_{cls}", None)
            if handler is None:
                raise ExportError(f"layer {layer.name!r} of type {cls} is not supported by the ONNX export")
            result: _Tensor = handler(layer, ins, out_shape)
            if result.shape != out_shape:
                raise ExportError(f"layer {layer.name!r}: converted shape {result.shape} != Keras {out_shape}")
            self.tensors[id(outs[0])] = result
            if layer.name == self.feature_layer:
                features = result
        if features is None or features.layout != "nchw":
            raise ExportError(f"Grad-CAM layer {self.feature_layer!r} not found or not a 4-D feature map")
        out = self.tensors[id(model.outputs[0])]
        if out.layout != "flat":
            raise ExportError("the model output must be (N, n_classes)")
        fname = self.g.node("Transpose", [features.name], "features_nhwc", perm=[0, 2, 3, 1])
        self.g.nodes.append(helper.make_node("Identity", [fname], ["features"], name="features"))
        self.g.nodes.append(helper.make_node("Identity", [out.name], ["probs"], name="probs"))

        h, w, c = in_shape
        fh, fw, fc = features.shape
        graph = helper.make_graph(
            self.g.nodes,
            "cxr_screener",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", h, w, c])],
            [
                helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", fh, fw, fc]),
                helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", out.shape[0]]),
            ],
            initializer=[numpy_helper.from_array(np.ascontiguousarray(v), name=k) for k, v in self.g.arrays.items()],
        )
        onnx_model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="cxr-screener model_training.export",
            ir_version=IR_VERSION,
        )
        import onnx

        onnx.checker.check_model(onnx_model)
        return bytes(onnx_model.SerializeToString())

    # ------------------------------------------------------------------ helpers

    def _activation(self, act: str, x: str, layout: str, layer: Any) -> str:
        if act == "linear":
            return x
        if act == "relu":
            return self.g.node("Relu", [x], f"{layer.name}_relu")
        if act == "relu6":
            return self._clip(x, 0.0, 6.0, layer.name)
        if act == "sigmoid":
            return self.g.node("Sigmoid", [x], f"{layer.name}_sigmoid")
        if act == "tanh":
            return self.g.node("Tanh", [x], f"{layer.name}_tanh")
        if act == "softmax":
            return self.g.node("Softmax", [x], f"{layer.name}_softmax", axis=1)
        raise ExportError(f"layer {layer.name!r}: activation {act!r} is not supported")

    def _clip(self, x: str, lo: float, hi: float | None, base: str) -> str:
        ins = [x, self.g.const(f"{base}_min", np.array(lo, np.float32))]
        if hi is not None:
            ins.append(self.g.const(f"{base}_max", np.array(hi, np.float32)))
        return self.g.node("Clip", ins, f"{base}_clip")

    @staticmethod
    def _one(ins: list[_Tensor], layer: Any) -> _Tensor:
        if len(ins) != 1:
            raise ExportError(f"layer {layer.name!r} must have one input")
        return ins[0]

    def _check_channels_last(self, layer: Any) -> None:
        fmt = layer.get_config().get("data_format", "channels_last")
        if fmt not in (None, "channels_last"):
            raise ExportError(f"layer {layer.name!r}: data_format {fmt!r} is not supported")

    # ------------------------------------------------------------------ layers

    def _Conv2D(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        self._check_channels_last(layer)
        cfg = layer.get_config()
        k = tuple(cfg["kernel_size"])
        s = tuple(cfg["strides"])
        d = tuple(cfg["dilation_rate"])
        groups = int(cfg.get("groups", 1))
        kernel = np.asarray(layer.kernel.numpy(), np.float32)  # (kh, kw, cin/groups, out)
        weight = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        bias = (
            np.asarray(layer.bias.numpy(), np.float32)
            if cfg.get("use_bias", True)
            else np.zeros(weight.shape[0], np.float32)
        )
        return self._conv(layer, x, weight, bias, k, s, d, groups, out_shape, _act_name(layer))

    def _DepthwiseConv2D(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        self._check_channels_last(layer)
        cfg = layer.get_config()
        k = tuple(cfg["kernel_size"])
        s = tuple(cfg["strides"])
        d = tuple(cfg["dilation_rate"])
        dk = getattr(layer, "depthwise_kernel", None) or layer.kernel
        kernel = np.asarray(dk.numpy(), np.float32)  # (kh, kw, cin, mult)
        kh, kw, cin, mult = kernel.shape
        weight = np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw))
        bias = (
            np.asarray(layer.bias.numpy(), np.float32)
            if cfg.get("use_bias", True)
            else np.zeros(cin * mult, np.float32)
        )
        return self._conv(layer, x, weight, bias, k, s, d, cin, out_shape, _act_name(layer))

    def _conv(self, layer: Any, x: _Tensor, weight: np.ndarray, bias: np.ndarray, k: tuple[int, ...],
              s: tuple[int, ...], d: tuple[int, ...], groups: int, out_shape: tuple[int, ...],
              act: str) -> _Tensor:  # fmt: skip
        if x.layout != "nchw":
            raise ExportError(f"layer {layer.name!r} needs a 4-D input")
        pads = _pads_2d(layer, x.shape, (k[0], k[1]), (s[0], s[1]), (d[0], d[1]))
        wname = self.g.const(f"{layer.name}_W", weight)
        bname = self.g.const(f"{layer.name}_B", bias)
        y = self.g.node(
            "Conv", [x.name, wname, bname], layer.name,
            kernel_shape=list(k), strides=list(s), dilations=list(d), pads=pads, group=groups,
        )  # fmt: skip
        out_id = id(layer._inbound_nodes[0].output_tensors[0])
        if act == "linear" and layer.name != self.feature_layer:
            self.convs[y] = _ConvRecord(wname, bname, self.consumers.get(out_id, 0))
        y = self._activation(act, y, "nchw", layer)
        return _Tensor(y, "nchw", out_shape)

    def _BatchNormalization(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        cfg = layer.get_config()
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) else axis
        rank = len(x.shape) + 1
        if axis not in (-1, rank - 1):
            raise ExportError(f"layer {layer.name!r}: BatchNormalization over axis {axis} is not supported")
        eps = float(cfg["epsilon"])
        mean = np.asarray(layer.moving_mean.numpy(), np.float64)
        var = np.asarray(layer.moving_variance.numpy(), np.float64)
        gamma = np.asarray(layer.gamma.numpy(), np.float64) if cfg.get("scale", True) else np.ones_like(mean)
        beta = np.asarray(layer.beta.numpy(), np.float64) if cfg.get("center", True) else np.zeros_like(mean)
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        rec = self.convs.get(x.name)
        if rec is not None and rec.consumers == 1:
            # Fold into the preceding linear convolution.
            w = self.g.arrays[rec.weight].astype(np.float64)
            b = self.g.arrays[rec.bias].astype(np.float64)
            self.g.arrays[rec.weight] = (w * scale[:, None, None, None]).astype(np.float32)
            self.g.arrays[rec.bias] = (b * scale + shift).astype(np.float32)
            del self.convs[x.name]
            return _Tensor(x.name, x.layout, out_shape)
        cshape = (1, -1, 1, 1) if x.layout == "nchw" else (1, -1)
        m = self.g.const(f"{layer.name}_scale", scale.astype(np.float32).reshape(cshape))
        a = self.g.const(f"{layer.name}_shift", shift.astype(np.float32).reshape(cshape))
        y = self.g.node("Mul", [x.name, m], f"{layer.name}_mul")
        y = self.g.node("Add", [y, a], layer.name)
        return _Tensor(y, x.layout, out_shape)

    def _ReLU(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        cfg = layer.get_config()
        max_value = cfg.get("max_value")
        slope = float(cfg.get("negative_slope") or 0.0)
        threshold = float(cfg.get("threshold") or 0.0)
        if threshold != 0.0:
            raise ExportError(f"layer {layer.name!r}: ReLU threshold {threshold} is not supported")
        if slope != 0.0:
            if max_value is not None:
                raise ExportError(f"layer {layer.name!r}: leaky ReLU with max_value is not supported")
            y = self.g.node("LeakyRelu", [x.name], layer.name, alpha=slope)
        elif max_value is not None:
            y = self._clip(x.name, 0.0, float(max_value), layer.name)
        else:
            y = self.g.node("Relu", [x.name], layer.name)
        return _Tensor(y, x.layout, out_shape)

    def _Activation(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        return _Tensor(self._activation(_act_name(layer), x.name, x.layout, layer), x.layout, out_shape)

    def _ZeroPadding2D(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        self._check_channels_last(layer)
        (t, b), (lft, r) = layer.get_config()["padding"]
        pads = self.g.const(f"{layer.name}_pads", np.array([0, 0, t, lft, 0, 0, b, r], np.int64))
        y = self.g.node("Pad", [x.name, pads], layer.name, mode="constant")
        return _Tensor(y, "nchw", out_shape)

    def _pool(self, op: str, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        self._check_channels_last(layer)
        cfg = layer.get_config()
        k = tuple(cfg["pool_size"])
        s = tuple(cfg["strides"] or k)
        pads = _pads_2d(layer, x.shape, (k[0], k[1]), (s[0], s[1]))
        attrs: dict[str, Any] = {"kernel_shape": list(k), "strides": list(s), "pads": pads}
        if op == "AveragePool":
            attrs["count_include_pad"] = 0
        return _Tensor(self.g.node(op, [x.name], layer.name, **attrs), "nchw", out_shape)

    def _MaxPooling2D(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        return self._pool("MaxPool", layer, ins, out_shape)

    def _AveragePooling2D(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        return self._pool("AveragePool", layer, ins, out_shape)

    def _global_pool(self, op: str, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        self._check_channels_last(layer)
        y = self.g.node(op, [x.name], layer.name)
        if layer.get_config().get("keepdims", False):
            return _Tensor(y, "nchw", out_shape)
        return _Tensor(self.g.node("Flatten", [y], f"{layer.name}_flat", axis=1), "flat", out_shape)

    def _GlobalAveragePooling2D(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        return self._global_pool("GlobalAveragePool", layer, ins, out_shape)

    def _GlobalMaxPooling2D(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        return self._global_pool("GlobalMaxPool", layer, ins, out_shape)

    def _Flatten(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        if x.layout == "flat":
            return _Tensor(x.name, "flat", out_shape)
        y = self.g.node("Transpose", [x.name], f"{layer.name}_nhwc", perm=[0, 2, 3, 1])
        return _Tensor(self.g.node("Flatten", [y], layer.name, axis=1), "flat", out_shape)

    def _Dense(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        if x.layout != "flat":
            raise ExportError(f"layer {layer.name!r}: Dense on a 4-D tensor; add Flatten or global pooling first")
        kernel = np.asarray(layer.kernel.numpy(), np.float32)
        bias = np.asarray(layer.bias.numpy(), np.float32) if layer.use_bias else np.zeros(kernel.shape[1], np.float32)
        if layer.name == self.final_dense:
            kernel = kernel / np.float32(self.temperature)
            bias = bias / np.float32(self.temperature)
        w = self.g.const(f"{layer.name}_W", kernel)
        b = self.g.const(f"{layer.name}_B", bias)
        y = self.g.node("Gemm", [x.name, w, b], layer.name)
        return _Tensor(self._activation(_act_name(layer), y, "flat", layer), "flat", out_shape)

    def _identity(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        return _Tensor(x.name, x.layout, out_shape)

    _Dropout = _identity
    _SpatialDropout2D = _identity
    _GaussianNoise = _identity
    _GaussianDropout = _identity
    _ActivityRegularization = _identity

    def _Rescaling(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        x = self._one(ins, layer)
        cfg = layer.get_config()
        cshape = (1, -1, 1, 1) if x.layout == "nchw" else (1, -1)

        def const(v: Any, base: str) -> str:
            arr = np.asarray(v, np.float32)
            arr = arr.reshape(cshape) if arr.ndim else arr
            return self.g.const(f"{layer.name}_{base}", arr)

        y = self.g.node("Mul", [x.name, const(cfg["scale"], "scale")], f"{layer.name}_mul")
        y = self.g.node("Add", [y, const(cfg["offset"], "offset")], layer.name)
        return _Tensor(y, x.layout, out_shape)

    def _Add(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        y = ins[0].name
        for other in ins[1:]:
            y = self.g.node("Add", [y, other.name], layer.name)
        return _Tensor(y, ins[0].layout, out_shape)

    def _Concatenate(self, layer: Any, ins: list[_Tensor], out_shape: tuple[int, ...]) -> _Tensor:
        axis = int(layer.get_config().get("axis", -1))
        if axis not in (-1, len(out_shape)):
            raise ExportError(f"layer {layer.name!r}: Concatenate on axis {axis} is not supported")
        y = self.g.node("Concat", [t.name for t in ins], layer.name, axis=1)
        return _Tensor(y, ins[0].layout, out_shape)


# --------------------------------------------------------------------------
# The head (layers after the Grad-CAM layer) for the numpy Grad-CAM
# --------------------------------------------------------------------------


__all__ = ["IR_VERSION", "OPSET", "ExportError", "act_name", "convert_direct"]

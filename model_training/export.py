"""Keras model -> model bundle (ONNX + head weights + model card).

- ONNX: the library exporter first (``keras.Model.export(format="onnx")``,
  tf2onnx; :mod:`model_training.onnx_library`), else the hand-written
  converter (:mod:`model_training.onnx_direct`, whose docstring records why
  it is kept and the library's exact error when it is missing). Choose with
  ``export_bundle(converter="auto"|"library"|"direct")``.
- The gate: before anything is written, ONNX Runtime must reproduce the
  Keras probabilities (max abs diff <= 1e-4) and the numpy head (Grad-CAM)
  the ONNX probabilities (:func:`check_onnx`); otherwise :class:`ExportError`
  (in ``auto`` mode a library graph that fails it falls back to the converter).
- The card: assembled in one place, :func:`build_card`; callers add fields
  through ``card_extra`` (any key the exporter does not write itself).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from desktop.core.bundle import (
    ARCHITECTURES,
    CARD_FILE,
    CARD_MD_FILE,
    FORMAT_VERSION,
    HEAD_FILE,
    ONNX_FILE,
    ModelCard,
    load_bundle,
    render_model_card_md,
    sha256_bytes,
)
from desktop.core.gradcam import head_forward
from desktop.core.preprocess import PreprocessSpec, scale_for_backbone

from .onnx_direct import IR_VERSION, OPSET, ExportError, act_name, convert_direct

log = logging.getLogger(__name__)

PROBS_TOLERANCE = 1e-4
#: ``export_bundle(converter=...)``: library first then the direct converter, only one of them.
CONVERTERS = ("auto", "library", "direct")
DIRECT_CONVERTER = "model_training.export (direct Keras -> ONNX)"
#: Keys of the card the exporter writes itself (card_extra may not set them).
RESERVED_KEYS = frozenset(
    {
        "format_version", "name", "version", "default", "architecture", "backbone_init", "input",
        "class_names", "positive_class", "gradcam_layer", "head", "temperature", "created",
        "files", "sha256",
    }
)  # fmt: skip
#: Keys card_extra may set; missing ones get empty defaults.
DOCUMENTED_KEYS = (
    "operating_points", "default_operating_point", "metrics", "training_data", "split",
    "recipe", "audit", "limitations",
)  # fmt: skip



# --------------------------------------------------------------------------
# Keras -> ONNX
# --------------------------------------------------------------------------


def to_onnx(model: Any, gradcam_layer: str, temperature: float = 1.0) -> bytes:
    """Serialized ONNX model with outputs ``features`` and ``probs`` (temperature folded in), direct converter."""
    head, _ = extract_head(model, gradcam_layer, temperature)
    return convert_direct(model, gradcam_layer, head[-1]["name"], temperature)


def extract_head(model: Any, gradcam_layer: str, temperature: float = 1.0) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The card's ``head`` list and ``head.npz`` arrays (temperature folded into the last dense)."""
    try:
        layer = model.get_layer(gradcam_layer)
    except ValueError as exc:
        raise ExportError(f"Grad-CAM layer {gradcam_layer!r} is not in the model") from exc
    consumers: dict[int, list[Any]] = {}
    for lyr in model.layers:
        for node in lyr._inbound_nodes:
            for t in node.input_tensors:
                consumers.setdefault(id(t), []).append(lyr)
    out_id = id(model.outputs[0])
    t = layer._inbound_nodes[0].output_tensors[0]
    chain: list[Any] = []
    while id(t) != out_id:
        nxt = consumers.get(id(t), [])
        if len(nxt) != 1:
            raise ExportError(
                f"after the Grad-CAM layer {gradcam_layer!r} the model must be a simple chain to the output "
                f"(tensor used by {len(nxt)} layers)"
            )
        lyr = nxt[0]
        if len(lyr._inbound_nodes[0].input_tensors) != 1:
            raise ExportError(f"head layer {lyr.name!r} has several inputs; not supported")
        chain.append(lyr)
        t = lyr._inbound_nodes[0].output_tensors[0]
    head: list[dict[str, Any]] = []
    weights: dict[str, np.ndarray] = {}
    for lyr in chain:
        cls = type(lyr).__name__
        cfg = lyr.get_config()
        if cls in ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout"):
            head.append({"type": "dropout", "name": lyr.name})
        elif cls == "Flatten":
            head.append({"type": "flatten", "name": lyr.name})
        elif cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            kind = "global_avg_pool" if cls == "GlobalAveragePooling2D" else "global_max_pool"
            head.append({"type": kind, "name": lyr.name, "keepdims": bool(cfg.get("keepdims", False))})
        elif cls == "MaxPooling2D":
            k = list(cfg["pool_size"])
            head.append({"type": "max_pool2d", "name": lyr.name, "pool_size": k,
                         "strides": list(cfg["strides"] or k), "padding": cfg["padding"]})  # fmt: skip
        elif cls == "Dense":
            act = act_name(lyr)
            if act not in ("relu", "linear", "softmax"):
                raise ExportError(f"head layer {lyr.name!r}: activation {act!r} not supported in the head")
            kernel = np.asarray(lyr.kernel.numpy(), np.float32)
            bias = np.asarray(lyr.bias.numpy(), np.float32) if lyr.use_bias else np.zeros(kernel.shape[1], np.float32)
            head.append({"type": "dense", "name": lyr.name, "units": int(kernel.shape[1]), "activation": act})
            weights[f"{lyr.name}/kernel"] = kernel
            weights[f"{lyr.name}/bias"] = bias
        elif cls in ("Activation", "ReLU") and head and head[-1]["type"] == "dense" and head[-1]["activation"] == "linear":
            act = act_name(lyr) if cls == "Activation" else "relu"
            if cls == "ReLU" and (cfg.get("max_value") is not None or cfg.get("negative_slope") or cfg.get("threshold")):
                raise ExportError(f"head layer {lyr.name!r}: only a plain ReLU can follow a dense layer")
            if act not in ("relu", "softmax", "linear"):
                raise ExportError(f"head layer {lyr.name!r}: activation {act!r} not supported in the head")
            head[-1]["activation"] = act
        else:
            raise ExportError(
                f"head layer {lyr.name!r} ({cls}) is not supported after the Grad-CAM layer; use pooling, "
                "Flatten, Dropout and Dense (relu/linear/softmax)"
            )
    if not head or head[-1]["type"] != "dense" or head[-1]["activation"] != "softmax":
        raise ExportError("the model must end with a Dense layer with softmax activation (or Dense + softmax)")
    last = head[-1]["name"]
    weights[f"{last}/kernel"] = weights[f"{last}/kernel"] / np.float32(temperature)
    weights[f"{last}/bias"] = weights[f"{last}/bias"] / np.float32(temperature)
    return head, weights




# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def _random_inputs(spec: PreprocessSpec, n: int, seed: int = 0) -> np.ndarray:
    """Plausible inputs: smooth gray images and independent-channel noise, backbone-scaled."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            small = rng.random((max(2, spec.height // 16), max(2, spec.width // 16)), dtype=np.float32)
            from PIL import Image

            img = Image.fromarray(small, mode="F").resize((spec.width, spec.height), Image.Resampling.BILINEAR)
            gray = np.clip(np.asarray(img, np.float32) + rng.normal(0, 0.05, (spec.height, spec.width)), 0, 1)
            out.append(scale_for_backbone(gray.astype(np.float32), spec))
        else:
            chans = [scale_for_backbone(rng.random((spec.height, spec.width), dtype=np.float32), spec)[..., c]
                     for c in range(spec.channels)]  # fmt: skip
            out.append(np.stack(chans, axis=-1))
    return np.stack(out).astype(np.float32)


@dataclass(frozen=True)
class ExportCheck:
    n_inputs: int
    max_abs_diff_probs: float
    max_abs_diff_features: float
    max_features: float
    max_abs_diff_head: float


def check_onnx(model: Any, onnx_bytes: bytes, gradcam_layer: str, head: list[dict[str, Any]],
               head_weights: Mapping[str, np.ndarray], temperature: float, inputs: np.ndarray) -> ExportCheck:  # fmt: skip
    """Compare ONNX Runtime with Keras on ``inputs``; ExportError beyond the tolerance."""
    import keras
    import onnxruntime as ort

    probe = keras.Model(model.inputs[0], [model.get_layer(gradcam_layer).output, model.outputs[0]])
    feats_k, probs_k = [], []
    for i in range(0, len(inputs), 4):
        f, p = probe(inputs[i : i + 4], training=False)
        feats_k.append(np.asarray(f))
        probs_k.append(np.asarray(p))
    f_k = np.concatenate(feats_k).astype(np.float64)
    p_k = np.concatenate(probs_k).astype(np.float64)
    if temperature != 1.0:
        # Keras probabilities at temperature T, from Keras' own feature map.
        w64 = {k: v.astype(np.float64) for k, v in head_weights.items()}
        p_k = head_forward(f_k, head, w64).probs
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    f_o, p_o = sess.run(["features", "probs"], {"input": inputs})
    d_probs = float(np.abs(p_o - p_k).max())
    d_feat = float(np.abs(f_o - f_k).max())
    p_head = head_forward(f_o.astype(np.float64), head, {k: v.astype(np.float64) for k, v in head_weights.items()}).probs
    d_head = float(np.abs(p_head - p_o).max())
    check = ExportCheck(len(inputs), d_probs, d_feat, float(np.abs(f_k).max()), d_head)
    log.info("export check: %s", check)
    if not d_probs <= PROBS_TOLERANCE:
        raise ExportError(
            f"ONNX Runtime does not reproduce the Keras probabilities: max abs diff {d_probs:.3g} > {PROBS_TOLERANCE} "
            f"(features max abs diff {d_feat:.3g}); nothing was written"
        )
    if not d_head <= PROBS_TOLERANCE:
        raise ExportError(
            f"the numpy head (Grad-CAM) does not reproduce the ONNX probabilities: max abs diff {d_head:.3g}; "
            "nothing was written"
        )
    return check


# --------------------------------------------------------------------------
# The bundle
# --------------------------------------------------------------------------


def convert_checked(
    model: Any,
    gradcam_layer: str,
    head: list[dict[str, Any]],
    head_weights: Mapping[str, np.ndarray],
    temperature: float,
    inputs: np.ndarray,
    converter: str = "auto",
) -> tuple[bytes, ExportCheck, dict[str, Any]]:
    """(ONNX bytes, the gate's figures, what the card's ``export`` section says about the converter).

    ``auto``: the library exporter, and the direct converter if the library
    raises anything (missing tf2onnx, an unsupported op...) or its graph
    fails :func:`check_onnx`; the reason is logged and kept in the card.
    """
    if converter not in CONVERTERS:
        raise ValueError(f"converter must be one of {CONVERTERS}. Received: converter={converter!r}")
    final = head[-1]["name"]
    fallback = None
    if converter in ("auto", "library"):
        from .onnx_library import convert_library, library_version

        try:
            onnx_bytes = convert_library(model, gradcam_layer, final, head_weights)
            check = check_onnx(model, onnx_bytes, gradcam_layer, head, head_weights, temperature, inputs)
            return onnx_bytes, check, {"converter": f"keras.Model.export(format='onnx') ({library_version()})"}
        except Exception as exc:  # any failure of the library (tf2onnx raises its own types): fall back
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if converter == "library":
                raise ExportError(f"the library exporter failed ({reason})") from exc
            log.warning("library ONNX exporter failed (%s); using the direct converter", reason)
            fallback = reason
    onnx_bytes = convert_direct(model, gradcam_layer, final, temperature)
    check = check_onnx(model, onnx_bytes, gradcam_layer, head, head_weights, temperature, inputs)
    info: dict[str, Any] = {"converter": DIRECT_CONVERTER}
    if fallback is not None:
        info["library_exporter_error"] = fallback
    return onnx_bytes, check, info


# --------------------------------------------------------------------------
# The bundle
# --------------------------------------------------------------------------


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()})  # type: ignore[arg-type]
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())



def build_card(
    *,
    name: str,
    version: str,
    default: bool,
    architecture: str,
    backbone_init: str,
    preprocess: PreprocessSpec,
    class_names: Sequence[str],
    positive_class: str,
    gradcam_layer: str,
    head: list[dict[str, Any]],
    temperature: float,
    extra: Mapping[str, Any],
    export_info: Mapping[str, Any],
) -> dict[str, Any]:
    """The model card dict, less ``files``/``sha256``: the one place where a card is assembled.

    ``extra`` (``export_bundle``'s ``card_extra``) gives the documentation keys
    (``operating_points``, ``metrics``...; missing ones get empty defaults)
    and any further key, copied as is (a new card field needs no change here:
    the application keeps unknown keys, see ``ModelCard.raw``).
    """
    ops = extra.get("operating_points") or [
        {
            "name": "balanced",
            "threshold": 0.5,
            "sensitivity": None,
            "sensitivity_ci": None,
            "specificity": None,
            "specificity_ci": None,
            "description": "p(covid) >= 0.5; not calibrated on validation data",
        }
    ]
    card: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": str(version),
        "default": bool(default),
        "architecture": architecture,
        "backbone_init": backbone_init,
        "input": {"preprocess": preprocess.to_dict(), "layout": "NHWC", "name": "input"},
        "class_names": list(class_names),
        "positive_class": positive_class,
        "gradcam_layer": gradcam_layer,
        "head": head,
        "temperature": float(temperature),
        "operating_points": ops,
        "default_operating_point": extra.get("default_operating_point") or ops[0]["name"],
        "metrics": extra.get("metrics") or {},
        "training_data": extra.get("training_data") or {},
        "split": extra.get("split") or {},
        "recipe": extra.get("recipe") or {},
        "audit": extra.get("audit") or {},
        "limitations": list(extra.get("limitations") or []),
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    for k, v in extra.items():
        card.setdefault(k, v)
    card["export"] = dict(export_info)
    return card


def export_bundle(
    model: Any,
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    architecture: str,
    backbone_init: str,
    preprocess: PreprocessSpec,
    class_names: Sequence[str] = ("covid", "normal"),
    positive_class: str = "covid",
    gradcam_layer: str,
    temperature: float = 1.0,
    card_extra: Mapping[str, Any] | None = None,
    default: bool = False,
    overwrite: bool = False,
    check_inputs: np.ndarray | None = None,
    converter: str = "auto",
) -> Path:
    """Export a flat functional Keras model as the bundle folder ``out_dir``; returns its path.

    ``out_dir`` is the bundle folder itself (e.g. ``assets/models/mobilenet-v1``).
    ``card_extra`` supplies the documentation keys (``operating_points``,
    ``default_operating_point``, ``metrics``, ``training_data``, ``split``,
    ``recipe``, ``audit``, ``limitations``) and may add others; it may not set
    the keys the exporter writes. Without operating points the card gets one,
    ``balanced`` at 0.5, marked as not measured.

    ONNX Runtime must reproduce the Keras probabilities on ``check_inputs``
    (or random inputs) within 1e-4, or :class:`ExportError` and nothing is
    written. The folder appears in one rename; an existing one is replaced
    only with ``overwrite=True``. ``converter``: "auto" (the library exporter,
    else the direct converter), "library" or "direct" (:func:`convert_checked`).
    """
    out = Path(out_dir)
    extra = dict(card_extra or {})
    bad = sorted(set(extra) & RESERVED_KEYS)
    if bad:
        raise ValueError(f"card_extra may not set {bad}: the exporter writes them")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}. Received: architecture={architecture!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0. Received: temperature={temperature!r}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite=True to replace it)")
    in_shape = tuple(int(v) for v in model.inputs[0].shape[1:])
    if in_shape != (preprocess.height, preprocess.width, preprocess.channels):
        raise ValueError(
            f"the model input {in_shape} does not match the preprocessing spec "
            f"({preprocess.height}, {preprocess.width}, {preprocess.channels})"
        )
    head, head_weights = extract_head(model, gradcam_layer, temperature)
    if head[-1]["units"] != len(class_names):
        raise ValueError(f"the model has {head[-1]['units']} outputs but {len(class_names)} class names")
    inputs = _random_inputs(preprocess, 4) if check_inputs is None else np.asarray(check_inputs, np.float32)
    onnx_bytes, check, converter_info = convert_checked(
        model, gradcam_layer, head, head_weights, temperature, inputs, converter
    )
    import keras
    import onnx

    export_info = {
        **converter_info,
        "onnx_opset": OPSET,
        "keras_version": keras.__version__,
        "onnx_version": onnx.__version__,
        "check_inputs": check.n_inputs,
        "max_abs_diff_probs": check.max_abs_diff_probs,
        "max_abs_diff_features": check.max_abs_diff_features,
    }
    card = build_card(
        name=name, version=version, default=default, architecture=architecture, backbone_init=backbone_init,
        preprocess=preprocess, class_names=class_names, positive_class=positive_class,
        gradcam_layer=gradcam_layer, head=head, temperature=temperature, extra=extra, export_info=export_info,
    )  # fmt: skip
    npz = _npz_bytes(head_weights)
    files = {ONNX_FILE: sha256_bytes(onnx_bytes), HEAD_FILE: sha256_bytes(npz)}
    card["files"] = dict(files)
    card["sha256"] = files[ONNX_FILE]
    md_card = dict(card)
    card_md = render_model_card_md(md_card).encode("utf-8")
    card["files"][CARD_MD_FILE] = sha256_bytes(card_md)
    ModelCard.from_dict(card, source=out / CARD_FILE)  # schema check before writing

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write(tmp / ONNX_FILE, onnx_bytes)
        _write(tmp / HEAD_FILE, npz)
        _write(tmp / CARD_MD_FILE, card_md)
        _write(tmp / CARD_FILE, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
        os.chmod(tmp, 0o755)
        if out.exists():
            if not overwrite:
                raise FileExistsError(f"{out}: already exists (pass overwrite=True to replace it)")
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    load_bundle(out)  # read back: schema and hashes
    log.info("exported %s v%s to %s (probs max abs diff %.2g)", name, version, out, check.max_abs_diff_probs)
    return out


__all__ = [
    "CONVERTERS",
    "IR_VERSION",
    "OPSET",
    "ExportCheck",
    "ExportError",
    "build_card",
    "check_onnx",
    "convert_checked",
    "export_bundle",
    "extract_head",
    "to_onnx",
]

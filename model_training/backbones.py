"""Backbones (MobileNet v1 alpha 1.0, VGG19) as flat functional Keras models with named layers.

A model is ``keras.Model(base.input, head(base.get_layer(cut).output))``: one
flat graph whose layers the export can walk, the Grad-CAM layer being the cut.
Initial weights: ``"imagenet"`` (Keras' download), a local file (``.h5`` as
Keras writes it, or ``.npz`` of ``<layer>/<weight>`` -> array), or ``None``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ARCHITECTURES = ("mobilenet", "vgg19")
#: Where the backbone is cut by default (the Grad-CAM layer).
DEFAULT_CUT = {"mobilenet": "conv_pw_13_relu", "vgg19": "block5_conv4"}
#: The cut used when the MobileNet weights lack conv_pw_13/kernel (../shared/weights).
PARTIAL_MOBILENET_CUT = "conv_dw_13_relu"


_ALIASES = {"kernel": ("depthwise_kernel",), "depthwise_kernel": ("kernel",)}


class BackboneWeightsError(ValueError):
    """A weights file does not fit the backbone."""


@dataclass(frozen=True)
class BackboneInit:
    """How the backbone was initialised: ``text`` goes verbatim into the model card."""

    kind: str  # "imagenet" | "file" | "none"
    text: str
    path: str | None = None
    sha256: str | None = None
    missing: tuple[str, ...] = ()
    loaded: int = 0


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_base(architecture: str, *, weights: str | None, input_shape: tuple[int, int, int] = (224, 224, 3)) -> tuple[Any, BackboneInit]:
    """The ImageNet-shaped backbone without its classifier, with the requested initial weights."""
    import keras

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}. Received: architecture={architecture!r}")
    kw: dict[str, Any] = {"include_top": False, "input_shape": input_shape}
    file_weights: str | None = None
    keras_weights: str | None = None
    if weights is None or weights == "none":
        keras_weights = None
    elif weights == "imagenet":
        keras_weights = "imagenet"
    else:
        if not Path(weights).is_file():
            raise BackboneWeightsError(f"weights file not found. Received: weights={weights!r}")
        file_weights = weights
    if architecture == "mobilenet":
        base = keras.applications.MobileNet(alpha=1.0, weights=keras_weights, **kw)
    else:
        base = keras.applications.VGG19(weights=keras_weights, **kw)
    if file_weights is None:
        if keras_weights == "imagenet":
            text = (f"ImageNet ({'keras.applications.MobileNet alpha 1.0' if architecture == 'mobilenet' else 'keras.applications.VGG19'}"
                    ", Keras' published weights, downloaded)")
            return base, BackboneInit("imagenet", text)
        return base, BackboneInit("none", "random initialisation (weights=None): NOT ImageNet pre-trained")
    init = load_weights_file(base, file_weights, architecture)
    return base, init


def load_weights_file(base: Any, path: str, architecture: str) -> BackboneInit:
    """Load an .h5 (Keras) or .npz (``<layer>/<weight>`` -> array) file into ``base``."""
    digest = sha256_file(path)
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        missing: list[str] = []
        loaded = 0
        for layer in base.layers:
            if not layer.weights:
                continue
            values = []
            for w in layer.weights:
                wname = w.name.split("/")[-1].split(":")[0]
                key = f"{layer.name}/{wname}"
                for alias in _ALIASES.get(wname, ()):  # Keras 3 calls the depthwise kernel "kernel"
                    if key not in arrays and f"{layer.name}/{alias}" in arrays:
                        key = f"{layer.name}/{alias}"
                if key in arrays:
                    if tuple(arrays[key].shape) != tuple(w.shape):
                        raise BackboneWeightsError(
                            f"{path}: {key} has shape {arrays[key].shape}, the model needs {tuple(w.shape)}")
                    values.append(arrays[key])
                else:
                    missing.append(key)
                    values.append(None)
            for w, v in zip(layer.weights, values, strict=True):
                if v is not None:
                    w.assign(v.astype(np.float32))
                    loaded += 1
        if loaded == 0:
            raise BackboneWeightsError(f"{path}: no weight matches the {architecture} layer names")
        text = f"{architecture} weights from {Path(path).name} (sha256 {digest[:16]}...), {loaded} tensors loaded"
        if missing:
            text += f"; NOT in the file (randomly initialised if used): {', '.join(missing)}"
        log.info(text)
        return BackboneInit("file", text, path=str(path), sha256=digest, missing=tuple(missing), loaded=loaded)
    base.load_weights(path)
    text = f"{architecture} weights from {Path(path).name} (sha256 {digest[:16]}...)"
    return BackboneInit("file", text, path=str(path), sha256=digest, loaded=len(base.weights))


def default_cut(architecture: str, init: BackboneInit) -> str:
    """The Grad-CAM layer: before any layer whose weights were not loaded (honest use of partial files)."""
    if architecture == "mobilenet" and any(m.startswith("conv_pw_13/") for m in init.missing):
        return PARTIAL_MOBILENET_CUT
    return DEFAULT_CUT[architecture]


def cut_model(base: Any, layer: str) -> Any:
    """The backbone from its input to ``layer`` (flat functional model)."""
    import keras

    try:
        out = base.get_layer(layer).output
    except ValueError as exc:
        raise ValueError(f"no layer {layer!r} in the backbone. Received: layer={layer!r}") from exc
    return keras.Model(base.input, out, name=f"{base.name}_to_{layer}")


def _block_of(architecture: str, name: str) -> str | None:
    """The block a backbone layer belongs to: MobileNet ``conv_dw_12`` -> "12"; VGG19 ``block5_conv1`` -> "block5"."""
    if architecture == "mobilenet":
        m = re.fullmatch(r"conv_(?:pad|dw|pw)_(\d+)(?:_bn|_relu)?", name)
        return m.group(1) if m else None
    m = re.fullmatch(r"(block\d+)_\w+", name)
    return m.group(1) if m else None


def finetune_plan(base: Any, architecture: str, layer: str, blocks: int) -> tuple[str, tuple[str, ...]]:
    """Where to cache features and which layers to train to fine-tune the last ``blocks`` blocks up to ``layer``.

    Returns ``(start, trainable)``: the layer just before the first fine-tuned block (its output is
    cached) and the convolution layers of those blocks up to ``layer``. MobileNet cut at
    ``conv_dw_13_relu`` with 2 blocks: ``("conv_pw_11_relu", ("conv_dw_12", "conv_pw_12", "conv_dw_13"))``.
    """
    import keras

    names = [lyr.name for lyr in base.layers]
    if layer not in names:
        raise ValueError(f"no layer {layer!r} in the backbone. Received: layer={layer!r}")
    upto = names[:names.index(layer) + 1]
    order: list[str] = []
    for n in upto:
        b = _block_of(architecture, n)
        if b is not None and b not in order:
            order.append(b)
    if not 1 <= blocks < len(order):
        raise ValueError(f"finetune_blocks must be between 1 and {len(order) - 1} for a {architecture} cut at "
                         f"{layer}. Received: finetune_blocks={blocks}")
    chosen = set(order[-blocks:])
    first = next(i for i, n in enumerate(upto) if _block_of(architecture, n) in chosen)
    convs = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    trainable = tuple(n for n in upto[first:] if isinstance(base.get_layer(n), convs))
    return upto[first - 1], trainable

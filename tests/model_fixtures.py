"""Test model bundles: real architectures, random weights, small inputs.

``make_test_model`` builds a flat functional Keras model of the real
architecture (``keras.applications.MobileNet`` alpha 1.0 or ``VGG19``,
``weights=None``: nothing is downloaded) cut at its Grad-CAM layer, with a
head, and randomises the BatchNorm statistics so the export's folding is
exercised. ``make_test_bundle`` exports it with ``model_training.export``.

Sizes: MobileNet and VGG19 accept inputs down to 32x32; 64-96 pixels keep a
model build + export at ~2-5 s on 2 cores (a 224 MobileNet takes ~3 s, a 224
VGG19 ~10 s and 130 MB). Heads:

- ``"gap"``: GlobalAveragePooling2D + Dropout + Dense(2, softmax)
- ``"paper"``: Flatten + Dense(512, relu) + Dense(256, relu) + Dense(2, softmax)
  (the paper's head; VGG19 cut at ``block5_conv4`` adds a MaxPooling2D first,
  as ``block5_pool`` would)

``tests/data/tiny-mobilenet/`` holds one pre-exported bundle (no TensorFlow
needed to use it; MobileNet alpha 0.25, 128x128, default=True, 0.9 MB): see
:func:`tiny_bundle_path`; rebuild it with ``python -m tests.model_fixtures``.

Use from a test::

    from tests.model_fixtures import make_test_bundle
    path = make_test_bundle(tmp_path, arch="mobilenet", input_size=64, name="m1", default=True)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from desktop.core.preprocess import PreprocessSpec

DATA = Path(__file__).resolve().parent / "data"
TINY_BUNDLE = DATA / "tiny-mobilenet"

GRADCAM_LAYER = {"mobilenet": "conv_pw_13_relu", "vgg19": "block5_conv4"}
DEFAULT_HEAD = {"mobilenet": "gap", "vgg19": "paper"}


def make_test_model(
    arch: str = "mobilenet",
    input_size: int = 64,
    *,
    head: str | None = None,
    gradcam_layer: str | None = None,
    seed: int = 0,
    alpha: float = 1.0,
) -> tuple[Any, str]:
    """(keras.Model, gradcam_layer) of the real architecture with random weights."""
    import keras

    keras.utils.set_random_seed(seed)
    shape = (input_size, input_size, 3)
    if arch == "mobilenet":
        base = keras.applications.MobileNet(input_shape=shape, alpha=alpha, include_top=False, weights=None)
    elif arch == "vgg19":
        base = keras.applications.VGG19(input_shape=shape, include_top=False, weights=None)
    else:
        raise ValueError(f"arch must be 'mobilenet' or 'vgg19'. Received: arch={arch!r}")
    layer = gradcam_layer or GRADCAM_LAYER[arch]
    x = base.get_layer(layer).output
    kind = head or DEFAULT_HEAD[arch]
    if kind == "gap":
        h = keras.layers.GlobalAveragePooling2D(name="head_gap")(x)
        h = keras.layers.Dropout(0.3, name="head_dropout")(h)
    elif kind == "paper":
        if layer == "block5_conv4":
            x = keras.layers.MaxPooling2D(2, name="head_pool")(x)
        h = keras.layers.Flatten(name="head_flatten")(x)
        h = keras.layers.Dense(512, activation="relu", name="head_fc1")(h)
        h = keras.layers.Dropout(0.5, name="head_dropout")(h)
        h = keras.layers.Dense(256, activation="relu", name="head_fc2")(h)
    elif kind == "gmp":
        h = keras.layers.GlobalMaxPooling2D(name="head_gmp")(x)
        h = keras.layers.Dense(32, name="head_fc1")(h)
        h = keras.layers.Activation("relu", name="head_act")(h)
    else:
        raise ValueError(f"unknown head {kind!r}")
    out = keras.layers.Dense(2, activation="softmax", name="predictions")(h)
    model = keras.Model(base.input, out, name=f"{arch}_{kind}")
    rng = np.random.default_rng(seed)
    bns = [lyr for lyr in model.layers if type(lyr).__name__ == "BatchNormalization"]
    for lyr in bns:
        n = int(lyr.moving_mean.shape[0])
        lyr.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
        lyr.beta.assign(rng.normal(0.0, 0.2, n).astype("float32"))
    if bns:
        # Random weights with ImageNet-free BatchNorm statistics make MobileNet's ReLU6 saturate
        # (every input gives the same output). Calibrate the statistics on random images
        # (momentum 0: the moving statistics become this batch's), as a data-dependent init.
        saved = [lyr.momentum for lyr in bns]
        for lyr in bns:
            lyr.momentum = 0.0
        model(calibration_inputs(arch, input_size, 8, seed), training=True)
        for lyr, m in zip(bns, saved, strict=True):
            lyr.momentum = m
    # Random dense weights give near-saturated softmax; scale the last layer down so
    # probabilities land in the interesting middle range.
    last = model.get_layer("predictions")
    last.kernel.assign(np.asarray(last.kernel.numpy()) * 0.2)
    return model, layer


def calibration_inputs(arch: str, input_size: int, n: int = 8, seed: int = 0) -> np.ndarray:
    """Random smooth gray images, backbone-scaled: (n, size, size, 3) float32."""
    from PIL import Image

    from desktop.core.preprocess import scale_for_backbone

    spec = PreprocessSpec(height=input_size, width=input_size, normalization=arch)
    rng = np.random.default_rng(seed + 1000)
    out = []
    for _ in range(n):
        small = rng.random((8, 8), dtype=np.float32)
        img = np.asarray(Image.fromarray(small, mode="F").resize((input_size, input_size), Image.Resampling.BICUBIC))
        img = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1).astype(np.float32)
        out.append(scale_for_backbone(img, spec))
    return np.stack(out).astype(np.float32)


def card_extra_for_tests(threshold: float = 0.5) -> dict[str, Any]:
    """Documentation keys of a test card: two operating points, honest 'not measured' values."""
    return {
        "operating_points": [
            {"name": "balanced", "threshold": threshold, "sensitivity": None, "sensitivity_ci": None,
             "specificity": None, "specificity_ci": None, "description": "test bundle"},
            {"name": "high_sensitivity", "threshold": threshold / 2, "sensitivity": 0.95,
             "sensitivity_ci": [0.9, 0.98], "specificity": 0.6, "specificity_ci": [0.5, 0.7],
             "description": "test bundle, made-up figures"},
        ],  # fmt: skip
        "default_operating_point": "balanced",
        "training_data": {"note": "none: random weights, for tests only"},
        "limitations": ["Random weights: for tests only, predicts nothing."],
    }




def make_test_bundle(
    tmp_dir: str | Path,
    arch: str = "mobilenet",
    input_size: int = 64,
    name: str | None = None,
    default: bool = False,
    *,
    head: str | None = None,
    gradcam_layer: str | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    alpha: float = 1.0,
    return_model: bool = False,
    converter: str = "direct",
) -> Any:
    """Export a random-weights model of ``arch`` as ``<tmp_dir>/<name>``; returns the folder.

    With ``return_model=True`` returns ``(path, keras_model)``. ``converter`` defaults to the
    direct converter (0.1 s instead of ~5 s for the library exporter); tests/test_export.py
    covers the library path.
    """
    from model_training.export import export_bundle

    model, layer = make_test_model(arch, input_size, head=head, gradcam_layer=gradcam_layer, seed=seed, alpha=alpha)
    bundle_name = name or f"test-{arch}-{input_size}"
    spec = PreprocessSpec(height=input_size, width=input_size, normalization=arch)
    path = export_bundle(
        model,
        Path(tmp_dir) / bundle_name,
        name=bundle_name,
        version="0.0-test",
        architecture=arch,
        backbone_init=f"random initialisation (weights=None{'' if arch != 'mobilenet' else f', alpha {alpha}'}): test bundle",
        preprocess=spec,
        gradcam_layer=layer,
        temperature=temperature,
        card_extra=card_extra_for_tests(),
        default=default,
        converter=converter,
    )
    return (path, model) if return_model else path


def tiny_bundle_path() -> Path:
    """The committed tiny MobileNet bundle (alpha 0.25, 128x128, random weights), usable without TensorFlow."""
    if not (TINY_BUNDLE / "model_card.json").exists():
        pytest.skip(f"{TINY_BUNDLE} missing")
    return TINY_BUNDLE


def copy_tiny_bundle(dest_dir: str | Path, name: str | None = None) -> Path:
    """Copy the committed tiny bundle into ``dest_dir`` (e.g. the per-user models folder)."""
    src = tiny_bundle_path()
    dest = Path(dest_dir) / (name or src.name)
    shutil.copytree(src, dest)
    return dest


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    """A private copy of the tiny MobileNet bundle (safe to tamper with)."""
    return copy_tiny_bundle(tmp_path)


@pytest.fixture
def user_models_with_tiny() -> Path:
    """The tiny bundle installed in the (test-isolated) per-user models folder, as the default."""
    from desktop.core.paths import user_models_dir

    root = user_models_dir()
    root.mkdir(parents=True, exist_ok=True)
    return copy_tiny_bundle(root)


def regenerate_tiny_bundle() -> Path:
    """Rebuild ``tests/data/tiny-mobilenet`` (needs TensorFlow): ``python -m tests.model_fixtures``."""
    if TINY_BUNDLE.exists():
        shutil.rmtree(TINY_BUNDLE)
    DATA.mkdir(exist_ok=True)
    return make_test_bundle(DATA, "mobilenet", 128, name="tiny-mobilenet", default=True, alpha=0.25, seed=3)  # type: ignore[no-any-return]


if __name__ == "__main__":
    print(regenerate_tiny_bundle())

"""Model bundles: card schema, sha256 verification, refusal of foreign files, discovery.

Runs without TensorFlow on the committed tiny bundle (``tests/data/tiny-mobilenet``).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from desktop.core.bundle import (
    CARD_FILE,
    ModelCard,
    OperatingPoint,
    discover_bundles,
    get_bundle,
    load_bundle,
    render_model_card_md,
    sha256_file,
    validate_card,
)
from desktop.core.errors import (
    BundleIntegrityError,
    BundleNotFoundError,
    ModelCardError,
    ModelError,
)
from tests.model_fixtures import copy_tiny_bundle, tiny_bundle, tiny_bundle_path  # noqa: F401


def _card(path: Path) -> dict[str, Any]:
    return json.loads((path / CARD_FILE).read_text())


def _write_card(path: Path, data: dict[str, Any]) -> None:
    (path / CARD_FILE).write_text(json.dumps(data, indent=2))


@pytest.fixture
def isolated_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Empty bundled and user models folders (the real assets/models is not looked at)."""
    assets = tmp_path / "assets"
    (assets / "models").mkdir(parents=True)
    monkeypatch.setenv("CXR_SCREENER_ASSETS", str(assets))
    user = tmp_path / "home"
    monkeypatch.setenv("CXR_SCREENER_HOME", str(user))
    (user / "models").mkdir(parents=True)
    return assets / "models", user / "models"


# --------------------------------------------------------------------------- loading


def test_committed_bundle_loads_with_typed_card() -> None:
    bundle = load_bundle(tiny_bundle_path())
    card = bundle.card
    assert bundle.name == "tiny-mobilenet"
    assert card.architecture == "mobilenet"
    assert card.class_names == ("covid", "normal")
    assert card.positive_index == 0
    assert card.negative_class == "normal"
    assert card.input_shape == (128, 128, 3)
    assert card.preprocess.normalization == "mobilenet"
    assert card.gradcam_layer == "conv_pw_13_relu"
    assert card.operating_point().name == "balanced"
    hs = card.operating_point("high_sensitivity")
    assert isinstance(hs, OperatingPoint)
    assert hs.threshold == 0.25
    assert hs.sensitivity_ci == (0.9, 0.98)
    assert card.sha256 == sha256_file(bundle.onnx_path) == card.files["model.onnx"]
    summary = bundle.summary()
    assert summary["name"] == "tiny-mobilenet"
    assert summary["origin"] == "path"
    json.dumps(summary)  # JSON-able for `cxr-screener models`


def test_unknown_operating_point_names_the_available_ones() -> None:
    card = load_bundle(tiny_bundle_path()).card
    with pytest.raises(ModelError, match=r"no operating point 'strict'.*available: balanced, high_sensitivity"):
        card.operating_point("strict")


@pytest.mark.parametrize("fname", ["model.onnx", "head.npz", "MODEL_CARD.md"])
def test_tampered_file_is_refused_with_both_hashes(tiny_bundle: Path, fname: str) -> None:  # noqa: F811
    expected = _card(tiny_bundle)["files"][fname]
    with open(tiny_bundle / fname, "ab") as fh:
        fh.write(b"\0")
    actual = sha256_file(tiny_bundle / fname)
    with pytest.raises(BundleIntegrityError, match="sha256 mismatch") as err:
        load_bundle(tiny_bundle)
    msg = str(err.value)
    assert fname in msg
    assert expected in msg
    assert actual in msg
    assert err.value.path == str(tiny_bundle / fname)


def test_missing_listed_file_is_refused(tiny_bundle: Path) -> None:  # noqa: F811
    (tiny_bundle / "head.npz").unlink()
    with pytest.raises(BundleIntegrityError, match="head.npz.*missing"):
        load_bundle(tiny_bundle)


def test_card_hash_edit_is_refused(tiny_bundle: Path) -> None:  # noqa: F811
    data = _card(tiny_bundle)
    data["files"]["model.onnx"] = "0" * 64
    _write_card(tiny_bundle, data)
    with pytest.raises(ModelCardError, match="sha256: differs from files"):
        load_bundle(tiny_bundle)
    data["sha256"] = "0" * 64
    _write_card(tiny_bundle, data)
    with pytest.raises(BundleIntegrityError, match="model.onnx: sha256 mismatch"):
        load_bundle(tiny_bundle)


@pytest.mark.parametrize(
    "fname",
    ["evil.pkl", "weights.h5", "loader.py", "payload.npy", "model.keras", "lib.so"],
)
def test_unexpected_pickle_or_code_file_is_refused(tiny_bundle: Path, fname: str) -> None:  # noqa: F811
    (tiny_bundle / fname).write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(BundleIntegrityError, match="unexpected executable or pickle-like file") as err:
        load_bundle(tiny_bundle)
    assert fname in str(err.value)


@pytest.mark.skipif(os.name == "nt", reason="no executable bit on Windows")
def test_executable_file_is_refused(tiny_bundle: Path) -> None:  # noqa: F811
    script = tiny_bundle / "run"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    with pytest.raises(BundleIntegrityError, match="run: unexpected executable"):
        load_bundle(tiny_bundle)


def test_harmless_unlisted_file_is_only_a_warning(tiny_bundle: Path) -> None:  # noqa: F811
    (tiny_bundle / "NOTES.txt").write_text("retrained on more data")
    bundle = load_bundle(tiny_bundle)
    assert any("NOTES.txt" in w for w in bundle.warnings)


def test_invalid_json_names_the_card(tiny_bundle: Path) -> None:  # noqa: F811
    (tiny_bundle / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelCardError, match=r"model_card.json: is not valid JSON \(line 1"):
        load_bundle(tiny_bundle)


def test_folder_without_card_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleNotFoundError, match="no model_card.json"):
        load_bundle(tmp_path)
    with pytest.raises(BundleNotFoundError, match="is not a model bundle folder"):
        load_bundle(tmp_path / "absent")


def test_object_arrays_in_head_npz_are_never_unpickled(tiny_bundle: Path) -> None:  # noqa: F811
    """A head.npz holding a pickled object array, with a matching hash, is still refused."""
    from desktop.core.inference import Predictor

    buf = io.BytesIO()
    np.savez(buf, **{"predictions/kernel": np.array([{"boom": 1}], dtype=object)})
    (tiny_bundle / "head.npz").write_bytes(buf.getvalue())
    data = _card(tiny_bundle)
    data["files"]["head.npz"] = sha256_file(tiny_bundle / "head.npz")
    _write_card(tiny_bundle, data)
    bundle = load_bundle(tiny_bundle)  # hashes agree now
    with pytest.raises(ModelError, match="head.npz: cannot read head weights"):
        Predictor(bundle)


# --------------------------------------------------------------------------- schema

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def apply(card: dict[str, Any]) -> None:
        keys = path.split(".")
        target: Any = card
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        last = keys[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return apply


def _add_file(name: str) -> Mutation:
    return lambda card: card["files"].__setitem__(name, "0" * 64)


def _drop(key: str) -> Mutation:
    return lambda card: card.pop(key)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_drop("class_names"), "class_names: missing"),
        (_drop("gradcam_layer"), "gradcam_layer: missing"),
        (_set("format_version", 2), "format_version: this application reads format 1"),
        (_set("architecture", "resnet50"), "architecture: must be one of"),
        (_set("default", "yes"), "default: must be bool"),
        (_set("temperature", True), "temperature: must be int or float"),
        (_set("temperature", 0), r"temperature: must be in \[0.001"),
        (_set("positive_class", "pneumonia"), "positive_class: must be one of class_names"),
        (_set("class_names", ["covid"]), "class_names: must list at least 2"),
        (_set("operating_points.0.threshold", 1.5), r"operating_points\[0\].threshold: must be in \[0.0, 1.0\]"),
        (_set("operating_points.1.sensitivity_ci", [0.9, 0.1]), r"operating_points\[1\].sensitivity_ci"),
        (_set("default_operating_point", "strict"), "default_operating_point: must name one of"),
        (_set("operating_points", []), "operating_points: must list at least one"),
        (_set("head.0.type", "attention"), r"head\[0\].type: must be one of"),
        (_set("head.2.activation", "sigmoid"), r"head\[2\].activation: must be one of"),
        (_set("head.2.units", 3), r"head\[2\].units: must equal the number of classes"),
        (_set("input.preprocess.normalization", "imagenet"), "input.preprocess: normalization must be one of"),
        (_set("input.preprocess.size", 3), "input.preprocess: unknown preprocessing keys"),
        (_set("name", "../escape"), "name: letters, digits"),
        (_add_file("../model.onnx"), "must be a plain file name"),
        (_add_file("model.pkl"), "file type not allowed"),
        (_set("limitations", "none"), "limitations: must be list"),
    ],
)
def test_schema_errors_name_the_key(tiny_bundle: Path, mutate: Mutation, message: str) -> None:  # noqa: F811
    data = _card(tiny_bundle)
    mutate(data)
    _write_card(tiny_bundle, data)
    with pytest.raises(ModelCardError, match=message) as err:
        load_bundle(tiny_bundle)
    assert str(tiny_bundle / CARD_FILE) in str(err.value)


def test_validate_card_lists_every_problem() -> None:
    data = _card(tiny_bundle_path())
    data.pop("name")
    data["architecture"] = "x"
    problems = validate_card(data)
    assert any(p.startswith("name:") for p in problems)
    assert any(p.startswith("architecture:") for p in problems)
    assert validate_card([]) == ["<card>: must be a JSON object. Received: list"]


def test_card_round_trips_and_renders_markdown() -> None:
    card = load_bundle(tiny_bundle_path()).card
    again = ModelCard.from_dict(card.to_dict())
    assert again.to_dict() == card.to_dict()
    md = render_model_card_md(card)
    assert md.startswith("# Model card: tiny-mobilenet (version 0.0-test)")
    assert "| balanced (default) | 0.5000 | not measured | not measured |" in md
    assert "0.950 (95% CI 0.900-0.980)" in md
    assert "not a diagnosis" in md
    assert (tiny_bundle_path() / "MODEL_CARD.md").read_text() == md


# --------------------------------------------------------------------------- discovery


def test_discovery_skips_broken_bundles_and_reports_them(isolated_models: tuple[Path, Path]) -> None:
    bundled, user = isolated_models
    copy_tiny_bundle(bundled)
    broken = copy_tiny_bundle(user, "retrained")
    data = _card(broken)
    data["name"] = "retrained"
    _write_card(broken, data)
    with open(broken / "model.onnx", "ab") as fh:
        fh.write(b"x")
    (user / "not-a-bundle").mkdir()
    found = discover_bundles()
    assert [b.name for b in found.bundles] == ["tiny-mobilenet"]
    assert found.bundles[0].origin == "bundled"
    assert len(found.problems) == 1
    assert isinstance(found.problems[0], BundleIntegrityError)
    bundles, problems = found  # unpacks
    assert get_bundle().name == "tiny-mobilenet"
    with pytest.raises(BundleIntegrityError, match="sha256 mismatch"):
        get_bundle("retrained")
    with pytest.raises(BundleNotFoundError, match=r"^vgg: no model bundle with this name \(available: retrained, tiny-mobilenet\)"):
        get_bundle("vgg")


def test_user_bundle_is_found_and_default_chosen(isolated_models: tuple[Path, Path]) -> None:
    bundled, user = isolated_models
    with pytest.raises(BundleNotFoundError, match="no model bundles found"):
        get_bundle()
    second = copy_tiny_bundle(user, "another")
    data = _card(second)
    data["name"], data["default"] = "another", False
    _write_card(second, data)
    assert get_bundle().name == "another"  # no default: the first by name
    copy_tiny_bundle(user)
    assert get_bundle().name == "tiny-mobilenet"  # the card marked default
    assert get_bundle("another").origin == "user"


def test_user_bundle_cannot_shadow_a_bundled_one(isolated_models: tuple[Path, Path]) -> None:
    bundled, user = isolated_models
    copy_tiny_bundle(bundled)
    copy_tiny_bundle(user)
    found = discover_bundles()
    assert [b.origin for b in found.bundles] == ["bundled"]
    assert len(found.problems) == 1
    assert "already loaded" in str(found.problems[0])


def test_damaged_default_is_reported_not_silently_replaced(isolated_models: tuple[Path, Path]) -> None:
    bundled, user = isolated_models
    default = copy_tiny_bundle(bundled)
    other = copy_tiny_bundle(user, "other")
    data = _card(other)
    data["name"], data["default"] = "other", False
    _write_card(other, data)
    with open(default / "head.npz", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleIntegrityError, match="head.npz: sha256 mismatch"):
        get_bundle()
    assert get_bundle("other").name == "other"
    assert [b.name for b in discover_bundles().bundles] == ["other"]


def test_long_lists_are_shortened_in_the_readable_card() -> None:
    data = load_bundle(tiny_bundle_path()).card.to_dict()
    data["split"] = {"train": {"files": [f"img{i:03d}.png" for i in range(500)]}}
    md = render_model_card_md(data)
    assert "img000.png, img001.png" in md
    assert "(500 items; all in model_card.json)" in md
    assert "img499.png" not in md


# --------------------------------------------------------------------------- typed card


def test_card_is_frozen_typed_and_keeps_unknown_keys(tmp_path: Path) -> None:
    import dataclasses
    import pickle

    from desktop.core.bundle import DenseLayer, GlobalPoolLayer, HeadLayer

    data = _card(tiny_bundle_path())
    data["ood"] = {"method": "mahalanobis", "threshold": 3.2}
    data["validation_scores"] = [0.1, 0.9]
    card = ModelCard.from_dict(data)
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError, match="read-only"):
        card.raw["name"] = "other"  # type: ignore[index]
    with pytest.raises(TypeError, match="read-only"):
        card.metrics["x"] = 1  # type: ignore[index]
    assert card.raw["ood"]["method"] == "mahalanobis"
    assert card.get("validation_scores") == [0.1, 0.9]
    assert set(card.extra) >= {"ood", "validation_scores"}
    assert "name" not in card.extra
    assert card.to_dict()["ood"] == data["ood"]
    assert all(isinstance(h, HeadLayer) for h in card.head)
    assert isinstance(card.head[0], GlobalPoolLayer)
    assert card.head[0].keepdims is False
    last = card.head[-1]
    assert isinstance(last, DenseLayer)
    assert (last.units, last.activation) == (2, "softmax")
    assert last["units"] == 2
    assert last.get("missing", "d") == "d"
    assert [h.to_dict() for h in card.head] == data["head"]
    again = pickle.loads(pickle.dumps(card))
    assert again.to_dict() == card.to_dict()
    assert again.head == card.head


def test_max_pool_layer_parsed() -> None:
    from desktop.core.bundle import HeadLayer, MaxPool2DLayer

    layer = HeadLayer.from_dict({"type": "max_pool2d", "name": "p", "pool_size": [2, 2], "strides": [2, 2],
                                 "padding": "same"})  # fmt: skip
    assert isinstance(layer, MaxPool2DLayer)
    assert layer.pool_size == (2, 2)
    assert layer.padding == "same"
    assert layer.to_dict() == {"type": "max_pool2d", "name": "p", "pool_size": [2, 2], "strides": [2, 2],
                               "padding": "same"}  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value"),
    [("version", "=HYPERLINK(\"x\")"), ("version", "1 0"), ("version", "+1"), ("op", "=cmd|' /c calc'!A1"),
     ("op", "@SUM(A1)"), ("op", "-x")],
)  # fmt: skip
def test_formula_like_version_or_operating_point_name_is_refused(key: str, value: str) -> None:
    data = _card(tiny_bundle_path())
    if key == "version":
        data["version"] = value
    else:
        data["operating_points"][0]["name"] = value
        data["default_operating_point"] = value
    problems = validate_card(data)
    assert any(p.startswith("version:" if key == "version" else "operating_points[0].name:") for p in problems)

"""The model card's schema: constants and :func:`validate_card` (every problem, as text).

Hand-written rather than a JSON Schema: the checks need cross-field rules
(``positive_class`` in ``class_names``, the last head layer's units equal
the number of classes, ``sha256`` equal to ``files["model.onnx"]``) and the
app avoids a ``jsonschema`` dependency for one document. Keys the schema
does not know are allowed and kept (see :attr:`ModelCard.raw`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from desktop.core.preprocess import PreprocessSpec

FORMAT_VERSION = 1
CARD_FILE = "model_card.json"
CARD_MD_FILE = "MODEL_CARD.md"
ONNX_FILE = "model.onnx"
HEAD_FILE = "head.npz"
#: The Ed25519 signature of a user bundle (see :mod:`desktop.core.bundle.trust`).
SIGNATURE_FILE = "signature.json"
#: Files every bundle must list in its card's ``files``.
REQUIRED_FILES = (ONNX_FILE, HEAD_FILE, CARD_MD_FILE)
ARCHITECTURES = ("mobilenet", "vgg19")
HEAD_TYPES = ("global_avg_pool", "global_max_pool", "max_pool2d", "flatten", "dropout", "dense")
DENSE_ACTIVATIONS = ("relu", "linear", "softmax")
#: Never present in a bundle unless the card lists them (and then still refused).
DANGEROUS_SUFFIXES = frozenset(
    {
        ".pkl", ".pickle", ".joblib", ".npy", ".h5", ".hdf5", ".keras", ".pb", ".pt", ".pth",
        ".ckpt", ".py", ".pyc", ".pyo", ".pyd", ".so", ".dll", ".dylib", ".exe", ".bat", ".cmd",
        ".sh", ".ps1", ".jar", ".msi", ".com", ".scr", ".vbs", ".js",
    }
)  # fmt: skip
#: Files a bundle may list in ``files``.
ALLOWED_LISTED_SUFFIXES = frozenset({".onnx", ".npz", ".md", ".txt", ".json", ".png", ".csv"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
#: Version and operating-point names reach CSV cells and PDFs: no leading '=', '+', '-', '@' (formulas).
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$")
_OP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$")
NAME_RE = _NAME_RE
SHA_RE = _SHA_RE


# --------------------------------------------------------------------------
# Card schema (hand-written: no jsonschema dependency)
# --------------------------------------------------------------------------


class _Checker:
    """Collects schema problems as ``key.path: reason`` strings."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, key: str, reason: str) -> None:
        self.problems.append(f"{key}: {reason}")

    def typed(self, data: Mapping[str, Any], key: str, types: type | tuple[type, ...], *,
              prefix: str = "", required: bool = True, nullable: bool = False) -> Any:  # fmt: skip
        full = f"{prefix}{key}"
        if key not in data:
            if required:
                self.fail(full, "missing")
            return None
        value = data[key]
        if value is None and nullable:
            return None
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        # bool is an int in Python: never accept it for a number, nor a number for a bool.
        bad_bool = isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))
        if not isinstance(value, types) or bad_bool:
            self.fail(full, f"must be {names}{' or null' if nullable else ''}. Received: {_short(value)}")
            return None
        return value

    def number(self, data: Mapping[str, Any], key: str, *, prefix: str = "", lo: float | None = None,
               hi: float | None = None, required: bool = True, nullable: bool = False) -> float | None:  # fmt: skip
        value = self.typed(data, key, (int, float), prefix=prefix, required=required, nullable=nullable)
        if value is None:
            return None
        full = f"{prefix}{key}"
        if not math.isfinite(float(value)):
            self.fail(full, f"must be a finite number. Received: {value!r}")
            return None
        if lo is not None and value < lo or hi is not None and value > hi:
            self.fail(full, f"must be in [{lo}, {hi}]. Received: {value!r}")
            return None
        return float(value)

    def ci(self, data: Mapping[str, Any], key: str, *, prefix: str) -> None:
        value = self.typed(data, key, list, prefix=prefix, required=False, nullable=True)
        if value is None:
            return
        ok = len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in value
        )
        if not ok or value[0] > value[1]:
            self.fail(f"{prefix}{key}", f"must be [low, high] within [0, 1]. Received: {_short(value)}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_card(data: Any) -> list[str]:
    """Every schema problem of a card dict, as ``key: reason`` strings (empty when valid)."""
    c = _Checker()
    if not isinstance(data, dict):
        return [f"<card>: must be a JSON object. Received: {type(data).__name__}"]
    fv = c.typed(data, "format_version", int)
    if fv is not None and fv != FORMAT_VERSION:
        c.fail("format_version", f"this application reads format {FORMAT_VERSION}. Received: {fv!r}")
    name = c.typed(data, "name", str)
    if name is not None and not _NAME_RE.match(name):
        c.fail("name", f"letters, digits, '.', '_' or '-', at most 64. Received: {name!r}")
    version = c.typed(data, "version", str)
    if version is not None and not _VERSION_RE.match(version):
        c.fail("version", f"letters, digits, '.', '_', '+' or '-', starting with a letter or digit, at most 32. Received: {_short(version)}")
    c.typed(data, "default", bool)
    arch = c.typed(data, "architecture", str)
    if arch is not None and arch not in ARCHITECTURES:
        c.fail("architecture", f"must be one of {ARCHITECTURES}. Received: {arch!r}")
    c.typed(data, "backbone_init", str)
    inp = c.typed(data, "input", dict)
    if inp is not None:
        pre = c.typed(inp, "preprocess", dict, prefix="input.")
        if pre is not None:
            try:
                PreprocessSpec.from_dict(pre)
            except (TypeError, ValueError) as exc:
                c.fail("input.preprocess", str(exc))
    classes = c.typed(data, "class_names", list)
    if classes is not None:
        if len(classes) < 2 or not all(isinstance(x, str) and x for x in classes):
            c.fail("class_names", f"must list at least 2 non-empty names. Received: {_short(classes)}")
        elif len(set(classes)) != len(classes):
            c.fail("class_names", f"names must be unique. Received: {_short(classes)}")
    pos = c.typed(data, "positive_class", str)
    if pos is not None and isinstance(classes, list) and pos not in classes:
        c.fail("positive_class", f"must be one of class_names {classes}. Received: {pos!r}")
    c.typed(data, "gradcam_layer", str)
    _check_head(c, data)
    c.number(data, "temperature", lo=1e-3, hi=1e3)
    _check_operating_points(c, data)
    for key in ("metrics", "training_data", "split", "recipe", "audit"):
        c.typed(data, key, dict)
    lims = c.typed(data, "limitations", list)
    if lims is not None and not all(isinstance(x, str) for x in lims):
        c.fail("limitations", "must be a list of strings")
    c.typed(data, "created", str)
    _check_files(c, data)
    return c.problems


def _check_head(c: _Checker, data: Mapping[str, Any]) -> None:
    head = c.typed(data, "head", list)
    if head is None:
        return
    if not head:
        c.fail("head", "must list the layers after the Grad-CAM layer (at least the final dense)")
        return
    for i, layer in enumerate(head):
        p = f"head[{i}]."
        if not isinstance(layer, dict):
            c.fail(f"head[{i}]", f"must be an object. Received: {_short(layer)}")
            continue
        kind = c.typed(layer, "type", str, prefix=p)
        if kind is None:
            continue
        if kind not in HEAD_TYPES:
            c.fail(f"{p}type", f"must be one of {HEAD_TYPES}. Received: {kind!r}")
        elif kind == "dense":
            c.typed(layer, "name", str, prefix=p)
            units = c.typed(layer, "units", int, prefix=p)
            if units is not None and units < 1:
                c.fail(f"{p}units", f"must be >= 1. Received: {units}")
            act = c.typed(layer, "activation", str, prefix=p)
            if act is not None and act not in DENSE_ACTIVATIONS:
                c.fail(f"{p}activation", f"must be one of {DENSE_ACTIVATIONS}. Received: {act!r}")
        elif kind == "max_pool2d":
            for key in ("pool_size", "strides"):
                v = c.typed(layer, key, list, prefix=p)
                if v is not None and not (len(v) == 2 and all(isinstance(x, int) and x >= 1 for x in v)):
                    c.fail(f"{p}{key}", f"must be [int, int] >= 1. Received: {_short(v)}")
            pad = c.typed(layer, "padding", str, prefix=p)
            if pad is not None and pad not in ("valid", "same"):
                c.fail(f"{p}padding", f"must be 'valid' or 'same'. Received: {pad!r}")
    last = head[-1]
    if isinstance(last, dict) and not (last.get("type") == "dense" and last.get("activation") == "softmax"):
        c.fail(f"head[{len(head) - 1}]", "the last layer must be a dense layer with softmax activation")
    classes = data.get("class_names")
    if isinstance(last, dict) and isinstance(classes, list) and last.get("units") not in (None, len(classes)):
        c.fail(f"head[{len(head) - 1}].units", f"must equal the number of classes ({len(classes)})")


def _check_operating_points(c: _Checker, data: Mapping[str, Any]) -> None:
    ops = c.typed(data, "operating_points", list)
    names: list[str] = []
    if ops is not None:
        if not ops:
            c.fail("operating_points", "must list at least one operating point")
        for i, op in enumerate(ops):
            p = f"operating_points[{i}]."
            if not isinstance(op, dict):
                c.fail(f"operating_points[{i}]", f"must be an object. Received: {_short(op)}")
                continue
            n = c.typed(op, "name", str, prefix=p)
            if n is not None and not _OP_NAME_RE.match(n):
                c.fail(f"{p}name", f"letters, digits, ' ', '.', '_' or '-', starting with a letter or digit, at most 64. Received: {_short(n)}")
            if n is not None:
                if n in names:
                    c.fail(f"{p}name", f"duplicate operating point {n!r}")
                names.append(n)
            c.number(op, "threshold", prefix=p, lo=0.0, hi=1.0)
            c.number(op, "sensitivity", prefix=p, lo=0.0, hi=1.0, required=False, nullable=True)
            c.number(op, "specificity", prefix=p, lo=0.0, hi=1.0, required=False, nullable=True)
            c.ci(op, "sensitivity_ci", prefix=p)
            c.ci(op, "specificity_ci", prefix=p)
            c.typed(op, "description", str, prefix=p, required=False)
    dop = c.typed(data, "default_operating_point", str)
    if dop is not None and ops is not None and names and dop not in names:
        c.fail("default_operating_point", f"must name one of the operating points {names}. Received: {dop!r}")


def _check_files(c: _Checker, data: Mapping[str, Any]) -> None:
    files = c.typed(data, "files", dict)
    if files is not None:
        for fname, digest in files.items():
            if not _NAME_RE.match(fname) or fname in (".", ".."):
                c.fail(f"files[{fname!r}]", "must be a plain file name inside the bundle folder")
            elif Path(fname).suffix.lower() not in ALLOWED_LISTED_SUFFIXES:
                c.fail(f"files[{fname!r}]", f"file type not allowed in a bundle ({sorted(ALLOWED_LISTED_SUFFIXES)})")
            if fname == CARD_FILE:
                c.fail(f"files[{fname!r}]", "the card cannot list its own hash")
            if fname == SIGNATURE_FILE:
                c.fail(f"files[{fname!r}]", "the card cannot list the signature that covers it")
            if not isinstance(digest, str) or not _SHA_RE.match(digest):
                c.fail(f"files[{fname!r}]", f"must be a lowercase hex sha256. Received: {_short(digest)}")
        for req in REQUIRED_FILES:
            if req not in files:
                c.fail("files", f"must list {req}")
    sha = c.typed(data, "sha256", str)
    if sha is not None:
        if not _SHA_RE.match(sha):
            c.fail("sha256", f"must be a lowercase hex sha256. Received: {_short(sha)}")
        elif isinstance(files, dict) and files.get(ONNX_FILE) not in (None, sha):
            c.fail("sha256", f"differs from files[{ONNX_FILE!r}]")

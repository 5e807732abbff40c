"""Model bundles: the folder that carries a model and everything needed to use it.

A bundle is a folder ``assets/models/<name>/`` (shipped) or
``<user data>/models/<name>/`` (dropped in later, no rebuild needed)::

    model.onnx         input "input" (N, H, W, C) float32; outputs "features", "probs"
    head.npz           weights of the layers after the Grad-CAM layer (numpy, no pickle)
    model_card.json    the card: schema-validated, lists the sha256 of every file
    MODEL_CARD.md      the same card, readable

Loading checks the card against its schema (:class:`ModelCardError`) and the
sha256 of every file the card lists (:class:`BundleIntegrityError`), and
refuses executable or pickle-like files it does not expect. Nothing is ever
unpickled and no Keras code is deserialised: the application only reads JSON,
``.npz`` with ``allow_pickle=False`` and ONNX.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .errors import BundleIntegrityError, BundleNotFoundError, ModelCardError, ModelError
from .paths import bundled_models_dir, user_models_dir
from .preprocess import PreprocessSpec

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CARD_FILE = "model_card.json"
CARD_MD_FILE = "MODEL_CARD.md"
ONNX_FILE = "model.onnx"
HEAD_FILE = "head.npz"
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


# --------------------------------------------------------------------------
# Small values
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold on ``p_covid`` with its validation performance.

    ``label = positive_class if p_covid >= threshold``. Sensitivity and
    specificity (with 95% CIs) are ``None`` when not measured (test bundles).
    """

    name: str
    threshold: float
    sensitivity: float | None = None
    sensitivity_ci: tuple[float, float] | None = None
    specificity: float | None = None
    specificity_ci: tuple[float, float] | None = None
    description: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatingPoint:
        def ci(value: Any) -> tuple[float, float] | None:
            return None if value is None else (float(value[0]), float(value[1]))

        def opt(value: Any) -> float | None:
            return None if value is None else float(value)

        return cls(
            name=str(data["name"]),
            threshold=float(data["threshold"]),
            sensitivity=opt(data.get("sensitivity")),
            sensitivity_ci=ci(data.get("sensitivity_ci")),
            specificity=opt(data.get("specificity")),
            specificity_ci=ci(data.get("specificity_ci")),
            description=str(data.get("description", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "threshold": self.threshold,
            "sensitivity": self.sensitivity,
            "sensitivity_ci": None if self.sensitivity_ci is None else list(self.sensitivity_ci),
            "specificity": self.specificity,
            "specificity_ci": None if self.specificity_ci is None else list(self.specificity_ci),
            "description": self.description,
        }


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
    c.typed(data, "version", str)
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


# --------------------------------------------------------------------------
# The card
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ModelCard:
    """Typed, read-only accessors over a validated ``model_card.json``."""

    data: Mapping[str, Any]
    source: str | None = None

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike[str] | None = None) -> ModelCard:
        """Validate ``data``; raise :class:`ModelCardError` listing every problem."""
        problems = validate_card(data)
        if problems:
            shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
            raise ModelCardError(None if source is None else str(source), f"model card fails its schema: {shown}")
        return cls(data=_freeze_copy(data), source=None if source is None else str(source))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.data))  # a deep, mutable copy

    # identity
    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def version(self) -> str:
        return str(self.data["version"])

    @property
    def default(self) -> bool:
        return bool(self.data["default"])

    @property
    def architecture(self) -> str:
        return str(self.data["architecture"])

    @property
    def backbone_init(self) -> str:
        return str(self.data["backbone_init"])

    @property
    def created(self) -> str:
        return str(self.data["created"])

    # using the model
    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.data["input"]["preprocess"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one model input."""
        s = self.preprocess
        return (s.height, s.width, s.channels)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.data["class_names"])

    @property
    def positive_class(self) -> str:
        return str(self.data["positive_class"])

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    @property
    def negative_class(self) -> str:
        """The label given below the threshold (the other class of a two-class model)."""
        others = [c for c in self.class_names if c != self.positive_class]
        return others[0]

    @property
    def gradcam_layer(self) -> str:
        return str(self.data["gradcam_layer"])

    @property
    def head(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(self.data["head"])

    @property
    def temperature(self) -> float:
        return float(self.data["temperature"])

    @property
    def operating_points(self) -> tuple[OperatingPoint, ...]:
        return tuple(OperatingPoint.from_dict(op) for op in self.data["operating_points"])

    @property
    def default_operating_point(self) -> str:
        return str(self.data["default_operating_point"])

    def operating_point(self, name: str | None = None) -> OperatingPoint:
        """The named operating point (the card's default when None); ModelError if unknown."""
        wanted = self.default_operating_point if name is None else name
        for op in self.operating_points:
            if op.name == wanted:
                return op
        names = ", ".join(op.name for op in self.operating_points)
        raise ModelError(self.source, f"no operating point {wanted!r} in model {self.name!r}", f"available: {names}")

    # documentation
    @property
    def metrics(self) -> Mapping[str, Any]:
        return self.data["metrics"]

    @property
    def training_data(self) -> Mapping[str, Any]:
        return self.data["training_data"]

    @property
    def split(self) -> Mapping[str, Any]:
        return self.data["split"]

    @property
    def recipe(self) -> Mapping[str, Any]:
        return self.data["recipe"]

    @property
    def audit(self) -> Mapping[str, Any]:
        return self.data["audit"]

    @property
    def limitations(self) -> tuple[str, ...]:
        return tuple(self.data["limitations"])

    @property
    def files(self) -> Mapping[str, str]:
        return self.data["files"]

    @property
    def sha256(self) -> str:
        return str(self.data["sha256"])

    def summary(self) -> dict[str, Any]:
        """A short JSON-able summary (``cxr-screener models``, the GUI's model menu)."""
        op = self.operating_point()
        return {
            "name": self.name,
            "version": self.version,
            "default": self.default,
            "architecture": self.architecture,
            "backbone_init": self.backbone_init,
            "input": f"{self.preprocess.height}x{self.preprocess.width}",
            "class_names": list(self.class_names),
            "gradcam_layer": self.gradcam_layer,
            "operating_points": [o.name for o in self.operating_points],
            "default_operating_point": op.name,
            "threshold": op.threshold,
            "sensitivity": op.sensitivity,
            "specificity": op.specificity,
            "created": self.created,
            "sha256": self.sha256,
        }


def _freeze_copy(data: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(data))
    return out


# --------------------------------------------------------------------------
# Bundles on disk
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Bundle:
    """A verified bundle folder: where it is, its card, where it came from."""

    path: Path
    card: ModelCard
    origin: str = "path"  # "bundled" | "user" | "path"
    warnings: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def head_path(self) -> Path:
        return self.path / HEAD_FILE

    def summary(self) -> dict[str, Any]:
        out = self.card.summary()
        out["path"] = str(self.path)
        out["origin"] = self.origin
        return out

    def __repr__(self) -> str:
        return f"Bundle({self.name!r} v{self.version}, {self.card.architecture}, {self.path})"


class BundleDiscovery(NamedTuple):
    """What :func:`discover_bundles` found: usable bundles and the broken ones (as errors)."""

    bundles: list[Bundle]
    problems: list[ModelError]


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate ``<bundle>/model_card.json`` (no file hashes checked)."""
    folder = Path(path)
    card_path = folder / CARD_FILE
    if not folder.is_dir():
        raise BundleNotFoundError(folder, "is not a model bundle folder")
    if not card_path.is_file():
        raise BundleNotFoundError(folder, f"no {CARD_FILE}: not a model bundle")
    try:
        raw = card_path.read_text(encoding="utf-8")
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise ModelCardError(card_path, "is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise ModelCardError(card_path, f"is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    except OSError as exc:
        raise ModelError(card_path, f"cannot read ({exc.strerror or exc})") from exc
    return ModelCard.from_dict(data, source=card_path)


def load_bundle(path: str | os.PathLike[str], *, origin: str = "path", verify: bool = True) -> Bundle:
    """Load a bundle folder: schema, then (``verify``) the sha256 of every listed file.

    Raises :class:`BundleNotFoundError`, :class:`ModelCardError` or
    :class:`BundleIntegrityError`, each naming the folder or file and the reason.
    """
    folder = Path(path)
    card = read_card(folder)
    warnings = list(_check_unlisted(folder, card))
    if verify:
        verify_files(folder, card)
    if folder.name != card.name:
        warnings.append(f"folder name {folder.name!r} differs from the card's name {card.name!r}")
    for w in warnings:
        log.warning("%s: %s", folder, w)
    return Bundle(path=folder, card=card, origin=origin, warnings=tuple(warnings))


def verify_files(folder: Path, card: ModelCard) -> None:
    """sha256 of each file in ``card.files``; BundleIntegrityError on the first mismatch."""
    for fname, expected in card.files.items():
        fpath = folder / fname
        if fpath.is_symlink() or not fpath.is_file():
            raise BundleIntegrityError(fpath, "listed in the model card but missing (or not a regular file)")
        try:
            actual = sha256_file(fpath)
        except OSError as exc:
            raise BundleIntegrityError(fpath, f"cannot read ({exc.strerror or exc})") from exc
        if actual != expected:
            raise BundleIntegrityError(
                fpath,
                f"sha256 mismatch: the model card expects {expected}, the file has {actual}",
                "the bundle was modified or damaged; reinstall or re-export it",
            )


def verify_bytes(path: Path, data: bytes, expected: str) -> None:
    """The same check on bytes already read (no window between check and use)."""
    actual = sha256_bytes(data)
    if actual != expected:
        raise BundleIntegrityError(
            path,
            f"sha256 mismatch: the model card expects {expected}, the file has {actual}",
            "the bundle was modified or damaged; reinstall or re-export it",
        )


def _check_unlisted(folder: Path, card: ModelCard) -> Iterable[str]:
    """Refuse executable/pickle-like files the card does not list; warn about other extras."""
    listed = set(card.files) | {CARD_FILE}
    for entry in sorted(folder.rglob("*")):
        rel = entry.relative_to(folder).as_posix()
        if rel in listed or entry.is_dir():
            continue
        if entry.name.startswith(".") and entry.suffix.lower() not in DANGEROUS_SUFFIXES and not _is_exec(entry):
            continue  # .DS_Store and friends
        if entry.suffix.lower() in DANGEROUS_SUFFIXES or _is_exec(entry):
            raise BundleIntegrityError(
                entry,
                "unexpected executable or pickle-like file in a model bundle",
                "bundles hold only ONNX, .npz and the card; remove it or re-export the bundle",
            )
        yield f"unlisted file ignored: {rel}"


def _is_exec(path: Path) -> bool:
    if os.name == "nt":
        return False
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and bool(mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


def model_dirs() -> list[tuple[Path, str]]:
    """The folders searched for bundles, with their origin, in priority order."""
    return [(bundled_models_dir(), "bundled"), (user_models_dir(), "user")]


def discover_bundles(dirs: Sequence[tuple[Path, str]] | None = None, *, verify: bool = True) -> BundleDiscovery:
    """Every bundle in the bundled and user models folders, and the problems found.

    ``verify=True`` checks every file's sha256 (``cxr-screener models``,
    ``selftest``, the GUI's model list); ``verify=False`` only reads and
    validates the cards (fast: what :func:`get_bundle` uses to choose, before
    verifying the chosen bundle).

    A broken bundle (bad card, tampered file) is reported in ``problems`` and
    skipped: it never stops the others. A user bundle with the name of a
    bundled one is skipped too (rename it), so a shipped, verified model is
    never silently replaced. Bundles are sorted by name.
    """
    bundles: dict[str, Bundle] = {}
    problems: list[ModelError] = []
    for root, origin in dirs if dirs is not None else model_dirs():
        if not root.is_dir():
            continue
        try:
            entries = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as exc:
            problems.append(ModelError(root, f"cannot list models folder ({exc.strerror or exc})"))
            continue
        for folder in entries:
            if not (folder / CARD_FILE).exists():
                continue  # not a bundle (e.g. an unrelated folder)
            try:
                bundle = load_bundle(folder, origin=origin, verify=verify)
            except ModelError as exc:
                log.warning("model bundle skipped: %s", exc)
                problems.append(exc)
                continue
            if bundle.name in bundles:
                other = bundles[bundle.name]
                problems.append(
                    ModelCardError(
                        folder,
                        f"a model named {bundle.name!r} is already loaded from {other.path}; this one is ignored",
                        "give the retrained model another name in its card",
                    )
                )
                continue
            bundles[bundle.name] = bundle
    return BundleDiscovery(sorted(bundles.values(), key=lambda b: b.name), problems)


def get_bundle(name: str | None = None, discovery: BundleDiscovery | None = None, *, verify: bool = True) -> Bundle:
    """The bundle called ``name`` (card name or folder name), or the default one, verified.

    With ``name=None``: the bundle whose card says ``"default": true``
    (bundled before user), else the first by name. Only the chosen bundle's
    files are hashed (``verify``): a damaged default model is reported, never
    silently replaced by another. Raises :class:`BundleNotFoundError`
    (listing what is available), :class:`BundleIntegrityError` or
    :class:`ModelCardError` for the requested bundle.
    """
    chosen = _choose(name, discovery if discovery is not None else discover_bundles(verify=False))
    if not verify:
        return chosen
    return load_bundle(chosen.path, origin=chosen.origin, verify=True)


def _choose(name: str | None, found: BundleDiscovery) -> Bundle:
    bundles = found.bundles
    if name is None:
        defaults = [b for b in bundles if b.card.default]
        defaults.sort(key=lambda b: (b.origin != "bundled", b.name))
        if defaults:
            return defaults[0]
        if bundles:
            return bundles[0]
        where = ", ".join(str(d) for d, _ in model_dirs())
        if found.problems:
            raise found.problems[0]
        raise BundleNotFoundError(
            bundled_models_dir(), f"no model bundles found (searched {where})", "install or export a model"
        )
    for b in bundles:
        if b.name == name:
            return b
    for b in bundles:
        if b.path.name == name:
            return b
    for problem in found.problems:
        if problem.path and name in Path(problem.path).parts:
            raise problem
    available = ", ".join(b.name for b in bundles) or "none"
    raise BundleNotFoundError(name, "no model bundle with this name", f"available: {available}")


# --------------------------------------------------------------------------
# Readable card
# --------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _fmt_ci(value: Any) -> str:
    if not value:
        return ""
    return f" (95% CI {value[0]:.3f}-{value[1]:.3f})"


def _md_value(value: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(v, (Mapping, list)) and v and not _is_scalar_list(v):
                lines.append(f"{pad}- **{k}**:")
                lines.extend(_md_value(v, indent + 1))
            else:
                lines.append(f"{pad}- **{k}**: {_inline(v)}")
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, (Mapping, list)) and not _is_scalar_list(v):
                lines.append(f"{pad}-")
                lines.extend(_md_value(v, indent + 1))
            else:
                lines.append(f"{pad}- {_inline(v)}")
    else:
        lines.append(f"{pad}{_inline(value)}")
    return lines


def _is_scalar_list(v: Any) -> bool:
    return isinstance(v, list) and all(not isinstance(x, (Mapping, list)) for x in v)


#: Longer lists (e.g. the split's file names) are shortened in MODEL_CARD.md; the JSON card has them all.
MD_LIST_MAX = 12


def _inline(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        if len(v) > MD_LIST_MAX:
            head = ", ".join(_inline(x) for x in v[:5])
            return f"[{head}, ... ({len(v)} items; all in {CARD_FILE})]"
        return "[" + ", ".join(_inline(x) for x in v) + "]"
    if v is None:
        return "n/a"
    return str(v)


def render_model_card_md(card: ModelCard | Mapping[str, Any]) -> str:
    """The readable ``MODEL_CARD.md`` of a card (also shown by the GUI's model dialog)."""
    data: Mapping[str, Any] = card.data if isinstance(card, ModelCard) else card
    spec = data["input"]["preprocess"]
    out: list[str] = [
        f"# Model card: {data['name']} (version {data['version']})",
        "",
        "Decision support for chest X-ray screening, not a diagnosis. A clinician decides.",
        "",
        "## Model",
        f"- Architecture: {data['architecture']}",
        f"- Backbone initialisation: {data['backbone_init']}",
        f"- Input: {spec['height']}x{spec['width']}x{spec['channels']}, resize {spec['resize']}, "
        f"crop {spec['crop']}, intensity {spec['equalize']}, scaling {spec['normalization']}"
        + (f", edges masked (band {spec.get('mask_border', 0.0):.0%}, corners {spec.get('mask_corner', 0.0):.0%} of each side)"
           if spec.get("mask_border") or spec.get("mask_corner") else ""),
        f"- Classes: {', '.join(data['class_names'])} (positive class: {data['positive_class']})",
        f"- Grad-CAM layer: {data['gradcam_layer']}",
        "- Head: " + " -> ".join(_head_text(h) for h in data["head"]),
        f"- Temperature (folded into the exported probabilities): {data['temperature']:.4g}",
        f"- Created: {data['created']}",
        f"- Default model: {'yes' if data['default'] else 'no'}",
        "",
        "## Operating points",
        "",
        "| name | threshold on p(covid) | sensitivity | specificity | description |",
        "|---|---|---|---|---|",
    ]
    for op in data["operating_points"]:
        mark = " (default)" if op["name"] == data["default_operating_point"] else ""
        out.append(
            f"| {op['name']}{mark} | {op['threshold']:.4f} | "
            f"{_fmt(op.get('sensitivity'))}{_fmt_ci(op.get('sensitivity_ci'))} | "
            f"{_fmt(op.get('specificity'))}{_fmt_ci(op.get('specificity_ci'))} | {op.get('description', '')} |"
        )
    for title, key in (
        ("Evaluation metrics", "metrics"),
        ("Training data", "training_data"),
        ("Split", "split"),
        ("Training recipe", "recipe"),
        ("Shortcut audit", "audit"),
        ("Export", "export"),
    ):
        out += ["", f"## {title}", ""]
        value = data.get(key) or {}
        out += _md_value(value) if value else ["Not recorded."]
    out += ["", "## Limitations", ""]
    out += [f"- {x}" for x in data.get("limitations") or []] or ["None recorded."]
    out += ["", "## Files (sha256)", ""]
    # MODEL_CARD.md cannot hold its own hash: the JSON card lists it.
    out += [f"- `{k}`: `{v}`" for k, v in sorted((data.get("files") or {}).items()) if k != CARD_MD_FILE]
    out.append("")
    return "\n".join(out)


def _head_text(h: Mapping[str, Any]) -> str:
    kind = h.get("type")
    if kind == "dense":
        return f"Dense({h.get('units')}, {h.get('activation')})"
    if kind == "max_pool2d":
        return f"MaxPool{tuple(h.get('pool_size') or ())}"
    return str(kind)


__all__ = [
    "ARCHITECTURES",
    "CARD_FILE",
    "CARD_MD_FILE",
    "FORMAT_VERSION",
    "HEAD_FILE",
    "ONNX_FILE",
    "Bundle",
    "BundleDiscovery",
    "ModelCard",
    "OperatingPoint",
    "discover_bundles",
    "get_bundle",
    "load_bundle",
    "read_card",
    "render_model_card_md",
    "sha256_bytes",
    "sha256_file",
    "validate_card",
    "verify_files",
]

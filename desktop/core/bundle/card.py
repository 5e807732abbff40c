"""The model card as typed, frozen values, parsed once from ``model_card.json``.

:class:`ModelCard` is a frozen dataclass: every field the application uses
is parsed and typed when the card is read (head layers as
:class:`HeadLayer` subclasses, operating points as :class:`OperatingPoint`),
after :func:`~desktop.core.bundle.schema.validate_card` has accepted it.

**Keys the schema does not know survive.** Cards grow (``new_site``
metrics, ``validation_scores``, ``ood``, ``segmenter``...): the whole
validated document stays available, read-only, as :attr:`ModelCard.raw`
(``card.raw["ood"]``), the keys outside the schema as :attr:`ModelCard.extra`,
and :meth:`ModelCard.to_dict` gives a deep, mutable copy. A new field can be
read this way without a schema change; give it a typed field here once the
application depends on it.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NoReturn

from desktop.core.errors import ModelCardError, ModelError
from desktop.core.preprocess import PreprocessSpec

from .schema import validate_card

#: Keys of the card that :class:`ModelCard` parses into fields; everything else is in ``extra``.
SCHEMA_KEYS = frozenset(
    {
        "format_version", "name", "version", "default", "architecture", "backbone_init", "input",
        "class_names", "positive_class", "gradcam_layer", "head", "temperature", "operating_points",
        "default_operating_point", "metrics", "training_data", "split", "recipe", "audit",
        "limitations", "created", "files", "sha256",
    }
)  # fmt: skip


class FrozenDict(dict):
    """A dict that refuses changes (picklable, JSON-serialisable, ``isinstance(x, dict)``)."""

    def _readonly(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise TypeError("model card values are read-only; use ModelCard.to_dict() for a mutable copy")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)


def freeze(value: Any) -> Any:
    """``value`` with every dict made a :class:`FrozenDict` (lists stay lists: treat them as read-only)."""
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return [freeze(v) if isinstance(v, (dict, list)) else v for v in value]
    return value


# --------------------------------------------------------------------------
# Operating points
# --------------------------------------------------------------------------


#: How the exporter describes a point chosen on films of sources the model was not trained on.
_NEW_SITE_POINT = re.compile(r"on (\d+) films of (.+?) \(sources not trained on\)")


def measured_on(description: str | None) -> str:
    """Where an operating point's sensitivity and specificity were measured, in words, from its card
    description: "on 598 films of hospitals the model was not trained on (shenzhen, siim)" for a point
    chosen on new sites (recipe ``operating_sources="new_sites"``), else "on the training sources'
    validation films"."""
    m = _NEW_SITE_POINT.search(description or "")
    if m:
        return f"on {m.group(1)} films of hospitals the model was not trained on ({m.group(2)})"
    return "on the training sources' validation films"


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

    @property
    def measured_on(self) -> str:
        """Where its figures were measured, in words (:func:`measured_on`)."""
        return measured_on(self.description)

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
# Head layers (what follows the Grad-CAM feature map)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadLayer:
    """One layer of the head, parsed from the card's ``head`` list.

    Subclasses carry the parameters of their type. ``layer["type"]`` and
    ``layer.get("units")`` still work (the numpy head in
    :mod:`desktop.core.gradcam` and older callers read layers as mappings);
    new code uses the attributes and ``isinstance``.
    """

    type: str
    name: str = ""
    #: Keys of the layer's dict this class does not parse (kept for :meth:`to_dict`).
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    TYPES: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.name:
            out["name"] = self.name
        for f in fields(self):
            if f.name in ("type", "name", "extra"):
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out.update(copy.deepcopy(dict(self.extra)))
        return out

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> HeadLayer:
        """The typed layer of a (schema-valid) layer dict; ValueError for an unknown type."""
        kind = str(data["type"])
        cls = next((c for c in _LAYER_CLASSES if kind in c.TYPES), None)
        if cls is None:
            raise ValueError(f"unsupported head layer type {kind!r}")
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in data and f.name != "extra":
                value = data[f.name]
                kwargs[f.name] = tuple(int(v) for v in value) if isinstance(value, list) else value
        extra = {k: copy.deepcopy(v) for k, v in data.items() if k not in known}
        return cls(**kwargs, extra=FrozenDict(extra))


@dataclass(frozen=True)
class FlattenLayer(HeadLayer):
    TYPES: ClassVar[tuple[str, ...]] = ("flatten",)


@dataclass(frozen=True)
class DropoutLayer(HeadLayer):
    """Identity at inference."""

    TYPES: ClassVar[tuple[str, ...]] = ("dropout",)


@dataclass(frozen=True)
class GlobalPoolLayer(HeadLayer):
    """``global_avg_pool`` or ``global_max_pool`` over h and w."""

    keepdims: bool = False
    TYPES: ClassVar[tuple[str, ...]] = ("global_avg_pool", "global_max_pool")


@dataclass(frozen=True)
class MaxPool2DLayer(HeadLayer):
    pool_size: tuple[int, ...] = (2, 2)
    strides: tuple[int, ...] = (2, 2)
    padding: str = "valid"
    TYPES: ClassVar[tuple[str, ...]] = ("max_pool2d",)


@dataclass(frozen=True)
class DenseLayer(HeadLayer):
    """Weights ``<name>/kernel`` and ``<name>/bias`` in ``head.npz``."""

    units: int = 0
    activation: str = "linear"
    TYPES: ClassVar[tuple[str, ...]] = ("dense",)


_LAYER_CLASSES: tuple[type[HeadLayer], ...] = (FlattenLayer, DropoutLayer, GlobalPoolLayer, MaxPool2DLayer, DenseLayer)


# --------------------------------------------------------------------------
# The card
# --------------------------------------------------------------------------


def _ro(value: Any) -> Mapping[str, Any]:
    """A section of the (already frozen) card; an empty read-only mapping when absent."""
    return value if isinstance(value, FrozenDict) else FrozenDict(value or {})


@dataclass(frozen=True, eq=False)
class ModelCard:
    """A validated ``model_card.json``, parsed once into typed, read-only fields.

    Build it with :meth:`from_dict` (validates; :class:`ModelCardError`
    listing every problem). ``raw`` is the whole document (unknown keys
    included), ``extra`` the keys outside the schema, ``source`` the card
    file when read from disk. The documentation sections (``metrics``,
    ``training_data``, ``split``, ``recipe``, ``audit``) stay free-form
    read-only mappings: they are shown, never computed with.
    """

    format_version: int
    name: str
    version: str
    default: bool
    architecture: str
    backbone_init: str
    preprocess: PreprocessSpec
    class_names: tuple[str, ...]
    positive_class: str
    gradcam_layer: str
    head: tuple[HeadLayer, ...]
    temperature: float
    operating_points: tuple[OperatingPoint, ...]
    default_operating_point: str
    metrics: Mapping[str, Any]
    training_data: Mapping[str, Any]
    split: Mapping[str, Any]
    recipe: Mapping[str, Any]
    audit: Mapping[str, Any]
    limitations: tuple[str, ...]
    created: str
    files: Mapping[str, str]
    sha256: str
    raw: Mapping[str, Any] = field(repr=False)
    source: str | None = None

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike[str] | None = None, *, parsed: bool = False) -> ModelCard:
        """Validate ``data``; raise :class:`ModelCardError` listing every problem.

        ``data`` is copied (through JSON, so only JSON types get in) unless
        ``parsed=True``: a dict fresh from ``json.loads`` that nobody else holds.
        """
        where = None if source is None else os.fspath(source)
        problems = validate_card(data)
        if problems:
            shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
            raise ModelCardError(where, f"model card fails its schema: {shown}")
        d: dict[str, Any] = freeze(data if parsed else json.loads(json.dumps(data)))  # a private, read-only copy
        try:
            head = tuple(HeadLayer.from_dict(h) for h in d["head"])
        except ValueError as exc:  # validate_card checked the types: defensive only
            raise ModelCardError(where, f"model card fails its schema: head: {exc}") from exc
        return cls(
            format_version=int(d["format_version"]),
            name=str(d["name"]),
            version=str(d["version"]),
            default=bool(d["default"]),
            architecture=str(d["architecture"]),
            backbone_init=str(d["backbone_init"]),
            preprocess=PreprocessSpec.from_dict(d["input"]["preprocess"]),
            class_names=tuple(str(c) for c in d["class_names"]),
            positive_class=str(d["positive_class"]),
            gradcam_layer=str(d["gradcam_layer"]),
            head=head,
            temperature=float(d["temperature"]),
            operating_points=tuple(OperatingPoint.from_dict(op) for op in d["operating_points"]),
            default_operating_point=str(d["default_operating_point"]),
            metrics=_ro(d["metrics"]),
            training_data=_ro(d["training_data"]),
            split=_ro(d["split"]),
            recipe=_ro(d["recipe"]),
            audit=_ro(d["audit"]),
            limitations=tuple(str(x) for x in d["limitations"]),
            created=str(d["created"]),
            files=FrozenDict({str(k): str(v) for k, v in d["files"].items()}),
            sha256=str(d["sha256"]),
            raw=d,
            source=where,
        )

    def to_dict(self) -> dict[str, Any]:
        """The whole card (unknown keys included) as a deep, mutable copy."""
        out: dict[str, Any] = json.loads(json.dumps(self.raw))
        return out

    @property
    def data(self) -> Mapping[str, Any]:
        """The whole card, read-only (the same as :attr:`raw`; kept for older callers)."""
        return self.raw

    @property
    def extra(self) -> Mapping[str, Any]:
        """The card's keys outside the schema (``export``, ``train_seconds``, ``ood``...), read-only."""
        return FrozenDict({k: v for k, v in self.raw.items() if k not in SCHEMA_KEYS})

    def get(self, key: str, default: Any = None) -> Any:
        """``raw.get(key, default)``: any key of the card, known to the schema or not."""
        return self.raw.get(key, default)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one model input."""
        s = self.preprocess
        return (s.height, s.width, s.channels)

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    @property
    def negative_class(self) -> str:
        """The label given below the threshold (the other class of a two-class model)."""
        return next(c for c in self.class_names if c != self.positive_class)

    def operating_point(self, name: str | None = None) -> OperatingPoint:
        """The named operating point (the card's default when None); ModelError if unknown."""
        wanted = self.default_operating_point if name is None else name
        for op in self.operating_points:
            if op.name == wanted:
                return op
        names = ", ".join(op.name for op in self.operating_points)
        raise ModelError(self.source, f"no operating point {wanted!r} in model {self.name!r}", f"available: {names}")

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


__all__ = [
    "DenseLayer",
    "FrozenDict",
    "DropoutLayer",
    "FlattenLayer",
    "GlobalPoolLayer",
    "HeadLayer",
    "MaxPool2DLayer",
    "ModelCard",
    "OperatingPoint",
]

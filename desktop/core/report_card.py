"""Read what a report needs from a model bundle's card, whatever its Python shape.

The card is JSON (``model_card.json``); :mod:`desktop.core.bundle` may hand
it as a dataclass, a mapping or an object with ``to_dict()``. This module
turns it into plain dicts and readable strings for the PDF: operating
points with their CIs, validation and external results, training data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any


def as_dict(obj: Any) -> dict[str, Any]:
    """A plain dict from a mapping, a dataclass or an object with ``to_dict``/``as_dict``."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    for attr in ("to_dict", "as_dict"):
        fn = getattr(obj, attr, None)
        if callable(fn):
            out = fn()
            if isinstance(out, Mapping):
                return dict(out)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raw = getattr(obj, "raw", None)
    if isinstance(raw, Mapping):
        return dict(raw)
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")} if hasattr(obj, "__dict__") else {}


def card_of(bundle: Any) -> dict[str, Any]:
    """The model card of ``bundle`` as a dict (``bundle.card``, or the bundle itself)."""
    card = getattr(bundle, "card", None)
    data = as_dict(card if card is not None else bundle)
    return data


def bundle_field(bundle: Any, card: Mapping[str, Any], key: str, default: Any = "") -> Any:
    value = card.get(key)
    if value in (None, ""):
        value = getattr(bundle, key, None)
    return default if value in (None, "") else value


def operating_point(card: Mapping[str, Any], name: str | None) -> dict[str, Any]:
    """The card's operating point ``name`` (else the default one) as a dict; {} if none."""
    points = [as_dict(p) for p in card.get("operating_points") or []]
    wanted = name or card.get("default_operating_point")
    for p in points:
        if p.get("name") == wanted:
            return p
    return points[0] if points and not name else {}


def fmt_num(value: Any, digits: int = 2) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def fmt_ci(ci: Any, digits: int = 2) -> str:
    if isinstance(ci, Mapping):
        ci = (ci.get("lo", ci.get("low")), ci.get("hi", ci.get("high")))
    if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2 and None not in ci:
        return f"95% CI {fmt_num(ci[0], digits)}\u2013{fmt_num(ci[1], digits)}"
    return ""


def value_with_ci(value: Any, ci: Any = None, digits: int = 2) -> str:
    """``"0.93 (95% CI 0.88-0.96)"`` from a number and a CI, or from ``{"value", "ci"}``."""
    if isinstance(value, Mapping):
        d = value
        ci = d.get("ci", d.get("ci95", ci))
        if ci is None and ("lo" in d or "low" in d):
            ci = (d.get("lo", d.get("low")), d.get("hi", d.get("high")))
        value = d.get("value", d.get("point", d.get("estimate", d.get("mean"))))
    if value is None:
        return ""
    text = fmt_num(value, digits)
    ci_text = fmt_ci(ci, digits)
    return f"{text} ({ci_text})" if ci_text else text


_METRIC_NAMES = {
    "auc": "AUC",
    "roc_auc": "AUC",
    "auroc": "AUC",
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "brier": "Brier",
    "ece": "ECE",
}
_SKIP = {"ci", "ci95", "lo", "hi", "low", "high", "value", "n", "n_covid", "n_normal", "source",
         "name", "sources", "description", "dataset", "held_out", "note", "threshold", "operating_point"}


def metric_summary(d: Mapping[str, Any]) -> str:
    """``"AUC 0.91 (95% CI 0.88-0.94); sensitivity ..."`` from a dict of metrics."""
    parts = []
    for key, value in d.items():
        k = str(key).lower()
        if k.endswith("_ci") or k in _SKIP:
            continue
        ci = d.get(f"{key}_ci")
        if isinstance(value, Mapping) and not any(x in value for x in ("value", "point", "estimate", "mean")):
            continue
        if isinstance(value, (int, float, Mapping)) and not isinstance(value, bool):
            parts.append(f"{_METRIC_NAMES.get(k, str(key).replace('_', ' '))} {value_with_ci(value, ci)}")
    n = _count(d)
    if n:
        parts.append(n)
    return "; ".join(parts)


def _count(d: Mapping[str, Any]) -> str:
    if "n_covid" in d or "n_normal" in d:
        return f"n = {d.get('n_covid', '?')} COVID-19 / {d.get('n_normal', '?')} normal"
    if isinstance(d.get("n"), int):
        return f"n = {d['n']}"
    return ""


def metric_rows(metrics: Any) -> list[tuple[str, str]]:
    """Readable (what, result) rows of the card's ``metrics``: validation first, then external."""
    rows: list[tuple[str, str]] = []
    m = as_dict(metrics) if not isinstance(metrics, Sequence) else {"results": metrics}
    for group, value in m.items():
        title = str(group).replace("_", " ")
        if isinstance(value, Mapping):
            direct = metric_summary(value)
            if direct:
                label = _label(value, title)
                rows.append((label, direct))
            for sub, subval in value.items():
                if isinstance(subval, Mapping):
                    inner = metric_summary(subval)
                    if inner:
                        rows.append((f"{title}: {_label(subval, str(sub))}", inner))
                elif isinstance(subval, Sequence) and not isinstance(subval, str):
                    rows.extend(_list_rows(f"{title}: {sub}", subval))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            rows.extend(_list_rows(title, value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append((title, fmt_num(value)))
        elif isinstance(value, str) and value:
            rows.append((title, value))
    return rows


def _list_rows(title: str, items: Sequence[Any]) -> list[tuple[str, str]]:
    rows = []
    for item in items:
        if isinstance(item, Mapping):
            text = metric_summary(item)
            if text:
                rows.append((f"{title}: {_label(item, '')}".rstrip(": "), text))
    return rows


def _label(d: Mapping[str, Any], default: str) -> str:
    for key in ("name", "source", "held_out", "dataset", "description"):
        if d.get(key):
            return str(d[key])
    return default


def text_of(value: Any, limit: int = 600) -> str:
    """A readable one-paragraph text of a card field (string, list or dict)."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, Mapping):
        parts = []
        for k, v in value.items():
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                parts.append(f"{str(k).replace('_', ' ')}: {v}")
            elif isinstance(v, Sequence) and all(isinstance(x, (str, int, float)) for x in v):
                parts.append(f"{str(k).replace('_', ' ')}: {', '.join(str(x) for x in v)}")
            elif isinstance(v, Mapping) and all(isinstance(x, (str, int, float)) for x in v.values()):
                inner = ", ".join(f"{kk} {vv}" for kk, vv in v.items())
                parts.append(f"{str(k).replace('_', ' ')}: {inner}")
        text = "; ".join(parts)
    elif isinstance(value, Sequence):
        text = "; ".join(str(x) for x in value)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"

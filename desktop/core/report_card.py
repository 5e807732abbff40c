"""Read what a report needs from a model bundle's card, whatever its Python shape.

The card is JSON (``model_card.json``); :mod:`desktop.core.bundle` may hand
it as a dataclass, a mapping or an object with ``to_dict()``. This module
turns it into plain dicts and readable strings for the PDF: operating
points with their CIs, validation and external results, training data.
"""

from __future__ import annotations

import dataclasses
import re
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


#: Metrics a reader of the report is shown, in this order (others stay in the model card).
_METRIC_NAMES = {
    "auc": "AUC",
    "roc_auc": "AUC",
    "auroc": "AUC",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}
def metric_summary(d: Mapping[str, Any]) -> str:
    """``"AUC 0.91 (95% CI 0.88-0.94); sensitivity ..."`` from a dict of metrics."""
    parts = []
    for key, value in d.items():
        k = str(key).lower()
        if k not in _METRIC_NAMES:
            continue
        ci = d.get(f"{key}_ci")
        if isinstance(value, Mapping) and not any(x in value for x in ("value", "point", "estimate", "mean")):
            continue
        if isinstance(value, (int, float, Mapping)) and not isinstance(value, bool):
            parts.append(f"{_METRIC_NAMES[k]} {value_with_ci(value, ci)}")
    n = _count(d)
    if n:
        parts.append(n)
    return "; ".join(parts)


def _count(d: Mapping[str, Any]) -> str:
    pos = d.get("n_covid", d.get("n_positive"))
    neg = d.get("n_normal", d.get("n_negative"))
    if pos is not None or neg is not None:
        text = f"n = {pos if pos is not None else '?'} COVID-19 / {neg if neg is not None else '?'} normal"
        if isinstance(d.get("n_patients"), int):
            text += f" ({d['n_patients']} patients)"
        return text
    if isinstance(d.get("n"), int):
        return f"n = {d['n']}"
    return ""


_SPLIT_TITLES = {
    "validation": "Validation split (same collections as training)",
    "test": "Test split (same collections, never used for training or thresholds)",
}


def validation_rows(metrics: Any, op_name: str | None = None) -> list[tuple[str, str]]:
    """Rows for the report: validation/test splits, then external (leave-one-source-out) results.

    Understands the cards ``model_training`` writes (``validation``/``test``
    with ``at_operating_points`` and ``leave_one_source_out`` folds); any
    other layout falls back to :func:`metric_rows`.
    """
    m = as_dict(metrics) if not isinstance(metrics, Sequence) else {}
    known = [k for k in ("validation", "test", "leave_one_source_out") if isinstance(m.get(k), Mapping)]
    if not known:
        return metric_rows(metrics)
    rows: list[tuple[str, str]] = []
    for part in ("validation", "test"):
        res = m.get(part)
        if not isinstance(res, Mapping):
            continue
        if "at_operating_points" not in res:
            text = metric_summary(res)
            if text:
                rows.append((_SPLIT_TITLES[part], text))
            continue
        at = res.get("at_operating_points") or {}
        op_res = at.get(op_name) if op_name else None
        if not isinstance(op_res, Mapping) and at:
            op_name_used, op_res = next(iter(at.items()))
        else:
            op_name_used = op_name or ""
        parts = []
        if res.get("auroc") is not None:
            parts.append(f"AUC {value_with_ci(res.get('auroc'), res.get('auroc_ci'))}")
        if isinstance(op_res, Mapping):
            sens = value_with_ci(op_res.get("sensitivity"), op_res.get("sensitivity_ci"))
            spec = value_with_ci(op_res.get("specificity"), op_res.get("specificity_ci"))
            where = f" at \u201c{op_name_used}\u201d" if op_name_used else ""
            if sens or spec:
                parts.append(f"sensitivity {sens}, specificity {spec}{where}")
            count = _count(op_res)
            if count:
                parts.append(count)
        if parts:
            rows.append((_SPLIT_TITLES[part], "; ".join(parts)))
    loso = m.get("leave_one_source_out")
    if isinstance(loso, Mapping):
        for fold, res in loso.items():
            if not isinstance(res, Mapping):
                continue
            overall = res.get("overall") if isinstance(res.get("overall"), Mapping) else res
            text = metric_summary(overall) if isinstance(overall, Mapping) else ""
            if not text:
                continue
            if isinstance(overall, Mapping) and isinstance(overall.get("threshold"), (int, float)):
                text += f"; threshold {fmt_num(overall['threshold'])}"
            if str(fold).startswith("pooled"):
                folds = str(fold).split("_", 1)[1].replace("_", "\u2013") if "_" in str(fold) else ""
                label = f"External, pooled folds {folds}".strip()
            else:
                label = f"External: {held_out_sources(res.get('held_out'), fold)} never seen in training"
            rows.append((label, text))
    for key, value in m.items():
        if key in ("validation", "test", "leave_one_source_out"):
            continue
        rows.extend(metric_rows({key: value}))
    return rows


def held_out_sources(held: Any, fold: Any = "") -> str:
    """The held-out source names of a leave-one-source-out fold, from a list or a description
    such as ``"...; test = held-out source(s) ['shenzhen', 'siim']; ..."``."""
    if isinstance(held, (list, tuple)):
        names = [str(h) for h in held]
    else:
        text = str(held or "")
        m = re.search(r"held-out source\(s\)\s*\[([^\]]*)\]", text) or re.search(r"\[([^\]]*)\]", text)
        names = [n.strip().strip("'\"") for n in m.group(1).split(",")] if m else ([text] if text else [])
    names = [n for n in names if n]
    if not names:
        return f"fold {fold}"
    return ("source " if len(names) == 1 else "sources ") + ", ".join(names)


def training_text(td: Any) -> str:
    """One readable paragraph about the training data of a card."""
    d = as_dict(td)
    if "images" not in d and "by_class" not in d:
        return text_of(td)
    parts = []
    if d.get("images") is not None:
        text = f"{d['images']} images"
        if d.get("patients") is not None:
            text += f" of {d['patients']} patients"
        by_class = d.get("by_class")
        if isinstance(by_class, Mapping):
            text += " (" + ", ".join(f"{k} {v}" for k, v in by_class.items()) + ")"
        parts.append(text)
    by_source = d.get("by_source")
    if isinstance(by_source, Mapping) and by_source:
        srcs = []
        for src, counts in by_source.items():
            if isinstance(counts, Mapping):
                srcs.append(f"{src} (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")")
            else:
                srcs.append(f"{src} ({counts})")
        parts.append("sources: " + "; ".join(srcs))
    splits = [f"{k} {d[k]['images']}" for k in ("train", "validation", "test")
              if isinstance(d.get(k), Mapping) and "images" in d[k]]
    if splits:
        parts.append("split by patient: " + ", ".join(splits) + " images")
    return text_of(". ".join(parts), limit=900)


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

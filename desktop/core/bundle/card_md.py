"""The readable card, ``MODEL_CARD.md``: rendered from the JSON card (export and the GUI's model dialog).

The exporter hashes the rendered text into the card's ``files``, so the
rendering must stay deterministic for a given card.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .card import ModelCard
from .schema import CARD_FILE, CARD_MD_FILE


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
    data: Mapping[str, Any] = card.to_dict() if isinstance(card, ModelCard) else card
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


__all__ = ["MD_LIST_MAX", "render_model_card_md"]

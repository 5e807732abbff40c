"""``cxr-screener models [--json]``: the installed model bundles and their cards in brief.

Lists the bundled models (``assets/models``) and the user's retrained ones
(``<user data>/models``): name, version, architecture, whether it is the
default, operating points (threshold, sensitivity, specificity), validation
and external AUROC; then every bundle that was refused and why (tampered
file, bad card...). Exit code 0 if all bundles are usable, 1 if any was
refused or none is installed. Each bundle's integrity is shown: "verified (pinned in
the application)", "signed (trusted key ...)" or "unverified bundle" (listed only when
unverified models are allowed; otherwise it is among the refused bundles, with why).
"""

from __future__ import annotations

import argparse
import math
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="list the installed model bundles and any problems with them")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from desktop.core.bundle import discover_bundles, model_dirs

    found = discover_bundles()
    default = _default_name(found.bundles)
    entries = [_entry(b, default) for b in found.bundles]
    problems = [{"path": p.path, "kind": p.kind, "error": str(p)} for p in found.problems]
    if args.json:
        doc = {
            "models": entries,
            "problems": problems,
            "searched": [str(d) for d, _ in model_dirs()],
        }
        _out(json.dumps(doc, indent=2))
    else:
        _out(_text(entries, problems, [str(d) for d, _ in model_dirs()]))
    if sys.stdout is not None:
        sys.stdout.flush()
    return 0 if entries and not problems else 1


def _default_name(bundles: list[Any]) -> str | None:
    if not bundles:
        return None
    from desktop.core.bundle import get_bundle
    from desktop.core.errors import ModelError

    try:
        return str(get_bundle(None).name)
    except ModelError:
        return None


def _entry(bundle: Any, default: str | None) -> dict[str, Any]:
    card = bundle.card
    summary = bundle.summary()
    return {
        "name": bundle.name,
        "version": bundle.version,
        "architecture": card.architecture,
        "default": bundle.name == default,
        "origin": summary.get("origin"),
        "path": summary.get("path"),
        "input": summary.get("input"),
        "backbone_init": card.backbone_init,
        "created": card.created,
        "default_operating_point": card.default_operating_point,
        "operating_points": [op.to_dict() for op in card.operating_points],
        "auroc": auroc_summary(card.metrics),
        "sha256": card.sha256,
        "trust": bundle.trust.to_dict(),
        "warnings": [w for w in getattr(bundle, "warnings", ()) if not w.startswith("unverified bundle")],
    }


def auroc_summary(metrics: Any) -> dict[str, Any]:
    """``{"validation": {"value": .., "ci": [lo, hi]}, "external/...": ...}`` found in the card's metrics.

    The metrics section is free-form; every ``auroc`` (any case) is picked up
    with the path of keys that leads to it.
    """
    found: dict[str, Any] = {}

    def visit(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                k = str(key)
                if k.lower() in ("auroc", "auc", "roc_auc"):
                    item = _value_ci(value, node, k)
                    if item is not None:
                        found["/".join(path) or "overall"] = item
                elif not k.lower().endswith("_ci"):
                    visit(value, [*path, k])
        elif isinstance(node, list):
            for i, value in enumerate(node):
                label = str(value.get("name") or value.get("source") or i) if isinstance(value, dict) else str(i)
                visit(value, [*path, label])

    visit(metrics, [])
    return found


def _value_ci(value: Any, parent: dict[str, Any], key: str) -> dict[str, Any] | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ci = parent.get(f"{key}_ci")
        return {"value": float(value), "ci": list(ci) if isinstance(ci, (list, tuple)) else None}
    if isinstance(value, dict) and isinstance(value.get("value"), (int, float)):
        ci = value.get("ci")
        return {"value": float(value["value"]), "ci": list(ci) if isinstance(ci, (list, tuple)) else None}
    return None


def _headline(auroc: dict[str, Any]) -> dict[str, Any]:
    """The AUROCs worth a line of text: no repeats per operating point, no per-source splits, no NaN."""
    out = {}
    for where, item in auroc.items():
        parts = where.split("/")
        if "at_operating_points" in parts or "by_source" in parts:
            continue
        if not math.isfinite(item["value"]):
            continue
        out[where] = item
    return out


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.3f}"


def _text(entries: list[dict[str, Any]], problems: list[dict[str, Any]], searched: list[str]) -> str:
    lines: list[str] = []
    if not entries:
        lines.append("No usable model bundles (searched: " + ", ".join(searched) + ").")
    for e in entries:
        tag = "  [default]" if e["default"] else ""
        lines.append(f"{e['name']} {e['version']}  ({e['architecture']}, input {e['input']}, {e['origin']}){tag}")
        lines.append(f"  backbone: {e['backbone_init']}")
        lines.append(f"  integrity: {e['trust']['label']} ({e['trust']['detail']})")
        for op in e["operating_points"]:
            mark = "*" if op["name"] == e["default_operating_point"] else " "
            sens = _fmt(op.get("sensitivity"))
            spec = _fmt(op.get("specificity"))
            lines.append(f"  {mark} {op['name']}: threshold {op['threshold']:.3f}, sensitivity {sens}, specificity {spec}")
        if e["auroc"]:
            for where, item in _headline(e["auroc"]).items():
                ci = f" (95% CI {item['ci'][0]:.3f}-{item['ci'][1]:.3f})" if item.get("ci") else ""
                lines.append(f"  AUROC {where}: {item['value']:.3f}{ci}")
        else:
            lines.append("  AUROC: not measured")
        for w in e["warnings"]:
            lines.append(f"  warning: {w}")
        lines.append(f"  {e['path']}")
    if problems:
        lines.append("")
        lines.append("Refused bundles:")
        for p in problems:
            lines.append(f"  {p['error']}")
    return "\n".join(lines)


def _out(text: str) -> None:
    import sys

    if sys.stdout is not None:
        sys.stdout.write(text + "\n")

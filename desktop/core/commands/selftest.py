"""``cxr-screener selftest``: is this installation sound?

Checks, printing one ``ok``/``FAIL``/``warn`` line each:

- every model bundle: schema, trust (pinned / signed / unverified) and the sha256 of
  each file (a refused bundle fails);
- one prediction with Grad-CAM per model on a bundled sample X-ray (finite
  probabilities that sum to 1, a heatmap of the image's size);
- for a bundled model pinned in the application: every bundled sample gives the
  p(covid) and label recorded when the pin was made (``scripts/pin_bundles.py``),
  within 1e-3 - a model that runs but answers differently fails;
- image loading: the bundled samples decode; which DICOM decoders are
  installed (a missing optional decoder is a warning: those transfer
  syntaxes would be refused with a clear message).

Exit code 0 if nothing failed, 1 otherwise. Run it after installing.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("selftest", help="verify every model bundle and run one prediction per model")
    p.add_argument("--json", action="store_true", help="print the checks as one JSON document")
    p.add_argument("--strict", action="store_true", help="a missing optional DICOM decoder fails too")
    p.set_defaults(handler=run)

#: Decoders whose absence makes some DICOMs unreadable (warn) or nothing readable (fail).
_ESSENTIAL = {"PIL"}
_DECODER_ROLE = {
    "PIL": "PNG and JPEG",
    "gdcm": "DICOM JPEG (12-bit, lossless), JPEG-LS, JPEG 2000",
    "pylibjpeg": "pylibjpeg plugin host",
    "openjpeg": "DICOM JPEG 2000",
    "rle": "DICOM RLE (fast path)",
    "jpeg_ls": "DICOM JPEG-LS",
}


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time

    checks: list[dict[str, Any]] = []

    def add(status: str, name: str, detail: str) -> None:
        checks.append({"status": status, "check": name, "detail": detail})
        if not args.json and sys.stdout is not None:
            sys.stdout.write(f"{status.upper() if status == 'fail' else status:4}  {name}: {detail}\n")
            sys.stdout.flush()

    t0 = time.perf_counter()
    from desktop import __version__

    add("ok", "version", f"cxr-screener {__version__}, Python {sys.version.split()[0]}")
    _check_decoders(add, strict=args.strict)
    samples = _check_samples(add)
    _check_models(add, samples)
    failed = sum(c["status"] == "fail" for c in checks)
    warned = sum(c["status"] == "warn" for c in checks)
    elapsed = time.perf_counter() - t0
    if args.json:
        doc = {"ok": failed == 0, "failed": failed, "warnings": warned, "seconds": round(elapsed, 2), "checks": checks}
        if sys.stdout is not None:
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif sys.stdout is not None:
        verdict = "selftest passed" if not failed else f"selftest FAILED ({failed} check(s))"
        sys.stdout.write(f"{verdict}; {warned} warning(s); {elapsed:.1f} s\n")
    if sys.stdout is not None:
        sys.stdout.flush()
    return 0 if failed == 0 else 1


def _check_decoders(add: Any, *, strict: bool) -> None:
    from desktop.core.imaging import loaders_available

    for module, present in sorted(loaders_available().items()):
        role = _DECODER_ROLE.get(module, module)
        if present:
            add("ok", f"decoder {module}", f"available ({role})")
        elif module in _ESSENTIAL or strict:
            add("fail", f"decoder {module}", f"missing: {role} cannot be read")
        else:
            add("warn", f"decoder {module}", f"missing: {role} will be refused with a clear message")


def _check_samples(add: Any) -> list[Any]:
    """Decode every bundled sample; return the X-rays that loaded."""
    from desktop.core.errors import CXRError
    from desktop.core.imaging import load_xray
    from desktop.core.paths import samples_dir

    folder = samples_dir()
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".dcm"}) if folder.is_dir() else []
    if not files:
        add("fail", "samples", f"no sample X-rays in {folder}")
        return []
    loaded = []
    for path in files:
        try:
            loaded.append(load_xray(path))
        except CXRError as exc:
            add("fail", "sample", str(exc))
    add("ok" if len(loaded) == len(files) else "fail", "samples", f"{len(loaded)} of {len(files)} decode ({folder})")
    return loaded


def _check_models(add: Any, samples: list[Any]) -> None:
    import time

    import numpy as np

    from desktop.core.bundle import discover_bundles, get_bundle
    from desktop.core.errors import CXRError
    from desktop.core.inference import Predictor

    found = discover_bundles()
    for problem in found.problems:
        add("fail", "bundle", str(problem))
    if not found.bundles:
        add("fail", "models", "no usable model bundle installed")
        return
    try:
        default = get_bundle(None).name
        add("ok", "default model", str(default))
    except CXRError as exc:
        add("fail", "default model", str(exc))
    for bundle in found.bundles:
        name = f"model {bundle.name} {bundle.version}"
        add("ok", name, f"card schema valid, sha256 of {len(bundle.card.files)} file(s) verified ({bundle.card.architecture})")
        trust = bundle.trust
        add("ok" if trust.verified else "warn", f"{name} trust", f"{trust.label}: {trust.detail}")
        if not samples:
            add("fail", name, "no sample to run a prediction on")
            continue
        xray = samples[0]
        try:
            t0 = time.perf_counter()
            predictor = Predictor(bundle)
            pred, heatmap = predictor.explain(xray)
            dt = time.perf_counter() - t0
        except CXRError as exc:
            add("fail", name, f"prediction failed: {exc}")
            continue
        except Exception as exc:  # the point of a selftest: report, don't crash
            add("fail", name, f"prediction failed: {type(exc).__name__}: {exc}")
            continue
        problems = []
        probs = np.asarray(list(getattr(pred, "probabilities", {}).values()) if isinstance(getattr(pred, "probabilities", None), dict) else getattr(pred, "probabilities", []), dtype=float)
        if not (0.0 <= float(pred.p_covid) <= 1.0) or not np.isfinite(pred.p_covid):
            problems.append(f"p_covid {pred.p_covid!r} out of [0, 1]")
        if probs.size and abs(float(probs.sum()) - 1.0) > 1e-3:
            problems.append(f"probabilities sum to {probs.sum():.4f}")
        hm = _heat_array(heatmap)
        if hm is not None and not np.all(np.isfinite(hm)):
            problems.append("heatmap has non-finite values")
        if problems:
            add("fail", name, "; ".join(problems))
        else:
            add("ok", name, f"{xray.name}: p_covid {float(pred.p_covid):.3f} -> {pred.label} at "
                f"{pred.operating_point} (threshold {float(pred.threshold):.3f}), Grad-CAM ok, {dt:.2f} s")
        if trust.status == "pinned":
            _check_expected(add, name, bundle, predictor, samples)


#: How far a sample's p(covid) may be from the value recorded in the pin (another CPU's last digits).
EXPECTED_TOLERANCE = 1e-3


def _check_expected(add: Any, name: str, bundle: Any, predictor: Any, samples: list[Any]) -> None:
    """Every bundled sample gives the result recorded in the application's pin for this model."""
    from desktop.core.bundle.trust import pinned_entries

    expected = (pinned_entries().get(bundle.name) or {}).get("selftest") or {}
    wanted = expected.get("samples") or {}
    if not wanted:
        add("fail", f"{name} results", "the pin records no expected sample results")
        return
    by_name = {str(getattr(x, "name", "")): x for x in samples}
    problems = []
    for sample, want in sorted(wanted.items()):
        xray = by_name.get(sample)
        if xray is None:
            problems.append(f"{sample}: sample missing")
            continue
        (pred,) = predictor.predict([xray], operating_point=expected.get("operating_point"))
        if abs(float(pred.p_covid) - float(want["p_covid"])) > EXPECTED_TOLERANCE or pred.label != want["label"]:
            problems.append(f"{sample}: p_covid {float(pred.p_covid):.4f} -> {pred.label}, recorded "
                            f"{float(want['p_covid']):.4f} -> {want['label']}")  # fmt: skip
    if problems:
        add("fail", f"{name} results", "differ from those recorded at export: " + "; ".join(problems))
    else:
        add("ok", f"{name} results", f"{len(wanted)} sample(s) give the recorded p(covid) within {EXPECTED_TOLERANCE}")


def _heat_array(heatmap: Any) -> Any:
    import numpy as np

    for attr in ("values", "array", "data", "heatmap"):
        value = getattr(heatmap, attr, None)
        if isinstance(value, np.ndarray):
            return value
    return heatmap if isinstance(heatmap, np.ndarray) else None

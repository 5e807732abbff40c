"""``cxr-screener predict FILE... [--model NAME] [--operating-point NAME] [--heatmap-dir DIR]``.

Prints one JSON object per file and line on stdout, in the order given::

    {"file": "a.png", "status": "ok", "label": "covid", "p_covid": 0.93, "model": "mobilenet",
     "model_version": "1.0.0", "operating_point": "balanced", "threshold": 0.5, "error": null,
     "site": null, "threshold_basis": "no site profile; ...", "reject_code": null, "reject_reason": null,
     "ood_score": 0.93, "ood_flag": false}

A film the input gate rejects has ``"status": "rejected"``, a ``reject_code`` (see
:mod:`desktop.core.gate`), ``reject_reason`` ("not assessable: hip film") and no ``p_covid``.
``--site NAME`` uses the threshold of that site's profile (``cxr-screener calibrate``).

Exit code 0 if every file was screened, 1 if any failed (its line says why),
2 for usage errors (unknown model or operating point, heatmap exists...).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "predict",
        help="screen X-ray files; one JSON line per file on stdout",
        description="Screen PNG, JPEG or DICOM chest X-rays with a bundled model. Prints one JSON "
        "object per file and line: file, status, label, p_covid, model, model_version, "
        "operating_point, threshold, error. Exit code 0 if all files were screened, 1 if any "
        "failed, 2 for usage errors.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="PNG, JPEG or DICOM files")
    p.add_argument("--model", help="model bundle name (default: the default bundle; see `cxr-screener models`)")
    p.add_argument("--operating-point", metavar="NAME", help="decision threshold by name (default: the model's)")
    p.add_argument("--heatmap-dir", metavar="DIR", help="also write a Grad-CAM overlay PNG per file into DIR")
    p.add_argument("--overwrite", action="store_true", help="replace heatmap PNGs that already exist")
    p.add_argument("--operator", help="operator recorded in the audit log (default: $CXR_SCREENER_OPERATOR or login)")
    # [site/gate hook, issue 16] the site's threshold (a profile made by `cxr-screener calibrate`)
    p.add_argument("--site", metavar="NAME", help="use this site's calibrated threshold (see `cxr-screener calibrate`)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from concurrent.futures import Future, ThreadPoolExecutor

    # Decode the next file in a thread while the model loads / the previous file runs
    # (image decoding and ONNX Runtime both release the GIL): a faster first line.
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxr-read")
    pending: dict[int, Future[Any]] = {0: reader.submit(_load, args.files[0])}
    try:
        return _run(args, reader, pending)
    finally:
        reader.shutdown(wait=False, cancel_futures=True)


def _load(file: str) -> Any:
    """An XRay, or the CXRError that loading raised."""
    from desktop.core.errors import CXRError
    from desktop.core.imaging import load_xray

    try:
        return load_xray(file)
    except CXRError as exc:
        return exc


def _run(args: argparse.Namespace, reader: Any, pending: dict[int, Any]) -> int:
    import json
    import sys
    from pathlib import Path

    from desktop.core.audit import AuditLog
    from desktop.core.commands._model import load_model, prediction_fields
    from desktop.core.errors import CXRError, OutputError

    loaded = load_model(args.model, args.operating_point)  # usage errors (exit 2) before any output
    # [site/gate hook, issue 16] site profile (exit 2 if missing, edited or for another model), gate stats
    from desktop.core import gate
    from desktop.core.input_stats import load_for
    from desktop.core.site import resolve, threshold_basis

    profile, site_op = resolve(getattr(args, "site", None), loaded.bundle)
    op = site_op or loaded.bundle.card.operating_point(loaded.operating_point)
    basis = threshold_basis(profile, loaded.bundle, op)
    input_stats = load_for(loaded.bundle)
    heat_dir = Path(args.heatmap_dir) if args.heatmap_dir else None
    targets: dict[int, Path] = {}
    if heat_dir is not None:
        targets = _heatmap_targets(args.files, heat_dir, overwrite=args.overwrite)

    audit = AuditLog(operator=args.operator)
    failed = 0
    try:
        for i, file in enumerate(args.files):
            record: dict[str, object] = {
                "file": file,
                "status": "error",
                "label": None,
                "p_covid": None,
                "model": loaded.name,
                "model_version": loaded.version,
                "operating_point": op.name,
                "threshold": float(op.threshold),
                "error": None,
                # [site/gate hook, issue 16]
                "site": None if profile is None else profile.site,
                "threshold_basis": basis,
                "reject_code": None,
                "reject_reason": None,
                "ood_score": None,
                "ood_flag": None,
            }
            sha = None
            if i + 1 < len(args.files):
                pending[i + 1] = reader.submit(_load, args.files[i + 1])
            try:
                xray = pending.pop(i).result()
                if isinstance(xray, CXRError):
                    raise xray
                sha = xray.sha256
                # [site/gate hook, issue 16] the gate first: a rejected film gets a code, never a p(covid)
                screened = gate.screen(loaded.predictor, [xray], stats=input_stats, operating_point=op)[0]
                if screened.gate.rejected:
                    record.update(status="rejected", reject_code=screened.gate.code,
                                  reject_reason=screened.gate.text)
                    raise _Rejected
                if screened.ood is not None:
                    record.update(ood_score=round(screened.ood.score, 4), ood_flag=screened.ood.flagged)
                if heat_dir is not None:
                    pred, heatmap = loaded.predictor.explain(xray, operating_point=op)
                else:
                    pred = screened.prediction
                    heatmap = None
                record.update(prediction_fields(pred))
                record["status"] = "ok"
                if heatmap is not None:
                    from desktop.core.commands._model import write_overlay

                    try:
                        write_overlay(targets[i], xray, heatmap, overwrite=args.overwrite)
                        record["heatmap"] = str(targets[i])
                    except OutputError as exc:
                        record["heatmap"] = None
                        record["status"] = "error"
                        record["error"] = f"heatmap not written: {exc}"
            except _Rejected:
                pass
            except CXRError as exc:
                record["error"] = str(exc)
                record["error_kind"] = exc.kind
                # [site/gate hook, issue 16] CT/MR refused by the loader: rejected, not failed
                refused = gate.from_load_error(exc)
                record["reject_code"] = refused.code
                if refused.code != "unreadable":
                    record.update(status="rejected", reject_reason=refused.text)
                if sha is None and exc.kind != "access":
                    sha = _sha256(file)
            if record["status"] not in ("ok", "rejected"):
                failed += 1
            audit.record(
                "predict",
                file_sha256=sha,
                file_path=file,
                model=loaded.name,
                model_version=loaded.version,
                model_sha256=loaded.sha256,
                operating_point=str(record["operating_point"]),
                threshold=_float(record["threshold"]),
                result=_audit_result(record),
            )
            record.pop("error_kind", None)
            if sys.stdout is not None:
                sys.stdout.write(json.dumps(record) + "\n")
                sys.stdout.flush()
    finally:
        audit.close()
    if audit.failed and sys.stderr is not None:
        sys.stderr.write(f"cxr-screener predict: warning: {audit.failed}\n")
    return 1 if failed else 0


def _sha256(path: str) -> str | None:
    import hashlib

    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


class _Rejected(Exception):
    """The input gate rejected the film (its record says why)."""


def _audit_result(record: dict[str, object]) -> dict[str, object]:
    if record["status"] == "rejected":
        return {"status": "rejected", "error_kind": record["reject_code"]}  # the audit log has no reject_code key
    if record["status"] == "ok":
        return {"status": "ok", "label": record["label"], "p_covid": record["p_covid"]}
    return {"status": "error", "error_kind": record.get("error_kind", "heatmap")}


def _heatmap_targets(files: list[str], heat_dir: Path, *, overwrite: bool) -> dict[int, Path]:
    """One PNG per file, named after it; refuse (usage error) to overwrite unless asked."""
    from pathlib import Path

    from desktop.core.errors import OutputError, OutputExistsError

    folder = Path(heat_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(folder, f"cannot create the heatmap folder ({exc.strerror or exc})") from exc
    targets: dict[int, Path] = {}
    used: set[str] = set()
    for i, file in enumerate(files):
        stem = Path(file).name
        name = f"{stem}.heatmap.png"
        n = 2
        while name in used:  # same file name from two folders
            name = f"{stem}.{n}.heatmap.png"
            n += 1
        used.add(name)
        target = folder / name
        if target.exists() and not overwrite:
            raise OutputExistsError(target, "already exists", "use --overwrite to replace it")
        targets[i] = target
    return targets

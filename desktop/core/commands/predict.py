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

The files go through the scan's pipeline (:func:`desktop.core.scan.pipeline.screen_files`):
each is read once (a FIFO or a device is refused before any read), hashed and
decoded from the same bytes in a read-ahead thread while the model runs the
previous one.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

#: Decoding threads of ``predict`` (a thread starts at once; a few files do not pay for processes).
READ_AHEAD_THREADS = 1


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
    p.add_argument("--site", metavar="NAME", help="use this site's calibrated threshold (see `cxr-screener calibrate`)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from desktop.core.audit import AuditLog
    from desktop.core.bundle import get_bundle

    # usage errors (exit 2) before any output
    from desktop.core.input_stats import load_for
    from desktop.core.scan.pipeline import ScreenOptions, as_entries, screen_files
    from desktop.core.site import resolve, threshold_basis

    bundle = get_bundle(args.model)
    op = bundle.card.operating_point(args.operating_point)
    profile, site_op = resolve(args.site, bundle)  # missing, edited or for another model: exit 2
    basis = threshold_basis(profile, bundle, site_op or op)
    heat_dir = Path(args.heatmap_dir) if args.heatmap_dir else None
    entries = as_entries(args.files)
    targets: dict[int, Path] = {}
    if heat_dir is not None:
        named = _heatmap_targets(args.files, heat_dir, overwrite=args.overwrite)
        targets = {id(e): named[i] for i, e in enumerate(entries)}  # the pipeline hands back these entries

    audit = AuditLog(operator=args.operator)
    predictor = _PredictorSoon(bundle)  # ONNX Runtime starts while the first file is read and decoded
    options = ScreenOptions(
        operating_point=op.name, workers=READ_AHEAD_THREADS, threads=True,
        heatmap_target=(lambda e: targets[id(e)]) if heat_dir is not None else None,
        heatmap_overwrite=args.overwrite, audit=audit, audit_event="predict",
        input_stats=load_for(bundle), site=profile,
    )
    failed = 0
    try:
        for result in screen_files(entries, predictor, options):
            record = _record(result, with_heatmap=heat_dir is not None, basis=basis)
            if record["status"] not in ("ok", "rejected"):
                failed += 1
            if sys.stdout is not None:
                sys.stdout.write(json.dumps(record) + "\n")
                sys.stdout.flush()
    except _BuildFailed as exc:
        raise exc.error from None  # a broken bundle: exit 2, before any line
    finally:
        predictor.wait()  # never exit while ONNX Runtime is still being set up (it aborts the process)
        audit.close()
    if audit.failed and sys.stderr is not None:
        sys.stderr.write(f"cxr-screener predict: warning: {audit.failed}\n")
    return 1 if failed else 0


class _BuildFailed(Exception):
    """The Predictor could not be built (not a per-file error: the pipeline must not turn it into rows)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _PredictorSoon:
    """The bundle's Predictor, built in a thread from the start, so the first file decodes meanwhile."""

    def __init__(self, bundle: Any) -> None:
        import threading

        self.bundle = bundle
        self.spec = bundle.card.preprocess
        self._made: list[Any] = []
        self._failed: list[BaseException] = []
        self._thread = threading.Thread(target=self._build, name="cxr-model", daemon=True)
        self._thread.start()

    def _build(self) -> None:
        from desktop.core.cpu import single_inference_threads
        from desktop.core.inference import Predictor

        try:
            self._made.append(Predictor(self.bundle, threads=single_inference_threads()))
        except BaseException as exc:
            self._failed.append(exc)

    def wait(self) -> None:
        self._thread.join()

    def get(self) -> Any:
        self._thread.join()
        if self._failed:
            raise _BuildFailed(self._failed[0])
        return self._made[0]

    def predict_inputs(self, batch: Any, operating_point: Any = None) -> Any:
        return self.get().predict_inputs(batch, operating_point)

    def explain_input(self, x: Any, operating_point: Any = None) -> Any:
        return self.get().explain_input(x, operating_point)

    # the learnt input gate and the OOD score read the features of the same forward pass
    def forward_raw(self, batch: Any) -> Any:
        return self.get().forward_raw(batch)

    def operating_point(self, name: Any = None) -> Any:
        return self.get().operating_point(name)

    def _prediction(self, probs: Any, op: Any) -> Any:
        return self.get()._prediction(probs, op)


def _record(result: Any, *, with_heatmap: bool, basis: str | None = None) -> dict[str, object]:
    """The JSON line of one result (the documented contract)."""
    record: dict[str, object] = {
        "file": result.relpath,
        "status": result.status,
        "label": result.label,
        "p_covid": round(float(result.p_covid), 6) if result.p_covid is not None else None,
        "model": result.model,
        "model_version": result.model_version,
        "operating_point": result.operating_point,
        "threshold": result.threshold,
        "error": None if result.rejected else result.error,
        "site": result.site,
        "threshold_basis": basis,
        "reject_code": result.reject_code,
        "reject_reason": result.error if result.rejected else None,
        "ood_score": None if result.ood_score is None else round(float(result.ood_score), 4),
        "ood_flag": result.ood_flag,
    }
    if result.ok and with_heatmap:
        record["heatmap"] = result.heatmap
        if result.error_kind == "heatmap":  # screened, but the overlay could not be written
            record["status"] = "error"
    return record


def _heatmap_targets(files: list[str], heat_dir: Path, *, overwrite: bool) -> dict[int, Path]:
    """One PNG per file, named after it; refuse (usage error) to overwrite unless asked."""
    from pathlib import Path

    from desktop.core.errors import OutputError, OutputExistsError
    from desktop.core.scan.heatmaps import heatmap_name

    folder = Path(heat_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(folder, f"cannot create the heatmap folder ({exc.strerror or exc})") from exc
    targets: dict[int, Path] = {}
    used: set[str] = set()
    for i, file in enumerate(files):
        stem = Path(file).name
        name = heatmap_name(stem)
        n = 2
        while name in used:  # same file name from two folders
            name = heatmap_name(f"{stem}.{n}")
            n += 1
        used.add(name)
        target = folder / name
        if target.exists() and not overwrite:
            raise OutputExistsError(target, "already exists", "use --overwrite to replace it")
        targets[i] = target
    return targets

"""``cxr-screener scan DIR [--model NAME] [--out DIR] [--heatmaps] [--resume] [--report OUT.pdf]``.

Screens every image under DIR (recursively) and writes ``results.csv`` row by
row as results come, so an interrupted scan keeps every finished row;
``--resume`` continues it. A progress bar with rate and ETA goes to stderr,
a summary at the end. Ctrl-C stops cleanly.

Exit code 0 if every file was screened, 1 if any file failed (its row says
why; after --resume, also a failure recorded by an earlier run) or the scan
was cut short by a disk error, 2 for usage errors (unknown model, results.csv
exists without --resume/--overwrite, resuming with another model...), 130
after Ctrl-C.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "scan",
        help="screen every X-ray in a folder (recursively) into results.csv",
        description="Screen every PNG, JPEG or DICOM file under DIR. Results go to OUT/results.csv "
        "(columns: path, sha256, status, label, p_covid, model, model_version, threshold, error, "
        "operating_point, error_kind), one row per file as it is done. Files that are not images "
        "or cannot be read get an error row; the scan goes on.",
    )
    p.add_argument("folder", metavar="DIR", help="folder to scan (recursively)")
    p.add_argument("--model", help="model bundle name (default: the default bundle)")
    p.add_argument("--operating-point", metavar="NAME", help="decision threshold by name (default: the model's)")
    p.add_argument(
        "--out", metavar="OUTDIR", help="where results.csv (and heatmaps/) go (default: DIR/cxr_results)"
    )
    p.add_argument("--heatmaps", action="store_true", help="also write a Grad-CAM overlay PNG per image")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted scan (files already in results.csv are skipped)")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing results.csv (and --report PDF)")
    p.add_argument("--report", metavar="OUT.pdf", help="also write a PDF report of the whole scan")
    p.add_argument("--report-pages", action="store_true", help="add one page per study (with heatmap) to --report")
    p.add_argument("--anonymize", action="store_true", help="pseudonymise patient data in the --report PDF")
    p.add_argument("--workers", type=int, metavar="N", help="decoding processes (default: one per core, at most 4)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="ONNX Runtime threads (default: half the cores, 1 to 4)")
    p.add_argument("--decode-timeout", type=float, default=None, metavar="S",
                   help="give up on a file that takes longer than S seconds to decode (default: 60)")
    p.add_argument("--operator",
                   help="operator recorded in the audit log and the --report PDF "
                        "(default: $CXR_SCREENER_OPERATOR or login)")
    p.add_argument("--clinic", default="", metavar="NAME", help="clinic name for the --report PDF header")
    p.add_argument("--clinic-address", default="", metavar="TEXT", help="clinic address for the --report PDF")
    p.add_argument("--page-size", choices=("A4", "Letter"), default="A4", help="paper size of the --report PDF")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    # [site/gate hook, issue 16]
    p.add_argument("--site", metavar="NAME", help="use this site's calibrated threshold (see `cxr-screener calibrate`)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import datetime as dt
    from pathlib import Path

    from desktop.core import batch
    from desktop.core.audit import AuditLog
    from desktop.core.commands._model import load_model
    from desktop.core.errors import CXRError, OutputError
    from desktop.core.fileio import check_writable

    folder = Path(args.folder)
    if not folder.is_dir():
        _err(f"cxr-screener scan: {folder}: " + ("is not a folder" if folder.exists() else "folder not found"))
        return 2
    if args.workers is not None and args.workers < 0:
        _err("cxr-screener scan: --workers must be 0 or more")
        return 2
    if args.threads is not None and args.threads < 1:
        _err("cxr-screener scan: --threads must be 1 or more")
        return 2
    out = Path(args.out) if args.out else default_out_dir(folder)
    results_csv = out / batch.RESULTS_NAME
    if results_csv.exists() and not (args.resume or args.overwrite):
        _err(f"cxr-screener scan: {results_csv}: already exists; continue it with --resume or replace it with --overwrite")
        return 2
    if args.report:
        check_writable_report = Path(args.report)
        if check_writable_report.parent and not check_writable_report.parent.exists():
            check_writable_report.parent.mkdir(parents=True, exist_ok=True)
        check_writable(check_writable_report, overwrite=args.overwrite)
    workers = batch.default_workers() if args.workers is None else args.workers
    threads = args.threads or batch.inference_threads()
    # exit 2 on an unknown model / operating point, before any output
    loaded = load_model(args.model, args.operating_point, threads=threads)
    # [site/gate hook, issue 16] the site profile (exit 2 if missing, edited or for another model), gate stats
    from desktop.core.input_stats import load_for
    from desktop.core.site import resolve, threshold_basis

    profile, site_op = resolve(getattr(args, "site", None), loaded.bundle)
    input_stats = load_for(loaded.bundle)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(out, f"cannot create the output folder ({exc.strerror or exc})") from exc
    if created or not args.out:
        batch.mark_output_folder(out)

    started = dt.datetime.now().astimezone()
    stats = batch.ScanStats()
    bar = ProgressBar(enabled=not args.no_progress)
    audit = AuditLog(operator=args.operator)
    interrupted = False
    failure: CXRError | None = None
    kwargs: dict[str, Any] = {}
    if args.decode_timeout is not None:
        kwargs["decode_timeout"] = args.decode_timeout
    try:
        results = batch.scan(
            folder,
            loaded.predictor,
            operating_point=loaded.operating_point,
            results_csv=results_csv,
            resume=args.resume,
            overwrite=args.overwrite,
            heatmap_dir=out / "heatmaps" if args.heatmaps else None,
            progress=bar.update,
            workers=workers,
            audit=audit,
            stats=stats,
            input_stats=input_stats,
            site=profile,
            **kwargs,
        )
        for result in results:
            if result.status == "rejected":  # [site/gate hook, issue 16]
                bar.note(f"{result.relpath or result.path}: {result.error} ({result.reject_code})")
            elif not result.ok:
                bar.note(f"{result.error}")
    except KeyboardInterrupt:
        interrupted = True
    except OutputError as exc:
        failure = exc
    finally:
        bar.close()
        audit.close()

    _summary(stats, results_csv, interrupted=interrupted, audit_failed=audit.failed)
    _err("Threshold: " + threshold_basis(profile, loaded.bundle, site_op))  # [site/gate hook, issue 16]
    if failure is not None:
        _err(f"cxr-screener scan: {failure}")
        return 2 if stats.done == 0 else 1  # refused before any work: a usage error
    if interrupted:
        _err("cxr-screener scan: interrupted; the rows written so far are kept (continue with --resume)")
        return 130
    all_results = batch.read_results(results_csv, folder=folder) if stats.skipped or args.report else []
    # resumed: files that failed in the earlier runs of this scan failed all the same (the file has every row)
    failed = sum(r.failed for r in all_results) if stats.skipped else stats.errors
    if failed > stats.errors:
        _err(f"{failed - stats.errors} more file(s) failed in earlier runs of this scan "
             f"(their rows in {results_csv} say why)")
    if args.report:
        from desktop.core.report import ReportInfo, write_batch_report

        info = ReportInfo(clinic_name=args.clinic, clinic_address=args.clinic_address,
                          operator=audit.operator, page_size=args.page_size)
        path = write_batch_report(
            args.report,
            all_results,
            folder=folder,
            bundle=loaded.bundle,
            operating_point=loaded.operating_point,
            started=started,
            info=info,
            study_pages=args.report_pages,
            anonymize=args.anonymize,
            overwrite=args.overwrite,
        )
        audit.record("report", model=loaded.name, model_version=loaded.version, model_sha256=loaded.sha256,
                     operating_point=loaded.operating_point, threshold=loaded.threshold,
                     count=len(all_results), anonymized=bool(args.anonymize), source="scan")
        audit.close()
        _err(f"Report: {path}")
    return 1 if failed else 0


def default_out_dir(folder: Any) -> Any:
    """``DIR/cxr_results``, or a per-user folder when DIR is read-only (a CD, a share)."""
    import hashlib
    import os
    from pathlib import Path

    from desktop.core.paths import user_data_dir

    folder = Path(folder)
    if os.access(folder, os.W_OK):
        return folder / "cxr_results"
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    fallback = user_data_dir() / "scans" / f"{folder.resolve().name or 'root'}-{key}"
    _err(f"cxr-screener scan: {folder} is read-only; results go to {fallback}")
    return fallback


def _summary(stats: Any, results_csv: Any, *, interrupted: bool, audit_failed: str | None) -> None:
    rate = stats.done - stats.skipped
    per_s = rate / stats.elapsed_s if stats.elapsed_s > 0 else 0.0
    labels = ", ".join(f"{k} {v}" for k, v in sorted(stats.labels.items())) or "none"
    lines = [
        f"{'Stopped after' if interrupted else 'Scanned'} {stats.done} of {stats.total} files in "
        f"{stats.elapsed_s:.1f} s ({per_s:.1f} files/s): {stats.ok} screened ({labels}), "
        f"{stats.errors} failed, {getattr(stats, 'rejected', 0)} not assessable (input gate), "
        f"{stats.skipped} already done"
        + (f", {stats.ignored} documents ignored." if stats.ignored else "."),
        f"Results: {results_csv}",
    ]
    if stats.total == 0:
        lines.insert(0, "No files to screen in this folder (hidden files, documents and our own outputs are skipped).")
    if audit_failed:
        lines.append(f"warning: {audit_failed}")
    for line in lines:
        _err(line)


def _err(message: str) -> None:
    import sys

    if sys.stderr is not None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


class ProgressBar:
    """``[#####.....] 120/500  24.1 files/s  ETA 0:15`` on stderr.

    Redrawn in place on a terminal, a plain line every ~10 s otherwise (logs),
    silent when there is no stderr (windowed frozen builds).
    """

    def __init__(self, *, enabled: bool = True, width: int = 30) -> None:
        import sys
        import time

        self.stream = sys.stderr if enabled else None
        self.tty = bool(self.stream is not None and hasattr(self.stream, "isatty") and self.stream.isatty())
        self.width = width
        self._last = 0.0
        self._clock = time.monotonic
        self._drawn = False
        self._line = ""

    def update(self, done: int, total: int, rate: float, eta: float) -> None:
        if self.stream is None:
            return
        now = self._clock()
        final = done >= total
        if not final and now - self._last < (0.1 if self.tty else 10.0):
            return
        self._last = now
        frac = done / total if total else 1.0
        filled = int(round(frac * self.width))
        eta_text = _hms(eta) if rate > 0 and eta != float("inf") else "--:--"
        self._line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}  {rate:5.1f} files/s  ETA {eta_text}"
        )
        try:
            if self.tty:
                self.stream.write("\r" + self._line + "\x1b[K")
                self._drawn = True
            else:
                self.stream.write(self._line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None

    def note(self, message: str) -> None:
        """A message line (a failed file) above the bar."""
        if self.stream is None:
            return
        try:
            if self.tty and self._drawn:
                self.stream.write("\r\x1b[K" + message + "\n" + self._line)
            else:
                self.stream.write(message + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None

    def close(self) -> None:
        if self.stream is not None and self.tty and self._drawn:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

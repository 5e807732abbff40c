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
    p.add_argument("--anonymize", action="store_true",
                   help="name files by pseudonyms in every output: results.csv paths, heatmap names, audit, "
                        "and patient data in the --report PDF and the --dicom-results")
    p.add_argument("--dicom-results", metavar="DIR",
                   help="write a Secondary Capture (heatmap) and a Structured Report per DICOM film here")
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
    from desktop.core.filenames import display_name

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
    from desktop.core.cpu import decode_workers, scan_inference_threads

    workers = decode_workers() if args.workers is None else args.workers
    threads = args.threads or scan_inference_threads()
    # exit 2 on an unknown model / operating point, before any output
    loaded = load_model(args.model, args.operating_point, threads=threads)
    # the site profile (exit 2 if missing, edited or for another model); the learnt gate's and OOD statistics
    from desktop.core.input_stats import load_for
    from desktop.core.site import resolve, threshold_basis

    profile, site_op = resolve(args.site, loaded.bundle)
    input_stats = load_for(loaded.bundle)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(out, f"cannot create the output folder ({exc.strerror or exc})") from exc
    if created or not args.out:
        batch.mark_output_folder(out)

    from desktop.core.progress import Progress

    started = dt.datetime.now().astimezone()
    stats = batch.ScanStats()
    bar = ProgressBar(enabled=not args.no_progress)
    progress = Progress()
    progress.subscribe(bar.update)
    # the report is drawn from what the scan made: no file is read twice
    shown: dict[str, Any] = {}
    previews = out / PREVIEWS_NAME
    audit = AuditLog(operator=args.operator)
    interrupted = False
    failure: CXRError | None = None
    kwargs: dict[str, Any] = {}
    if args.decode_timeout is not None:
        kwargs["decode_timeout"] = args.decode_timeout
    maker = None
    if args.dicom_results:  # the SC + SR of each DICOM film (desktop.core.dicomnet)
        from desktop.core.dicomnet.screening import ResultsMaker

        maker = ResultsMaker(Path(args.dicom_results), loaded, out / "heatmaps", anonymize=args.anonymize)
    try:
        results = batch.scan(
            folder,
            loaded.predictor,
            operating_point=loaded.operating_point,
            results_csv=results_csv,
            resume=args.resume,
            overwrite=args.overwrite,
            heatmap_dir=out / "heatmaps" if args.heatmaps or args.dicom_results else None,
            progress=progress,
            workers=workers,
            audit=audit,
            stats=stats,
            anonymize=args.anonymize,
            keep_display=bool(args.report),
            explain=bool(args.report and args.report_pages),
            input_stats=input_stats,
            site=profile,
            **kwargs,
        )
        for result in results:
            if result.rejected:
                bar.note(f"{display_name(result.relpath or result.path)}: {result.error} ({result.reject_code})")
            elif not result.ok:
                bar.note(f"{result.error}")
            else:
                if maker is not None:
                    maker.make(result)
                if args.report:
                    shown[result.relpath] = _keep_for_report(result, previews)
    except KeyboardInterrupt:
        interrupted = True
    except OutputError as exc:
        failure = exc
    finally:
        bar.close()
        audit.close()

    _summary(stats, results_csv, interrupted=interrupted, audit_failed=audit.failed, folder=folder)
    _err("Threshold: " + threshold_basis(profile, loaded.bundle, site_op))
    if failure is not None or interrupted:
        _drop_previews(previews)
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
        from desktop.core.report_batch import with_heatmap_pngs

        info = ReportInfo(clinic_name=args.clinic, clinic_address=args.clinic_address,
                          operator=audit.operator, page_size=args.page_size)
        # this run's rows keep their real paths and bring what the scan made (display image, heatmap): the
        # report opens no file again; rows of earlier runs of a resumed scan get the heatmap PNGs written then
        items = [_report_item(shown[r.relpath]) if r.relpath in shown else r for r in all_results]
        path = write_batch_report(
            args.report,
            with_heatmap_pngs(items, out / "heatmaps" if args.heatmaps else None),
            folder=folder,
            bundle=loaded.bundle,
            operating_point=loaded.operating_point,
            started=started,
            info=info,
            study_pages=args.report_pages,
            predictor=loaded.predictor,  # the scan's own model: the report builds none (heatmap PNGs reused)
            anonymize=args.anonymize,
            overwrite=args.overwrite,
            site=profile,
        )
        audit.record("report", model=loaded.name, model_version=loaded.version, model_sha256=loaded.sha256,
                     operating_point=loaded.operating_point, threshold=loaded.threshold,
                     count=len(all_results), anonymized=bool(args.anonymize), source="scan")
        audit.close()
        _drop_previews(previews)
        _err(f"Report: {path}")
    return 1 if failed else 0


#: Where ``scan --report`` keeps the small display images of the films until the PDF is written.
PREVIEWS_NAME = ".previews"
#: Long side of those images: enough for a study page at 160 dpi.
PREVIEW_SIDE = 640


def _keep_for_report(result: Any, previews: Any) -> Any:
    """``result`` with its display image moved to a small PNG (a long scan holds no images in memory)."""
    from dataclasses import replace

    from desktop.core.display import shrink

    display = result.display
    if display is None or display.image is None:
        return result
    small = replace(display, image=shrink(display.image, PREVIEW_SIDE))
    try:
        return replace(result, display=small.spill(previews, result.sha256 or "unnamed"))
    except OSError:
        return replace(result, display=small)


def _report_item(made: Any) -> Any:
    """The batch report's item for a result of this run: its display image and heatmap, no decode."""
    from desktop.core.report_batch import BatchItem

    display = made.display
    shown = None if display is None else (display.png or display.gray())  # the spilled PNG: read when drawn
    return BatchItem(result=made, display=shown,
                     heatmap=made.explanation, metadata=None if display is None else display.metadata)


def _drop_previews(previews: Any) -> None:
    """The display images were only for the PDF: remove them (they show the patients' films)."""
    import shutil

    shutil.rmtree(previews, ignore_errors=True)


def default_out_dir(folder: Any) -> Any:
    """``DIR/cxr_results``, or the per-user folder when DIR is read-only (a CD, a share).

    The per-user folder is :func:`desktop.core.scan_state.user_scan_dir`, the one
    the desktop window keeps its scans in, so either can resume the other's scan.
    """
    import os
    from pathlib import Path

    from desktop.core.scan_state import CLI_OUT_NAME, user_scan_dir

    folder = Path(folder)
    if os.access(folder, os.W_OK):
        return folder / CLI_OUT_NAME
    fallback = user_scan_dir(folder)
    _err(f"cxr-screener scan: {folder} is read-only; results go to {fallback}")
    return fallback


def _summary(stats: Any, results_csv: Any, *, interrupted: bool, audit_failed: str | None, folder: Any = None) -> None:
    from desktop.core.scan_state import ignored_documents, name_list

    rate = stats.done - stats.skipped
    per_s = rate / stats.elapsed_s if stats.elapsed_s > 0 else 0.0
    labels = ", ".join(f"{k} {v}" for k, v in sorted(stats.labels.items())) or "none"
    lines = [
        f"{'Stopped after' if interrupted else 'Scanned'} {stats.done} of {stats.total} files in "
        f"{stats.elapsed_s:.1f} s ({per_s:.1f} files/s): {stats.ok} screened ({labels}), "
        f"{stats.errors} failed, {getattr(stats, 'rejected', 0)} not assessable (input gate), "
        f"{stats.skipped} already done"
        + (f", {stats.ignored} document(s) left out (not images): "
           f"{name_list(ignored_documents(folder, results_csv)) if folder is not None else ''}." if stats.ignored else "."),
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
    """``[#####.....] 120/500  24.1 files/s  ETA 0:15`` on stderr, drawn from a shared :class:`Progress`.

    Redrawn in place on a terminal, a plain line every ~10 s otherwise (logs),
    silent when there is no stderr (windowed frozen builds). The figures are
    the core's :class:`desktop.core.progress.Progress` (the state the desktop
    window's bar reads too); :meth:`update` is the scan's progress callback.
    """

    def __init__(self, *, enabled: bool = True, width: int = 30) -> None:
        import sys
        import time

        from desktop.core.progress import Progress

        self.state = Progress()
        self.stream = sys.stderr if enabled else None
        self.tty = bool(self.stream is not None and hasattr(self.stream, "isatty") and self.stream.isatty())
        self.width = width
        self._last = 0.0
        self._clock = time.monotonic
        self._drawn = False
        self._line = ""

    def update(self, done: int, total: int, rate: float, eta: float) -> None:
        from desktop.core.progress import format_clock

        self.state.update(done, total, rate, eta)
        if self.stream is None:
            return
        now = self._clock()
        snap = self.state.snapshot()
        if not snap.finished and now - self._last < (0.1 if self.tty else 10.0):
            return
        self._last = now
        frac = snap.fraction if snap.total else 1.0
        filled = int(round(frac * self.width))
        eta_text = format_clock(snap.eta) if snap.rate > 0 and snap.eta != float("inf") else "--:--"
        self._line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {snap.done}/{snap.total}  "
            f"{snap.rate:5.1f} files/s  ETA {eta_text}"
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

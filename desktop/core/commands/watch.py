"""``cxr-screener watch DIR [--out OUT] [--dicom-results D] [--send HOST:PORT --send-ae AE] ...``.

Watches DIR (recursively) and screens each new film once it is completely
written (size and time unchanged for ``--settle`` seconds) into
``OUT/results.csv``, as ``scan`` does; restart-safe, no film twice. For
clinics without DICOM networking: point the console's export folder at DIR.
Ctrl-C or SIGTERM stops it.

Exit codes: 0 stopped cleanly; 1 screening failed; 2 usage errors.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from desktop.core.commands.listen import add_dicom_results_options

    p = sub.add_parser(
        "watch",
        help="screen each new film saved into a folder (watched folder)",
        description="Watch DIR and screen every PNG, JPEG or DICOM film saved into it, once completely "
        "written, into OUT/results.csv (the columns of `scan`). Decision support, not a diagnosis.",
    )
    p.add_argument("folder", metavar="DIR", help="folder to watch (recursively)")
    p.add_argument("--out", metavar="OUT", help="where results.csv goes (default: DIR/cxr_results)")
    add_dicom_results_options(p, send=True)
    p.add_argument("--site", default="", metavar="NAME",
                   help="use this site's calibrated threshold (see `cxr-screener calibrate`); named in every result")
    p.add_argument("--model", help="model bundle name (default: the default bundle)")
    p.add_argument("--operating-point", metavar="NAME", help="decision threshold by name (default: the model's)")
    p.add_argument("--anonymize", action="store_true", help="pseudonymise patient data in the DICOM results")
    p.add_argument("--settle", type=float, default=2.0, metavar="S",
                   help="a file is complete once unchanged for S seconds (default 2)")
    p.add_argument("--rescan", type=float, default=30.0, metavar="S",
                   help="look at the whole folder every S seconds too, for shares without events (default 30)")
    p.add_argument("--workers", type=int, metavar="N", help="decoding processes (default: one per core, at most 4)")
    p.add_argument("--operator", help="operator recorded in the audit log (default: $CXR_SCREENER_OPERATOR or login)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import signal
    import threading
    from pathlib import Path

    from desktop.core.audit import AuditLog
    from desktop.core.commands._model import load_model
    from desktop.core.commands.listen import send_target
    from desktop.core.commands.scan import default_out_dir
    from desktop.core.dicomnet.listener import ListenerEvent
    from desktop.core.dicomnet.watcher import FolderWatcher, WatchConfig

    folder = Path(args.folder)
    if not folder.is_dir():
        _err(f"cxr-screener watch: {folder}: " + ("is not a folder" if folder.exists() else "folder not found"))
        return 2
    try:
        if args.settle < 0 or args.rescan <= 0:
            raise ValueError("--settle must be 0 or more and --rescan more than 0")
        config = WatchConfig(
            folder=folder,
            out_dir=Path(args.out) if args.out else default_out_dir(folder),
            dicom_results=Path(args.dicom_results) if args.dicom_results else None,
            send=send_target(args, "watch"),  # type: ignore[arg-type]
            site=args.site or None,
            anonymize=args.anonymize,
            settle_s=args.settle,
            rescan_s=args.rescan,
            workers=args.workers,
        )
    except ValueError as exc:
        _err(f"cxr-screener watch: {exc}")
        return 2
    loaded = load_model(args.model, args.operating_point)
    from desktop.core.site import resolve

    resolve(args.site or None, loaded.bundle)  # a missing, edited or foreign site profile: exit 2
    audit = AuditLog(operator=args.operator)

    def show(event: ListenerEvent) -> None:
        if event.kind in ("result", "error"):
            _err(event.message)

    watcher = FolderWatcher(config, lambda: loaded, on_event=show, audit=audit)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    watcher.start()
    _err(f"Watching {folder} (model {loaded.name} {loaded.version}); results: {watcher.results_csv}. "
         "Ctrl-C stops.")
    try:
        while not stop.wait(0.5):
            if watcher.failure is not None:
                break
    finally:
        watcher.stop()
        audit.close()
        for s, h in previous.items():
            signal.signal(s, h)
    st = watcher.stats
    _err(f"Stopped: {st.screened} film(s) screened ({st.errors} failed).")
    if watcher.failure is not None:
        _err(f"cxr-screener watch: {watcher.failure}")
        return 1
    return 0


def _err(message: str) -> None:
    import sys

    if sys.stderr is not None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

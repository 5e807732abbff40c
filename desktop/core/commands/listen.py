"""``cxr-screener listen --port P --out DIR [--dicom-results DIR] [--send HOST:PORT --send-ae AE] ...``.

A DICOM Storage SCP: films a CR/DR unit or a PACS sends are written to
``DIR/spool``, screened as ``scan`` screens them into ``DIR/results.csv``,
then kept in ``DIR/films``. With ``--dicom-results`` each DICOM film also gets
a Secondary Capture (heatmap and result burned in) and a Structured Report in
its own study; ``--send`` C-STOREs them to a PACS. Restart after a crash:
films received but not screened are screened, none twice. Ctrl-C or SIGTERM
stops it within seconds.

Exit codes: 0 stopped cleanly; 1 screening failed (a disk error...); 2 usage
errors (bad option, unknown model, port in use, results of another model in DIR).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "listen",
        help="receive films by DICOM (Storage SCP), screen them, return DICOM results",
        description="Listen for DICOM C-STORE (CR, DX, Secondary Capture) and screen every film "
        "received into DIR/results.csv (the columns of `scan`). Bound to 127.0.0.1 unless --host "
        "is given. Decision support, not a diagnosis.",
    )
    p.add_argument("--port", type=int, required=True, metavar="P", help="TCP port to listen on (e.g. 11112)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this computer only; 0.0.0.0 for the network)")
    p.add_argument("--ae-title", default="CXRSCREENER", metavar="AE",
                   help="our AE title; the sender must call it (default CXRSCREENER)")
    p.add_argument("--allow-ae", default="", metavar="A,B",
                   help="calling AE titles allowed to send (default: any)")
    p.add_argument("--out", required=True, metavar="DIR", help="results.csv, spool/, films/ go here")
    add_dicom_results_options(p, send=True)
    p.add_argument("--site", default="", metavar="NAME",
                   help="use this site's calibrated threshold (see `cxr-screener calibrate`); named in every result")
    p.add_argument("--model", help="model bundle name (default: the default bundle)")
    p.add_argument("--operating-point", metavar="NAME", help="decision threshold by name (default: the model's)")
    p.add_argument("--anonymize", action="store_true",
                   help="pseudonymise patient data in the DICOM results")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="decoding processes for a backlog of 16 films or more (default 0: films are decoded "
                        "one by one as they come, which is faster for films arriving over the network)")
    p.add_argument("--operator", help="operator recorded in the audit log (default: $CXR_SCREENER_OPERATOR or login)")
    p.set_defaults(handler=run)


def add_dicom_results_options(p: argparse.ArgumentParser, *, send: bool) -> None:
    """``--dicom-results DIR`` (and ``--send``/``--send-ae``), shared by listen, watch, scan."""
    p.add_argument("--dicom-results", metavar="DIR",
                   help="write a Secondary Capture (heatmap) and a Structured Report per DICOM film here")
    if send:
        p.add_argument("--send", metavar="HOST:PORT", help="C-STORE the DICOM results to this PACS")
        p.add_argument("--send-ae", metavar="AE", help="the PACS's AE title (with --send)")


def send_target(args: argparse.Namespace, command: str) -> object:
    """The SendTarget of ``--send``/``--send-ae`` (None without); ValueError on bad values."""
    from desktop.core.dicomnet.sender import SendTarget

    if not getattr(args, "send", None):
        if getattr(args, "send_ae", None):
            raise ValueError("--send-ae needs --send HOST:PORT")
        return None
    if not args.dicom_results:
        raise ValueError("--send needs --dicom-results DIR (the objects it sends)")
    if not args.send_ae:
        raise ValueError("--send needs --send-ae AE (the PACS's AE title)")
    return SendTarget.parse(args.send, args.send_ae, calling_ae=getattr(args, "ae_title", None) or "CXRSCREENER")


def run(args: argparse.Namespace) -> int:
    import signal
    import sys
    import threading
    from pathlib import Path

    from desktop.core.audit import AuditLog
    from desktop.core.commands._model import load_model
    from desktop.core.dicomnet.listener import Listener, ListenerConfig, ListenerEvent

    try:
        target = send_target(args, "listen")
        config = ListenerConfig(
            out_dir=Path(args.out),
            port=args.port,
            host=args.host,
            ae_title=args.ae_title,
            allowed_aes=tuple(a.strip() for a in args.allow_ae.split(",") if a.strip()),
            dicom_results=Path(args.dicom_results) if args.dicom_results else None,
            send=target,  # type: ignore[arg-type]
            site=args.site or None,
            anonymize=args.anonymize,
            workers=args.workers,
        )
        config.check()
    except ValueError as exc:
        _err(f"cxr-screener listen: {exc}")
        return 2
    loaded = load_model(args.model, args.operating_point)  # exit 2 on an unknown model, before binding
    from desktop.core.site import resolve

    resolve(args.site or None, loaded.bundle)  # a missing, edited or foreign site profile: exit 2, before binding
    audit = AuditLog(operator=args.operator)

    def show(event: ListenerEvent) -> None:
        if event.kind in ("received", "result", "refused", "error", "sent", "duplicate"):
            _err(event.message)

    listener = Listener(config, lambda: loaded, on_event=show, audit=audit)
    try:
        listener.start()
    except OSError as exc:
        _err(f"cxr-screener listen: cannot listen on {config.host}:{config.port} ({exc.strerror or exc})")
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    _err(f"Listening on {config.host}:{listener.port} as {config.ae_title} "
         f"(model {loaded.name} {loaded.version}); results: {listener.results_csv}. Ctrl-C stops.")
    sys.stderr.flush() if sys.stderr is not None else None
    try:
        while not stop.wait(0.5):
            if listener.failure is not None:
                break
    finally:
        listener.stop()
        audit.close()
        for s, h in previous.items():
            signal.signal(s, h)
    st = listener.stats
    _err(f"Stopped: {st.received} film(s) received, {st.screened} screened ({st.errors} failed), "
         f"{st.refused} refused, {st.duplicates} duplicate(s); {len(listener.spool.pending())} left to screen.")
    if listener.failure is not None:
        _err(f"cxr-screener listen: {listener.failure}")
        from desktop.core.errors import OutputError

        return 2 if isinstance(listener.failure, OutputError) and st.screened == 0 else 1
    return 0


def _err(message: str) -> None:
    import sys

    if sys.stderr is not None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

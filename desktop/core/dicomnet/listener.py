"""The DICOM Storage SCP: receive films from a CR/DR unit or a PACS, screen them, return results.

::

    listener = Listener(ListenerConfig(out_dir=Path("received"), port=11112), load)
    listener.start()          # binds 127.0.0.1:11112 (unless host says otherwise)
    ...
    listener.stop()           # within seconds; unscreened films wait in the spool

- **Network** (pynetdicom): Storage SCP for CR, DX (for presentation and for
  processing) and Secondary Capture in the usual transfer syntaxes, plus
  Verification (C-ECHO). Any other SOP class is refused at association
  (presentation context rejected: abstract syntax not supported), or with
  status 0x0122 if it arrives on a context of another class. Calling AE
  titles can be restricted; the called AE title must be ours.
- **Handler**: writes the film atomically to the spool (:mod:`.spool`),
  answers, and wakes the worker. It never screens: C-STORE responses stay
  quick whatever the model costs.
- **Worker** (one thread): runs :func:`.screening.screen_folder` over the
  spool, so rows go to ``DIR/results.csv`` as in ``scan``; then writes the
  DICOM results, sends them (:mod:`.sender`) and moves the film to
  ``DIR/films``. At start it screens whatever a crash left in the spool.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .screening import HEATMAPS_NAME, ResultsMaker, screen_folder
from .sender import Outbox, SendTarget, check_ae_title
from .spool import Spool

log = logging.getLogger(__name__)

DEFAULT_AE_TITLE = "CXRSCREENER"
DEFAULT_HOST = "127.0.0.1"

#: SOP classes the listener stores.
STORAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
#: Transfer syntaxes accepted (all decodable by the app's decoders).
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (8 bit)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (12 bit)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)
#: Films waiting before a pass uses decoding processes (when ``workers`` asks for them): starting
#: a pool of processes costs seconds, more than decoding a few films in the worker thread.
POOL_MIN_FILMS = 16
STATUS_SUCCESS = 0x0000
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class ListenerConfig:
    """Options of ``cxr-screener listen`` (and of the GUI's receiving panel)."""

    out_dir: Path
    port: int
    host: str = DEFAULT_HOST
    ae_title: str = DEFAULT_AE_TITLE
    allowed_aes: tuple[str, ...] = ()
    dicom_results: Path | None = None
    send: SendTarget | None = None
    site: str | None = None
    anonymize: bool = False
    #: decoding processes for a pass of at least POOL_MIN_FILMS films (0: decode in the worker thread)
    workers: int = 0

    def check(self) -> None:
        """ValueError naming the bad option."""
        if not 0 <= int(self.port) < 65536:
            raise ValueError(f"--port must be 0 to 65535. Received: {self.port!r}")
        check_ae_title(self.ae_title)
        for ae in self.allowed_aes:
            check_ae_title(ae, "--allow-ae")


@dataclass(frozen=True)
class ListenerEvent:
    """What the listener tells a watcher (the CLI log, the GUI panel)."""

    kind: str  # "received" | "duplicate" | "refused" | "result" | "sent" | "error" | "stopped"
    message: str
    result: Any = None


@dataclass
class ListenerStats:
    received: int = 0
    duplicates: int = 0
    refused: int = 0
    screened: int = 0
    errors: int = 0
    results_written: int = 0
    last_results: deque[Any] = field(default_factory=lambda: deque(maxlen=20))


class Listener:
    """A Storage SCP with a screening worker (see the module docstring).

    ``load_model``: called once, in the worker thread, to get the
    :class:`~desktop.core.commands._model.LoadedModel` (so a GUI never waits
    for it). ``on_event``: called from the network and worker threads.
    """

    def __init__(
        self,
        config: ListenerConfig,
        load_model: Callable[[], Any],
        *,
        on_event: Callable[[ListenerEvent], None] | None = None,
        audit: Any = None,
    ) -> None:
        from desktop.core.batch import RESULTS_NAME, CancelToken, mark_output_folder

        config.check()
        self.config = config
        self._load_model = load_model
        self._on_event = on_event
        self.audit = audit
        self.stats = ListenerStats()
        self.spool = Spool(config.out_dir)
        mark_output_folder(config.out_dir)
        self.results_csv = Path(config.out_dir) / RESULTS_NAME
        self.outbox = Outbox(config.out_dir, config.send) if config.send is not None else None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cancel = CancelToken()
        self._server: Any = None
        self._worker: threading.Thread | None = None
        self.loaded: Any = None
        self.failure: BaseException | None = None
        self.port = config.port

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Bind the port and start the worker. OSError if the port cannot be bound."""
        from pynetdicom import AE, evt

        ae = AE(ae_title=self.config.ae_title)
        ae.require_called_aet = True
        if self.config.allowed_aes:
            ae.require_calling_aet = list(self.config.allowed_aes)
        for sop in STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop, list(TRANSFER_SYNTAXES))
        ae.add_supported_context(VERIFICATION_SOP_CLASS)
        ae.maximum_pdu_size = 0  # no limit: fewer PDUs for large films
        ae.network_timeout = 60
        handlers: list[Any] = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected),
                    (evt.EVT_ACCEPTED, self._on_accepted)]
        self._server = ae.start_server((self.config.host, int(self.config.port)), block=False,
                                       evt_handlers=handlers)
        self.port = int(self._server.server_address[1])
        self._worker = threading.Thread(target=self._work, name="cxr-listener-worker", daemon=True)
        self._worker.start()
        self._wake.set()  # screen what a previous run left in the spool
        log.info("listening on %s:%d as %s", self.config.host, self.port, self.config.ae_title)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop receiving and screening; films not yet screened stay in the spool."""
        self._stop.set()
        self._cancel.cancel()
        self._wake.set()
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
            self._server = None
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():
                log.warning("the screening worker did not stop within %.0f s", timeout)
        self._emit("stopped", "listener stopped")

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.is_alive() and not self._stop.is_set()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until the spool is empty (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.spool.pending() and not self._wake.is_set() and not self._busy:
                return True
            time.sleep(0.05)
        return False

    _busy = False

    # -- network thread ------------------------------------------------------

    def _on_accepted(self, event: Any) -> None:
        log.debug("association accepted from %s", getattr(event.assoc.requestor, "ae_title", "?"))

    def _on_rejected(self, event: Any) -> None:
        self.stats.refused += 1
        self._emit("refused", f"association refused from {getattr(event.assoc.requestor, 'address', '?')}")

    def _on_store(self, event: Any) -> int:
        from desktop.core.errors import OutputError

        request = event.request
        sop_class = str(request.AffectedSOPClassUID)
        uid = str(request.AffectedSOPInstanceUID)
        if sop_class not in STORAGE_SOP_CLASSES:
            self.stats.refused += 1
            self._emit("refused", f"SOP class {sop_class} refused (not a radiograph storage class)")
            return STATUS_SOP_CLASS_NOT_SUPPORTED
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # pynetdicom raises several kinds on a malformed data set
            log.error("film %s could not be read from the association (%s)", uid, exc)
            return STATUS_CANNOT_UNDERSTAND
        try:
            path = self.spool.store(uid, data)
        except OutputError as exc:
            self._emit("error", str(exc))
            return STATUS_OUT_OF_RESOURCES
        if path is None:
            self.stats.duplicates += 1
            self._emit("duplicate", f"{uid}: received before, not stored again")
            return STATUS_SUCCESS
        self.stats.received += 1
        self._emit("received", f"received {path.name}")
        self._wake.set()
        return STATUS_SUCCESS

    # -- worker thread -------------------------------------------------------

    def _work(self) -> None:
        try:
            self.loaded = self._load_model()
            heatmaps = Path(self.config.out_dir) / HEATMAPS_NAME
            maker = None
            if self.config.dicom_results is not None:
                maker = ResultsMaker(Path(self.config.dicom_results), self.loaded, heatmaps,
                                     anonymize=self.config.anonymize, site=self.config.site,
                                     outbox=self.outbox)
            while not self._stop.is_set():
                if not self._wake.wait(1.0):
                    continue
                self._wake.clear()
                if self._stop.is_set():
                    break
                self._busy = True
                try:
                    self._pass(maker, heatmaps if maker is not None else None)
                finally:
                    self._busy = False
        except BaseException as exc:  # the CLI reports it; the network side stops too
            self.failure = exc
            log.error("screening stopped: %s", exc)
            self._emit("error", f"screening stopped: {exc}")
            self._stop.set()

    def _pass(self, maker: ResultsMaker | None, heatmaps: Path | None) -> None:
        pending = self.spool.pending()
        if pending:
            workers = self.config.workers if self.config.workers and len(pending) >= POOL_MIN_FILMS else 0
            t0 = time.monotonic()
            log.info("pass over %d film(s), %s decoding processes", len(pending), workers)
            for result in screen_folder(self.spool.dir, self.loaded, results_csv=self.results_csv,
                                        heatmap_dir=heatmaps, cancel=self._cancel, workers=workers,
                                        audit=self.audit, site=self.config.site):
                self._finish(result, maker)
            log.info("pass done in %.2f s", time.monotonic() - t0)
            if not self._stop.is_set():
                self._sweep(maker)
        if self.outbox is not None and not self._stop.is_set():
            before = self.outbox.sent
            self.outbox.flush()
            if self.outbox.sent > before:
                self._emit("sent", f"{self.outbox.sent - before} object(s) sent to {self.outbox.target.ae_title}")

    def _finish(self, result: Any, maker: ResultsMaker | None, film: Path | None = None) -> None:
        film = film or Path(result.path)
        if maker is not None and result.ok and maker.make(result, film) is not None:
            self.stats.results_written += 1
        self.spool.archive(film)
        self.stats.screened += 1
        if not result.ok:
            self.stats.errors += 1
        self.stats.last_results.append(result)
        self._emit("result", _describe(result), result)

    def _sweep(self, maker: ResultsMaker | None) -> None:
        """Films left in the spool whose row is already written (a crash between row and move)."""
        left = self.spool.pending()
        if not left:
            return
        from desktop.core.batch import read_results

        rows = {r.relpath: r for r in read_results(self.results_csv, folder=self.spool.dir)}
        for film in left:
            row = rows.get(film.name)
            if row is None:
                continue  # cancelled before its turn, or arrived during the pass: next pass
            if maker is not None and row.ok:
                from .results import read_film

                with contextlib.suppress(Exception):
                    if maker.exists(film, str(read_film(film).SOPInstanceUID)):
                        self.spool.archive(film)
                        continue
            self._finish(row, maker, film)

    def _emit(self, kind: str, message: str, result: Any = None) -> None:
        if kind in ("refused", "error"):
            log.warning("%s", message)
        if self._on_event is not None:
            try:
                self._on_event(ListenerEvent(kind, message, result))
            except Exception:
                log.exception("listener event callback failed")


def _describe(result: Any) -> str:
    name = getattr(result, "relpath", "") or Path(result.path).name
    if result.ok:
        return f"{name}: {result.label} (p={result.p_covid:.3f})"
    return f"{name}: error: {result.error}"


__all__ = [
    "DEFAULT_AE_TITLE",
    "DEFAULT_HOST",
    "STORAGE_SOP_CLASSES",
    "TRANSFER_SYNTAXES",
    "Listener",
    "ListenerConfig",
    "ListenerEvent",
    "ListenerStats",
]

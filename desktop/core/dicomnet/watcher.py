"""Watched folder: screen each new film dropped into a folder, once it is completely written.

For clinics without DICOM networking: the CR/DR console (or a person) saves
films into a folder; ``cxr-screener watch DIR --out OUT`` screens each one
into ``OUT/results.csv`` as ``scan`` does.

- **Complete files only**: a file is screened once its size and
  modification time have not changed for ``settle`` seconds (a console that
  copies a film over the network writes it for a while). Files still changing
  are left out of the pass and looked at again shortly after.
- **Once**: every pass is a resumed scan of the folder through
  :func:`.screening.screen_folder`, so a film already in ``results.csv``
  (same path and sha256) is never screened again, across restarts too; a film
  replaced by a different file is screened again (the later row wins). Files
  seen unchanged since this process recorded them are not even re-read.
- **Events**: watchdog tells when something changes; a pass also runs every
  ``rescan`` seconds, for network shares that send no events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .listener import ListenerEvent, ListenerStats
from .screening import HEATMAPS_NAME, ResultsMaker, screen_folder
from .sender import Outbox, SendTarget

log = logging.getLogger(__name__)

DEFAULT_SETTLE_S = 2.0
DEFAULT_RESCAN_S = 30.0


@dataclass(frozen=True)
class WatchConfig:
    folder: Path
    out_dir: Path
    dicom_results: Path | None = None
    send: SendTarget | None = None
    site: str | None = None
    anonymize: bool = False
    settle_s: float = DEFAULT_SETTLE_S
    rescan_s: float = DEFAULT_RESCAN_S
    workers: int | None = None


class FolderWatcher:
    """Watches ``config.folder`` and screens what settles (see the module docstring)."""

    def __init__(
        self,
        config: WatchConfig,
        load_model: Callable[[], Any],
        *,
        on_event: Callable[[ListenerEvent], None] | None = None,
        audit: Any = None,
    ) -> None:
        from desktop.core.batch import RESULTS_NAME, CancelToken, mark_output_folder
        from desktop.core.errors import CXRError, OutputError

        if not Path(config.folder).is_dir():
            raise CXRError(config.folder, "is not a folder" if Path(config.folder).exists() else "folder not found")
        if config.settle_s < 0:
            raise ValueError(f"--settle must be 0 or more. Received: {config.settle_s!r}")
        self.config = config
        try:
            Path(config.out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(config.out_dir, f"cannot create the folder ({exc.strerror or exc})") from exc
        mark_output_folder(config.out_dir)
        self.results_csv = Path(config.out_dir) / RESULTS_NAME
        self.heatmaps = Path(config.out_dir) / HEATMAPS_NAME
        self.outbox = Outbox(config.out_dir, config.send) if config.send is not None else None
        self._load_model = load_model
        self._on_event = on_event
        self.audit = audit
        self.stats = ListenerStats()
        self.loaded: Any = None
        self.failure: BaseException | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cancel = CancelToken()
        self._seen: dict[str, tuple[int, int]] = {}  # relpath -> (size, mtime_ns) when last recorded
        self._observer: Any = None
        self._worker: threading.Thread | None = None
        self._idle = threading.Event()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        wake = self._wake

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if not event.is_directory or event.event_type in ("created", "moved"):
                    wake.set()

        self._observer = Observer()
        self._observer.schedule(_Handler(), str(self.config.folder), recursive=True)
        self._observer.daemon = True
        self._observer.start()
        self._worker = threading.Thread(target=self._work, name="cxr-watch-worker", daemon=True)
        self._worker.start()
        self._wake.set()  # what is already there (and what a previous run left)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._cancel.cancel()
        self._wake.set()
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(timeout)
        if self._worker is not None:
            self._worker.join(timeout)
        self._emit("stopped", "watch stopped")

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until a pass finds nothing left to screen (tests)."""
        return self._idle.wait(timeout)

    # -- worker ------------------------------------------------------------

    def _work(self) -> None:
        try:
            self.loaded = self._load_model()
            maker = None
            if self.config.dicom_results is not None:
                maker = ResultsMaker(Path(self.config.dicom_results), self.loaded, self.heatmaps,
                                     anonymize=self.config.anonymize, site=self.config.site,
                                     outbox=self.outbox)
            delay = 0.0
            while not self._stop.is_set():
                self._wake.wait(delay if delay > 0 else self.config.rescan_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                unsettled = self._pass(maker)
                delay = min(self.config.rescan_s, max(0.2, self.config.settle_s / 2)) if unsettled else 0.0
                if not unsettled:
                    self._idle.set()
        except BaseException as exc:
            self.failure = exc
            log.error("watch stopped: %s", exc)
            self._emit("error", f"watch stopped: {exc}")
            self._stop.set()

    def _candidates(self) -> tuple[list[str], list[str], dict[str, tuple[int, int]]]:
        """(paths to leave out: unsettled, paths to leave out: done, current keys of the rest)."""
        root = Path(self.config.folder)
        skip_dirs = {os.path.realpath(p) for p in (self.config.out_dir, self.config.dicom_results) if p}
        now = time.time()
        unsettled: list[str] = []
        done: list[str] = []
        keys: dict[str, tuple[int, int]] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")
                           and os.path.realpath(os.path.join(dirpath, d)) not in skip_dirs]
            for name in filenames:
                if name.startswith("."):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                rel = Path(full).relative_to(root).as_posix()
                key = (st.st_size, st.st_mtime_ns)
                if now - st.st_mtime < self.config.settle_s:
                    unsettled.append(full)
                elif self._seen.get(rel) == key:
                    done.append(full)
                else:
                    keys[rel] = key
        return unsettled, done, keys

    def _own_dirs(self) -> list[Path]:
        """Our outputs, never screened even when inside the watched folder."""
        return [Path(p) for p in (self.config.out_dir, self.config.dicom_results) if p is not None]

    def _pass(self, maker: ResultsMaker | None) -> int:
        unsettled, done, keys = self._candidates()
        if keys:
            self._idle.clear()
            for result in screen_folder(self.config.folder, self.loaded, results_csv=self.results_csv,
                                        heatmap_dir=self.heatmaps if maker is not None else None,
                                        exclude=[*unsettled, *done, *self._own_dirs()], cancel=self._cancel,
                                        workers=0 if len(keys) <= 2 else self.config.workers,
                                        audit=self.audit, site=self.config.site):
                if maker is not None and result.ok and maker.make(result) is not None:
                    self.stats.results_written += 1
                self.stats.screened += 1
                self.stats.errors += 0 if result.ok else 1
                self.stats.last_results.append(result)
                self._emit("result", _describe(result), result)
            if not self._cancel.cancelled:
                self._seen.update(keys)  # screened now, or found already in results.csv
        if self.outbox is not None and not self._stop.is_set():
            self.outbox.flush()
        return len(unsettled)

    def _emit(self, kind: str, message: str, result: Any = None) -> None:
        if self._on_event is not None:
            try:
                self._on_event(ListenerEvent(kind, message, result))
            except Exception:
                log.exception("watch event callback failed")


def _describe(result: Any) -> str:
    name = getattr(result, "relpath", "") or Path(result.path).name
    if result.ok:
        return f"{name}: {result.label} (p={result.p_covid:.3f})"
    return f"{name}: error: {result.error}"


__all__ = ["DEFAULT_RESCAN_S", "DEFAULT_SETTLE_S", "FolderWatcher", "WatchConfig"]

"""Run long work off the GUI thread: a small superqt-style worker on a QThreadPool.

A worker wraps a plain function or a generator function from the core (the
same generator the CLI and the tests iterate). Each ``yield`` becomes a
``yielded`` signal; ``quit()`` asks a generator to stop between items (the
generator is closed, so its ``finally`` blocks run); the return value comes
back through ``returned`` and any exception through ``errored``. Signals are
emitted from the pool thread and delivered, queued, in the GUI thread.

    worker = create_worker(scan_folder, folder, _start=False)
    worker.signals.yielded.connect(table.add_row)
    worker.signals.errored.connect(error_handler.handle)
    worker.start()
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

#: Pass this as an argument of the work function: the worker replaces it with its
#: thread-safe :meth:`QtWorker.report_progress` (the core's ``progress`` callback).
REPORT_PROGRESS = object()

#: Workers currently queued or running; holds a reference so none is garbage-collected mid-run.
_ACTIVE: set[QtWorker] = set()
_ACTIVE_LOCK = threading.Lock()


class QtWorkerSignals(QObject):
    """The signals of one worker (a QRunnable cannot carry signals itself)."""

    started = Signal()
    yielded = Signal(object)
    progress = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    aborted = Signal()
    finished = Signal()


class QtWorker(QRunnable):
    """Runs ``func(*args, **kwargs)`` in the pool; generators are iterated item by item.

    ``progress`` is emitted by calling :meth:`report_progress` from inside the
    work (pass ``worker.report_progress`` as the core's progress callback).
    """

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.signals = QtWorkerSignals()
        self._func = func
        self._args = tuple(self.report_progress if a is REPORT_PROGRESS else a for a in args)
        self._kwargs = {k: self.report_progress if v is REPORT_PROGRESS else v for k, v in kwargs.items()}
        self._abort = threading.Event()
        self._done = threading.Event()
        self.name = getattr(func, "__name__", "worker")

    # --- control (GUI thread) -------------------------------------------------
    def start(self, pool: QThreadPool | None = None) -> QtWorker:
        with _ACTIVE_LOCK:
            _ACTIVE.add(self)
        self.signals.finished.connect(self._forget)
        (pool or default_pool()).start(self)
        return self

    def quit(self) -> None:
        """Ask the work to stop: a generator stops before its next item."""
        self._abort.set()

    @property
    def abort_requested(self) -> bool:
        return self._abort.is_set()

    @property
    def is_done(self) -> bool:
        return self._done.is_set()

    def report_progress(self, *values: Any) -> None:
        """Thread-safe: emit ``progress`` with ``values`` (a tuple, or the single value)."""
        self.signals.progress.emit(values[0] if len(values) == 1 else values)

    def _forget(self) -> None:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self)

    # --- the pool thread ------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except RuntimeError as exc:  # the receiver side is gone (application quitting)
            log.debug("worker %s: %s", self.name, exc)
        finally:
            self._done.set()

    def _run(self) -> None:
        signals = self.signals
        try:
            signals.started.emit()
            result = self._func(*self._args, **self._kwargs)
            if inspect.isgenerator(result):
                self._iterate(result)
            else:
                signals.returned.emit(result)
        except Exception as exc:  # every error goes to the one handler in the GUI
            log.debug("worker %s failed", self.name, exc_info=True)
            signals.errored.emit(exc)
        finally:
            self._done.set()
            signals.finished.emit()

    def _iterate(self, gen: Any) -> None:
        while True:
            if self._abort.is_set():
                gen.close()
                self.signals.aborted.emit()
                return
            try:
                value = next(gen)
            except StopIteration as stop:
                self.signals.returned.emit(stop.value)
                return
            self.signals.yielded.emit(value)


#: At least this many pool threads: a folder scan, an image analysis and a report preview
#: must be able to run at once even on a 2-core PC (each waits on I/O or ONNX Runtime).
MIN_THREADS = 4


def default_pool() -> QThreadPool:
    pool = QThreadPool.globalInstance()
    if pool.maxThreadCount() < MIN_THREADS:
        pool.setMaxThreadCount(MIN_THREADS)
    return pool


def create_worker(
    func: Callable[..., Any],
    *args: Any,
    _start: bool = True,
    _pool: QThreadPool | None = None,
    **kwargs: Any,
) -> QtWorker:
    """A :class:`QtWorker` for ``func(*args, **kwargs)``, started unless ``_start=False``."""
    worker = QtWorker(func, *args, **kwargs)
    if _start:
        worker.start(_pool)
    return worker


def active_workers() -> list[QtWorker]:
    with _ACTIVE_LOCK:
        return list(_ACTIVE)


def quit_all(wait_ms: int = 0) -> bool:
    """Ask every running worker to stop (at application exit); wait up to ``wait_ms`` for them."""
    for worker in active_workers():
        worker.quit()
    if wait_ms > 0:
        return bool(default_pool().waitForDone(wait_ms))
    return True


__all__ = [
    "REPORT_PROGRESS",
    "QtWorker",
    "QtWorkerSignals",
    "active_workers",
    "create_worker",
    "default_pool",
    "quit_all",
]

"""Run long work off the GUI thread with superqt's workers.

A worker wraps a plain function or a generator function from the core (the
same generator the CLI and the tests iterate). superqt gives the signals
(``yielded``, ``returned``, ``errored``, ``aborted``, ``finished``) and the
thread pool; this module adds only what the window needs on top:

- a ``progress`` signal: pass :data:`REPORT_PROGRESS` as an argument and the
  worker puts its thread-safe :meth:`report_progress` there;
- ``quit()`` *closes* the generator before ``aborted`` is emitted, so its
  ``finally`` blocks (a scan's decoding processes, its open results file) have
  run when the GUI hears of it (superqt only stops iterating; the generator
  would be closed at garbage collection);
- an exception of any type, ``RuntimeError`` included, reaches ``errored``
  (superqt turns a generator's ``RuntimeError`` into a warning);
- ``is_done``, and :func:`quit_all` / :func:`active_workers` for closing the window.

    worker = create_worker(scan_folder, folder, _start=False)
    worker.signals.yielded.connect(table.add_row)
    worker.signals.errored.connect(error_handler.handle)
    worker.start()
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QThreadPool, Signal

# superqt reaches Qt through qtpy, which would pick PyQt5/PyQt6 before PySide6 if one is installed:
# the workers must be PySide6 objects like the rest of the window.
os.environ["QT_API"] = "pyside6"

from superqt.utils import FunctionWorker, GeneratorWorker, WorkerBase
from superqt.utils import create_worker as _superqt_create_worker
from superqt.utils._qthreading import GeneratorWorkerSignals

log = logging.getLogger(__name__)

#: Pass this as an argument of the work function: the worker replaces it with its
#: thread-safe :meth:`report_progress` (the core's ``progress`` callback).
REPORT_PROGRESS = object()

#: At least this many pool threads: a folder scan, an image analysis and a report preview
#: must be able to run at once even on a 2-core PC (each waits on I/O or ONNX Runtime).
MIN_THREADS = 4


class QtWorkerSignals(GeneratorWorkerSignals):
    """superqt's generator signals plus ``progress``."""

    progress = Signal(object)


class _Extras:
    """What both worker kinds add to superqt's (mixed in before the superqt class)."""

    _done: threading.Event

    def _substitute(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (
            tuple(self.report_progress if a is REPORT_PROGRESS else a for a in args),
            {k: self.report_progress if v is REPORT_PROGRESS else v for k, v in kwargs.items()},
        )

    def report_progress(self, *values: Any) -> None:
        """Thread-safe: emit ``progress`` with ``values`` (a tuple, or the single value)."""
        signals: Any = getattr(self, "signals")  # noqa: B009  (set by the superqt base class)
        signals.progress.emit(values[0] if len(values) == 1 else values)

    @property
    def is_done(self) -> bool:
        return self._done.is_set()


class QtFunctionWorker(_Extras, FunctionWorker):
    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        args, kwargs = self._substitute(args, kwargs)
        super().__init__(func, *args, **kwargs)
        self.signals = QtWorkerSignals()
        self._done = threading.Event()
        self.name = getattr(func, "__name__", "worker")

    def work(self) -> Any:
        try:
            result = super().work()
            if inspect.isgenerator(result):  # a plain function that returned a generator
                result = _drain(self, result)
            return result
        finally:
            self._done.set()


class QtGeneratorWorker(_Extras, GeneratorWorker):
    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        args, kwargs = self._substitute(args, kwargs)
        super().__init__(func, *args, SignalsClass=QtWorkerSignals, **kwargs)
        self._done = threading.Event()
        self.name = getattr(func, "__name__", "worker")

    def work(self) -> Any:
        # superqt's loop without pause/send (unused here), closing the generator on quit().
        try:
            return _drain(self, self._gen)
        finally:
            self._done.set()


def _drain(worker: Any, gen: Any) -> Any:
    while True:
        if worker.abort_requested:
            gen.close()
            worker.signals.aborted.emit()
            return None
        try:
            value = next(gen)
        except StopIteration as stop:
            return stop.value
        worker.signals.yielded.emit(value)


QtWorker = QtFunctionWorker | QtGeneratorWorker


def default_pool() -> QThreadPool:
    pool = QThreadPool.globalInstance()
    if pool.maxThreadCount() < MIN_THREADS:
        pool.setMaxThreadCount(MIN_THREADS)
    return pool


def create_worker(func: Callable[..., Any], *args: Any, _start: bool = True, **kwargs: Any) -> Any:
    """A superqt worker for ``func(*args, **kwargs)``, started unless ``_start=False``.

    Errors go to the ``errored`` signal only (the window's error handler shows
    them); superqt's default would re-raise them in the GUI thread.
    """
    default_pool()
    cls = QtGeneratorWorker if inspect.isgeneratorfunction(func) else QtFunctionWorker
    return _superqt_create_worker(func, *args, _start_thread=_start, _worker_class=cls, _ignore_errors=True, **kwargs)


def active_workers() -> list[Any]:
    """Workers started and not finished (superqt keeps them referenced until then)."""
    return [w for w in list(WorkerBase._worker_set) if isinstance(w, _Extras)]


def quit_all(wait_ms: int = 0) -> bool:
    """Ask every running worker to stop (at application exit); wait up to ``wait_ms`` for them."""
    for worker in active_workers():
        worker.quit()
    if wait_ms > 0:
        return bool(default_pool().waitForDone(wait_ms))
    return True


__all__ = [
    "REPORT_PROGRESS",
    "QtFunctionWorker",
    "QtGeneratorWorker",
    "QtWorker",
    "QtWorkerSignals",
    "active_workers",
    "create_worker",
    "default_pool",
    "quit_all",
]

"""A Qt-free progress object for long work: done/total, rate, ETA, cancel.

One :class:`Progress` is shared by whoever runs the work (the scan loop calls
:meth:`Progress.start`, :meth:`Progress.advance`) and whoever shows it (the
CLI progress bar, a GUI that polls it or subscribes). It is thread-safe:
the scan may run in a worker thread while the GUI reads :meth:`snapshot`.
Listeners get ``(done, total, rate, eta)``; a failing listener is logged and
never stops the work.

::

    progress = Progress()
    progress.subscribe(bar.update)          # CLI
    for result in scan(folder, predictor, progress=progress): ...
    progress.cancel()                       # from any thread: the scan stops between files
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: ``(done, total, rate files/s, eta s)``
ProgressFn = Callable[[int, int, float, float], None]


class CancelToken:
    """Ask a running scan to stop between files (thread-safe)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class ProgressSnapshot:
    done: int
    total: int
    #: files processed per second in this run (files skipped by resume do not count)
    rate: float
    #: seconds left at that rate (``inf`` while unknown)
    eta: float
    elapsed: float
    cancelled: bool

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


class Progress(CancelToken):
    """done/total/rate/eta of one run of work, with cancel (see the module docstring)."""

    def __init__(self, total: int = 0, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._clock = clock
        self._listeners: list[ProgressFn] = []
        self.total = total
        self.done = 0
        self.processed = 0
        self._t0 = clock()

    def subscribe(self, fn: ProgressFn) -> None:
        """Call ``fn(done, total, rate, eta)`` at start and after each file."""
        self._listeners.append(fn)

    def start(self, total: int) -> None:
        with self._lock:
            self.total, self.done, self.processed, self._t0 = total, 0, 0, self._clock()
        self._notify()

    def advance(self, *, processed: bool = True) -> None:
        """One more file done; ``processed=False`` for one skipped (resume), which does not count in the rate."""
        with self._lock:
            self.done += 1
            self.processed += int(processed)
        self._notify()

    @property
    def elapsed(self) -> float:
        return max(self._clock() - self._t0, 0.0)

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            done, total, processed = self.done, self.total, self.processed
        elapsed = self.elapsed
        rate = processed / max(elapsed, 1e-9) if processed else 0.0
        eta = (total - done) / rate if rate > 0 else math.inf
        return ProgressSnapshot(done, total, rate, eta, elapsed, self.cancelled)

    def _notify(self) -> None:
        if not self._listeners:
            return
        s = self.snapshot()
        for fn in list(self._listeners):
            try:
                fn(s.done, s.total, s.rate, s.eta)
            except Exception:  # a broken display must not stop the work
                log.exception("progress listener failed")


__all__ = ["CancelToken", "Progress", "ProgressFn", "ProgressSnapshot"]

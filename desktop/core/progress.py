"""One Qt-free progress object for long work: done/total, rate, ETA, cancel; watched by CLI and GUI.

The work either drives it (the scan pipeline calls :meth:`Progress.start` and
:meth:`Progress.advance`) or reports figures it computed itself
(``progress(done, total, rate, eta)``: a :class:`Progress` is such a callback
too). Whoever shows it reads :meth:`Progress.snapshot` when it redraws (the
terminal bar in ``cxr-screener scan``, the Folder scan tab's bar on a GUI
timer; :attr:`Progress.version` says whether anything changed) or subscribes
with :meth:`Progress.subscribe`; both word it the same way through
:func:`describe` and :func:`format_eta`. It is thread-safe: the scan may run
in a worker thread while the GUI reads it; a failing listener is logged and
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
    """The figures at one moment."""

    done: int = 0
    total: int = 0
    #: files processed per second in this run (files skipped by resume do not count)
    rate: float = 0.0
    #: seconds left at that rate (``inf`` while unknown)
    eta: float = math.inf
    elapsed: float = 0.0
    cancelled: bool = False
    #: True once the work has reported at least once (before: "Listing the files...").
    started: bool = False

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.started and self.done >= self.total


#: The name the GUI and the CLI bar use for a snapshot.
ProgressState = ProgressSnapshot


class Progress(CancelToken):
    """done/total/rate/eta of one run of work, with cancel (see the module docstring)."""

    def __init__(self, total: int = 0, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._clock = clock
        self._listeners: list[ProgressFn] = []
        self._init(total)

    def _init(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.processed = 0
        self.started = False
        self._reported: tuple[float, float] | None = None  # (rate, eta) given by the work itself
        self._t0 = self._clock()
        self.version = getattr(self, "version", -1) + 1

    # -- the work drives it ---------------------------------------------------
    def subscribe(self, fn: ProgressFn) -> None:
        """Call ``fn(done, total, rate, eta)`` at start and after each file."""
        self._listeners.append(fn)

    def start(self, total: int) -> None:
        with self._lock:
            self.total, self.done, self.processed, self._t0 = total, 0, 0, self._clock()
            self.started, self._reported = True, None
            self.version += 1
        self._notify()

    def advance(self, *, processed: bool = True) -> None:
        """One more file done; ``processed=False`` for one skipped (resume), which does not count in the rate."""
        with self._lock:
            self.done += 1
            self.processed += int(processed)
            self.started, self._reported = True, None
            self.version += 1
        self._notify()

    # -- or reports its own figures -------------------------------------------
    def update(self, done: int, total: int, rate: float, eta: float) -> None:
        """The work's own figures (a generator that computes its rate itself)."""
        with self._lock:
            self.done, self.total = int(done), int(total)
            self.started, self._reported = True, (float(rate), float(eta))
            self.version += 1
        self._notify()

    __call__ = update

    def reset(self) -> None:
        """Back to "nothing reported yet" (a new run in the same widget); listeners stay."""
        with self._lock:
            self._init(0)

    # -- whoever shows it -----------------------------------------------------
    @property
    def elapsed(self) -> float:
        return max(self._clock() - self._t0, 0.0)

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            done, total, processed, started, reported = (self.done, self.total, self.processed, self.started,
                                                         self._reported)
        elapsed = self.elapsed
        if reported is not None:
            rate, eta = reported
        else:
            rate = processed / max(elapsed, 1e-9) if processed else 0.0
            eta = (total - done) / rate if rate > 0 else math.inf
        return ProgressSnapshot(done, total, rate, eta, elapsed, self.cancelled, started)

    def _notify(self) -> None:
        if not self._listeners:
            return
        s = self.snapshot()
        for fn in list(self._listeners):
            try:
                fn(s.done, s.total, s.rate, s.eta)
            except Exception:  # a broken display must not stop the work
                log.exception("progress listener failed")


def format_eta(seconds: float) -> str:
    """``about 2 min 05 s left`` (or ``estimating...`` before the rate is known)."""
    if not math.isfinite(seconds):
        return "estimating..."
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"about {seconds} s left"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"about {minutes} min {sec:02d} s left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min left"


def format_clock(seconds: float) -> str:
    """``1:02:03`` or ``2:03`` (the terminal bar's ETA)."""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe(state: ProgressSnapshot) -> str:
    """``Checked 12 of 40 files - 3.1 images/s - about 9 s left``."""
    if not state.started:
        return "Listing the files..."
    rate_text = f"{state.rate:.1f} images/s" if state.rate > 0 else "starting..."
    return f"Checked {state.done} of {state.total} files - {rate_text} - {format_eta(state.eta)}"


__all__ = ["CancelToken", "Progress", "ProgressFn", "ProgressSnapshot", "ProgressState", "describe",
           "format_clock", "format_eta"]

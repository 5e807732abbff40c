"""One progress state for long work, watched by the CLI's bar and the GUI's bar alike.

The core's generators (:func:`desktop.core.batch.scan`) report
``progress(done, total, rate, eta)``; :class:`Progress` is that callback. It
only records the latest figures (thread-safe, cheap: the scan calls it once
per file), and whoever shows them reads :meth:`Progress.snapshot` when it
redraws: the terminal bar in ``cxr-screener scan`` and the Folder scan tab's
bar (a timer in the GUI thread) word it the same way, through
:func:`describe` and :func:`format_eta`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressState:
    """The figures at one moment: ``done`` of ``total`` files, ``rate`` files/s, ``eta`` seconds."""

    done: int = 0
    total: int = 0
    rate: float = 0.0
    eta: float = math.inf
    #: True once the work has reported at least once (before: "Listing the files...").
    started: bool = False

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.started and self.done >= self.total


class Progress:
    """The latest progress of one piece of work; pass the instance as the core's ``progress`` callback.

    A version counter lets a watcher redraw only when something changed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = ProgressState()
        self.version = 0

    def __call__(self, done: int, total: int, rate: float, eta: float) -> None:
        self.update(done, total, rate, eta)

    def update(self, done: int, total: int, rate: float, eta: float) -> None:
        with self._lock:
            self._state = ProgressState(int(done), int(total), float(rate), float(eta), True)
            self.version += 1

    def reset(self) -> None:
        with self._lock:
            self._state = ProgressState()
            self.version += 1

    def snapshot(self) -> ProgressState:
        with self._lock:
            return self._state


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


def describe(state: ProgressState) -> str:
    """``Checked 12 of 40 files - 3.1 images/s - about 9 s left``."""
    if not state.started:
        return "Listing the files..."
    rate_text = f"{state.rate:.1f} images/s" if state.rate > 0 else "starting..."
    return f"Checked {state.done} of {state.total} files - {rate_text} - {format_eta(state.eta)}"


__all__ = ["Progress", "ProgressState", "describe", "format_clock", "format_eta"]

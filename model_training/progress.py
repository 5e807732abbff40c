"""A small text progress bar with rate, ETA and metrics (stderr, no dependencies)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``Progress(total, "epoch 3")``; ``update(n, loss=0.1)``; ``close()``."""

    def __init__(self, total: int, label: str = "", *, enabled: bool = True,
                 stream: TextIO | None = None, width: int = 24) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0
        self.metrics: dict[str, float] = {}

    def update(self, n: int = 1, **metrics: float) -> None:
        self.done = min(self.total, self.done + n)
        self.metrics.update(metrics)
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.2 or self.done == self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self.start
        frac = self.done / self.total
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        filled = int(self.width * frac)
        bar = "#" * filled + "." * (self.width - filled)
        mets = " ".join(f"{k}={v:.4f}" for k, v in self.metrics.items())
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} "
                          f"{elapsed:5.0f}s eta {eta:4.0f}s {mets}   ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

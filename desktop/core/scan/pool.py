"""The decode pool: worker processes with a per-file timeout and crash recovery.

Hand-written on :mod:`multiprocessing` (spawn) because the scan needs, per
file, a hard timeout that kills a decoder stuck in C code and the replacement
of a worker that crashed (a segfault in a codec), with the other files
queued on that worker handed to its replacement. ``concurrent.futures``
gives neither (a crash breaks the whole ProcessPoolExecutor, a timeout
cannot stop the task); ``pebble`` does both but is LGPL, which this project
does not take. Each worker holds at most :attr:`DecodePool.DEPTH` files.

:class:`ThreadPool` is the fallback where processes cannot start (some
frozen or sandboxed builds): same interface, no hard timeout.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from .decode import Decoded, Wants, decode_one

log = logging.getLogger(__name__)

#: ``(path, expected_sha256_or_None, spec, wants) -> Decoded``; module level, so that workers can import it
DecodeFn = Callable[[str, "str | None", Any, Any], Any]


def _worker_main(conn: Connection, spec_dict: dict[str, Any], wants: Wants, decode_fn: DecodeFn) -> None:
    """A decoding worker: receives (task id, path, expected sha256), sends back a Decoded."""
    with contextlib.suppress(Exception):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    with contextlib.suppress(AttributeError, OSError):
        os.nice(5)  # under contention, the GUI and inference come first (POSIX only)
    logging.getLogger().setLevel(logging.WARNING)
    parent = os.getppid()

    def watchdog() -> None:  # die with the parent, even while stuck in a decoder
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    if hasattr(os, "getppid") and os.name == "posix":
        threading.Thread(target=watchdog, daemon=True).start()
    from desktop.core.preprocess import PreprocessSpec

    spec = PreprocessSpec.from_dict(spec_dict)
    import desktop.core.imaging  # (pay the import before the first task's clock)

    # a decoder bomb that slips past the pixel limits fails this worker's file, not the machine (POSIX)
    desktop.core.imaging.set_memory_ceiling()

    try:
        conn.send("ready")
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        task_id, path, expected = msg
        result = decode_fn(path, expected, spec, wants)
        try:
            conn.send((task_id, result))
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    #: queued (task id, path, expected sha256); the head is being decoded
    tasks: deque[tuple[int, str, str | None]] = field(default_factory=deque)
    started: float = 0.0  # when the head task started (or the worker was started)
    ready: bool = False  # its start-up "ready" message has arrived


class PoolUnavailable(RuntimeError):
    """Worker processes could not be started here."""


class DecodePool:
    """Worker processes, two files queued each, a per-file timeout; a hung or dead worker is replaced.

    The second queued file lets a worker go on decoding while the main
    process is busy with the model and does not collect results at once.
    """

    DEPTH = 2

    def __init__(self, n: int, spec_dict: dict[str, Any], wants: Wants, timeout: float,
                 start_timeout: float = 60.0, decode_fn: DecodeFn | None = None) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.decode_fn = decode_fn or decode_one
        self.spec_dict = spec_dict
        self.wants = wants
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.workers: list[_Worker] = []
        try:
            self.workers = [self._start() for _ in range(n)]
            for w in self.workers:
                if not w.conn.poll(start_timeout) or w.conn.recv() != "ready":
                    raise PoolUnavailable("a decoding worker did not start")
                w.ready = True
        except (OSError, EOFError, RuntimeError, ValueError) as exc:
            self.close()
            raise PoolUnavailable(str(exc)) from exc

    def _start(self) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(
            target=_worker_main, args=(child, self.spec_dict, self.wants, self.decode_fn), daemon=True, name="cxr-decode"
        )
        proc.start()
        child.close()
        return _Worker(proc, parent, started=time.monotonic())

    def idle(self) -> _Worker | None:
        free = [w for w in self.workers if len(w.tasks) < self.DEPTH]
        return min(free, key=lambda w: len(w.tasks)) if free else None

    def submit(self, worker: _Worker, task_id: int, path: str, expected: str | None) -> None:
        if not worker.tasks and worker.ready:
            worker.started = time.monotonic()
        worker.tasks.append((task_id, path, expected))
        try:
            worker.conn.send((task_id, path, expected))
        except (BrokenPipeError, OSError):
            pass  # noticed as a dead worker by poll()

    def _deadline(self, w: _Worker) -> float:
        return w.started + (self.timeout if w.ready else self.start_timeout + self.timeout)

    def poll(self, timeout: float) -> list[tuple[int, Decoded]]:
        busy = [w for w in self.workers if w.tasks]
        if not busy:
            return []
        nearest = min(self._deadline(w) for w in busy) - time.monotonic()
        ready = wait([w.conn for w in busy], timeout=max(0.0, min(timeout, nearest)))
        out: list[tuple[int, Decoded]] = []
        for w in busy:
            if w.conn in ready:
                try:
                    while w.tasks and w.conn.poll():
                        got = w.conn.recv()
                        now = time.monotonic()
                        if got == "ready":
                            w.ready, w.started = True, now
                        elif isinstance(got, tuple) and w.tasks and got[0] == w.tasks[0][0]:
                            w.tasks.popleft()
                            out.append((got[0], got[1]))
                            w.started = now
                except (EOFError, OSError):
                    task_id, path, _ = w.tasks.popleft()
                    out.append((task_id, Decoded("error", error=f"{path}: the decoder crashed on this file",
                                                  error_kind="crash")))
                    self._replace(w)
                    continue
            if w.tasks and time.monotonic() > self._deadline(w):
                task_id, path, _ = w.tasks.popleft()
                out.append((task_id, Decoded("error", error=f"{path}: decoding took longer than {self.timeout:g} s; given up",
                                              error_kind="timeout")))
                self._replace(w)
        return out

    def _replace(self, w: _Worker) -> None:
        """Kill ``w``, start a new worker and hand it the files ``w`` still had queued."""
        self._kill(w)
        fresh = self._start()
        self.workers[self.workers.index(w)] = fresh
        for task_id, path, expected in w.tasks:
            self.submit(fresh, task_id, path, expected)

    @staticmethod
    def _kill(w: _Worker) -> None:
        with contextlib.suppress(Exception):
            w.proc.kill()
        with contextlib.suppress(Exception):
            w.proc.join(2.0)
        with contextlib.suppress(Exception):
            w.conn.close()

    def close(self) -> None:
        for w in self.workers:
            if not w.tasks:
                with contextlib.suppress(Exception):
                    w.conn.send(None)
        deadline = time.monotonic() + 2.0
        for w in self.workers:
            if not w.tasks:
                with contextlib.suppress(Exception):
                    w.proc.join(max(0.0, deadline - time.monotonic()))
            self._kill(w)
        self.workers = []


class ThreadPool:
    """Fallback where processes cannot be started: decoding threads (no hard timeout)."""

    def __init__(self, n: int, spec: Any, wants: Wants, timeout: float, decode_fn: DecodeFn | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.decode_fn = decode_fn or decode_one
        self.executor = ThreadPoolExecutor(max_workers=n, thread_name_prefix="cxr-decode")
        self.n = n
        self.spec = spec
        self.wants = wants
        self.timeout = timeout
        self.running: dict[Any, tuple[int, str, float]] = {}
        self.abandoned = 0

    def idle(self) -> bool | None:
        return True if len(self.running) < self.n else None

    def submit(self, worker: object, task_id: int, path: str, expected: str | None) -> None:
        fut = self.executor.submit(self.decode_fn, path, expected, self.spec, self.wants)
        self.running[fut] = (task_id, path, time.monotonic())

    def poll(self, timeout: float) -> list[tuple[int, Decoded]]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as fwait

        if not self.running:
            return []
        fwait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        out: list[tuple[int, Decoded]] = []
        for fut, (task_id, path, started) in list(self.running.items()):
            if fut.done():
                del self.running[fut]
                out.append((task_id, fut.result()))
            elif time.monotonic() - started > self.timeout:
                del self.running[fut]  # the thread cannot be stopped; its result is dropped
                self.abandoned += 1
                out.append((task_id, Decoded("error", error=f"{path}: decoding took longer than {self.timeout:g} s; given up",
                                              error_kind="timeout")))
        return out

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["DecodeFn", "DecodePool", "PoolUnavailable", "ThreadPool"]

"""One writer per output folder: an exclusive lock file with its owner's pid, host and start time.

``OUTDIR/.cxr-screener.lock`` holds ``{"pid", "host", "started", "what"}``
and is held with an OS lock for as long as the scan runs (``fcntl.flock`` on
POSIX, ``msvcrt.locking`` on Windows), so the kernel releases it when the
owner dies, however it dies. A second scan, ``--resume`` or ``--overwrite``
on the same folder is refused with :class:`OutputError` naming the owner.

A lock file left behind (a killed scan) is stale when its OS lock is free, or,
where the file system has no locks, when its pid is dead on this host: it is
taken over with a warning. A lock file from another host whose OS lock cannot
be checked is never taken over: the message says to delete it if that scan is
no longer running.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from desktop.core.errors import OutputError

log = logging.getLogger(__name__)

LOCK_NAME = ".cxr-screener.lock"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":  # pragma: no cover - Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # type: ignore[attr-defined]
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)  # type: ignore[attr-defined]
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _try_os_lock(fd: int) -> bool | None:
    """True: locked; False: someone else holds it; None: this file system has no locks."""
    try:
        if os.name == "nt":  # pragma: no cover - Windows
            import msvcrt

            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, getattr(errno, "EDEADLOCK", -1)):
            return False
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", -1), errno.EINVAL):
            return None
        raise


def _describe(owner: dict[str, Any]) -> str:
    return (f"process {owner.get('pid', '?')} on {owner.get('host', '?')} "
            f"(started {owner.get('started', '?')}{', ' + str(owner['what']) if owner.get('what') else ''})")


def _read_owner(fd: int) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        owner = json.loads(data.decode("utf-8") or "{}")
        if isinstance(owner, dict):
            return owner
    return {}


class OutputLock:
    """Hold the lock of ``folder`` (a context manager; :meth:`release` is idempotent)."""

    def __init__(self, folder: str | os.PathLike[str], *, what: str = "scan") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = what
        self._fd: int | None = None
        self.took_over: dict[str, Any] | None = None

    def acquire(self) -> OutputLock:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.folder, f"cannot create the output folder ({exc.strerror or exc})") from exc
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
            except OSError as exc:
                raise OutputError(self.path, f"cannot create the lock file ({exc.strerror or exc})") from exc
            try:
                got = _try_os_lock(fd)
                owner = _read_owner(fd)
                if got is False:
                    raise self._refusal(owner)
                if got is None and owner and not self._stale(owner):
                    raise self._refusal(owner)
                # the file may have been removed by its owner meanwhile: lock the one at the path
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            if owner and owner.get("pid"):
                self.took_over = owner
                log.warning("%s: taking over a stale lock left by %s", self.path, _describe(owner))
            self._fd = fd
            self._write_owner()
            return self
        raise OutputError(self.path, "the lock file keeps changing; another scan is starting here")

    def _stale(self, owner: dict[str, Any]) -> bool:
        if owner.get("host") != socket.gethostname():
            return False
        try:
            return not _pid_alive(int(owner.get("pid", 0)))
        except (TypeError, ValueError):
            return True

    def _refusal(self, owner: dict[str, Any]) -> OutputError:
        who = _describe(owner) if owner else "another process"
        hint = ("wait for it to finish, or choose another --out"
                + ("" if owner.get("host") in (None, socket.gethostname())
                   else f"; if that scan is no longer running, delete {self.path}"))
        return OutputError(self.folder, f"is in use by another scan: {who}", hint)

    def _write_owner(self) -> None:
        assert self._fd is not None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "what": self.what}
        data = json.dumps(info).encode("utf-8")
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, data)
            os.fsync(self._fd)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)  # where the file cannot be removed (Windows), it names no owner
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still locked: a waiting process then re-checks the path
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["LOCK_NAME", "OutputLock"]

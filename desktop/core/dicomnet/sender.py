"""C-STORE of the DICOM results to a PACS (``--send HOST:PORT --send-ae AE``), with an outbox.

Each object to send gets a link (or a copy) in ``DIR/outbox/``; it is removed
only once the PACS has answered success. A PACS that is down or refuses an
object leaves it in the outbox, and the next :meth:`Outbox.flush` (the next
film, or the next start) sends it again: nothing is lost across restarts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from desktop.core.errors import CXRError, OutputError

log = logging.getLogger(__name__)

OUTBOX_NAME = "outbox"
DEFAULT_CALLING_AE = "CXRSCREENER"


@dataclass(frozen=True)
class SendTarget:
    """A PACS (or viewer) Storage SCP."""

    host: str
    port: int
    ae_title: str
    calling_ae: str = DEFAULT_CALLING_AE

    @classmethod
    def parse(cls, text: str, ae_title: str, calling_ae: str = DEFAULT_CALLING_AE) -> SendTarget:
        """``HOST:PORT`` -> SendTarget; ValueError naming the bad value."""
        host, sep, port = str(text).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--send must be HOST:PORT. Received: {text!r}")
        check_ae_title(ae_title, "--send-ae")
        return cls(host.strip("[]"), int(port), ae_title, calling_ae)


def check_ae_title(value: str, option: str = "--ae-title") -> str:
    """An AE title: 1-16 characters, no backslash or control characters."""
    text = str(value)
    if not 0 < len(text.strip()) <= 16 or "\\" in text or any(ord(ch) < 32 for ch in text):
        raise ValueError(f"{option} must be 1 to 16 characters without backslash. Received: {value!r}")
    return text.strip()


def send_files(target: SendTarget, paths: Iterable[Path], *, timeout: float = 30.0) -> dict[Path, str | None]:
    """C-STORE ``paths`` in one association; ``{path: None if stored else why not}``."""
    import pydicom
    from pynetdicom import AE

    files = list(paths)
    out: dict[Path, str | None] = {}
    datasets = {}
    for p in files:
        try:
            datasets[p] = pydicom.dcmread(p)
        except Exception as exc:  # a damaged file in the outbox must not block the others
            out[p] = f"unreadable ({type(exc).__name__})"
    if not datasets:
        return out
    ae = AE(ae_title=target.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for ds in datasets.values():
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(target.host, target.port, ae_title=target.ae_title)
    if not assoc.is_established:
        why = f"no association with {target.ae_title}@{target.host}:{target.port}"
        return {**out, **{p: why for p in datasets}}
    try:
        for p, ds in datasets.items():
            try:
                status = assoc.send_c_store(ds)
            except (ValueError, RuntimeError) as exc:
                out[p] = str(exc)
                continue
            code = int(getattr(status, "Status", -1)) if status else -1
            out[p] = None if code == 0 or 0xB000 <= code <= 0xBFFF else (
                f"status 0x{code:04X}" if code >= 0 else "no response")
    finally:
        assoc.release()
    return out


class Outbox:
    """Objects waiting to be sent to ``target`` (see the module docstring)."""

    def __init__(self, out_dir: str | os.PathLike[str], target: SendTarget) -> None:
        self.dir = Path(out_dir) / OUTBOX_NAME
        self.target = target
        self.sent = 0
        self.failed = 0
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.dir, f"cannot create the folder ({exc.strerror or exc})") from exc

    def add(self, paths: Iterable[Path]) -> None:
        for p in paths:
            target = self.dir / p.name
            if target.exists():
                continue
            tmp = self.dir / f".{p.name}.tmp"
            try:
                try:
                    os.link(p, tmp)
                except OSError:
                    shutil.copyfile(p, tmp)
                os.replace(tmp, target)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise OutputError(target, f"cannot queue it for sending ({exc.strerror or exc})") from exc

    def pending(self) -> list[Path]:
        try:
            return sorted(p for p in self.dir.iterdir() if p.is_file() and not p.name.startswith("."))
        except OSError:
            return []

    def flush(self) -> int:
        """Send what is waiting; the number of objects still waiting afterwards."""
        waiting = self.pending()
        if not waiting:
            return 0
        try:
            outcome = send_files(self.target, waiting)
        except (OSError, RuntimeError, ValueError, CXRError) as exc:
            log.warning("sending to %s failed (%s); %d object(s) kept in %s", self.target.ae_title, exc,
                        len(waiting), self.dir)
            return len(waiting)
        left = 0
        for p, why in outcome.items():
            if why is None:
                self.sent += 1
                with contextlib.suppress(OSError):
                    p.unlink()
            else:
                self.failed += 1
                left += 1
                log.warning("%s: not sent to %s (%s); kept in %s", p.name, self.target.ae_title, why, self.dir)
        return left


__all__ = ["OUTBOX_NAME", "Outbox", "SendTarget", "check_ae_title", "send_files"]

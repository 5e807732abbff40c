"""Helpers for the listener tests and benchmark: chest films, a modality (SCU), a PACS (SCP), a CLI process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.batch_support import cli_cmd, cli_env
from tests.dicom_factory import write_chest_dicom

CR = "1.2.840.10008.5.1.4.1.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"
SR_COMPREHENSIVE = "1.2.840.10008.5.1.4.1.1.88.33"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_films(folder: Path, n: int, *, size: int = 192, seed: int = 0) -> list[Path]:
    """``n`` 12-bit MONOCHROME2 CR chest films with patient data, one study per two films."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    studies = [generate_uid() for _ in range((n + 1) // 2)]
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        yy, xx = np.mgrid[0:size, 0:size]
        img = (np.sin(xx / (4 + i % 5)) * 900 + yy * 10 + rng.integers(0, 400, (size, size))).clip(0, 4095)
        out.append(write_chest_dicom(
            folder / f"film_{i:03d}.dcm", img.astype(np.uint16), bits_stored=12,
            PatientName=f"Doe^Jane{i}", PatientID=f"PID{i:04d}", PatientBirthDate="19700101",
            PatientSex="F", StudyDate="20250102", StudyTime="101500", AccessionNumber=f"ACC{i:04d}",
            StudyInstanceUID=studies[i // 2], InstanceNumber=i + 1, ViewPosition="PA",
            StudyID="1", ReferringPhysicianName="Smith^A",
        ))
    return out


def send(port: int, files: Sequence[Path], *, ae_title: str = "CXRSCREENER", calling: str = "MODALITY",
         sop_class: str | None = None) -> list[int | str]:
    """C-STORE ``files`` as a modality would: one association; the status of each (or why not)."""
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(f, stop_before_pixels=sop_class is None) for f in files]
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for ds in datasets:
        klass = sop_class or ds.SOPClassUID
        if len(ae.requested_contexts) < 128 and all(
            c.abstract_syntax != klass or ds.file_meta.TransferSyntaxUID not in c.transfer_syntax
            for c in ae.requested_contexts
        ):
            ae.add_requested_context(klass, [ds.file_meta.TransferSyntaxUID])
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
    if not assoc.is_established:
        return ["no association"] * len(datasets)
    out: list[int | str] = []
    try:
        for f, ds in zip(files, datasets, strict=True):
            if sop_class:
                ds.SOPClassUID = sop_class
                ds.file_meta.MediaStorageSOPClassUID = sop_class
            try:  # a file as it is (encoded once, as a modality's store), or the changed data set
                status = assoc.send_c_store(ds if sop_class else Path(f))
                out.append(int(status.Status) if status else "no response")
            except ValueError as exc:  # no accepted presentation context
                out.append(f"refused: {exc}")
            except Exception as exc:  # the peer went away mid-association
                out.append(f"failed: {type(exc).__name__}")
    finally:
        with contextlib.suppress(Exception):
            assoc.release()
    return out


class Pacs:
    """A local Storage SCP (pynetdicom) that keeps what it receives, in memory."""

    def __init__(self, ae_title: str = "PACS") -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.received: list[Any] = []
        self.ae = AE(ae_title=ae_title)
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.port = free_port()
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return 0

    def close(self) -> None:
        self.server.shutdown()


class ListenProcess:
    """``cxr-screener listen`` in a subprocess; stderr goes to a file the test can read."""

    def __init__(self, out: Path, port: int, *args: str, log_name: str = "listen.log") -> None:
        self.log = out.parent / log_name
        self.fh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cli_cmd("listen", "--port", str(port), "--out", str(out), *args),
            stdout=subprocess.DEVNULL, stderr=self.fh, env=cli_env(), start_new_session=True,
        )
        self.port = port

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_listening(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Listening on" in self.text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"listen exited {self.proc.returncode}: {self.text()}")
            time.sleep(0.1)
        raise AssertionError(f"listen did not start: {self.text()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            self.fh.close()

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the listener and its decoding processes
        self.proc.wait(30)
        self.fh.close()


def rows_of(csv_path: Path) -> list[dict[str, str]]:
    from tests.batch_support import read_csv

    if not csv_path.exists():
        return []
    return read_csv(csv_path)[1]


def wait_rows(csv_path: Path, n: int, timeout: float = 180, proc: ListenProcess | None = None) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    rows: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        rows = rows_of(csv_path)
        if len(rows) >= n:
            return rows
        if proc is not None and not proc.alive():
            raise AssertionError(f"listen died: {proc.text()}")
        time.sleep(0.2)
    raise AssertionError(f"{len(rows)} rows after {timeout} s, expected {n}"
                         + (f"; log: {proc.text()}" if proc else ""))


@contextlib.contextmanager
def pacs() -> Iterator[Pacs]:
    p = Pacs()
    try:
        yield p
    finally:
        p.close()


def in_thread(fn: Any, *args: Any) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t

"""The audit log: JSON lines, append-only, safe across processes, no PHI."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from desktop.core.audit import AuditLog, read_audit_log
from desktop.core.paths import audit_log_path


def _record(log: AuditLog, i: int = 0, **kw):
    return log.record(
        "predict",
        file_sha256=f"{i:064x}",
        file_path=kw.pop("file_path", "/clinic/Doe_Jane_1963/chest.dcm"),
        model="mobilenet",
        model_version="1.0.0",
        model_sha256="ab" * 32,
        operating_point="balanced",
        threshold=0.5,
        result={"status": "ok", "label": "covid", "p_covid": 0.91},
        **kw,
    )


def test_entry_has_the_documented_fields_in_the_user_folder() -> None:
    with AuditLog(operator="nurse-1") as log:
        assert _record(log)
    path = audit_log_path()
    assert path.parent == Path(os.environ["CXR_SCREENER_HOME"])
    (entry,) = read_audit_log()
    for key in ("time", "event", "app_version", "operator", "file_sha256", "model", "model_version",
                "model_sha256", "operating_point", "threshold", "result"):
        assert key in entry, key
    assert entry["operator"] == "nurse-1"
    assert entry["result"] == {"status": "ok", "label": "covid", "p_covid": 0.91}
    assert entry["time"].endswith("Z")


def test_no_path_or_file_name_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXR_SCREENER_AUDIT_FILE_NAMES", raising=False)
    with AuditLog() as log:
        _record(log)
    text = audit_log_path().read_text()
    for leak in ("Doe_Jane", "chest.dcm", "/clinic"):
        assert leak not in text
    assert "file_name" not in read_audit_log()[0]


def test_file_name_only_when_allowed_and_never_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXR_SCREENER_AUDIT_FILE_NAMES", "1")
    with AuditLog() as log:
        _record(log)
    entry = read_audit_log()[0]
    assert entry["file_name"] == "chest.dcm"
    assert "Doe_Jane" not in audit_log_path().read_text()


def test_unknown_keys_are_refused_so_phi_cannot_slip_in() -> None:
    with AuditLog() as log, pytest.raises(ValueError, match="patient_name"):
        _record(log, patient_name="Doe^Jane")
    with AuditLog() as log, pytest.raises(ValueError, match="error"):
        log.record("predict", result={"status": "error", "error": "/clinic/Doe_Jane.dcm: corrupt"})
    assert not audit_log_path().exists()


def test_appends_never_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        _record(log, 1)
    first = path.read_bytes()
    with AuditLog(path) as log:
        _record(log, 2)
    assert path.read_bytes().startswith(first)
    assert [e["file_sha256"][-1] for e in read_audit_log(path)] == ["1", "2"]


def test_torn_last_line_is_ignored_by_readers(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        _record(log, 1)
    with path.open("ab") as fh:
        fh.write(b'{"time": "2026-')  # a crash mid-write
    assert len(read_audit_log(path)) == 1
    with AuditLog(path) as log:  # the next writer still produces parseable lines after it
        _record(log, 2)
    lines = path.read_bytes().split(b"\n")
    assert sum(1 for line in lines if line.startswith(b'{"time":"')) == 2


def test_unwritable_log_is_reported_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    log = AuditLog(blocker / "audit.jsonl")  # parent is a file: cannot be created
    assert _record(log) is False
    assert log.failed
    assert "audit" in log.failed
    log.close()


def _writer(path: str, worker: int, n: int) -> None:
    with AuditLog(path, operator=f"w{worker}") as log:
        for i in range(n):
            _record(log, worker * 10_000 + i)


def _reopening_writer(path: str, worker: int, n: int) -> None:
    """A writer that opens the log for every entry: each open checks for a torn last line."""
    for i in range(n):
        with AuditLog(path, operator=f"w{worker}") as log:
            _record(log, worker * 10_000 + i)


@pytest.mark.parametrize("writer", [_writer, _reopening_writer])
def test_concurrent_appends_from_processes_interleave_whole_lines(tmp_path: Path, writer) -> None:
    """Whole lines, none lost, and no stray blank line: a writer opening the log while another appends must
    not take that half-visible line for one torn by a crash."""
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=writer, args=(str(path), w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    raw = path.read_bytes().splitlines()
    assert len(raw) == 600
    entries = [json.loads(line) for line in raw]  # every line is whole JSON
    assert len({e["file_sha256"] for e in entries}) == 600
    assert os.stat(path).st_mode & 0o077 == 0  # private to the user

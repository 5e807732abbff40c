"""#20: one writer per output folder, --anonymize in every output, long names, FIFOs and devices, CSV guard."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from desktop.core.errors import OutputError
from desktop.core.results import ScanResult
from desktop.core.results_csv import ResultsWriter, read_results
from desktop.core.scan.folder import scan
from desktop.core.scan.lock import LOCK_NAME, OutputLock
from tests.batch_support import bundle_source, make_png, model_name, read_csv, run_cli  # noqa: F401
from tests.test_batch import FakePredictor

# --------------------------------------------------------------------------
# One writer per output folder
# --------------------------------------------------------------------------


def _folder(root: Path, n: int) -> Path:
    for i in range(n):
        make_png(root / f"{i:02d}.png", i)
    return root


def test_second_writer_on_one_folder_is_refused_no_duplicate_rows(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "in", 8)
    out = tmp_path / "out"
    first = scan(folder, FakePredictor(), results_csv=out / "results.csv", workers=0)
    next(first)  # the first scan holds the folder and has written a row
    for kw in ({"resume": True}, {"overwrite": True}):
        with pytest.raises(OutputError, match=f"in use by another scan: process {os.getpid()} on "):
            list(scan(folder, FakePredictor(), results_csv=out / "results.csv", workers=0, **kw))
    rest = list(first)
    assert len(rest) == 7
    _, rows = read_csv(out / "results.csv")
    paths = [r["path"] for r in rows]
    assert sorted(paths) == [f"{i:02d}.png" for i in range(8)]  # 0 duplicated rows, none lost
    assert not (out / LOCK_NAME).exists()  # released
    assert list(scan(folder, FakePredictor(), results_csv=out / "results.csv", workers=0, resume=True)) == []


def test_two_writer_threads_one_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "in", 12)
    out = tmp_path / "out"
    (out).mkdir()
    outcomes: list[str] = []
    gate = threading.Barrier(2)

    def writer() -> None:
        gate.wait()
        try:
            for _ in scan(folder, FakePredictor(delay=0.05), results_csv=out / "results.csv", workers=0,
                          resume=True):
                pass
            outcomes.append("done")
        except OutputError as exc:
            outcomes.append("refused" if "in use by another scan" in str(exc) else f"other: {exc}")

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["done", "refused"]
    _, rows = read_csv(out / "results.csv")
    assert len(rows) == len({r["path"] for r in rows}) == 12


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    folder = _folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                             "started": "2026-01-01T00:00:00+00:00", "what": "scan"}))
    with caplog.at_level(logging.WARNING):
        results = list(scan(folder, FakePredictor(), results_csv=out / "results.csv", workers=0))
    assert len(results) == 2
    assert any("stale lock" in r.getMessage() and str(dead.pid) in r.getMessage() for r in caplog.records)


def test_cli_second_scan_is_refused_naming_the_owner(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder = _folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    with OutputLock(out, what="test holder"):
        run = run_cli("scan", str(folder), "--model", model_name, "--out", str(out), "--workers", "0")
        assert run.returncode == 2, run.stderr
        assert "in use by another scan" in run.stderr
        assert f"process {os.getpid()} on {socket.gethostname()}" in run.stderr
    assert not (out / "results.csv").exists() or read_results(out / "results.csv") == []


# --------------------------------------------------------------------------
# --anonymize: every output
# --------------------------------------------------------------------------

PHI = ("Surname", "Given", "MRN123", "ACC456", "Doe", "MRN777", "MRN999")


def test_anonymize_reaches_csv_heatmaps_audit_and_pdf(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    import numpy as np

    from tests.batch_support import cli_cmd, cli_env
    from tests.dicom_factory import write_chest_dicom
    from tests.report_helpers import pdf_text

    folder = tmp_path / "in"
    sub = folder / "Doe_John_MRN777"
    sub.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_chest_dicom(sub / "Surname_Given_MRN123_ACC456.dcm", rng.integers(0, 4000, (128, 128)).astype(np.uint16))
    make_png(folder / "Surname_Given_MRN123_ACC456.png", 3)
    (folder / "Doe_Jane_MRN999.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # an error row naming it
    out = tmp_path / "out"
    pdf = tmp_path / "report.pdf"
    env = cli_env(CXR_SCREENER_AUDIT_FILE_NAMES="1")  # file names in the audit, unless anonymised
    proc = subprocess.run(cli_cmd("scan", str(folder), "--model", model_name, "--out", str(out), "--heatmaps",
                                  "--report", str(pdf), "--report-pages", "--anonymize", "--workers", "1",
                                  "--no-progress"), capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stderr  # one bad file
    csv_text = (out / "results.csv").read_text(encoding="utf-8")
    heat_names = [str(p.relative_to(out)) for p in (out / "heatmaps").rglob("*")]
    from desktop.core.paths import audit_log_path

    audit = audit_log_path().read_text(encoding="utf-8")
    text = pdf_text(pdf)
    for label, content in (("results.csv", csv_text), ("heatmaps", " ".join(heat_names)), ("audit", audit),
                           ("pdf", text)):
        for secret in PHI:
            assert secret not in content, (label, secret)
    _, rows = read_csv(out / "results.csv")
    assert len(rows) == 3
    assert all(r["path"].split("/")[-1].startswith("ANON-") for r in rows)
    assert len(heat_names) >= 2
    assert any(n.endswith(".heatmap.png") for n in heat_names)
    # resumable: the same pseudonyms, nothing screened twice
    again = subprocess.run(cli_cmd("scan", str(folder), "--model", model_name, "--out", str(out), "--resume",
                                   "--anonymize", "--workers", "0", "--no-progress"),
                           capture_output=True, text=True, timeout=300, env=env)
    assert "3 already done" in again.stderr
    _, rows2 = read_csv(out / "results.csv")
    assert len(rows2) == 3
    # resuming it in the clear would mix names and pseudonyms: refused
    clear = run_cli("scan", str(folder), "--model", model_name, "--out", str(out), "--resume", "--workers", "0")
    assert clear.returncode == 2
    assert "--anonymize" in clear.stderr


# --------------------------------------------------------------------------
# #20 item 7: long names, FIFOs, devices, the CSV guard
# --------------------------------------------------------------------------


def test_long_file_name_with_heatmaps_is_screened_and_resumes(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder = tmp_path / "in"
    long_name = "x" * 240 + ".png"  # + ".heatmap.png" would pass the 255-byte limit
    make_png(folder / long_name, 1)
    make_png(folder / ("y" * 120 + "é" * 60 + ".png"), 2)  # 242 bytes in UTF-8
    out = tmp_path / "out"
    run = run_cli("scan", str(folder), "--model", model_name, "--out", str(out), "--heatmaps", "--workers", "0")
    assert run.returncode == 0, run.stderr
    _, rows = read_csv(out / "results.csv")
    assert {r["status"] for r in rows} == {"ok"}
    assert len(rows) == 2
    heat = sorted((out / "heatmaps").iterdir())
    assert len(heat) == 2
    assert all(len(os.fsencode(p.name)) <= 255 and p.name.endswith(".heatmap.png") for p in heat)
    again = run_cli("scan", str(folder), "--model", model_name, "--out", str(out), "--heatmaps", "--resume",
                    "--workers", "0")
    assert again.returncode == 0, again.stderr
    assert "2 already done" in again.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_predict_on_a_fifo_does_not_hang(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    run = run_cli("predict", "--model", model_name, str(fifo), timeout=120)
    assert time.monotonic() - t0 < 100
    assert run.returncode == 1
    (line,) = run.json_lines()
    assert line["status"] == "error"
    assert "FIFO" in line["error"]
    assert str(fifo) in line["error"]


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_predict_dev_zero_is_refused_without_reading(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    run = run_cli("predict", "--model", model_name, "/dev/zero", timeout=120)
    assert run.returncode == 1
    (line,) = run.json_lines()
    assert line["status"] == "error"
    assert "device" in line["error"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_scan_gives_fifos_an_error_row(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "in", 1)
    os.mkfifo(folder / "pipe.png")
    by = {r.relpath: r for r in scan(folder, FakePredictor(), results_csv=tmp_path / "out" / "results.csv",
                                     workers=1)}
    assert by["00.png"].status == "ok"
    assert by["pipe.png"].status == "error"
    assert by["pipe.png"].error_kind == "not_a_file"
    assert "FIFO" in by["pipe.png"].error


def test_card_version_and_operating_point_names_get_the_formula_guard(tmp_path: Path) -> None:
    target = tmp_path / "results.csv"
    row = ScanResult("a.png", "0" * 64, "ok", "normal", 0.1, "=cmd|' /C calc'!A0", "+1.0", "@SUM(A1)", 0.5,
                     None, None, relpath="a.png")
    with ResultsWriter(target) as writer:
        writer.append(row)
    _, rows = read_csv(target)
    assert rows[0]["model"].startswith("'=")
    assert rows[0]["model_version"] == "'+1.0"
    assert rows[0]["operating_point"] == "'@SUM(A1)"
    (back,) = read_results(target)
    assert (back.model, back.model_version, back.operating_point) == (row.model, row.model_version,
                                                                      row.operating_point)


def test_predict_with_a_broken_model_is_a_usage_error_before_any_line(
    tmp_path: Path, model_name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:
    """The Predictor is built beside the first decode; its failure is still exit 2, not error rows."""
    from desktop.core import cli
    from desktop.core.errors import ModelError
    from desktop.core.inference import Predictor

    def broken(self, *a, **kw):  # type: ignore[no-untyped-def]
        raise ModelError("model.onnx", "ONNX Runtime cannot load the model (test)")

    monkeypatch.setattr(Predictor, "__init__", broken)
    code = cli.main(["predict", "--model", model_name, str(make_png(tmp_path / "x.png", 1))])
    out = capsys.readouterr()
    assert code == 2, out.err
    assert out.out == ""
    assert "cannot load the model" in out.err

"""The command-line contract: predict JSON lines and exit codes, scan, models, selftest."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from desktop.core.audit import read_audit_log
from desktop.core.batch import CSV_COLUMNS
from tests.batch_support import (  # noqa: F401
    bundle_source,
    cli_cmd,
    cli_env,
    make_folder,
    make_png,
    model_name,
    read_csv,
    run_cli,
    sample_images,
)

CONTRACT = {
    "file": str,
    "status": str,
    "label": (str, type(None)),
    "p_covid": (float, type(None)),
    "model": str,
    "model_version": str,
    "operating_point": str,
    "threshold": float,
    "error": (str, type(None)),
    # site calibration and input gate (issue 16)
    "site": (str, type(None)),
    "threshold_basis": str,
    "reject_code": (str, type(None)),
    "reject_reason": (str, type(None)),
    "ood_score": (float, type(None)),
    "ood_flag": (bool, type(None)),
}


@pytest.mark.parametrize("command", ["predict", "scan", "models", "selftest"])
def test_help(command: str) -> None:
    run = run_cli(command, "--help")
    assert run.returncode == 0
    assert f"cxr-screener {command}" in run.stdout


def test_predict_contract_all_ok(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    files = [str(p) for p in sample_images()[:2]] + [str(make_png(tmp_path / "x.png", 3))]
    run = run_cli("predict", "--model", model_name, *files)
    assert run.returncode == 0, run.stderr
    lines = run.json_lines()
    assert [line["file"] for line in lines] == files
    for line in lines:
        assert set(line) == set(CONTRACT)
        for key, types in CONTRACT.items():
            assert isinstance(line[key], types), (key, line[key])
        assert line["status"] == "ok"
        assert line["label"] in ("covid", "normal")
        assert 0.0 <= line["p_covid"] <= 1.0
        assert line["label"] == ("covid" if line["p_covid"] >= line["threshold"] else "normal")
        assert line["model"] == model_name
        assert line["error"] is None
    entries = read_audit_log()
    assert [e["event"] for e in entries] == ["predict"] * 3
    assert all(e["operator"] == "test-operator" for e in entries)
    assert all(len(e["file_sha256"]) == 64 for e in entries)
    assert str(tmp_path) not in json.dumps(entries)  # no paths in the audit log


def test_predict_failed_file_exit_1_others_still_screened(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    good = make_png(tmp_path / "good.png", 1)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    missing = tmp_path / "missing.png"
    run = run_cli("predict", "--model", model_name, str(bad), str(good), str(missing))
    assert run.returncode == 1
    lines = run.json_lines()
    assert [line["status"] for line in lines] == ["error", "ok", "error"]
    for line in (lines[0], lines[2]):
        assert set(line) == set(CONTRACT)
        assert line["label"] is None
        assert line["p_covid"] is None
        assert line["file"] in line["error"]  # the message names the file and the reason
    assert "not found" in lines[2]["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-model"], ("no-such-model", "no model bundle")),
        (["--operating-point", "no-such-point"], ("no-such-point", "operating point")),
    ],
)
def test_predict_usage_errors_exit_2(tmp_path: Path, model_name: str, args: list[str], message: tuple[str, str]) -> None:  # noqa: F811
    if "--model" not in args:
        args = ["--model", model_name, *args]
    run = run_cli("predict", *args, str(make_png(tmp_path / "x.png", 1)))
    assert run.returncode == 2
    for part in message:  # names the bad value and what it is
        assert part in run.stderr
    assert run.stdout == ""


def test_predict_without_files_is_a_usage_error() -> None:
    run = run_cli("predict")
    assert run.returncode == 2
    assert "usage" in run.stderr


def test_predict_heatmaps_never_overwritten_unless_asked(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    from PIL import Image

    img = make_png(tmp_path / "x.png", 1)
    heat = tmp_path / "heat"
    run = run_cli("predict", "--model", model_name, "--heatmap-dir", str(heat), str(img))
    assert run.returncode == 0, run.stderr
    target = heat / "x.png.heatmap.png"
    assert run.json_lines()[0]["heatmap"] == str(target)
    with Image.open(target) as im:
        assert im.mode == "RGB"
    before = target.read_bytes()
    again = run_cli("predict", "--model", model_name, "--heatmap-dir", str(heat), str(img))
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert target.read_bytes() == before
    forced = run_cli("predict", "--model", model_name, "--heatmap-dir", str(heat), "--overwrite", str(img))
    assert forced.returncode == 0


def test_scan_good_and_bad_files(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder = tmp_path / "in"
    good, bad = make_folder(folder, n_good=6)
    run = run_cli("scan", str(folder), "--model", model_name, "--workers", "1")
    assert run.returncode == 1  # some files failed; all were processed
    csv_path = folder / "cxr_results" / "results.csv"
    header, rows = read_csv(csv_path)
    assert tuple(header) == CSV_COLUMNS
    by = {r["path"]: r for r in rows}
    assert sorted(by) == sorted(good + list(bad))
    for rel in good:
        assert by[rel]["status"] == "ok"
        assert by[rel]["model"] == model_name
        assert float(by[rel]["threshold"]) > 0
    for rel, kind in bad.items():
        assert by[rel]["status"] == "error"
        assert by[rel]["error_kind"] == kind
        assert by[rel]["error"]
    assert f"{len(good)} screened" in run.stderr
    assert f"{len(bad)} failed" in run.stderr
    assert str(csv_path) in run.stderr
    assert len([e for e in read_audit_log() if e["event"] == "scan"]) == len(good) + len(bad)
    # Resuming the finished scan: nothing left to do, but its results still hold the failed files.
    again = run_cli("scan", str(folder), "--model", model_name, "--workers", "1", "--resume")
    assert again.returncode == 1, again.stderr
    assert f"{len(good) + len(bad)} already done" in again.stderr
    assert f"{len(bad)} more file(s) failed in earlier runs" in again.stderr


def test_scan_all_ok_exit_0_and_no_overwrite_without_asking(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder = tmp_path / "in"
    for i in range(3):
        make_png(folder / f"{i}.png", i)
    out = tmp_path / "out"
    first = run_cli("scan", str(folder), "--model", model_name, "--out", str(out), "--no-progress")
    assert first.returncode == 0, first.stderr
    before = (out / "results.csv").read_bytes()
    again = run_cli("scan", str(folder), "--model", model_name, "--out", str(out))
    assert again.returncode == 2
    assert "--resume" in again.stderr
    assert (out / "results.csv").read_bytes() == before
    resumed = run_cli("scan", str(folder), "--model", model_name, "--out", str(out), "--resume")
    assert resumed.returncode == 0
    assert "3 already done" in resumed.stderr
    assert (out / "results.csv").read_bytes() == before
    mixed = run_cli("scan", str(folder), "--model", model_name, "--out", str(out), "--resume",
                    "--operating-point", "high_sensitivity")
    assert mixed.returncode == 2
    assert "would mix them" in mixed.stderr
    assert (out / "results.csv").read_bytes() == before
    replaced = run_cli("scan", str(folder), "--model", model_name, "--out", str(out), "--overwrite")
    assert replaced.returncode == 0
    assert len(read_csv(out / "results.csv")[1]) == 3


def test_scan_unwritable_output_is_a_clear_usage_error(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    run = run_cli("scan", str(folder), "--model", model_name, "--out", str(blocker / "out"))
    assert run.returncode == 2
    assert "a_file" in run.stderr
    assert "Traceback" not in run.stderr


def test_scan_usage_errors(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    assert run_cli("scan", str(tmp_path / "nope"), "--model", model_name).returncode == 2
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    run = run_cli("scan", str(folder), "--model", "missing-model")
    assert run.returncode == 2
    assert not (folder / "cxr_results" / "results.csv").exists()
    both = run_cli("scan", str(folder), "--model", model_name, "--resume", "--overwrite")
    assert both.returncode == 2


def test_scan_ctrl_c_keeps_rows_and_resume_completes(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder = tmp_path / "in"
    n = 100
    for i in range(n):
        make_png(folder / f"{i:03d}.png", i, size=256)
    out = tmp_path / "out"
    cmd = cli_cmd("scan", str(folder), "--model", model_name, "--out", str(out), "--workers", "1")
    # A CI runner started in the background (``cmd &``) hands its children SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: give the scan the default disposition a terminal would.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    csv_path = out / "results.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if csv_path.exists() and csv_path.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the scan finished before it could be interrupted")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "--resume" in stderr
    assert "Traceback" not in stderr
    _, rows = read_csv(csv_path)
    assert 0 < len(rows) < n
    resumed = run_cli("scan", str(folder), "--model", model_name, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _, rows = read_csv(csv_path)
    assert sorted(r["path"] for r in rows) == [f"{i:03d}.png" for i in range(n)]


def test_scan_without_stderr_does_not_crash(tmp_path: Path, model_name: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Windowed frozen builds have sys.stderr = None."""
    import sys

    from desktop.core.cli import main

    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    (folder / "bad.bin").write_text("x")
    monkeypatch.setattr(sys, "stderr", None)
    assert main(["scan", str(folder), "--model", model_name, "--workers", "0"]) == 1
    monkeypatch.undo()
    _, rows = read_csv(folder / "cxr_results" / "results.csv")
    assert [r["status"] for r in rows] == ["ok", "error"]


def test_progress_bar_line_format() -> None:
    import io

    from desktop.core.commands.scan import ProgressBar

    bar = ProgressBar()
    bar.stream = io.StringIO()
    bar.tty = False
    bar.update(0, 10, 0.0, float("inf"))
    bar.update(10, 10, 4.0, 0.0)
    lines = bar.stream.getvalue().splitlines()
    assert lines[0].startswith("[")
    for part in ("0/10", "ETA --:--"):
        assert part in lines[0]
    for part in ("10/10", "4.0 files/s", "ETA 0:00"):
        assert part in lines[-1]


def test_scan_report_pdf(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    pytest.importorskip("desktop.core.report")
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    (folder / "bad.bin").write_text("x")
    pdf = tmp_path / "scan.pdf"
    run = run_cli("scan", str(folder), "--model", model_name, "--report", str(pdf), "--no-progress")
    assert run.returncode == 1, run.stderr
    assert pdf.read_bytes().startswith(b"%PDF")
    again = run_cli("scan", str(folder), "--model", model_name, "--report", str(pdf), "--resume")
    assert again.returncode == 2  # the report exists: not replaced without --overwrite
    assert "already exists" in again.stderr


def test_models_lists_cards_and_problems(tmp_path: Path, model_name: str, bundle_source: Path) -> None:  # noqa: F811
    from desktop.core.paths import user_models_dir

    run = run_cli("models", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(run.stdout)
    (entry,) = [m for m in doc["models"] if m["name"] == model_name]
    for key in ("version", "architecture", "default", "operating_points", "auroc", "default_operating_point"):
        assert key in entry
    assert entry["architecture"] == "mobilenet"
    text = run_cli("models")
    assert model_name in text.stdout
    assert "threshold" in text.stdout
    # A tampered copy is refused and reported.
    bad = user_models_dir() / "tampered"
    shutil.copytree(bundle_source, bad)
    card = json.loads((bad / "model_card.json").read_text())
    card["name"] = "tampered"
    (bad / "model_card.json").write_text(json.dumps(card))
    with (bad / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    run = run_cli("models", "--json")
    assert run.returncode == 1
    problems = json.loads(run.stdout)["problems"]
    assert any("sha256" in p["error"] and "tampered" in p["error"] for p in problems)


def test_selftest_passes_then_fails_on_a_tampered_bundle(model_name: str, bundle_source: Path) -> None:  # noqa: F811
    from desktop.core.paths import user_models_dir

    run = run_cli("selftest")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "selftest passed" in run.stdout
    assert f"model {model_name}" in run.stdout
    assert "decoder" in run.stdout
    onnx = next(user_models_dir().glob("*/model.onnx"))
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    run = run_cli("selftest", "--json")
    assert run.returncode == 1
    doc = json.loads(run.stdout)
    assert doc["ok"] is False
    assert any(c["status"] == "fail" and "sha256" in c["detail"] for c in doc["checks"])

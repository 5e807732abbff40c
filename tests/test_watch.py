"""Watched folder: each new film screened once, once completely written; restart-safe."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.batch_support import bundle_source, cli_cmd, cli_env, make_png, model_name  # noqa: F401
from tests.listen_support import make_films, rows_of, wait_rows

pytest.importorskip("watchdog")


def _watcher(folder: Path, out: Path, name: str, **kw: object):  # type: ignore[no-untyped-def]
    from desktop.core.commands._model import load_model
    from desktop.core.dicomnet.watcher import FolderWatcher, WatchConfig

    loaded = load_model(name, None)
    config = WatchConfig(folder=folder, out_dir=out, settle_s=0.6, rescan_s=5.0, workers=0, **kw)  # type: ignore[arg-type]
    w = FolderWatcher(config, lambda: loaded)
    w.start()
    return w


def test_watch_screens_complete_files_once(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder, out = tmp_path / "inbox", tmp_path / "out"
    folder.mkdir()
    make_png(folder / "before.png", seed=1)  # there before the watch starts
    w = _watcher(folder, out, model_name, dicom_results=folder / "dicom-results")  # inside: not screened
    try:
        wait_rows(out / "results.csv", 1, timeout=60)
        # a film copied slowly: half of it, a pause longer than a pass, then the rest
        film = make_films(tmp_path / "src", 1)[0]
        data = film.read_bytes()
        target = folder / "sub" / "slow.dcm"
        target.parent.mkdir()
        with open(target, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(0.4)
            fh.write(data[len(data) // 2 :])
        make_png(folder / "quick.png", seed=2)
        rows = wait_rows(out / "results.csv", 3, timeout=60)
        time.sleep(1.5)  # more passes: nothing is screened twice
        rows = rows_of(out / "results.csv")
    finally:
        w.stop()
    assert sorted(r["path"] for r in rows) == ["before.png", "quick.png", "sub/slow.dcm"]
    assert all(r["status"] == "ok" for r in rows), rows
    assert len(list((folder / "dicom-results").glob("*.dcm"))) == 2  # SC + SR of the DICOM film
    # restart: nothing again; a new file: one new row
    w = _watcher(folder, out, model_name)
    try:
        time.sleep(1.5)
        assert len(rows_of(out / "results.csv")) == 3
        make_png(folder / "after.png", seed=3)
        rows = wait_rows(out / "results.csv", 4, timeout=60)
        time.sleep(1.0)
        rows = rows_of(out / "results.csv")
    finally:
        w.stop()
    assert [r["path"] for r in rows].count("after.png") == 1
    assert len(rows) == 4


def test_watch_rescreens_a_replaced_file(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder, out = tmp_path / "inbox", tmp_path / "out"
    folder.mkdir()
    make_png(folder / "a.png", seed=1)
    w = _watcher(folder, out, model_name)
    try:
        wait_rows(out / "results.csv", 1, timeout=60)
        make_png(folder / "a.png", seed=9)  # a different film under the same name
        rows = wait_rows(out / "results.csv", 2, timeout=60)
    finally:
        w.stop()
    assert [r["path"] for r in rows] == ["a.png", "a.png"]
    assert rows[0]["sha256"] != rows[1]["sha256"]


def test_watch_cli_stops_on_sigterm(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder = tmp_path / "inbox"
    folder.mkdir()
    log = tmp_path / "watch.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cli_cmd("watch", str(folder), "--model", model_name, "--settle", "0.5"),
                                stderr=fh, stdout=subprocess.DEVNULL, env=cli_env())
        try:
            deadline = time.monotonic() + 120
            while "Watching" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            make_png(folder / "x.png", seed=4)
            wait_rows(folder / "cxr_results" / "results.csv", 1, timeout=60)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
            assert time.monotonic() - t0 < 10
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert code == 0, log.read_text()
    assert "Stopped: 1 film(s) screened" in log.read_text()


def test_watch_refuses_a_missing_folder(tmp_path: Path) -> None:
    from tests.batch_support import run_cli

    r = run_cli("watch", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "folder not found" in r.stderr

"""Nothing lost: a scan SIGKILLed at random moments, several times in a row, then resumed.

Ends with exactly one row per good file and one error row per bad file: none
lost, none duplicated, and the CSV parseable after every kill.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.batch_support import bundle_source, cli_cmd, cli_env, make_folder, model_name, read_csv  # noqa: F401

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and process groups: POSIX")


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc), [] where /proc is missing."""
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _complete_rows(path: Path) -> int:
    if not path.exists():
        return 0
    data = path.read_bytes()
    return max(0, data[: data.rfind(b"\n") + 1].count(b"\n") - 1)


def test_sigkill_at_random_moments_then_resume(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder = tmp_path / "in"
    # big enough to be caught mid-scan even on a quiet machine (the tiny model scans ~80 files/s)
    good, bad = make_folder(folder, n_good=96, size=768)
    out = tmp_path / "out"
    csv_path = out / "results.csv"
    cmd = cli_cmd("scan", str(folder), "--model", model_name, "--out", str(out), "--resume",
                  "--workers", "1", "--no-progress")
    rng = random.Random(1234)
    kills = 0
    finished = False
    orphan_checked = False
    for attempt in range(8):
        before = _complete_rows(csv_path)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env(),
                                start_new_session=True)
        # A random moment: sometimes during start-up, mostly while rows are being written.
        if attempt % 3 == 0:
            time.sleep(rng.uniform(0.05, 0.6))
        else:
            deadline = time.monotonic() + 60
            target = before + rng.randint(1, 3)
            while proc.poll() is None and time.monotonic() < deadline:
                if csv_path.exists() and csv_path.read_bytes().count(b"\n") - 1 >= target:
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is not None:
            finished = True
            proc.communicate()
            break
        if not orphan_checked and attempt % 3 == 1 and Path("/proc").is_dir():
            # Kill only the main process: its decoding workers must not outlive it.
            workers = _children(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
            deadline = time.monotonic() + 15
            while any(_alive(w) for w in workers) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(_alive(w) for w in workers), "decoding workers outlived a killed scan"
            orphan_checked = True
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        kills += 1
        print(f"kill {kills}: {_complete_rows(csv_path)} rows")
        if csv_path.exists():
            header, rows = read_csv(csv_path)  # parseable right after the kill
            paths = [r["path"] for r in rows]
            assert len(paths) == len(set(paths)), "duplicated rows"
            assert len(rows) >= before, "rows lost"
        if attempt == 3 and csv_path.exists():
            with csv_path.open("ab") as fh:  # a power cut in the middle of a row
                fh.write(b"sub0/img_0")
    assert kills >= 3, "the scan finished too fast to be killed several times"
    if not finished:
        final = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=300)
        assert final.returncode == 1, final.stderr  # 1: the bad files failed, as they should
    header, rows = read_csv(csv_path)
    by: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by.setdefault(row["path"], []).append(row)
    assert sorted(by) == sorted(good + list(bad)), "files lost or invented"
    assert all(len(v) == 1 for v in by.values()), "duplicated rows"
    for rel in good:
        assert by[rel][0]["status"] == "ok"
    for rel, kind in bad.items():
        assert by[rel][0]["status"] == "error"
        assert by[rel][0]["error_kind"] == kind

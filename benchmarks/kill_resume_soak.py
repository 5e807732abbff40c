"""Longer "nothing lost" run: SIGKILL a folder scan many times at random moments, resume each time.

The test suite does this CI-sized (tests/test_resume.py, 8 kills, 28 files). This soak
uses the default bundled model, more files and more kills, and checks after every kill
that results.csv parses, has no duplicate and never loses a row; at the end exactly one
row per good file and one error row per bad file.

    python benchmarks/kill_resume_soak.py [--kills 30] [--files 600] [--size 1024] [--seed 0]

Writes benchmarks/results/kill_resume.json and .md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.batch_support import cli_cmd, make_folder, read_csv  # noqa: E402


def _rows(path: Path) -> int:
    if not path.exists():
        return 0
    data = path.read_bytes()
    return max(0, data[: data.rfind(b"\n") + 1].count(b"\n") - 1)


def _complete(data: bytes) -> list[dict[str, str]]:
    """The rows of the complete lines (what a reader sees up to the last newline)."""
    text = data[: data.rfind(b"\n") + 1].decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def soak(kills: int, files: int, seed: int, work: Path, size: int = 1024) -> dict[str, object]:
    folder, out = work / "in", work / "out"
    good, bad = make_folder(folder, n_good=files, size=size)
    csv_path = out / "results.csv"
    env = dict(os.environ, PYTHONPATH=str(REPO), CXR_SCREENER_HOME=str(work / "home"),
               CXR_SCREENER_OPERATOR="soak")
    cmd = cli_cmd("scan", str(folder), "--out", str(out), "--resume", "--no-progress")
    rng = random.Random(seed)
    done_kills, checks, torn = 0, 0, 0
    started = time.monotonic()
    while done_kills < kills:
        before = _rows(csv_path)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        time.sleep(rng.uniform(0.2, 1.6))  # from start-up to well into the rows
        if proc.poll() is not None:
            break  # finished before this kill
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done_kills += 1
        if csv_path.exists():
            data = csv_path.read_bytes()
            if not data.endswith(b"\n"):
                torn += 1  # a kill mid-row: the next --resume must repair it (not done here)
            rows = _complete(data)
            paths = [r["path"] for r in rows]
            assert len(paths) == len(set(paths)), f"duplicated rows after kill {done_kills}"
            assert len(rows) >= before, f"rows lost at kill {done_kills}"
            checks += 1
    final = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    _, rows = read_csv(csv_path)
    by: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by.setdefault(row["path"], []).append(row)
    expected = sorted(good + list(bad))
    return {
        "kills": done_kills,
        "csv_checks_after_kill": checks,
        "torn_last_lines_seen": torn,
        "good_files": len(good),
        "bad_files": len(bad),
        "final_exit_code": final.returncode,
        "rows": len(rows),
        "lost": len(set(expected) - set(by)),
        "invented": len(set(by) - set(expected)),
        "duplicated": sum(len(v) - 1 for v in by.values()),
        "good_ok": sum(1 for r in good if by.get(r, [{}])[0].get("status") == "ok"),
        "bad_error": sum(1 for r in bad if by.get(r, [{}])[0].get("status") == "error"),
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--files", type=int, default=600, help="good files (bad ones are added)")
    parser.add_argument("--size", type=int, default=1024, help="side of the generated images (px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "kill_resume"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxr_soak_") as tmp:
        result = soak(args.kills, args.files, args.seed, Path(tmp), args.size)
    result["command"] = "python benchmarks/kill_resume_soak.py " + " ".join(sys.argv[1:])
    result["when"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    ok = (result["lost"], result["invented"], result["duplicated"]) == (0, 0, 0) and \
        result["good_ok"] == result["good_files"] and result["bad_error"] == result["bad_files"]
    result["passed"] = ok
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Kill-and-resume soak", "",
        f"`{result['command']}` ({result['when']}, default bundled model)", "",
        "| kills | CSV checks after a kill | torn last lines | good files | bad files | rows | lost | duplicated | invented | passed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {result['kills']} | {result['csv_checks_after_kill']} | {result['torn_last_lines_seen']} | "
        f"{result['good_files']} | {result['bad_files']} | {result['rows']} | {result['lost']} | "
        f"{result['duplicated']} | {result['invented']} | {'yes' if ok else 'NO'} |",
        "", f"{result['seconds']} s in all.",
    ]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

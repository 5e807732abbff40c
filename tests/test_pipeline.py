"""The one file -> result pipeline: one open per input file, Display not XRay, predict on it too."""

from __future__ import annotations

import builtins
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from desktop.core.scan import decode
from desktop.core.scan.pipeline import ScreenOptions, screen_files
from tests.batch_support import bundle_source, cli_cmd, cli_env, make_png, model_name  # noqa: F401


def _inputs(folder: Path, n: int = 3) -> list[Path]:
    return [make_png(folder / f"sub/film_{i}.png", i, size=300) for i in range(n)]


def test_decode_sends_a_small_display_not_the_xray(tmp_path: Path) -> None:
    from desktop.core.preprocess import PreprocessSpec

    (path,) = _inputs(tmp_path, 1)
    spec = PreprocessSpec(height=32, width=32, normalization="unit")
    got = decode.decode_one(str(path), None, spec, decode.Wants(display_side=128))
    assert got.status == "ok"
    assert got.input.shape == (32, 32, 3)
    assert got.input.dtype == np.float32
    assert got.display is not None
    assert got.display.image.dtype == np.uint8
    assert max(got.display.image.shape) == 128  # downsampled, not the full 300 px film
    assert got.display.shape == (300, 300)
    assert not hasattr(got, "xray")
    plain = decode.decode_one(str(path), None, spec, decode.NO_DISPLAY)
    assert plain.display is None
    # without display the film is decoded at reduced resolution (2x the model input at least): same input
    # up to the resampling
    np.testing.assert_allclose(plain.input, got.input, atol=0.05)


def test_scan_heatmaps_report_pages_opens_each_input_once(tmp_path: Path, model_name: str,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process (workers 0): every open of an input file, by os.open or open(), is counted."""
    from desktop.core import cli

    folder = tmp_path / "in"
    films = {os.path.realpath(p) for p in _inputs(folder)}
    opened: Counter[str] = Counter()
    real_os_open, real_open = os.open, builtins.open

    def count(target: object) -> None:
        if isinstance(target, (str, os.PathLike)):
            full = os.path.realpath(os.fspath(target))
            if full in films:
                opened[full] += 1

    def os_open(path, *a, **kw):  # type: ignore[no-untyped-def]
        count(path)
        return real_os_open(path, *a, **kw)

    def b_open(file, *a, **kw):  # type: ignore[no-untyped-def]
        count(file)
        return real_open(file, *a, **kw)

    from desktop.core.inference import Predictor

    explained: list[int] = []
    made: list[int] = []
    real_explain, real_init = Predictor.explain_input, Predictor.__init__

    def explain_input(self, *a, **kw):  # type: ignore[no-untyped-def]
        explained.append(1)
        return real_explain(self, *a, **kw)

    def init(self, *a, **kw):  # type: ignore[no-untyped-def]
        made.append(1)
        real_init(self, *a, **kw)

    monkeypatch.setattr(Predictor, "explain_input", explain_input)
    monkeypatch.setattr(Predictor, "__init__", init)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", b_open)
    out = tmp_path / "out"
    pdf = tmp_path / "report.pdf"
    code = cli.main(["scan", str(folder), "--model", model_name, "--out", str(out), "--heatmaps", "--report",
                     str(pdf), "--report-pages", "--workers", "0", "--no-progress"])
    monkeypatch.undo()
    assert code == 0
    assert pdf.stat().st_size > 0
    assert len(list((out / "heatmaps").rglob("*.heatmap.png"))) == 3
    assert opened == {f: 1 for f in films}  # read once: no decode for thumbnails, no second Predictor pass
    assert len(explained) == 3  # each film explained once: heatmap PNG and study page from one Grad-CAM
    assert len(made) == 1  # the report used the scan's Predictor
    assert not (out / ".previews").exists()  # the report's display images are not left behind


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_scan_with_worker_processes_opens_each_input_once_strace(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder = tmp_path / "in"
    films = _inputs(folder)
    trace = tmp_path / "trace.txt"
    cmd = ["strace", "-f", "-qq", "-e", "trace=openat,open", "-o", str(trace), *cli_cmd(
        "scan", str(folder), "--model", model_name, "--out", str(tmp_path / "out"), "--heatmaps",
        "--report", str(tmp_path / "r.pdf"), "--report-pages", "--workers", "1", "--no-progress")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=cli_env())
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip("ptrace not permitted here")
    assert proc.returncode == 0, proc.stderr
    text = trace.read_text(errors="replace")
    for film in films:
        hits = [line for line in text.splitlines() if re.search(re.escape(str(film)) + r'"', line)]
        assert len(hits) == 1, hits


def test_screen_files_is_the_per_file_api(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    from desktop.core.bundle import get_bundle
    from desktop.core.inference import Predictor

    films = _inputs(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"nope")
    predictor = Predictor(get_bundle(model_name))
    results = list(screen_files([*map(str, films), str(tmp_path / "bad.png")], predictor,
                                ScreenOptions(workers=0, keep_display=True, explain=True)))
    assert [r.relpath for r in results] == [*map(str, films), str(tmp_path / "bad.png")]
    assert [r.status for r in results] == ["ok", "ok", "ok", "error"]
    for r in results[:3]:
        assert r.display is not None
        assert r.explanation is not None
        assert r.prediction is not None
        assert r.prediction.p_covid == pytest.approx(r.p_covid)
    assert results[3].display is None


def test_reduced_resolution_decode_is_asked_only_without_display(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.core import imaging
    from desktop.core.preprocess import PreprocessSpec

    (path,) = _inputs(tmp_path, 1)
    spec = PreprocessSpec(height=32, width=48, normalization="unit")
    real = imaging.load_xray
    calls: list[object] = []

    def load_target(source, *, name=None, target=None):  # type: ignore[no-untyped-def]
        calls.append(target)
        return real(source, name=name)

    monkeypatch.setattr(imaging, "load_xray", load_target)
    try:
        assert decode.decode_one(str(path), None, spec, decode.NO_DISPLAY).status == "ok"
        assert decode.decode_one(str(path), None, spec, decode.WITH_DISPLAY).status == "ok"
    finally:
        monkeypatch.undo()
    assert calls == [(64, 96), None]  # twice the model input (scan_target); display always gets the full decode
    # the loader of this build, with or without the option: no error
    assert decode.decode_one(str(path), None, spec, decode.NO_DISPLAY).status == "ok"


def test_progress_object_rate_eta_cancel() -> None:
    from desktop.core.progress import Progress

    now = [100.0]
    seen: list[tuple[int, int, float, float]] = []
    p = Progress(clock=lambda: now[0])
    p.subscribe(lambda *a: seen.append(a))
    p.subscribe(lambda *a: 1 / 0)  # a broken listener never stops the work
    p.start(4)
    now[0] += 2.0
    p.advance()
    p.advance(processed=False)  # a resume skip: done, not in the rate
    snap = p.snapshot()
    assert (snap.done, snap.total) == (2, 4)
    assert snap.rate == pytest.approx(0.5)
    assert snap.eta == pytest.approx(4.0)
    assert seen[0][:2] == (0, 4)
    assert seen[-1][:2] == (2, 4)
    assert not snap.cancelled
    p.cancel()
    assert p.cancelled
    assert p.snapshot().cancelled


def test_hashing_is_bounded_and_refuses_special_files(tmp_path: Path) -> None:
    import hashlib

    from desktop.core.hashing import sha256_bytes, sha256_file

    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * 3_000_000)
    assert sha256_file(f) == hashlib.sha256(f.read_bytes()).hexdigest() == sha256_bytes(f.read_bytes())
    with pytest.raises(OSError, match="limit"):
        sha256_file(f, limit=1000)
    if Path("/dev/zero").exists():
        with pytest.raises(OSError, match="not a regular file"):
            sha256_file("/dev/zero")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(OSError, match="not a regular file"):
            sha256_file(tmp_path / "fifo")  # returns at once: opened non-blocking


def test_scan_under_cancel_through_progress(tmp_path: Path) -> None:
    from desktop.core.progress import Progress
    from desktop.core.scan.folder import scan
    from tests.test_batch import FakePredictor

    for i in range(6):
        make_png(tmp_path / "in" / f"{i}.png", i)
    progress = Progress()
    got = []
    for r in scan(tmp_path / "in", FakePredictor(), results_csv=tmp_path / "out" / "results.csv", workers=0,
                  progress=progress):
        got.append(r)
        if len(got) == 2:
            progress.cancel()
    assert len(got) == 2
    assert progress.snapshot().done == 2


def test_the_pipeline_never_imports_reports_or_the_cli() -> None:
    """A contract kept by a test (test_architecture counts the import-linter contracts)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "desktop" / "core"
    files = [*sorted((root / "scan").glob("*.py")), *(root / f"{m}.py" for m in ("progress", "cpu", "hashing",
                                                                                 "display"))]
    forbidden = ("desktop.core.report", "desktop.core.commands", "desktop.core.cli", "desktop.core.dicomnet",
                 "desktop.qt", "reportlab", "PySide6")
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(forbidden), (f.name, name)

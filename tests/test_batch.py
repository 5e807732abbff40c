"""desktop.core.batch: walking, results.csv, resume, bad files, timeouts, cancel, output errors."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from desktop.core import batch
from desktop.core.batch import (
    CSV_COLUMNS,
    CancelToken,
    ResultsWriter,
    ScanStats,
    list_files,
    read_results,
    scan,
)
from desktop.core.errors import OutputError, OutputExistsError
from desktop.core.preprocess import PreprocessSpec
from tests.batch_support import bundle_source, make_folder, make_png, model_name, read_csv  # noqa: F401

# --------------------------------------------------------------------------
# A stand-in predictor: the pipeline's mechanics without a model file.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pred:
    p_covid: float
    label: str
    operating_point: str
    threshold: float
    model: str
    model_version: str


class FakePredictor:
    """p_covid = mean of the model input mapped to [0, 1]; counts forward calls."""

    spec = PreprocessSpec(height=32, width=32, normalization="unit")
    name = "fake"
    version = "9.9"

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay

    def predict_inputs(self, batch_arr: np.ndarray, operating_point: str | None = None) -> list[_Pred]:
        assert batch_arr.ndim == 4
        assert batch_arr.shape[1:] == (32, 32, 3)
        self.calls += 1
        time.sleep(self.delay)
        out = []
        for x in batch_arr:
            p = float(np.clip(x.mean(), 0, 1))
            out.append(_Pred(p, "covid" if p >= 0.5 else "normal", operating_point or "default", 0.5, "fake", "9.9"))
        return out


# Decoders injected into worker processes (module level: importable by spawn).


def slow_decode(path, expected, spec, want_xray):
    if "slow" in Path(path).name:
        time.sleep(60)
    return batch._decode_one(path, expected, spec, want_xray)


def crashing_decode(path, expected, spec, want_xray):
    if "crash" in Path(path).name:
        os._exit(3)  # a decoder segfault, as far as the parent can tell
    return batch._decode_one(path, expected, spec, want_xray)


def vanishing_decode(path, expected, spec, want_xray):
    if "vanish" in Path(path).name:
        os.unlink(path)
    return batch._decode_one(path, expected, spec, want_xray)


# --------------------------------------------------------------------------


def _scan(folder: Path, out: Path, **kw) -> list[batch.ScanResult]:
    kw.setdefault("workers", 1)
    return list(scan(folder, kw.pop("predictor", FakePredictor()), results_csv=out / "results.csv", **kw))


def test_recursive_deterministic_hidden_skipped_bad_files_recorded(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    good, bad = make_folder(folder)
    out = tmp_path / "out"
    results = _scan(folder, out)
    rels = [r.relpath for r in results]
    assert rels == sorted(good + list(bad))  # every file once, sorted, nothing hidden
    by = {r.relpath: r for r in results}
    for rel in good:
        assert by[rel].status == "ok", by[rel].error
        assert by[rel].label in ("covid", "normal")
        assert 0.0 <= by[rel].p_covid <= 1.0
        assert len(by[rel].sha256) == 64
    for rel, kind in bad.items():
        r = by[rel]
        assert r.status == "error"
        assert r.error_kind == kind, (rel, r.error)
        assert rel.split("/")[-1] in r.error  # the message names the file...
        assert r.label is None
        assert r.p_covid is None
    header, rows = read_csv(out / "results.csv")
    assert tuple(header) == CSV_COLUMNS
    assert header[:9] == ["path", "sha256", "status", "label", "p_covid", "model", "model_version", "threshold", "error"]
    assert [row["path"] for row in rows] == rels
    assert {row["status"] for row in rows} == {"ok", "error"}
    assert all(row["error"] for row in rows if row["status"] == "error")


def test_same_result_with_workers_threads_and_inline(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_folder(folder, n_good=6)
    a = _scan(folder, tmp_path / "a", workers=2)
    b = _scan(folder, tmp_path / "b", workers=0)
    pool = batch._ThreadPool(2, FakePredictor.spec, False, 30.0)
    try:
        entries = list_files(folder)
        for i, e in enumerate(entries):
            pool.submit(None, i, e.path, None)
        got = {}
        while len(got) < len(entries):
            got.update(dict(pool.poll(1.0)))
    finally:
        pool.close()
    key = [(r.relpath, r.status, r.sha256, r.p_covid) for r in a]
    assert key == [(r.relpath, r.status, r.sha256, r.p_covid) for r in b]
    assert [got[i].sha256 for i in range(len(entries))] == [r.sha256 for r in a]


def test_symlink_loop_and_broken_link_survive(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "a" / "x.png", 1)
    os.symlink("..", folder / "a" / "loop")
    os.symlink(folder / "a", folder / "alias")  # a second way into the same folder
    os.symlink(folder / "missing.png", folder / "broken.png")
    results = _scan(folder, tmp_path / "out")
    by = {r.relpath: r for r in results}
    assert by["a/x.png"].status == "ok"
    assert by["broken.png"].status == "error"
    assert "broken link" in by["broken.png"].error
    assert len(results) == 2  # the loop and the alias add nothing


def test_output_folders_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "x.png", 1)
    out = folder / "cxr_results"
    first = _scan(folder, out)
    assert [r.relpath for r in first] == ["x.png"]
    batch.mark_output_folder(out)
    other = folder / "old_results"
    other.mkdir()
    make_png(other / "copy.png", 2)
    batch.mark_output_folder(other)  # an older scan's folder: never scanned as input
    again = _scan(folder, tmp_path / "elsewhere")
    assert [r.relpath for r in again] == ["x.png"]


def test_results_csv_in_the_scanned_folder_itself(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "x.png", 1)
    results = list(scan(folder, FakePredictor(), results_csv=folder / "results.csv", workers=0))
    assert [r.relpath for r in results] == ["x.png"]


def test_resume_skips_done_files_and_never_duplicates(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    good, bad = make_folder(folder, n_good=6)
    out = tmp_path / "out"
    token = CancelToken()
    first = []
    for r in scan(folder, FakePredictor(), results_csv=out / "results.csv", cancel=token, workers=1):
        first.append(r)
        if len(first) == 4:
            token.cancel()
    assert len(first) == 4
    _, rows = read_csv(out / "results.csv")
    assert len(rows) == 4  # finished rows kept after a cancel
    stats = ScanStats()
    second = _scan(folder, out, resume=True, stats=stats)
    assert stats.skipped == 4
    assert len(second) == len(good) + len(bad) - 4
    _, rows = read_csv(out / "results.csv")
    paths = [row["path"] for row in rows]
    assert sorted(paths) == sorted(good + list(bad))
    assert len(set(paths)) == len(paths)
    third = _scan(folder, out, resume=True)  # nothing left to do
    assert third == []
    assert len(read_csv(out / "results.csv")[1]) == len(rows)


def test_resume_rescans_a_file_changed_since(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    make_png(folder / "b.png", 2)
    out = tmp_path / "out"
    _scan(folder, out)
    make_png(folder / "b.png", 3)  # new content under the same name
    again = _scan(folder, out, resume=True)
    assert [r.relpath for r in again] == ["b.png"]
    latest = {r.relpath: r for r in read_results(out / "results.csv")}
    assert latest["b.png"].sha256 == again[0].sha256


def test_torn_last_line_is_repaired_on_resume(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for i in range(3):
        make_png(folder / f"{i}.png", i)
    out = tmp_path / "out"
    _scan(folder, out)
    csv_path = out / "results.csv"
    data = csv_path.read_bytes()
    lines = data.splitlines(keepends=True)
    csv_path.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])  # a kill in the middle of the last row
    writer = ResultsWriter(csv_path, resume=True)
    writer.close()
    assert writer.repaired
    assert writer.rows_before == 2
    _, rows = read_csv(csv_path)
    assert len(rows) == 2
    _scan(folder, out, resume=True)
    _, rows = read_csv(csv_path)
    assert sorted(r["path"] for r in rows) == ["0.png", "1.png", "2.png"]


def test_never_overwrites_without_being_asked(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    out = tmp_path / "out"
    _scan(folder, out)
    before = (out / "results.csv").read_bytes()
    with pytest.raises(OutputExistsError, match="already exists"):
        _scan(folder, out)
    assert (out / "results.csv").read_bytes() == before
    _scan(folder, out, overwrite=True)
    _, rows = read_csv(out / "results.csv")
    assert len(rows) == 1


def test_resume_refuses_a_foreign_csv(tmp_path: Path) -> None:
    target = tmp_path / "results.csv"
    target.write_text("name,age\nx,1\n")
    with pytest.raises(OutputError, match="not a CXR Screener results file"):
        ResultsWriter(target, resume=True)
    assert target.read_text() == "name,age\nx,1\n"


def test_unwritable_output_fails_before_any_work(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    fake = FakePredictor()
    with pytest.raises(OutputError, match="a_file"):
        list(scan(folder, fake, results_csv=blocker / "out" / "results.csv", workers=0))
    assert fake.calls == 0


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads and writes everything")
def test_unreadable_file_and_folder_get_error_rows(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "ok.png", 1)
    make_png(folder / "locked.png", 2).chmod(0)
    (folder / "closed").mkdir()
    make_png(folder / "closed" / "x.png", 3)
    (folder / "closed").chmod(0)
    out = tmp_path / "out"
    out.mkdir()
    (out / "ro").mkdir()
    try:
        by = {r.relpath: r for r in _scan(folder, out)}
        assert by["ok.png"].status == "ok"
        assert by["locked.png"].error_kind == "access"
        assert by["closed"].error_kind == "access"
        (out / "ro").chmod(0o500)
        with pytest.raises(OutputError):
            _scan(folder, out / "ro")
    finally:
        (folder / "closed").chmod(0o700)
        (out / "ro").chmod(0o700)


def test_disk_full_mid_scan_keeps_rows_valid(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes writes past a size fail (EFBIG), as a full disk would."""
    pytest.importorskip("resource")
    folder = tmp_path / "in"
    for i in range(12):
        make_png(folder / f"{i:02d}.png", i)
    out = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        import resource, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from tests.test_batch import FakePredictor
        from desktop.core.batch import scan
        from desktop.core.errors import OutputError
        if __name__ == "__main__":
            resource.setrlimit(resource.RLIMIT_FSIZE, (1200, 1200))
            n = 0
            try:
                for r in scan({str(folder)!r}, FakePredictor(), results_csv={str(out / "results.csv")!r}, workers=0):
                    n += 1
            except OutputError as exc:
                print("OUTPUT_ERROR", n, exc)
                sys.exit(7)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "disk full" in proc.stdout
    header, rows = read_csv(out / "results.csv")  # whole rows only
    assert 0 < len(rows) < 12
    assert (out / "results.csv").stat().st_size <= 1200
    # Space again: resume finishes the job without duplicates.
    list(scan(folder, FakePredictor(), results_csv=out / "results.csv", resume=True, workers=0))
    _, rows = read_csv(out / "results.csv")
    assert sorted(r["path"] for r in rows) == [f"{i:02d}.png" for i in range(12)]


def test_disk_full_write_error_is_output_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.csv"
    writer = ResultsWriter(target)
    row = batch.ScanResult("a.png", "0" * 64, "ok", "normal", 0.1, "m", "1", "p", 0.5, None, None, relpath="a.png")
    writer.append(row)
    size = target.stat().st_size

    def full(fd, data):
        os.fsync(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch.os, "write", full)
    with pytest.raises(OutputError, match="disk full"):
        writer.append(row)
    monkeypatch.undo()
    writer.close()
    assert target.stat().st_size == size


def test_hung_decoder_times_out_and_scan_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    make_png(folder / "b_slow.png", 2)
    make_png(folder / "c.png", 3)
    t0 = time.monotonic()
    results = _scan(folder, tmp_path / "out", workers=1, decode_timeout=3.0, decode_fn=slow_decode)
    assert time.monotonic() - t0 < 50
    by = {r.relpath: r for r in results}
    assert by["a.png"].status == "ok"
    assert by["c.png"].status == "ok"
    assert by["b_slow.png"].error_kind == "timeout"
    assert "b_slow.png" in by["b_slow.png"].error


def test_crashing_decoder_is_an_error_row(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    make_png(folder / "b_crash.png", 2)
    make_png(folder / "c.png", 3)
    by = {r.relpath: r for r in _scan(folder, tmp_path / "out", workers=1, decode_fn=crashing_decode)}
    assert by["b_crash.png"].error_kind == "crash"
    assert by["a.png"].status == "ok"
    assert by["c.png"].status == "ok"


def test_file_vanishing_mid_scan_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    make_png(folder / "b_vanish.png", 2)
    by = {r.relpath: r for r in _scan(folder, tmp_path / "out", decode_fn=vanishing_decode)}
    assert by["a.png"].status == "ok"
    assert by["b_vanish.png"].status == "error"
    assert by["b_vanish.png"].error_kind == "access"


def test_file_changing_while_read_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.core import imaging

    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    real = imaging.load_xray

    def load_then_append(source, **kw):
        xray = real(source, **kw)
        # the scan decodes the bytes it read (``name`` is the file): change the file after that read
        with open(kw.get("name") or source, "ab") as fh:
            fh.write(b"more bytes from a copy still running")
        return xray

    monkeypatch.setattr(imaging, "load_xray", load_then_append)
    (r,) = _scan(folder, tmp_path / "out", workers=0)
    assert r.status == "error"
    assert r.error_kind == "changed"
    assert "changed while" in r.error


def test_progress_reports_done_total_rate_eta(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for i in range(5):
        make_png(folder / f"{i}.png", i)
    calls = []
    _scan(folder, tmp_path / "out", progress=lambda *a: calls.append(a))
    assert calls[0][:2] == (0, 5)
    assert calls[-1][:2] == (5, 5)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert all(c[2] >= 0 for c in calls)


def test_cancel_from_another_thread_stops_between_files(tmp_path: Path) -> None:
    import threading

    folder = tmp_path / "in"
    for i in range(10):
        make_png(folder / f"{i}.png", i)
    token = CancelToken()
    stats = ScanStats()
    results = []
    for r in scan(folder, FakePredictor(delay=0.3), results_csv=tmp_path / "out" / "results.csv",
                  cancel=token, stats=stats, workers=1, batch_size=1):
        if not results:
            threading.Timer(0.2, token.cancel).start()  # a GUI's Cancel button, mid-file
        results.append(r)
    assert stats.cancelled
    assert 0 < len(results) < 10
    assert len(read_csv(tmp_path / "out" / "results.csv")[1]) == len(results)


def test_real_model_matches_single_predictions(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    """Worker-process preprocessing + batched inference == the in-process Predictor, file by file."""
    from desktop.core.bundle import get_bundle
    from desktop.core.imaging import load_xray
    from desktop.core.inference import Predictor

    folder = tmp_path / "in"
    good, bad = make_folder(folder, n_good=5)
    predictor = Predictor(get_bundle(model_name))
    results = list(scan(folder, predictor, results_csv=tmp_path / "out" / "results.csv", workers=1,
                        heatmap_dir=None))
    for r in results:
        if r.relpath in bad:
            assert r.status == "error"
            assert r.model == model_name
            continue
        # a scan without display decodes at the model's resolution where the codec allows (JPEG, JPEG 2000):
        # the in-process reference decodes the same way (full vs reduced decode: tests/test_imaging_reduced*)
        spec = predictor.bundle.card.preprocess
        from desktop.core.imaging.resolution import scan_target

        single = predictor.predict([load_xray(folder / r.relpath, target=scan_target(spec.height, spec.width))])[0]
        assert r.p_covid == pytest.approx(single.p_covid, abs=1e-6)
        assert r.label == single.label
        assert r.operating_point == single.operating_point
        assert r.model_version == single.model_version


def test_heatmaps_written_per_ok_file(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    from PIL import Image

    from desktop.core.bundle import get_bundle
    from desktop.core.inference import Predictor

    folder = tmp_path / "in"
    make_png(folder / "sub" / "a.png", 1)
    (folder / "bad.png").write_bytes(b"nope")
    heat = tmp_path / "out" / "heatmaps"
    results = list(scan(folder, Predictor(get_bundle(model_name)), results_csv=tmp_path / "out" / "results.csv",
                        heatmap_dir=heat, workers=1))
    by = {r.relpath: r for r in results}
    assert by["sub/a.png"].heatmap == str(heat / "sub" / "a.png.heatmap.png")
    with Image.open(by["sub/a.png"].heatmap) as im:
        assert im.mode == "RGB"
        assert im.height == 96
    assert by["bad.png"].heatmap is None
    assert sorted(p.name for p in heat.rglob("*.png")) == ["a.png.heatmap.png"]


def test_documents_are_ignored_unless_they_are_images(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    (folder / "README.md").write_text("# study list\n")
    (folder / "old_report.pdf").write_bytes(b"%PDF-1.4 ...")
    (folder / "mislabelled.txt").write_bytes(make_png(tmp_path / "m.png", 2).read_bytes())  # a PNG by content
    (folder / "data.bin").write_bytes(b"\x00\x01 not an image")
    stats = ScanStats()
    by = {r.relpath: r for r in _scan(folder, tmp_path / "out", stats=stats)}
    assert sorted(by) == ["a.png", "data.bin", "mislabelled.txt"]
    assert by["mislabelled.txt"].status == "ok"
    assert by["data.bin"].error_kind == "not_an_image"
    assert stats.ignored == 2


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_unreadable_file_is_an_error_row_even_for_root(tmp_path: Path) -> None:
    """/proc/self/mem is a regular file whose read fails with EIO, whoever reads it."""
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    os.symlink("/proc/self/mem", folder / "b_unreadable.png")
    make_png(folder / "c.png", 3)
    by = {r.relpath: r for r in _scan(folder, tmp_path / "out")}
    assert by["a.png"].status == "ok"
    assert by["c.png"].status == "ok"
    assert by["b_unreadable.png"].error_kind == "access"
    assert "cannot read" in by["b_unreadable.png"].error
    # resume does not retry it and does not duplicate it
    assert _scan(folder, tmp_path / "out", resume=True) == []


def test_resume_refuses_to_mix_models(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_png(folder / "a.png", 1)
    make_png(folder / "b.png", 2)
    out = tmp_path / "out"
    _scan(folder, out, operating_point="screening")
    before = (out / "results.csv").read_bytes()
    with pytest.raises(OutputError, match="would mix them"):
        _scan(folder, out, resume=True, operating_point="other")
    assert (out / "results.csv").read_bytes() == before
    assert _scan(folder, out, resume=True, operating_point="screening") == []


def test_file_names_cannot_inject_spreadsheet_formulas(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    names = ["=HYPERLINK(1).png", "+1.png", "-2.png", "@x.png", "'quoted.png", "plain.png"]
    for i, name in enumerate(names):
        make_png(folder / name, i)
    out = tmp_path / "out"
    _scan(folder, out)
    _, rows = read_csv(out / "results.csv")
    for row in rows:
        assert not row["path"].startswith(("=", "+", "-", "@")), row["path"]
    assert {r.relpath for r in read_results(out / "results.csv")} == set(names)
    assert _scan(folder, out, resume=True) == []  # escaped names still match on resume

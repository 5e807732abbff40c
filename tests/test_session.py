"""The window's state without Qt: studies, eviction, model choice, folder-scan rules, progress, plain errors."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from desktop.core.batch import ScanResult
from desktop.core.errors import OutputExistsError
from desktop.core.progress import Progress, describe, format_eta
from desktop.core.scan_state import (
    ModelChoice,
    csv_rows,
    export_csv,
    ignored_documents,
    resume_conflict,
    user_results_csv,
    user_scan_dir,
)
from desktop.core.session import Analysis, FolderScan, Session

REPO = Path(__file__).resolve().parents[1]


# --- stand-ins for bundles and predictions (the session only reads these fields) ---------
@dataclass
class _Op:
    name: str
    threshold: float


@dataclass
class _Card:
    operating_points: list[_Op]
    default_operating_point: str
    default: bool = False
    positive_class: str = "covid"


@dataclass
class _Bundle:
    name: str
    card: _Card
    version: str = "1.0"
    path: str = ""


@dataclass(frozen=True)
class _Pred:
    p_covid: float
    label: str
    operating_point: str
    threshold: float
    model: str = "m"


@dataclass
class _Predictor:
    ops: dict[str, _Op] = field(default_factory=dict)

    def operating_point(self, name: str) -> _Op:
        return self.ops[name]

    def decide(self, p: float, op: _Op) -> str:
        return "covid" if p >= op.threshold else "normal"


def _bundles() -> list[_Bundle]:
    ops = [_Op("balanced", 0.5), _Op("high_sensitivity", 0.2), _Op("high_specificity", 0.8)]
    return [
        _Bundle("alpha", _Card(ops[:2], "balanced")),
        _Bundle("beta", _Card(ops, "high_sensitivity", default=True), version="2.0"),
    ]


def _row(rel: str, *, ok: bool = True, model: str = "beta", version: str = "2.0", op: str = "balanced",
         label: str = "normal", error: str | None = None) -> ScanResult:
    return ScanResult(
        f"/scans/{rel}", "ab" * 32, "ok" if ok else "error", label if ok else None, 0.3 if ok else None,
        model if ok else "", version if ok else "", op if ok else None, 0.5 if ok else None,
        None if ok else (error or f"/scans/{rel}: truncated PNG"), None if ok else "corrupt", relpath=rel,
    )


def test_the_session_imports_without_qt() -> None:
    code = (
        "import sys; import desktop.core.session, desktop.core.scan_state, desktop.core.progress, "
        "desktop.core.plain_errors, desktop.core.qt_system; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'superqt', 'qtpy')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_model_choice_prefers_saved_defaults_the_card_then_the_first() -> None:
    s = Session()
    s.set_bundles(_bundles())
    assert (s.model_name, s.operating_point) == ("beta", "high_sensitivity")  # the card's default model and point
    s.set_bundles(_bundles(), default_model="alpha", default_operating_point="high_specificity")
    assert (s.model_name, s.operating_point) == ("alpha", "balanced")  # alpha has no high_specificity
    assert s.set_model("beta")
    assert s.operating_point == "balanced"  # kept: beta has it too
    assert not s.set_model("beta")
    assert not s.set_model("missing")
    assert s.set_operating_point("high_specificity")
    assert not s.set_operating_point("nonsense")
    assert s.model_choice() == ModelChoice("beta", "2.0", "high_specificity")
    empty = Session()
    empty.set_bundles([])
    assert empty.model_name is None
    assert empty.bundle is None
    assert empty.models_known


def test_studies_open_once_and_old_films_lose_their_pixels(tmp_path: Path) -> None:
    s = Session(keep_loaded=2)
    s.set_bundles(_bundles())
    keys = s.open([tmp_path / f"{i}.png" for i in range(5)] + [tmp_path / "0.png"])
    assert len(keys) == 6
    assert len(s.studies) == 5
    assert keys[0] == keys[-1]
    assert s.needs_work(keys[:2]) == keys[:2]
    s.current_path = keys[4]
    for k in keys[:5]:
        s.loaded(k, object())
    kept = [k for k, st in s.studies.items() if st.xray is not None]
    assert kept == [keys[2], keys[3], keys[4]]  # the two newest others plus the shown one
    assert s.needs_work([keys[0]]) == [keys[0]]  # evicted: read again when selected
    assert s.loaded("/not/open.png", object()) is None
    assert s.close(keys[4]) is True
    assert s.current_path is None
    assert s.close(keys[0]) is False
    assert keys[0] not in s.studies


def test_predictions_are_redecided_at_another_operating_point_without_the_model() -> None:
    s = Session()
    s.set_bundles(_bundles())
    key = s.open(["/x/a.png"])[0]
    s.current_path = key
    assert s.prediction() is None
    predictor = _Predictor({o.name: o for o in _bundles()[1].card.operating_points})
    s.analysed(key, "beta", Analysis(_Pred(0.6, "covid", "high_sensitivity", 0.2), None, None, predictor))
    assert s.prediction().label == "covid"
    assert "POSITIVE" in s.list_label(key)
    s.set_operating_point("high_specificity")
    pred = s.prediction()
    assert (pred.label, pred.threshold, pred.operating_point) == ("normal", 0.8, "high_specificity")
    assert "negative" in s.list_label(key)


def test_resume_is_refused_with_another_model_version_or_operating_point() -> None:
    rows = [_row("a.png"), _row("b.png", ok=False)]
    assert resume_conflict(rows, ModelChoice("beta", "2.0", "balanced")) is None
    for other in (ModelChoice("alpha", "2.0", "balanced"), ModelChoice("beta", "3.0", "balanced"),
                  ModelChoice("beta", "2.0", "high_sensitivity")):
        text = resume_conflict(rows, other)
        assert text is not None
        assert "beta 2.0 at operating point balanced" in text
    assert resume_conflict([_row("c.png", ok=False)], ModelChoice("x", "1", "y")) is None  # failures name no model


def test_folder_scan_counts_resume_and_summary(tmp_path: Path) -> None:
    scan = FolderScan(tmp_path / "films", results_csv=tmp_path / "out" / "results.csv")
    assert not scan.can_resume()  # nothing saved
    scan.add([_row("a.png", label="covid"), _row("b.png"), _row("c.png", ok=False)])
    scan.add([_row("b.png", label="covid")])  # a file seen again replaces its row
    assert scan.counts() == {"positive": 2, "negative": 0, "failed": 1, "not_assessable": 0}
    (tmp_path / "out").mkdir()
    scan.results_csv.write_text("path\n", encoding="utf-8")
    assert scan.can_resume()
    scan.finished = True
    assert not scan.can_resume()  # a finished scan has nothing left to resume
    text = scan.summary(ignored=["README.txt", "notes.pdf", "a.csv", "b.md"])
    assert text.startswith("Done: 3 file(s) checked, 1 could not be read.")
    assert "README.txt, notes.pdf, a.csv and 1 more" in text
    assert str(tmp_path / "out") in text
    scan.cancelled = True
    assert scan.summary().startswith("Cancelled: 3 file(s)")


def test_one_per_user_scan_folder_for_cli_and_gui(tmp_path: Path) -> None:
    from desktop.core.paths import user_data_dir

    folder = tmp_path / "Ward A (2024)"
    folder.mkdir()
    where = user_scan_dir(folder)
    assert where.parent == user_data_dir() / "scans"
    assert where.name.startswith("Ward_A_2024_-")
    assert len(where.name.split("-")[-1]) == 10
    assert user_scan_dir(tmp_path / "Ward A (2024)" / ".." / "Ward A (2024)") == where  # resolved
    assert user_scan_dir(tmp_path) != where
    assert user_results_csv(folder) == where / "results.csv"
    assert FolderScan(folder).results_csv == where / "results.csv"
    (folder / "cxr_results").mkdir()
    (folder / "cxr_results" / "results.csv").write_text("path\n", encoding="utf-8")
    assert FolderScan(folder).results_csv == folder / "cxr_results" / "results.csv"  # the CLI's scan
    where.mkdir(parents=True)
    (where / "results.csv").write_text("path\n", encoding="utf-8")
    assert FolderScan(folder).results_csv == where / "results.csv"  # the window's own wins


def test_csv_export_pseudonymises_names_in_paths_and_errors(tmp_path: Path) -> None:
    rows = [_row("ward/Doe_John.png"), _row("ward/Roe_Jane.png", ok=False,
                                           error="/scans/ward/Roe_Jane.png: truncated PNG")]
    plain = export_csv(rows, tmp_path / "plain.csv")
    with open(plain, newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert [r["path"] for r in got] == ["ward/Doe_John.png", "ward/Roe_Jane.png"]
    anon = export_csv(rows, tmp_path / "anon.csv", anonymize=True)
    text = anon.read_text(encoding="utf-8")
    assert "Doe_John" not in text
    assert "Roe_Jane" not in text
    assert text.count("ANON-") >= 3  # two paths and the name inside the error
    assert csv_rows(rows, anonymize=True)[2][8].endswith(": truncated PNG")
    with pytest.raises(OutputExistsError):  # an existing file is not replaced silently
        export_csv(rows, anon, anonymize=True)


def test_ignored_documents_are_named(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("about these films", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "report.pdf").write_bytes(b"%PDF-1.4 not an image")
    (tmp_path / "film.png").write_bytes(b"not really")
    assert ignored_documents(tmp_path) == ["README.txt", "sub/report.pdf"]


def test_progress_is_one_state_for_cli_and_gui() -> None:
    import io

    from desktop.core.commands.scan import ProgressBar

    p = Progress()
    assert describe(p.snapshot()) == "Listing the files..."
    v = p.version
    p(3, 10, 1.5, 4.6)
    snap = p.snapshot()
    assert p.version == v + 1
    assert snap.started
    assert not snap.finished
    assert snap.fraction == pytest.approx(0.3)
    assert describe(snap) == "Checked 3 of 10 files - 1.5 images/s - about 5 s left"
    assert format_eta(math.inf) == "estimating..."
    assert format_eta(3725) == "about 1 h 02 min left"
    bar = ProgressBar()
    bar.stream, bar.tty = io.StringIO(), False
    bar.update(10, 10, 4.0, 0.0)
    assert bar.state.snapshot().finished  # the CLI's bar keeps the same state object
    assert "10/10" in bar.stream.getvalue()


def test_plain_errors_leave_out_uids_and_library_names() -> None:
    from desktop.core.plain_errors import plain_error, plain_text

    what, advice = plain_error("unsupported", "transfer syntax 1.2.840.10008.1.2.4.51 (JPEG Extended (12-bit)): "
                                              "no bundled decoder reads 12-bit lossy JPEG (pylibjpeg-libjpeg is GPL)")
    assert "1.2.840" not in what + advice
    assert "pylibjpeg" not in what + advice
    assert "12-bit" in what
    assert "incomplete" in plain_text("corrupt", "truncated PNG (file ends before the IEND chunk)")
    assert "1.2.3.4.5" not in plain_text("unsupported", "odd SOP class 1.2.3.4.5 is not an X-ray")
    assert plain_text("not_an_image", "empty file").startswith("The file is empty")
    assert "not a PNG, JPEG or DICOM image" in plain_text("not_an_image", "neither PNG, JPEG nor DICOM by its content")


def test_qt_system_libraries_name_the_apt_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from desktop.core import qt_system

    monkeypatch.setattr(qt_system.sys, "platform", "linux")
    libs = (("libnot-there-xyz.so.9", "libxcb-icccm4"), ("libc.so.6", "libc6"))
    missing = qt_system.missing_libraries(libs)
    assert missing == [("libnot-there-xyz.so.9", "libxcb-icccm4")]
    monkeypatch.setattr(qt_system, "missing_libraries", lambda: missing)
    assert qt_system.main() == 1
    err = capsys.readouterr().err
    assert "sudo apt-get install libxcb-icccm4" in err
    assert "libnot-there-xyz.so.9" in err
    for pkg in ("libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0"):
        assert pkg in qt_system.all_packages_line()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quick = readme[readme.index("## Quick start"):readme.index("## Models and training")]
    for _, pkg in qt_system.QT_SYSTEM_LIBRARIES:  # the README quick start lists every package
        assert pkg in quick, pkg


def test_gui_diagnose_prints_json_in_the_venv() -> None:
    import json

    proc = subprocess.run([sys.executable, "-m", "desktop.core.cli", "gui", "--diagnose"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["frozen"] is False
    assert "qt_system_libraries_missing" in info
    assert "dicom_decoders" in info


def test_the_desktop_work_runs_as_plain_generators_without_qt(tmp_path: Path) -> None:
    """What the window's workers run: analyse opened files, scan a folder (with its left-out documents)."""
    import shutil

    from desktop.core.batch import CancelToken
    from desktop.core.session_work import PredictorCache, analyze_files, discover, scan_folder
    from tests.model_fixtures import tiny_bundle_path

    src = tiny_bundle_path()
    discovery = discover(dirs=[(src.parent, "user")])
    bundle = next(b for b in discovery.bundles if Path(b.path).name == src.name)
    cache = PredictorCache(threads=1)
    sample = REPO / "assets" / "samples" / "shenzhen__CHNCXR_0001_0.png"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    items = list(analyze_files([str(sample), str(bad)], bundle, None, cache))
    assert [(kind, Path(path).name) for kind, path, _ in items] == [
        ("loaded", sample.name), ("analysis", sample.name), ("error", "bad.png")]
    model, analysis = items[1][2]
    assert model == bundle.name
    assert 0.0 <= analysis.prediction.p_covid <= 1.0
    assert max(analysis.heat.shape) <= 768

    folder = tmp_path / "films"
    folder.mkdir()
    shutil.copy(sample, folder / "a.png")
    (folder / "README.txt").write_text("notes", encoding="utf-8")
    progress = Progress()
    gen = scan_folder(str(folder), bundle, None, cache, tmp_path / "out" / "results.csv", False,
                      CancelToken(), progress, "tester", 0)
    rows = []
    while True:
        try:
            rows.append(next(gen))
        except StopIteration as stop:
            ignored = stop.value
            break
    assert [r.relpath for r in rows] == ["a.png"]
    assert ignored == ["README.txt"]
    assert progress.snapshot().finished
    assert cache.get(bundle) is cache.get(bundle)  # one predictor per bundle


def test_a_finished_scan_offers_no_resume_after_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "films"
    folder.mkdir()
    results = tmp_path / "out" / "results.csv"
    results.parent.mkdir()
    results.write_text("path\n", encoding="utf-8")
    first = FolderScan(folder, results)
    first.load_saved()
    assert first.can_resume()  # saved rows, not known to be finished
    first.mark_finished()
    again = FolderScan(folder, results)  # the window opened again
    again.load_saved()
    assert not again.can_resume()
    import os
    import time

    later = time.time_ns() + 10**9
    os.utime(results, ns=(later, later))  # a later scan appended rows: resumable again
    again.load_saved()
    assert again.can_resume()

"""Layout and flow of the window (issue 17, "Layout and flow"): what a clinic user sees without hunting for it."""
# ruff: noqa: F811  (pytest fixtures imported from tests.test_qt_fixtures)

from __future__ import annotations

import re
import shutil
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import QRect, QTimer  # noqa: E402

from tests.test_qt_fixtures import (  # noqa: E402, F401  (fixtures)
    SAMPLES,
    main_window,
    make_batch_folder,
    qt_bundles,
    qt_settings,
    sample_png,
    test_dicom,
    wait_result,
)

pytestmark = pytest.mark.qt

#: A 1366x768 laptop screen less a task bar and the window's title bar.
LAPTOP = (1366, 700)


def _visible_in(widget, viewport) -> bool:
    """The whole of ``widget`` lies inside ``viewport`` (no scrolling needed to see it)."""
    top_left = widget.mapTo(viewport, widget.rect().topLeft())
    rect = QRect(top_left, widget.size())
    return widget.isVisible() and viewport.rect().contains(rect)


def test_at_1366x768_the_heatmap_controls_and_the_disclaimer_are_in_view(qtbot, main_window, sample_png):
    w = main_window
    w.resize(*LAPTOP)
    w.open_files([sample_png])
    wait_result(qtbot, w, sample_png)
    qtbot.wait(50)
    viewport = w.panel_scroll.viewport()
    p = w.panel
    for widget in (p.decision, p.bar, p.heat_check, p.opacity, p.cmap_combo, p.colorbar, p.disclaimer):
        assert _visible_in(widget, viewport), f"{widget.accessibleName() or widget} is below the fold"
    assert w.panel_scroll.verticalScrollBar().value() == 0


def test_a_new_image_shows_the_result_panel_from_its_top(qtbot, main_window, sample_png, test_dicom):
    w = main_window
    w.resize(900, 600)
    w.open_files([sample_png, test_dicom])
    wait_result(qtbot, w, sample_png)
    bar = w.panel_scroll.verticalScrollBar()
    assert bar.maximum() > 0, "the panel should scroll at 900x600"
    bar.setValue(bar.maximum())
    w.file_list.setCurrentRow(1)
    wait_result(qtbot, w, test_dicom)
    assert bar.value() == 0
    assert _visible_in(w.panel.decision, w.panel_scroll.viewport())


def test_image_details_show_whole_values_and_dates_as_dates(qtbot, main_window, test_dicom):
    w = main_window
    w.open_files([test_dicom])
    wait_result(qtbot, w, test_dicom)
    md = w.metadata
    assert md.value("Study date") == "2024-03-15"
    assert md.value("Birth date") == "1970-01-02"
    sha = md.value("sha256").replace(" ", "")
    assert sha == w.current_study().xray.sha256
    assert "..." not in md.value("Folder")
    assert md.value("Folder") == str(Path(test_dicom).parent)


def test_metadata_formats_dicom_dates_and_times():
    from desktop.qt.qt_metadata import display_value, format_time

    assert display_value("patient_birth_date", "19400305") == "1940-03-05"
    assert display_value("study_date", "not a date") == "not a date"
    assert format_time("101530.123") == "10:15:30"
    assert display_value("modality", "CR") == "CR"


def _patterns(filter_text: str) -> list[str]:
    return re.search(r"\(([^()]*)\)\s*$", filter_text).group(1).split()


def test_the_open_dialogs_default_filter_shows_upper_case_and_extensionless_files():
    from desktop.qt.qt_window_documents import OPEN_FILTER, OPEN_FILTERS

    default = OPEN_FILTER.split(";;")[0]
    assert default == OPEN_FILTERS[0]
    for name in ("CHEST.PNG", "film.JPG", "scan.JPEG", "IM000001", "I0000123", "study.DCM", "a.png"):
        assert any(fnmatchcase(name, p) for p in _patterns(default)), name
    by_ext = _patterns(OPEN_FILTERS[1])
    for name in ("CHEST.PNG", "film.JPG", "x.dcm", "y.DICOM"):
        assert any(fnmatchcase(name, p) for p in by_ext), name


def test_choosing_a_folder_starts_its_scan(qtbot, main_window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    w = main_window
    folder = make_batch_folder(tmp_path, n_good=2, bad=0)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    with qtbot.waitSignal(w.batch.scan_finished, timeout=120000):
        with qtbot.waitSignal(w.batch.scan_started, timeout=5000):
            w.scan_folder_dialog()  # File > Scan folder: one choice, no second click
    assert len(w.batch.model.rows) == 2

    other = make_batch_folder(tmp_path / "second", n_good=1, bad=0)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(other)))
    with qtbot.waitSignal(w.batch.scan_finished, timeout=120000):
        w.batch.choose_button.click()  # the tab's own button too
    assert len(w.batch.model.rows) == 1


def test_before_a_folder_is_chosen_no_file_count_is_shown(qtbot, main_window):
    batch = main_window.batch
    assert not batch.progress.isTextVisible()
    assert "0 of" not in batch.status.text()
    assert batch.saved_label.text() == ""
    assert not batch.start_button.isEnabled()
    assert not batch.resume_button.isEnabled()


def test_the_scan_says_where_results_are_saved_and_resume_is_off_once_done(qtbot, main_window, tmp_path):
    w = main_window
    folder = make_batch_folder(tmp_path, n_good=3, bad=1)
    (folder / "README.txt").write_text("Ward A films, March\n", encoding="utf-8")
    batch = w.batch
    with qtbot.waitSignal(batch.scan_finished, timeout=120000):
        w.scan_folder(str(folder))
    where = str(batch.results_csv.parent)
    assert where in batch.saved_label.text()
    assert where not in batch.status.text()  # said once, under the status line
    assert batch.status.text().startswith("Done: 4 file(s) checked, 1 could not be read.")
    assert batch.progress.isTextVisible()
    assert "README.txt" in batch.status.text()  # the left-out document is named
    assert not batch.resume_button.isEnabled()  # nothing left to resume
    assert batch.start_button.isEnabled()


def test_every_row_names_its_operating_point_and_failed_rows_no_threshold_or_model(qtbot, main_window, tmp_path):
    from desktop.qt.qt_results_table import COLUMNS

    w = main_window
    folder = make_batch_folder(tmp_path, n_good=3, bad=3)
    batch = w.batch
    with qtbot.waitSignal(batch.scan_finished, timeout=120000):
        w.scan_folder(str(folder))
    model = batch.model
    col = {name: COLUMNS.index(name) for name in COLUMNS}
    op = w.operating_point.replace("_", " ")
    for i, r in enumerate(model.rows):
        cell = {name: model.data(model.index(i, c)) for name, c in col.items()}
        if r.ok:
            assert cell["Operating point"] == op
            assert cell["Threshold"].endswith("%")
            assert cell["Model"]
        else:
            assert cell["Threshold"] == cell["Model"] == cell["Operating point"] == ""
            assert cell["COVID-19 probability"] == ""
            assert cell["Problem"]
    assert batch.table.isColumnHidden(col["Site"])  # no result names a site
    problems = {Path(r.path).name: model.data(model.index(i, col["Problem"])) for i, r in enumerate(model.rows)}
    assert "incomplete" in problems["truncated.png"]
    assert "chest X-ray" not in problems["truncated.png"]


def test_a_site_column_appears_when_results_name_a_site(qtbot):
    from dataclasses import dataclass

    from desktop.core.batch import ScanResult
    from desktop.qt.qt_results_table import COLUMNS, QtResultsModel

    @dataclass(frozen=True)
    class SiteResult(ScanResult):
        site: str = ""

    model = QtResultsModel()
    model.add(SiteResult("/a/x.png", "0" * 64, "ok", "normal", 0.1, "m", "1", "high_sensitivity", 0.4,
                         None, None, relpath="x.png", site="Riverside"))
    assert model.data(model.index(0, COLUMNS.index("Site"))) == "Riverside"
    assert model.data(model.index(0, COLUMNS.index("Operating point"))) == "high sensitivity"


def test_errors_are_in_plain_words():
    from desktop.core.errors import CorruptImageError, UnsupportedImageError
    from desktop.qt.qt_errors import describe

    jpeg12 = describe(UnsupportedImageError(
        "/cd/IM0001", "transfer syntax 1.2.840.10008.1.2.4.51 (JPEG Extended (12-bit)): no bundled decoder "
        "reads 12-bit lossy JPEG (the one that does, pylibjpeg-libjpeg, is GPL)",
        "convert it to an uncompressed, JPEG 2000 or JPEG-LS DICOM"))
    for jargon in ("1.2.840", "pylibjpeg", "GPL", "transfer syntax", "decoder"):
        assert jargon not in jpeg12.text, jargon
    assert "12-bit" in jpeg12.text
    assert "1.2.840.10008.1.2.4.51" in jpeg12.details  # support still gets it

    truncated = describe(CorruptImageError("/x/film.png", "truncated PNG (file ends before the IEND chunk)"))
    assert "incomplete" in truncated.text
    assert "check that it is a chest X-ray" not in truncated.text.lower()


def test_a_truncated_png_opened_says_the_file_is_incomplete(qtbot, main_window, tmp_path):
    w = main_window
    bad = tmp_path / "cut.png"
    bad.write_bytes((SAMPLES / "shenzhen__CHNCXR_0001_0.png").read_bytes()[:5000])
    shown = []
    w.errors.dialog_shown.connect(lambda d: (shown.append(d.record), QTimer.singleShot(0, d.accept)))
    w.open_files([bad])
    qtbot.waitUntil(lambda: bool(shown), timeout=30000)
    assert shown[0].title == "Could not open cut.png"
    assert "incomplete" in shown[0].text


def test_the_gui_resumes_a_scan_the_cli_made(qtbot, main_window, qt_bundles, tmp_path, monkeypatch):
    """One per-user folder for both: the CLI's results (--out there) show in the tab, ready to resume."""
    from desktop.core.commands.scan import default_out_dir
    from desktop.core.paths import user_models_dir
    from desktop.core.scan_state import user_scan_dir
    from desktop.qt.qt_batch import results_csv_for
    from tests.batch_support import run_cli

    bundle = main_window.current_bundle()
    shutil.copytree(bundle.path, user_models_dir() / Path(bundle.path).name)

    folder = make_batch_folder(tmp_path, n_good=2, bad=0)
    out = user_scan_dir(folder)
    assert results_csv_for(folder).parent == out
    run = run_cli("scan", str(folder), "--model", main_window.model_name, "--out", str(out), "--no-progress")
    assert run.returncode == 0, run.stderr
    batch = main_window.batch
    batch.set_folder(str(folder))
    assert len(batch.model.rows) == 2
    assert batch.resume_button.isEnabled()
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == folder else real_access(p, mode))
    assert default_out_dir(folder) == out  # a read-only folder (a CD): the same per-user folder


def test_a_film_the_input_gate_rejected_is_not_assessable_not_unreadable(qtbot):
    from desktop.core.batch import ScanResult
    from desktop.qt.qt_results_table import COLUMNS, QtResultsFilter, QtResultsModel

    model = QtResultsModel()
    model.add_many([
        ScanResult("/a/hip.dcm", "1" * 64, "rejected", None, None, "", "", None, None,
                   "not assessable: hip film", "body_part", relpath="hip.dcm"),
        ScanResult("/a/bad.png", "2" * 64, "error", None, None, "", "", None, None,
                   "/a/bad.png: truncated PNG", "corrupt", relpath="bad.png"),
    ])
    assert model.data(model.index(0, COLUMNS.index("Result"))) == "Not assessable"
    assert model.data(model.index(0, COLUMNS.index("Problem"))) == "not assessable: hip film"
    assert model.data(model.index(1, COLUMNS.index("Result"))) == "Could not be read"
    proxy = QtResultsFilter()
    proxy.setSourceModel(model)
    proxy.set_mode("failed")
    assert proxy.rowCount() == 1
    proxy.set_mode("rejected")
    assert proxy.rowCount() == 1


def test_features_hook_into_the_tools_menu(qtbot, main_window):
    w = main_window
    assert w.tools_menu.menuAction().isVisible()  # site calibration and DICOM receiving are in it
    called = []
    action = w.add_tool_action("Another tool...", lambda: called.append(True), "A further tool")
    assert w.tools_menu.menuAction().isVisible()
    assert action in w.tools_menu.actions()
    action.trigger()
    assert called == [True]


def test_dialogs_are_shrunk_to_fit_a_small_screen(qtbot, main_window):
    from PySide6.QtWidgets import QDialog

    w = main_window
    avail = w.screen().availableGeometry()
    dialog = QDialog(w)
    qtbot.addWidget(dialog)
    dialog.resize(avail.width() + 300, avail.height() + 300)
    w._fit_to_screen(dialog)
    assert dialog.width() <= avail.width()
    assert dialog.height() <= avail.height()


def test_workers_are_superqt_workers_on_pyside6(qtbot):
    import qtpy
    from PySide6.QtCore import QRunnable
    from superqt.utils import WorkerBase

    from desktop.qt.qt_workers import create_worker

    worker = create_worker(lambda: 42, _start=False)
    assert isinstance(worker, WorkerBase)
    assert isinstance(worker, QRunnable)
    assert qtpy.API_NAME == "PySide6"
    with qtbot.waitSignal(worker.signals.returned, timeout=10000) as blocker:
        worker.start()
    assert blocker.args == [42]
    qtbot.waitUntil(lambda: worker.is_done, timeout=5000)


def test_the_gui_shows_and_resumes_a_default_cli_scan(qtbot, main_window, tmp_path):
    """``cxr-screener scan DIR`` (results in DIR/cxr_results): the tab shows them and resumes into that file."""
    from desktop.core.paths import user_models_dir
    from tests.batch_support import run_cli

    bundle = main_window.current_bundle()
    shutil.copytree(bundle.path, user_models_dir() / Path(bundle.path).name)
    folder = make_batch_folder(tmp_path, n_good=2, bad=0)
    run = run_cli("scan", str(folder), "--model", main_window.model_name, "--no-progress")
    assert run.returncode == 0, run.stderr
    cli_csv = folder / "cxr_results" / "results.csv"
    assert cli_csv.is_file()
    shutil.copy(SAMPLES / "shenzhen__CHNCXR_0001_0.png", folder / "ward_a" / "late.png")
    batch = main_window.batch
    batch.set_folder(str(folder))
    assert batch.results_csv == cli_csv
    assert len(batch.model.rows) == 2
    with qtbot.waitSignal(batch.scan_finished, timeout=120000):
        batch.start_scan(resume=True)
    assert len(batch.model.rows) == 3
    assert cli_csv.read_text(encoding="utf-8").count("late.png") == 1
    before = cli_csv.read_bytes()
    with qtbot.waitSignal(batch.scan_finished, timeout=120000):
        batch.start_scan(resume=False)  # from the beginning: into the window's own file
    assert cli_csv.read_bytes() == before  # the CLI's results are left as they are
    assert batch.results_csv != cli_csv
    assert len(batch.model.rows) == 3

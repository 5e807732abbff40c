"""The Folder scan tab: 30 files with 3 bad ones, cancel, resume, exports, and a responsive event loop."""
# ruff: noqa: F811  (pytest fixtures imported from tests.test_qt_fixtures)

from __future__ import annotations

import csv
import time

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import QTimer  # noqa: E402

from tests.test_qt_fixtures import (  # noqa: E402, F401  (fixtures)
    main_window,
    make_batch_folder,
    qt_bundles,
    qt_settings,
    wait_result,
)

pytestmark = pytest.mark.qt


def test_batch_30_images_3_bad_table_complete_and_event_loop_answers(qtbot, main_window, tmp_path):
    w = main_window
    folder = make_batch_folder(tmp_path)
    batch = w.batch

    # A timer in the GUI thread records the gaps between its ticks while the scan runs.
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    with qtbot.waitSignal(batch.scan_finished, timeout=240000):
        w.scan_folder(str(folder))
        timer.start()
        assert batch.is_running()
        assert w.tabs.currentWidget() is batch
    timer.stop()

    rows = batch.model.rows
    assert len(rows) == 30
    assert sum(r.ok for r in rows) == 27
    assert batch.failed_list.count() == 3
    failed_text = "\n".join(batch.failed_list.item(i).text() for i in range(3))
    for name in ("truncated.png", "notes.dcm", "empty.jpg"):
        assert name in failed_text
    assert "Done: 30 file(s) checked, 3 could not be read" in batch.status.text()
    assert batch.progress.value() == batch.progress.maximum()

    # Responsiveness: the event loop kept answering during the whole scan.
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert len(ticks) > 10
    assert max(gaps) < 0.2, f"the GUI thread was blocked for {max(gaps) * 1000:.0f} ms"

    # Filter by decision / failed.
    batch.set_filter("failed")
    assert batch.proxy.rowCount() == 3
    batch.set_filter("positive")
    pos = batch.proxy.rowCount()
    batch.set_filter("negative")
    assert pos + batch.proxy.rowCount() == 27
    batch.set_filter("all")
    assert batch.proxy.rowCount() == 30

    # Sortable by p(COVID-19): failures (no p) first in ascending order.
    batch.table.sortByColumn(2, batch.table.horizontalHeader().sortIndicatorOrder().AscendingOrder)
    first = batch.proxy.mapToSource(batch.proxy.index(0, 0)).row()
    assert not rows[first].ok
    last = batch.proxy.mapToSource(batch.proxy.index(29, 0)).row()
    assert rows[last].p_covid == max(r.p_covid for r in rows if r.ok)

    # Double-click opens the image in the Image tab with its result.
    ok_row = next(i for i in range(30) if rows[batch.proxy.mapToSource(batch.proxy.index(i, 0)).row()].ok)
    index = batch.proxy.index(ok_row, 0)
    path = rows[batch.proxy.mapToSource(index).row()].path
    batch.table.doubleClicked.emit(index)
    wait_result(qtbot, w, path)
    assert w.tabs.currentIndex() == 0


def test_batch_cancel_keeps_rows_and_resume_finishes(qtbot, main_window, tmp_path):
    w = main_window
    folder = make_batch_folder(tmp_path)
    batch = w.batch

    seen = []

    def cancel_after_some(result):
        seen.append(result)
        if len(seen) == 3:
            batch.cancel_scan()

    with qtbot.waitSignal(batch.scan_finished, timeout=240000):
        w.scan_folder(str(folder))
        batch.worker.signals.yielded.connect(cancel_after_some)
    done_first = [r.relpath for r in batch.model.rows]
    assert 3 <= len(done_first) < 30
    assert "Cancelled" in batch.status.text()
    assert batch.resume_button.isEnabled()
    # Every finished row is in the results file too.
    with open(batch.results_csv, newline="", encoding="utf-8") as fh:
        saved = [row["path"] for row in csv.DictReader(fh)]
    assert sorted(saved) == sorted(done_first)

    # The window forgets the table (as after a restart): choosing the folder again loads the saved rows.
    batch.set_folder(str(folder))
    assert sorted(r.relpath for r in batch.model.rows) == sorted(done_first)
    assert "Resume" in batch.status.text()

    # Resuming with another model would mix two models' results: refused with an explanation.
    w.set_model("tiny-second")
    shown = []
    w.errors.dialog_shown.connect(lambda d: (shown.append(d.record.title), QTimer.singleShot(0, d.accept)))
    batch.start_scan(resume=True)
    assert shown == ["Resume with the same model"]
    assert not batch.is_running()
    w.set_model("tiny-mobilenet")

    with qtbot.waitSignal(batch.scan_finished, timeout=240000):
        batch.start_scan(resume=True)
    rows = batch.model.rows
    assert len(rows) == 30
    assert len({r.relpath for r in rows}) == 30  # nothing twice
    assert sum(not r.ok for r in rows) == 3
    with open(batch.results_csv, newline="", encoding="utf-8") as fh:
        saved = [row["path"] for row in csv.DictReader(fh)]
    assert len(saved) == 30
    assert len(set(saved)) == 30


def test_batch_exports_csv_and_pdf(qtbot, main_window, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    w = main_window
    folder = make_batch_folder(tmp_path, n_good=5, bad=1)
    batch = w.batch
    with qtbot.waitSignal(batch.scan_finished, timeout=240000):
        w.scan_folder(str(folder))
    assert len(batch.model.rows) == 6

    out_csv = batch.export_csv(tmp_path / "export.csv")
    with open(out_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    assert {r["status"] for r in rows} == {"ok", "error"}
    assert any(r["path"].endswith("truncated.png") for r in rows)

    batch.anonymize.setChecked(True)
    anon_csv = batch.export_csv(tmp_path / "anon.csv")
    text = anon_csv.read_text(encoding="utf-8")
    assert "truncated.png" not in text
    assert "img_00" not in text
    assert "ANON-" in text
    batch.anonymize.setChecked(False)

    worker = batch.export_pdf(tmp_path / "scan.pdf")
    with qtbot.waitSignal(worker.signals.finished, timeout=120000):
        pass
    pdf_text = " ".join(
        "\n".join(p.extract_text() for p in pypdf.PdfReader(str(tmp_path / "scan.pdf")).pages).split()
    )
    assert "Riverside Health Centre" in pdf_text
    assert "truncated.png" in pdf_text
    summary_pages = len(pypdf.PdfReader(str(tmp_path / "scan.pdf")).pages)

    # With the box ticked, every image that was read gets a page of its own after the summary.
    batch.study_pages.setChecked(True)
    worker = batch.export_pdf(tmp_path / "scan_pages.pdf")
    with qtbot.waitSignal(worker.signals.finished, timeout=120000):
        pass
    pages = pypdf.PdfReader(str(tmp_path / "scan_pages.pdf")).pages
    assert len(pages) == summary_pages + 5
    assert all("Grad-CAM" in p.extract_text() for p in pages[summary_pages:])
    assert w.errors.history == []


def test_batch_without_a_folder_or_model_explains(qtbot, qt_settings, tmp_path):
    from desktop.qt.qt_main_window import QtMainWindow

    empty = tmp_path / "no_models"
    empty.mkdir()
    w = QtMainWindow(qt_settings, show_notice=False, model_dirs=[(empty, "user")])
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: not w.is_busy(), timeout=30000)
    assert w.panel.decision.text() == "No model installed"
    shown = []
    w.errors.dialog_shown.connect(lambda d: (shown.append(d.record.title), QTimer.singleShot(0, d.accept)))
    folder = make_batch_folder(tmp_path, n_good=1, bad=0)
    w.scan_folder(str(folder))
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    assert shown == ["No model installed"]
    assert not w.batch.is_running()


def test_an_error_dialog_does_not_stop_a_running_scan(qtbot, main_window, tmp_path):
    w = main_window
    folder = make_batch_folder(tmp_path, n_good=8, bad=1)
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    dialogs = []
    w.errors.dialog_shown.connect(dialogs.append)  # left open while the scan runs
    with qtbot.waitSignal(w.batch.scan_finished, timeout=240000):
        w.scan_folder(str(folder))
        w.open_files([bad])
    assert len(w.batch.model.rows) == 9
    assert len(dialogs) == 1
    assert dialogs[0].isVisible()
    dialogs[0].accept()

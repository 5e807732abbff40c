"""Qt building blocks: workers, the error handler, the image viewer, settings, the PySide6 runtime."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import QPoint, QPointF, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QLabel  # noqa: E402

from desktop.core.errors import CorruptImageError, OutputExistsError  # noqa: E402
from desktop.core.imaging import load_xray  # noqa: E402

pytestmark = pytest.mark.qt

REPO = Path(__file__).resolve().parents[1]


def test_pyside6_does_not_leak_none_references(qapp):
    """PySide6 6.12.0 on Python < 3.12 drops a reference to None on every void call and
    crashes the window after a few thousand calls ("none_dealloc"); pin another version."""
    label = QLabel()
    before = sys.getrefcount(None)
    for _ in range(3000):
        label.setText("x")
    after = sys.getrefcount(None)
    assert after >= before - 100, (
        f"None lost {before - after} references in 3000 calls: this PySide6 build is broken on "
        f"Python {sys.version_info.major}.{sys.version_info.minor} (use PySide6-Essentials < 6.12 or Python >= 3.12)"
    )


# --- workers ------------------------------------------------------------------


def test_generator_worker_yields_returns_and_runs_off_the_gui_thread(qtbot):
    from desktop.qt.qt_workers import create_worker

    gui = threading.get_ident()
    threads = []

    def work(n):
        for i in range(n):
            threads.append(threading.get_ident())
            yield i
        return "done"

    got = []
    worker = create_worker(work, 5, _start=False)
    worker.signals.yielded.connect(got.append)
    with qtbot.waitSignal(worker.signals.returned, timeout=10000) as blocker:
        worker.start()
    assert blocker.args == ["done"]
    qtbot.waitUntil(lambda: got == [0, 1, 2, 3, 4], timeout=5000)
    assert gui not in threads


def test_worker_quit_stops_between_items_and_closes_the_generator(qtbot):
    from desktop.qt.qt_workers import create_worker

    closed = threading.Event()
    release = threading.Event()

    def work():
        try:
            for i in range(1000):
                yield i
                release.wait(5)
        finally:
            closed.set()

    worker = create_worker(work, _start=False)
    got = []
    worker.signals.yielded.connect(got.append)
    with qtbot.waitSignal(worker.signals.aborted, timeout=10000):
        worker.start()
        qtbot.waitUntil(lambda: len(got) >= 1, timeout=5000)
        worker.quit()
        release.set()
    assert closed.is_set()
    assert len(got) < 1000


def test_worker_errors_reach_the_errored_signal_with_the_traceback(qtbot):
    from desktop.qt.qt_workers import REPORT_PROGRESS, create_worker

    def work(progress):
        progress(1, 2)
        raise CorruptImageError("/data/x.png", "truncated PNG")

    worker = create_worker(work, REPORT_PROGRESS, _start=False)
    progress = []
    worker.signals.progress.connect(progress.append)
    with qtbot.waitSignal(worker.signals.errored, timeout=10000) as blocker:
        worker.start()
    exc = blocker.args[0]
    assert isinstance(exc, CorruptImageError)
    assert exc.__traceback__ is not None
    qtbot.waitUntil(lambda: progress == [(1, 2)], timeout=5000)


# --- the error handler --------------------------------------------------------------


def test_error_texts_are_short_and_details_technical():
    from desktop.qt.qt_errors import describe

    try:
        raise CorruptImageError("/clinic/xrays/scan 7.png", "truncated PNG")
    except CorruptImageError as exc:
        rec = describe(exc, "Opening")
    assert rec.title == "Could not open scan 7.png"
    assert rec.text.startswith("Truncated PNG.")
    assert "PNG, JPEG or DICOM" in rec.text
    assert "/clinic/xrays/scan 7.png" in rec.details
    assert "Traceback" in rec.details

    out = describe(OutputExistsError("/r/report.pdf", "already exists", "choose another name"))
    assert out.title == "Could not save report.pdf"
    assert "What to do: Choose another name." in out.text

    bug = describe(ZeroDivisionError("division by zero"), "Drawing the heatmap")
    assert bug.title == "Unexpected error"
    assert "still usable" in bug.text
    assert "ZeroDivisionError" in bug.details


def test_error_handler_dialog_has_expandable_details(qtbot):
    from desktop.qt.qt_errors import QtErrorHandler

    handler = QtErrorHandler()
    dialogs = []
    handler.dialog_shown.connect(dialogs.append)
    handler.handle(CorruptImageError("/a/b.dcm", "DICOM has no pixel data"))
    assert len(dialogs) == 1
    dialog = dialogs[0]
    assert dialog.isVisible()
    assert "b.dcm" in dialog.text()
    assert "/a/b.dcm" in dialog.detailedText()
    handler.show_message("Second", "queued while the first is open")
    assert len(dialogs) == 1  # one at a time
    QTimer.singleShot(0, dialog.accept)
    qtbot.waitUntil(lambda: len(dialogs) == 2, timeout=5000)
    dialogs[1].accept()
    assert [r.title for r in handler.history] == ["Could not open b.dcm", "Second"]


# --- image viewer -----------------------------------------------------------------------


@pytest.fixture
def view(qtbot):
    from desktop.qt.qt_image_view import QtImageView

    v = QtImageView()
    v.resize(600, 500)
    qtbot.addWidget(v)
    v.show()
    qtbot.waitExposed(v)
    return v


def test_image_view_fit_zoom_actual_size(view):
    xray = load_xray(REPO / "assets" / "samples" / "shenzhen__CHNCXR_0001_0.png")
    view.set_xray(xray)
    fit = view.zoom()
    assert 0 < fit < 1.5
    view.zoom_in()
    assert view.zoom() == pytest.approx(fit * 1.25, rel=1e-3)
    view.actual_size()
    assert view.zoom() == pytest.approx(1.0)
    view.fit()
    assert view.zoom() == pytest.approx(fit)


def test_image_view_right_drag_changes_window_and_reset_restores(qtbot, view):
    xray = load_xray(REPO / "assets" / "samples" / "shenzhen__CHNCXR_0001_0.png")
    view.set_xray(xray)
    windows = []
    view.window_changed.connect(windows.append)
    vp = view.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.RightButton, pos=QPoint(200, 200))
    qtbot.mouseMove(vp, QPoint(260, 170))
    qtbot.mouseRelease(vp, Qt.MouseButton.RightButton, pos=QPoint(260, 170))
    assert windows
    changed = view.display_window
    assert changed.name == "Manual"
    assert changed.width > xray.window.width  # dragged right: more width (less contrast)
    assert changed.center > xray.window.center  # dragged up: higher level
    view.reset_view()
    assert view.display_window is xray.window


def test_image_view_pixel_readout_and_heatmap(view):
    xray = load_xray(REPO / "assets" / "samples" / "shenzhen__CHNCXR_0001_0.png")
    view.set_xray(xray)
    text = view.pixel_text(QPointF(10.5, 20.5))
    assert text.startswith("Pixel x=10, y=20")
    assert f"value {xray.values[20, 10]:.0f}" in text
    assert view.pixel_text(QPointF(-3, 5)) == ""
    heat = np.zeros((64, 64, 4), dtype=np.uint8)
    heat[..., 0] = 255
    heat[..., 3] = 255
    view.set_heatmap(heat)
    assert view.heatmap_shown()
    view.set_heatmap_opacity(1.0)
    rgb = view.image_rgb()
    assert rgb.pixelColor(256, 256).red() == 255
    assert rgb.pixelColor(256, 256).green() == 0
    view.set_heatmap_visible(False)
    assert not view.heatmap_shown()


# --- settings -------------------------------------------------------------------------------


def test_settings_roundtrip_in_an_ini_file(tmp_path):
    from desktop.qt.qt_settings import AppSettings

    s = AppSettings.from_ini(tmp_path / "s.ini")
    assert s.colormap == "jet"
    assert s.heatmap_opacity == pytest.approx(0.45)
    s.heatmap_opacity = 3.0
    assert s.heatmap_opacity == 1.0
    for i in range(15):
        s.add_recent_file(f"/x/{i}.png")
    s.add_recent_file("/x/3.png")
    again = AppSettings.from_ini(tmp_path / "s.ini")
    assert again.recent_files[0] == "/x/3.png"
    assert len(again.recent_files) == 10
    assert again.last_folder("batch") == str(Path.home())
    again.set_last_folder("batch", tmp_path)
    assert AppSettings.from_ini(tmp_path / "s.ini").last_folder("batch") == str(tmp_path)
    assert (tmp_path / "s.ini").read_text().count("recent") >= 1


def test_settings_env_variable_selects_an_ini(tmp_path, monkeypatch):
    from desktop.qt.qt_settings import AppSettings

    monkeypatch.setenv("CXR_SCREENER_SETTINGS", str(tmp_path / "env.ini"))
    s = AppSettings()
    s.operator = "Env Operator"
    assert "Env Operator" in (tmp_path / "env.ini").read_text()


def test_colormaps_offered_exist_in_the_core():
    from desktop.core.overlay import COLORBLIND_SAFE as CORE_SAFE
    from desktop.core.overlay import COLORMAPS as CORE_MAPS
    from desktop.qt.qt_settings import COLORBLIND_SAFE, COLORMAPS

    assert {name for name, _ in COLORMAPS} <= set(CORE_MAPS)
    assert COLORBLIND_SAFE <= set(CORE_SAFE)


def test_model_card_plot_titles(tmp_path):
    from desktop.qt.qt_model_card import bundle_plots

    for name in ("roc_test.png", "reliability_external_padchest.png", "roc.png", "confusion.png", "other_plot.png",
                 "bundle_roc_validation.png"):
        (tmp_path / name).write_bytes(b"")
    titles = [t for t, _ in bundle_plots(tmp_path)]
    assert "ROC curve (test)" in titles
    assert "ROC curve" in titles
    assert "Reliability (calibration) (external padchest)" in titles
    assert "Confusion matrix" in titles
    assert "Other plot" in titles
    assert "ROC curve (validation)" in titles

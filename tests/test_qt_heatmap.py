"""A negative result's heatmap in the window: held back unless asked for, with the PDF's words (issue: fixed meaning)."""
# ruff: noqa: F811  (pytest fixtures imported from tests.test_qt_fixtures)

from __future__ import annotations

import pytest

pytest.importorskip("PySide6.QtWidgets")

from desktop.core.overlay import HIDDEN_BELOW_THRESHOLD, SHOW_BELOW_THRESHOLD  # noqa: E402
from tests.test_qt_fixtures import (  # noqa: E402, F401  (fixtures)
    main_window,
    qt_bundles,
    qt_settings,
    sample_png,
    wait_result,
)

pytestmark = pytest.mark.qt


def _open_negative(qtbot, w, path):  # noqa: ANN001, ANN202
    w.open_files([path])
    wait_result(qtbot, w, path)
    pred = w.current_prediction()
    # the tiny test model scores every sample between 0.25 and 0.5: negative at "balanced", positive at
    # "high_sensitivity"
    assert pred.operating_point == "balanced"
    assert pred.label == "normal", f"expected a negative at the default point. Received: p={pred.p_covid:.3f}"
    assert pred.p_covid >= 0.25
    return pred


def test_a_negative_films_heatmap_is_held_back_and_the_panel_says_why(qtbot, main_window, sample_png):
    w = main_window
    _open_negative(qtbot, w, sample_png)
    assert w.has_analysis()  # the analysis is done, though nothing is drawn
    assert w.view.has_heatmap()
    assert w.view.heatmap_held()
    assert not w.view.heatmap_shown()
    note = w.panel.heat_note.text()
    assert note == HIDDEN_BELOW_THRESHOLD  # the PDF's sentence
    assert "lung fields" not in note  # the lung share is said only of a map the reader can see
    # and how to see it anyway, right under the note
    assert w.panel.heat_below.isVisible()
    assert w.panel.heat_below.text() == SHOW_BELOW_THRESHOLD
    assert not w.panel.heat_below.isChecked()
    assert w.panel.decision.text().startswith("No COVID-19")


def test_asking_for_negatives_draws_the_map_and_is_remembered(qtbot, main_window, sample_png, tmp_path):
    from desktop.qt.qt_settings import AppSettings

    w = main_window
    _open_negative(qtbot, w, sample_png)
    w.panel.heat_below.setChecked(True)
    assert w.view.heatmap_shown()
    assert HIDDEN_BELOW_THRESHOLD not in w.panel.heat_note.text()
    assert "lung fields" in w.panel.heat_note.text()
    assert AppSettings.from_ini(tmp_path / "settings.ini").heatmap_below_threshold  # saved at once
    # the main switch still rules: off hides every map
    w.panel.heat_check.setChecked(False)
    assert not w.view.heatmap_shown()
    w.panel.heat_check.setChecked(True)
    assert w.view.heatmap_shown()
    w.panel.heat_below.setChecked(False)
    assert not w.view.heatmap_shown()
    assert HIDDEN_BELOW_THRESHOLD in w.panel.heat_note.text()
    assert not AppSettings.from_ini(tmp_path / "settings.ini").heatmap_below_threshold


def test_a_new_window_starts_with_the_remembered_choice(qtbot, qt_settings, qt_bundles, sample_png):
    from desktop.qt.qt_main_window import QtMainWindow

    qt_settings.heatmap_below_threshold = True
    w = QtMainWindow(qt_settings, show_notice=False, model_dirs=[(qt_bundles, "user")])
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: bool(w.bundles) and not w.is_busy(), timeout=60000)
    try:
        assert w.panel.heat_below.isChecked()
        _open_negative(qtbot, w, sample_png)
        assert w.view.heatmap_shown()
    finally:
        w.wait_idle(30000)


def test_an_operating_point_that_makes_the_film_positive_draws_its_map(qtbot, main_window, sample_png):
    w = main_window
    _open_negative(qtbot, w, sample_png)
    assert not w.view.heatmap_shown()
    w.panel.op_combo.setCurrentIndex(w.panel.op_combo.findData("high_sensitivity"))
    assert not w.is_busy()  # re-decided without running the model
    assert w.current_prediction().label == "covid"
    assert w.view.heatmap_shown()
    assert not w.view.heatmap_held()
    assert HIDDEN_BELOW_THRESHOLD not in w.panel.heat_note.text()
    assert "lung fields" in w.panel.heat_note.text()
    assert not w.panel.heat_below.isVisible()  # a positive's map is always drawn: nothing to ask for
    w.set_operating_point("balanced")  # negative again: held back again
    assert not w.view.heatmap_shown()
    assert w.panel.heat_note.text() == HIDDEN_BELOW_THRESHOLD
    assert w.panel.heat_below.isVisible()


def test_the_settings_dialog_and_the_report_dialog_use_the_choice(qtbot, main_window, sample_png, tmp_path):
    from desktop.qt.qt_settings import AppSettings

    w = main_window
    _open_negative(qtbot, w, sample_png)
    w.show_settings()
    dialog = w.settings_dialog
    assert dialog.below_threshold.text() == SHOW_BELOW_THRESHOLD
    assert not dialog.below_threshold.isChecked()
    dialog.below_threshold.setChecked(True)
    dialog.accept()
    assert AppSettings.from_ini(tmp_path / "settings.ini").heatmap_below_threshold
    assert w.panel.heat_below.isChecked()
    assert w.view.heatmap_shown()
    w.export_report()
    report = w.report_dialog
    assert report.heatmap_below.text() == SHOW_BELOW_THRESHOLD
    assert report.heatmap_below.isChecked()  # the PDF draws what the screen draws
    assert report.form().report_info().show_heatmap_below_threshold
    qtbot.waitUntil(lambda: report.preview_image is not None or "pypdfium2" in report.preview.text(),
                    timeout=60000)
    report.reject()

"""The report dialog: no invented study date, the preview's report ID is the saved one, previews log nothing,
clinical context reaches the PDF."""
# ruff: noqa: F811  (pytest fixtures imported from tests.test_qt_fixtures)

from __future__ import annotations

import logging

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import QTimer  # noqa: E402

from tests.test_qt_fixtures import (  # noqa: E402, F401  (fixtures)
    main_window,
    qt_bundles,
    qt_settings,
    sample_png,
    test_dicom,
    wait_result,
)

pytestmark = pytest.mark.qt


def _dialog(qtbot, w, path):
    w.open_files([path])
    wait_result(qtbot, w, path)
    w.export_report()
    dialog = w.report_dialog
    qtbot.waitUntil(lambda: dialog.isVisible(), timeout=5000)
    return dialog


def test_png_report_has_no_invented_study_date_and_one_report_id(qtbot, main_window, sample_png, tmp_path,
                                                                 caplog) -> None:
    pypdf = pytest.importorskip("pypdf")
    dialog = _dialog(qtbot, main_window, sample_png)
    assert dialog.study_date.text() == ""  # a PNG records no study date: not today's
    assert "not recorded" in dialog.study_date.placeholderText()
    caplog.set_level(logging.INFO, logger="desktop.core")
    qtbot.waitUntil(lambda: dialog.preview_image is not None or "pypdfium2" in dialog.preview.text(),
                    timeout=60000)
    dialog.symptoms.setPlainText("Cough and fever for 5 days")
    dialog.spo2.setText("91")
    dialog.temperature.setText("38.6")
    dialog.urgency.setCurrentIndex(dialog.urgency.findData("urgent"))
    dialog.clinic_phone.setText("+54 387 555 0101")
    dialog.prevalence.setValue(10.0)
    dialog.update_preview()
    qtbot.waitUntil(lambda: dialog.preview_status.text() == "Up to date" or "pypdfium2" in dialog.preview.text(),
                    timeout=60000)
    assert not [r for r in caplog.records if "wrote study report" in r.getMessage()]  # previews are not reports
    out = tmp_path / "r.pdf"
    with qtbot.waitSignal(dialog.saved, timeout=60000):
        dialog.save_to(out)
    text = " ".join("\n".join(p.extract_text() for p in pypdf.PdfReader(str(out)).pages).split())
    assert f"Report ID: {dialog.report_id}" in text  # the ID the preview showed
    assert [r.getMessage() for r in caplog.records].count(f"wrote study report {dialog.report_id}") == 1
    assert "Study date not recorded" in text
    for value in ("Cough and fever for 5 days", "SpO₂ 91 %", "38.6 °C", "Urgency urgent", "+54 387 555 0101",
                  "prevalence"):
        assert value in text, value
    QTimer.singleShot(0, dialog.saved_box.reject)

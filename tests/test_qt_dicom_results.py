"""The report dialog's DICOM results option: SC + SR written into the film's own study after saving."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import QTimer  # noqa: E402

from tests.test_qt_fixtures import (  # noqa: E402, F401  (fixtures)
    main_window,
    qt_bundles,
    qt_settings,
    test_dicom,
    wait_result,
)

pytestmark = pytest.mark.qt


def test_report_dialog_writes_dicom_results_into_the_study(qtbot, main_window, test_dicom, tmp_path):  # noqa: F811
    import pydicom

    w = main_window
    w.open_files([test_dicom])
    wait_result(qtbot, w, test_dicom)
    w.export_report()
    dialog = w.report_dialog
    assert dialog.dicom_results.isEnabled()  # a DICOM film: it has a study to return results to
    dialog.dicom_results.setChecked(True)
    out = tmp_path / "report.pdf"
    with qtbot.waitSignal(dialog.saved, timeout=60000):
        dialog.save_to(out)
    qtbot.waitUntil(lambda: len(list((tmp_path / "dicom-results").rglob("*.dcm"))) >= 2, timeout=60000)
    study = pydicom.dcmread(test_dicom, stop_before_pixels=True).StudyInstanceUID
    written = [pydicom.dcmread(p) for p in (tmp_path / "dicom-results").rglob("*.dcm")]
    kinds = sorted(d.SOPClassUID.name for d in written)
    assert kinds == ["Comprehensive SR Storage", "Secondary Capture Image Storage"]
    assert all(d.StudyInstanceUID == study for d in written)
    QTimer.singleShot(0, dialog.saved_box.reject)

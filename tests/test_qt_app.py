"""The real window, driven offscreen: open, results, heatmap, models, errors, reports, settings."""
# ruff: noqa: F811  (pytest fixtures imported from tests.test_qt_fixtures)

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import Qt, QTimer  # noqa: E402

from tests.test_qt_fixtures import (  # noqa: E402, F401  (fixtures)
    DICOM_PATIENT,
    main_window,
    qt_bundles,
    qt_settings,
    sample_png,
    test_dicom,
    wait_result,
)

pytestmark = pytest.mark.qt


def test_open_png_and_dicom_show_result_and_heatmap(qtbot, main_window, sample_png, test_dicom):
    w = main_window
    w.open_files([sample_png, test_dicom])
    wait_result(qtbot, w, sample_png)
    pred = w.current_prediction()
    assert 0.0 <= pred.p_covid <= 1.0
    assert pred.model == "tiny-mobilenet"
    negative = pred.label != "covid"  # the tiny model calls every sample negative at "balanced"
    assert w.view.has_heatmap()
    assert w.view.heatmap_shown() != negative  # a negative's map is held back unless asked for
    assert w.view.heatmap_held() == negative
    assert "probability of COVID-19" in w.panel.probability.text()
    assert w.panel.decision.text().startswith(("COVID-19 pattern", "No COVID-19 pattern"))
    assert w.act_report.isEnabled()
    assert w.file_list.count() == 2

    w.file_list.setCurrentRow(1)
    wait_result(qtbot, w, test_dicom)
    assert w.view.xray.format == "dicom"
    assert w.view.xray.shape == (256, 256)
    assert w.metadata.value("Modality") == "CR"
    assert w.metadata.value("Patient ID") == DICOM_PATIENT["PatientID"]
    # DICOM window presets are offered (and applied) from the toolbar
    labels = [w.preset_combo.itemText(i) for i in range(w.preset_combo.count())]
    assert "LUNG" in labels
    w.preset_combo.setCurrentIndex(labels.index("LUNG"))
    w._on_preset(labels.index("LUNG"))
    assert w.view.display_window.name == "LUNG"
    assert w.errors.history == []


def test_heatmap_toggle_opacity_and_colormap(qtbot, main_window, sample_png):
    w = main_window
    w.open_files([sample_png])
    wait_result(qtbot, w)
    w.panel.heat_below.setChecked(True)  # the sample is negative: ask for its map
    assert w.view.heatmap_shown()
    w.panel.heat_check.setChecked(False)
    assert not w.view.heatmap_shown()
    assert not w.act_heatmap.isChecked()
    w.act_heatmap.trigger()
    assert w.view.heatmap_shown()
    w.panel.opacity.setValue(80)
    assert w.view.heatmap_opacity() == pytest.approx(0.8, abs=0.01)
    assert w.settings.heatmap_opacity == pytest.approx(0.8, abs=0.01)
    before = w.panel.colorbar.pixmap().toImage()
    w.panel.cmap_combo.setCurrentIndex(w.panel.cmap_combo.findData("cividis"))
    assert w.settings.colormap == "cividis"
    assert w.panel.colorbar.pixmap().toImage() != before
    assert "colour-blind safe" in w.panel.heat_note.text()


def test_switch_operating_point_and_model_update_result(qtbot, main_window, sample_png):
    w = main_window
    w.open_files([sample_png])
    wait_result(qtbot, w)
    first = w.current_prediction()
    assert first.operating_point == "balanced"
    assert first.threshold == pytest.approx(0.5)

    # The operating point re-decides at once, without running the model again.
    w.panel.op_combo.setCurrentIndex(w.panel.op_combo.findData("high_sensitivity"))
    assert not w.is_busy()
    second = w.current_prediction()
    assert second.operating_point == "high_sensitivity"
    assert second.threshold == pytest.approx(0.25)
    assert second.p_covid == first.p_covid
    assert second.label == ("covid" if second.p_covid >= 0.25 else "normal")
    assert "25.0%" in w.panel.probability.text()

    # Another model: its own result, thresholds and name in the panel.
    w.panel.model_combo.setCurrentIndex(w.panel.model_combo.findData("tiny-second"))
    qtbot.waitUntil(lambda: w.current_prediction() is not None and w.current_prediction().model == "tiny-second",
                    timeout=60000)
    third = w.current_prediction()
    assert third.model_version == "2.0-test"
    assert "tiny-second" in w.panel.model_used.text()
    assert third.threshold in (pytest.approx(0.01), pytest.approx(0.99))
    w.set_operating_point("balanced")
    assert w.current_prediction().threshold == pytest.approx(0.99)
    assert w.current_prediction().label == "normal" if third.p_covid < 0.99 else "covid"
    assert w.panel.decision.text().startswith("No COVID-19") == (w.current_prediction().label == "normal")
    # Back to the first model: its stored result, no new run needed.
    w.set_model("tiny-mobilenet")
    assert w.current_prediction().model == "tiny-mobilenet"


def test_corrupt_file_error_dialog_then_window_still_works(qtbot, main_window, sample_png, tmp_path):
    w = main_window
    bad = tmp_path / "broken_scan.png"
    bad.write_bytes(sample_png.read_bytes()[:200])
    shown = []

    def answer(dialog):
        shown.append((dialog.record.title, dialog.informativeText(), dialog.detailedText()))
        QTimer.singleShot(0, dialog.accept)

    w.errors.dialog_shown.connect(answer)
    w.open_files([bad])
    qtbot.waitUntil(lambda: bool(shown), timeout=30000)
    title, text, details = shown[0]
    assert "broken_scan.png" in title
    assert "truncated" in text.lower() or "damaged" in text.lower()
    assert str(bad) in details
    qtbot.waitUntil(lambda: w.errors.current_dialog is None, timeout=5000)
    assert w.file_list.count() == 0  # the failed file is not left in the list

    # The window still works.
    w.open_files([sample_png])
    wait_result(qtbot, w, sample_png)
    assert len(w.errors.history) == 1


def test_errors_queue_one_dialog_at_a_time(qtbot, main_window, tmp_path):
    w = main_window
    files = []
    for i in range(3):
        p = tmp_path / f"bad{i}.dcm"
        p.write_bytes(b"not an image" * (i + 1))
        files.append(p)
    seen = []

    def answer(dialog):
        seen.append(dialog.record.title)
        assert w.errors.current_dialog is dialog
        QTimer.singleShot(0, dialog.accept)

    w.errors.dialog_shown.connect(answer)
    w.open_files(files)
    qtbot.waitUntil(lambda: len(seen) == 3 and w.errors.current_dialog is None, timeout=30000)
    assert sorted(seen) == [f"Could not open bad{i}.dcm" for i in range(3)]


def test_report_export_writes_pdf_with_form_fields(qtbot, main_window, test_dicom, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    w = main_window
    w.open_files([test_dicom])
    wait_result(qtbot, w, test_dicom)
    w.export_report()
    dialog = w.report_dialog
    qtbot.waitUntil(lambda: dialog.isVisible(), timeout=5000)
    # Prefilled from the DICOM and the settings.
    assert dialog.patient_id.text() == "PID-4711"
    assert dialog.patient_name.text() == "Testperson Jane"
    assert dialog.birth_date.text() == "1970-01-02"
    assert dialog.study_date.text() == "2024-03-15"
    assert dialog.clinic_name.text() == "Riverside Health Centre"
    assert dialog.operator.text() == "Nurse Ada Example"
    # The preview of page 1 appears.
    qtbot.waitUntil(lambda: dialog.preview_image is not None or "pypdfium2" in dialog.preview.text(),
                    timeout=60000)
    # Edit the form as a user would.
    dialog.patient_name.setText("Jane Q. Testperson")
    dialog.accession.setText("ACC-2024-0099")
    dialog.clinic_name.setText("Hillside Clinic")
    dialog.operator.setText("Ada Nurse")
    out = tmp_path / "report.pdf"
    with qtbot.waitSignal(dialog.saved, timeout=60000) as blocker:
        dialog.save_to(out)
    assert blocker.args == [str(out)]
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(str(out)).pages)
    flat = " ".join(text.split())
    for value in ("Jane Q. Testperson", "PID-4711", "ACC-2024-0099", "Hillside Clinic", "Ada Nurse"):
        assert value in flat, value
    assert "tiny-mobilenet" in flat
    # "Remember" was ticked: the clinic and operator are kept for next time.
    assert w.settings.clinic_name == "Hillside Clinic"
    assert w.settings.operator == "Ada Nurse"
    box = dialog.saved_box
    QTimer.singleShot(0, box.reject)


def test_report_anonymised_leaves_out_identifiers(qtbot, main_window, test_dicom, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    w = main_window
    w.open_files([test_dicom])
    wait_result(qtbot, w, test_dicom)
    w.export_report()
    dialog = w.report_dialog
    dialog.anonymize.setChecked(True)
    assert not dialog.patient_name.isEnabled()
    assert dialog.default_file_name().startswith("CXR-report_ANON-")
    out = tmp_path / "anon.pdf"
    with qtbot.waitSignal(dialog.saved, timeout=60000):
        dialog.save_to(out)
    flat = " ".join("\n".join(p.extract_text() for p in pypdf.PdfReader(str(out)).pages).split())
    for value in ("Testperson", "PID-4711", "chest_test"):
        assert value not in flat, value
    assert "ANON-" in flat
    QTimer.singleShot(0, dialog.saved_box.reject)


def test_model_card_dialog_shows_card_and_hashes(qtbot, main_window):
    w = main_window
    w.show_model_card()
    dialog = w.card_dialog
    text = dialog.text.toPlainText()
    bundle = w.current_bundle()
    assert "Model card: tiny-mobilenet" in text
    assert bundle.card.sha256 in text
    assert "Limitations" in text
    assert "high_sensitivity" in text
    dialog.reject()


def test_about_and_help_dialogs(qtbot, main_window):
    w = main_window
    w.show_about()
    about = w.about_dialog
    assert about.model_list.count() == 2
    assert "tiny-mobilenet" in about.model_list.item(0).text() or "tiny-mobilenet" in about.model_list.item(1).text()
    about.reject()
    w.show_help()
    w.help_dialog.reject()


def test_first_run_notice_until_accepted(qtbot, qt_settings, qt_bundles):
    from desktop.qt.qt_main_window import QtMainWindow

    qt_settings.notice_accepted = False
    w = QtMainWindow(qt_settings, show_notice=True, model_dirs=[(qt_bundles, "user")])
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: getattr(w, "notice_dialog", None) is not None and w.notice_dialog.isVisible(),
                    timeout=5000)
    dialog = w.notice_dialog
    assert "not a diagnosis" in dialog.confirm.text()
    assert not dialog.ok_button.isEnabled()
    dialog.confirm.setChecked(True)
    assert dialog.ok_button.isEnabled()
    dialog.ok_button.click()
    assert qt_settings.notice_accepted
    w.wait_idle(30000)


def test_settings_dialog_saves_to_the_given_ini(qtbot, main_window, tmp_path):
    from desktop.qt.qt_settings import AppSettings

    w = main_window
    w.show_settings()
    dialog = w.settings_dialog
    dialog.clinic_name.setText("Mountain View Clinic")
    dialog.operator.setText("Dr. Example")
    dialog.model.setCurrentIndex(dialog.model.findData("tiny-second"))
    dialog.operating_point.setCurrentIndex(dialog.operating_point.findData("high_sensitivity"))
    dialog.colormap.setCurrentIndex(dialog.colormap.findData("viridis"))
    dialog.accept()
    again = AppSettings.from_ini(tmp_path / "settings.ini")
    assert again.clinic_name == "Mountain View Clinic"
    assert again.operator == "Dr. Example"
    assert again.default_model == "tiny-second"
    assert again.default_operating_point == "high_sensitivity"
    assert again.colormap == "viridis"
    assert w.model_name == "tiny-second"
    assert w.operating_point == "high_sensitivity"


def test_recent_files_and_drop(qtbot, main_window, sample_png, test_dicom):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    w = main_window
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(sample_png)), QUrl.fromLocalFile(str(test_dicom))])
    event = QDropEvent(QPointF(100, 100), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    w.dropEvent(event)
    wait_result(qtbot, w, sample_png)
    assert w.file_list.count() == 2
    recent = w.settings.recent_files
    assert str(Path(test_dicom).absolute()) in recent
    assert str(Path(sample_png).absolute()) in recent
    w._fill_recent()
    assert any(a.text() == sample_png.name for a in w.recent_menu.actions())
    w.close_current()
    assert w.file_list.count() == 1


def test_keyboard_shortcuts_exist(main_window):
    w = main_window
    shortcuts = {a.shortcut().toString() for a in w.actions() if not a.shortcut().isEmpty()}
    for key in ("Ctrl+O", "Ctrl+Shift+O", "Ctrl+E", "H", "F", "R", "Alt+1", "Alt+2"):
        assert key in shortcuts, key


def test_gui_command_is_registered():
    import ast

    from desktop.core.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["gui", "a.png", "b.dcm"])
    assert args.files == ["a.png", "b.dcm"]
    source = Path(__file__).resolve().parents[1] / "desktop" / "core" / "commands" / "gui.py"
    top = [n for n in ast.parse(source.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert {a.name for n in top for a in n.names} <= {"annotations", "argparse"}


def test_gui_entry_point_smoke_test(tmp_path, sample_png):
    """``cxr-screener-gui --smoke-test FILE`` starts the window, analyses FILE and exits 0 (installer check)."""
    import os
    import shutil
    import subprocess
    import sys

    from tests.model_fixtures import tiny_bundle_path

    home = tmp_path / "home"
    shutil.copytree(tiny_bundle_path(), home / "models" / "tiny-mobilenet")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", CXR_SCREENER_HOME=str(home),
               CXR_SCREENER_SETTINGS=str(tmp_path / "gui.ini"))
    proc = subprocess.run([sys.executable, "-m", "desktop.qt.app", "--smoke-test", str(sample_png)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke test passed" in proc.stdout
    assert (home / "logs" / "gui.log").read_text(encoding="utf-8").count("smoke test passed") == 1

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    proc = subprocess.run([sys.executable, "-m", "desktop.qt.app", "--smoke-test", str(bad)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Could not open bad.png" in proc.stdout

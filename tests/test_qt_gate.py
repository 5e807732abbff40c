"""The window behind the input gate: a hip, lateral or child's film is "not assessable", never a result.

Also the OOD caution in the result panel, and the Folder scan tab with a site
chosen on the Image tab (its profile and the bundle's input statistics reach
the scan; an edited profile is refused before it starts).
"""
# ruff: noqa: F811  (pytest fixtures imported from tests.test_qt_fixtures)

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets")

from tests.test_qt_fixtures import (  # noqa: E402, F401  (fixtures)
    main_window,
    make_batch_folder,
    qt_bundles,
    qt_settings,
    wait_result,
)
from tests.test_session_gate import chest_dicom, far_ood_stats, install_stats, site_profile  # noqa: E402

pytestmark = pytest.mark.qt


def wait_analysis(qtbot: Any, window: Any, path: Path, timeout: int = 60000) -> None:
    """Wait until ``path`` is shown and analysed with the current model (a rejected film has no heatmap)."""
    key = str(Path(path).absolute())

    def done() -> bool:
        study = window.current_study()
        return (window.current_path == key and study is not None and window.model_name in study.analyses
                and not window.is_busy())

    qtbot.waitUntil(done, timeout=timeout)


def _messages(monkeypatch: pytest.MonkeyPatch, window: Any) -> list[tuple[str, str]]:
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(window.errors, "show_message", lambda title, text, details="": shown.append((title, text)))
    monkeypatch.setattr(window.errors, "handle", lambda exc, what="": shown.append((what, str(exc))))
    return shown


@pytest.mark.parametrize(
    ("tags", "code", "headline"),
    [({"BodyPartExamined": "HIP"}, "not_chest", "Not assessable: hip film"),
     ({"ViewPosition": "LL"}, "not_frontal_chest", "Not assessable: lateral view (LL)"),
     ({"PatientAge": "006Y"}, "paediatric", "Not assessable: child (age 6)")],
)
def test_a_film_the_gate_rejects_is_not_assessable_in_the_window(
    qtbot, main_window, tmp_path, monkeypatch, tags, code, headline
) -> None:
    w = main_window
    path = chest_dicom(tmp_path / "film.dcm", **tags)
    w.open_files([str(path)])
    wait_analysis(qtbot, w, path)
    panel = w.panel
    assert panel.decision.text() == headline
    assert code in panel.probability.text()
    assert "%" not in panel.probability.text()  # no p(COVID-19)
    assert "No COVID-19 result is given for this film" in panel.advice.text()
    assert panel.bar._p is None
    assert panel.bar._threshold is None
    assert panel.bar.isHidden()  # no bar to read as 0%
    assert w.current_prediction() is None
    assert not panel.report_button.isEnabled()
    assert not w.act_report.isEnabled()
    assert not w.view.has_heatmap()
    assert "not assessable" in w.file_list.currentItem().text()

    shown = _messages(monkeypatch, w)
    w.export_report()  # e.g. a shortcut: refused in words, no dialog, no traceback
    assert shown
    assert shown[0][0] == "No report for this film"
    assert code in shown[0][1]
    assert getattr(w, "report_dialog", None) is None

    for op in w.current_bundle().card.operating_points:  # no operating point makes a result of it
        w.set_operating_point(op.name)
        assert w.current_prediction() is None
        assert w.panel.decision.text() == headline
    w._on_colormap("viridis")  # redrawing the heatmap has nothing to draw
    assert not w.view.has_heatmap()
    assert len(shown) == 1


def test_a_chest_dicom_gets_its_result_and_an_unusual_film_a_caution(qtbot, main_window, tmp_path) -> None:
    from desktop.core.ood import FLAG_TEXT

    w = main_window
    path = chest_dicom(tmp_path / "chest.dcm")
    w.open_files([str(path)])
    wait_result(qtbot, w, path)
    assert w.panel.decision.text().endswith("screen")
    assert not w.panel.bar.isHidden()
    assert "Estimated probability of COVID-19" in w.panel.probability.text()
    assert w.panel.report_button.isEnabled()
    assert w.panel.caution.isHidden()  # the test bundle has no input statistics: no OOD flag

    bundle = w.current_bundle()
    install_stats(bundle, far_ood_stats(w.predictors.get(bundle).feature_shape[2]))
    w.predictors.clear()  # statistics are read once per bundle
    other = chest_dicom(tmp_path / "chest2.dcm", PatientAge="050Y")
    w.open_files([str(other)])
    wait_result(qtbot, w, other)
    assert w.current_prediction() is not None  # a flag is advice, never a refusal
    assert not w.panel.caution.isHidden()
    assert FLAG_TEXT in w.panel.caution.text()
    # and the PDF the report dialog writes says it in its result box
    w.export_report()
    dialog = w.report_dialog
    qtbot.waitUntil(lambda: dialog.isVisible(), timeout=5000)
    assert dialog.caution == FLAG_TEXT
    out = tmp_path / "odd.pdf"
    with qtbot.waitSignal(dialog.saved, timeout=60000):
        dialog.save_to(str(out))
    from tests.report_helpers import flat, pdf_text

    assert "Note: this film is unlike the films the model was trained on" in flat(pdf_text(out))
    from PySide6.QtCore import QTimer

    QTimer.singleShot(0, dialog.saved_box.reject)


def test_an_image_opened_with_a_site_chosen_is_decided_at_the_site_threshold(qtbot, main_window) -> None:
    from tests.batch_support import sample_images

    w = main_window
    profile = site_profile(w.current_bundle(), "Clinic East", 4)
    w._fill_operating_points(w.current_bundle())
    w.set_operating_point("site:Clinic East")
    w.open_files([str(sample_images()[0])])  # analysed after the site was chosen
    wait_result(qtbot, w)
    pred = w.current_prediction()
    assert pred.operating_point == "site:Clinic East"
    assert pred.threshold == pytest.approx(profile.threshold)


def test_a_folder_scan_with_a_site_chosen_uses_the_site_and_an_edited_profile_is_refused(
    qtbot, main_window, tmp_path, monkeypatch
) -> None:
    from desktop.core.ood import FLAG_TEXT
    from desktop.qt.qt_results_table import COLUMNS
    from tests.report_helpers import flat, pdf_text

    w = main_window
    bundle = w.current_bundle()
    profile = site_profile(bundle, "Clinic East", 4)
    install_stats(bundle, far_ood_stats(w.predictors.get(bundle).feature_shape[2]))
    w._fill_operating_points(bundle)
    w.set_operating_point("site:Clinic East")
    folder = make_batch_folder(tmp_path, n_good=4, bad=1)
    chest_dicom(folder / "hip.dcm", BodyPartExamined="HIP")
    batch = w.batch
    with qtbot.waitSignal(batch.scan_finished, timeout=120000):
        w.scan_folder(str(folder))
    rows = batch.model.rows
    assert len(rows) == 6
    assert all(r.site == "Clinic East" for r in rows)
    ok = [r for r in rows if r.ok]
    assert len(ok) == 4
    assert all(r.operating_point == "site:Clinic East" for r in ok)
    assert all(r.threshold == pytest.approx(profile.threshold) for r in ok)
    assert all(r.label == ("covid" if r.p_covid >= profile.threshold else "normal") for r in ok)
    assert all(r.ood_flag is True for r in ok)  # the bundle's input statistics reached the scan
    first = next(i for i, r in enumerate(rows) if r.ok)
    assert batch.model.data(batch.model.index(first, COLUMNS.index("Problem"))) == FLAG_TEXT
    assert not batch.table.isColumnHidden(COLUMNS.index("Site"))
    hip = next(i for i, r in enumerate(rows) if r.rejected)
    assert batch.model.data(batch.model.index(hip, COLUMNS.index("Problem"))) == "not assessable: hip film"
    assert batch.model.data(batch.model.index(hip, COLUMNS.index("COVID-19 probability"))) == ""
    assert "Done: 6 file(s) checked" in batch.status.text()

    batch.study_pages.setChecked(True)  # pages explained again by the scan's model, at the site's threshold
    worker = batch.export_pdf(tmp_path / "scan.pdf")
    assert worker is not None
    assert w.wait_idle(60000)
    text = flat(pdf_text(tmp_path / "scan.pdf"))
    assert "could not be made" not in text
    assert "not assessable: hip film (not_chest)" in text
    assert "site:Clinic East" in text

    text = profile.path.read_text(encoding="utf-8").replace('"threshold": ', '"threshold": 0.0001, "x": ', 1)
    profile.path.write_text(text, encoding="utf-8")
    shown = _messages(monkeypatch, w)
    batch.start_scan()
    assert shown
    assert "site" in shown[0][0].lower()
    assert "changed after it was made" in shown[0][1]
    assert not batch.is_running()
    assert len(batch.model.rows) == 6  # the finished scan's rows stay; nothing was started

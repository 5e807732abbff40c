"""The window's site choice: calibrated sites beside the operating points, remembered, and the Tools menu."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_qt_fixtures import main_window, qt_bundles, qt_settings, wait_result  # noqa: F401

pytestmark = pytest.mark.qt


def _calibrate(bundle, name: str = "Clinic East"):  # noqa: ANN001, ANN202
    from desktop.core import site

    scores = list(np.random.default_rng(4).beta(2, 5, 40))
    return site.save_profile(site.make_profile(name, bundle, scores, operator="tester"))


def test_site_threshold_is_offered_used_and_remembered(qtbot, main_window, tmp_path) -> None:  # noqa: ANN001, F811
    from tests.batch_support import sample_images

    bundle = main_window.current_bundle()
    profile = _calibrate(bundle)
    main_window._fill_operating_points(bundle)
    combo = main_window.panel.op_combo
    assert combo.findData("site:Clinic East") >= 0  # offered beside the card's operating points
    main_window.open_files([str(sample_images()[0])])
    wait_result(qtbot, main_window)
    main_window.set_operating_point("site:Clinic East")
    pred = main_window.current_prediction()
    assert pred.operating_point == "site:Clinic East"
    assert pred.threshold == pytest.approx(profile.threshold)
    assert pred.label == ("covid" if pred.p_covid >= profile.threshold else "normal")
    assert "site 'Clinic East', 40 local normal films" in main_window.panel.op_text.text()
    assert main_window.settings.site == "Clinic East"  # remembered for the next start
    main_window.set_operating_point(bundle.card.default_operating_point)
    assert main_window.settings.site == ""
    assert main_window.current_prediction().operating_point == bundle.card.default_operating_point


def test_edited_site_profile_is_refused_in_the_window(qtbot, main_window, monkeypatch) -> None:  # noqa: ANN001, F811
    bundle = main_window.current_bundle()
    profile = _calibrate(bundle, "Clinic West")
    text = profile.path.read_text(encoding="utf-8").replace('"threshold": ', '"threshold": 0.0001, "x": ', 1)
    profile.path.write_text(text, encoding="utf-8")
    shown = []
    monkeypatch.setattr(main_window.errors, "handle", lambda exc, what: shown.append((exc, what)))
    before = main_window.session.operating_point
    main_window.set_operating_point("site:Clinic West")
    assert shown
    assert "site" in shown[0][1].lower()
    assert main_window.session.operating_point == before  # nothing changed


def test_tools_menu_opens_calibration_and_receiving(qtbot, main_window) -> None:  # noqa: ANN001, F811
    names = [a.text().replace("&", "") for a in main_window.tools_menu.actions()]
    assert "Calibrate for this site..." in names
    assert "Receive films (DICOM)..." in names
    dialog = main_window.calibrate_dialog()
    qtbot.addWidget(dialog)
    assert dialog.isVisible()
    dialog.close()
    panel = main_window.receiving_panel()
    assert panel.isVisible()
    assert main_window.receiving_panel() is panel  # one panel, shown again

"""The "Calibrate for this site..." dialog (pytest-qt): screen off the GUI thread, draw, save, list, remove."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from desktop.core import site  # noqa: E402
from desktop.core.bundle import load_bundle  # noqa: E402
from tests.batch_support import make_png  # noqa: E402


def _folder(root: Path, n: int) -> Path:
    for i in range(n):
        make_png(root / f"n{i:03d}.png", 300 + i, size=96)
    return root


def _dialog(qtbot: Any, tiny_bundle: Path) -> Any:
    from desktop.qt.qt_calibrate import QtCalibrateDialog

    dialog = QtCalibrateDialog(load_bundle(tiny_bundle), operator="tester")
    qtbot.addWidget(dialog)
    return dialog


def _screen(qtbot: Any, dialog: Any) -> None:
    assert dialog.screen_button.isEnabled()
    dialog.screen_button.click()
    assert dialog.is_running() or dialog.worker.is_done
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=60000)
    qtbot.waitUntil(lambda: dialog.progress.maximum() == 1, timeout=10000)


def test_calibrate_save_list_remove(qtbot: Any, tmp_path: Path, tiny_bundle: Path) -> None:
    folder = _folder(tmp_path / "normals", 34)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    dialog = _dialog(qtbot, tiny_bundle)
    assert not dialog.save_button.isEnabled()
    dialog.site_edit.setText("Clinic North")
    dialog.normals_edit.setText(str(folder))
    _screen(qtbot, dialog)
    assert len(dialog.scores["normals"]) == 34
    assert dialog.counts["unreadable"] == 1
    assert "broken.png" in dialog.details.toPlainText()
    assert "34 local normal films" in dialog.status.text()
    assert "1 unreadable file(s) left out" in dialog.status.text()
    assert dialog.preview is not None
    thr = dialog.preview["threshold"]
    assert dialog.save_button.isEnabled()
    # the chart shows the local normals and the chosen threshold
    ax = dialog.chart.figure.axes[0]
    assert any(f"{thr:.2f}" in t.get_text() for t in ax.get_legend().get_texts())
    # a stricter target moves the threshold up, without screening again
    dialog.target_spin.setValue(0.99)
    assert dialog.preview["threshold"] >= thr
    dialog.save_button.click()
    prof = site.load_profile("Clinic North", load_bundle(tiny_bundle))
    assert prof.data["operator"] == "tester"
    assert prof.data["target_specificity"] == pytest.approx(0.99)
    assert dialog.profile_list.count() == 1
    assert dialog.profile_list.item(0).text().startswith("Clinic North - ")
    dialog.profile_list.setCurrentRow(0)
    assert dialog.remove_button.isEnabled()
    dialog.remove_selected(confirm=False)
    assert dialog.profile_list.count() == 0
    assert site.site_names() == []


def test_too_few_films_cannot_be_saved(qtbot: Any, tmp_path: Path, tiny_bundle: Path) -> None:
    dialog = _dialog(qtbot, tiny_bundle)
    dialog.site_edit.setText("Small")
    dialog.normals_edit.setText(str(_folder(tmp_path / "few", 8)))
    _screen(qtbot, dialog)
    assert "only 8 readable normal film(s)" in dialog.status.text()
    assert "at least 30 are needed" in dialog.status.text()
    assert not dialog.save_button.isEnabled()


def test_edited_profile_listed_as_unusable(qtbot: Any, tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    prof = site.save_profile(site.make_profile("X", bundle, [i / 100 for i in range(40)]))
    assert prof.path is not None
    prof.path.write_text(prof.path.read_text().replace('"site": "X"', '"site": "Y"'))
    dialog = _dialog(qtbot, tiny_bundle)
    assert "unusable" in dialog.profile_list.item(0).text()
    assert "changed after it was made" in dialog.profile_list.item(0).text()


def test_screenshot(qtbot: Any, tmp_path: Path, tiny_bundle: Path) -> None:
    """A grab of the dialog after screening (set CXR_SCREENSHOT_DIR to keep it)."""
    dialog = _dialog(qtbot, tiny_bundle)
    dialog.site_edit.setText("Clinic North")
    dialog.normals_edit.setText(str(_folder(tmp_path / "normals", 31)))
    dialog.show()
    _screen(qtbot, dialog)
    out = Path(os.environ.get("CXR_SCREENSHOT_DIR", tmp_path)) / "calibrate_dialog_test.png"
    assert dialog.grab().save(str(out))
    assert out.stat().st_size > 5000

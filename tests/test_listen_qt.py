"""The Receiving panel alone (pytest-qt, offscreen): start, a film arrives and is screened, stop."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("pynetdicom")

from tests.batch_support import bundle_source, model_name  # noqa: E402,F401
from tests.listen_support import free_port, make_films, send  # noqa: E402


def test_receiving_panel(qtbot, tmp_path: Path, model_name: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from PySide6.QtWidgets import QMainWindow

    from desktop.qt.qt_receiving import QtReceivingPanel, open_receiving_panel

    panel = QtReceivingPanel(model_name=model_name, out_dir=tmp_path / "received")
    qtbot.addWidget(panel)
    port = free_port()
    panel.port.setValue(port)
    assert panel.start()
    assert not panel.port.isEnabled()
    assert panel.start_button.text() == "Stop receiving"
    assert f"127.0.0.1:{port}" in panel.status.text()
    films = make_films(tmp_path / "films", 2)
    assert send(port, films) == [0, 0]
    qtbot.waitUntil(lambda: panel.results.count() == 2, timeout=60_000)
    assert "Films received: 2 · screened: 2" in panel.counts.text()
    assert "DICOM results: 2" in panel.counts.text()
    assert "p=" in panel.results.item(0).text()
    assert len(list((tmp_path / "received" / "dicom-results").glob("*.dcm"))) == 4
    with qtbot.waitSignal(panel.listenerEvent, timeout=20_000,
                          check_params_cb=lambda e: e.kind == "stopped"):
        panel.toggle()
    assert panel.start_button.text() == "Start receiving"
    assert panel.port.isEnabled()
    assert not panel.running
    # the port is free again: a second start works; a busy port is reported, not raised
    assert panel.start()
    other = QtReceivingPanel(model_name=model_name, out_dir=tmp_path / "other")
    qtbot.addWidget(other)
    other.port.setValue(port)
    assert not other.start()
    assert "Could not start" in other.status.text()
    panel.shutdown()
    window = QMainWindow()
    qtbot.addWidget(window)
    docked = open_receiving_panel(window, model_name=model_name, out_dir=tmp_path / "d")
    assert docked.parent() is not None
    assert not docked.running

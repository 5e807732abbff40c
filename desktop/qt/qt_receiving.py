"""The "Receiving" panel: run the DICOM listener from the app and watch films arrive and get screened.

The listener is :class:`desktop.core.dicomnet.listener.Listener`, the one
``cxr-screener listen`` runs: its network threads and its screening worker
never run on the GUI thread (the model is loaded in the worker too). Its
events come back through a Qt signal, queued to the GUI thread. Stopping
runs in a background thread as well, so the window never freezes.

Use :func:`open_receiving_panel` (a dock in the main window, or a window of
its own) or put a :class:`QtReceivingPanel` anywhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMainWindow,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.core.dicomnet.listener import DEFAULT_AE_TITLE, Listener, ListenerConfig, ListenerEvent
from desktop.core.paths import user_data_dir

log = logging.getLogger(__name__)

DEFAULT_PORT = 11112
#: Results shown in the panel's list (most recent first).
LAST_RESULTS = 50


class _QtRelay(QObject):
    """Carries listener events (from its threads) to the GUI thread."""

    received = Signal(object)


class QtReceivingPanel(QWidget):
    """Start/stop a listener; port, AE title, output folder; counts and the last results."""

    #: emitted on the GUI thread for every listener event (tests, the main window's status bar)
    listenerEvent = Signal(object)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        load_model: Callable[[], Any] | None = None,
        model_name: str | None = None,
        out_dir: str | Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("QtReceivingPanel")
        self._model_name = model_name
        self._load_model = load_model
        self.listener: Listener | None = None
        self._relay = _QtRelay(self)
        self._relay.received.connect(self._on_event)

        self.port = QSpinBox(minimum=1, maximum=65535, value=DEFAULT_PORT)
        self.ae_title = QLineEdit(DEFAULT_AE_TITLE)
        self.ae_title.setMaxLength(16)
        self.out_dir = QLineEdit(str(out_dir or (user_data_dir() / "received")))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_dir, 1)
        out_row.addWidget(browse)
        self.dicom_results = QCheckBox("Write DICOM results (heatmap SC + structured report) into the study")
        self.dicom_results.setChecked(True)
        self.network = QCheckBox("Accept films from other computers (otherwise this computer only)")
        form = QFormLayout()
        form.addRow("Port", self.port)
        form.addRow("AE title", self.ae_title)
        form.addRow("Output folder", out_row)
        form.addRow(self.dicom_results)
        form.addRow(self.network)

        self.start_button = QPushButton("Start receiving")
        self.start_button.clicked.connect(self.toggle)
        self.status = QLabel("Stopped.")
        self.status.setWordWrap(True)
        self.counts = QLabel()
        self.results = QListWidget()
        self.results.setObjectName("receivedResults")
        note = QLabel("Decision support, not a diagnosis: every result must be read by a clinician.")
        note.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.start_button)
        layout.addWidget(self.status)
        layout.addWidget(self.counts)
        layout.addWidget(QLabel("Last results"))
        layout.addWidget(self.results, 1)
        layout.addWidget(note)
        self._update_counts()

    # -- actions -------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.listener is not None

    def toggle(self) -> None:
        if self.listener is None:
            self.start()
        else:
            self.stop()

    def start(self) -> bool:
        """Start the listener; False (with the reason shown) if it cannot."""
        from desktop.core.errors import CXRError

        if self.listener is not None:
            return True
        out = Path(self.out_dir.text().strip() or user_data_dir() / "received")
        config = ListenerConfig(
            out_dir=out,
            port=int(self.port.value()),
            host="0.0.0.0" if self.network.isChecked() else "127.0.0.1",
            ae_title=self.ae_title.text().strip() or DEFAULT_AE_TITLE,
            dicom_results=out / "dicom-results" if self.dicom_results.isChecked() else None,
        )
        try:
            listener = Listener(config, self._model_loader(), on_event=self._relay.received.emit)
            listener.start()
        except (CXRError, OSError, ValueError) as exc:
            self.status.setText(f"Could not start: {exc}")
            return False
        self.listener = listener
        self._set_editable(False)
        self.start_button.setText("Stop receiving")
        self.status.setText(f"Listening on {config.host}:{listener.port} as {config.ae_title}; "
                            f"results in {listener.results_csv}")
        self._update_counts()
        return True

    def stop(self) -> None:
        """Stop in the background; the panel says when it has stopped."""
        listener, self.listener = self.listener, None
        if listener is None:
            return
        self.start_button.setEnabled(False)
        self.status.setText("Stopping…")
        threading.Thread(target=listener.stop, name="cxr-listener-stop", daemon=True).start()

    def _model_loader(self) -> Callable[[], Any]:
        if self._load_model is not None:
            return self._load_model
        name = self._model_name

        def load() -> Any:
            from desktop.core.commands._model import load_model

            return load_model(name, None)

        return load

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.out_dir.text())
        if folder:
            self.out_dir.setText(folder)

    def _set_editable(self, editable: bool) -> None:
        for w in (self.port, self.ae_title, self.out_dir, self.dicom_results, self.network):
            w.setEnabled(editable)

    # -- events (GUI thread) ---------------------------------------------------

    def _on_event(self, event: ListenerEvent) -> None:
        if event.kind == "stopped":
            self._set_editable(True)
            self.start_button.setEnabled(True)
            self.start_button.setText("Start receiving")
            self.status.setText("Stopped. Films not yet screened are screened at the next start.")
        elif event.kind == "result" and event.result is not None:
            self.results.insertItem(0, _result_text(event.result))
            while self.results.count() > LAST_RESULTS:
                self.results.takeItem(self.results.count() - 1)
        elif event.kind == "error":
            self.status.setText(event.message)
        self._update_counts(event)
        self.listenerEvent.emit(event)

    def _update_counts(self, event: ListenerEvent | None = None) -> None:
        listener = self.listener
        if listener is None and (event is None or event.kind != "stopped"):
            self.counts.setText("Films received: 0")
            return
        st = listener.stats if listener is not None else None
        if st is None:
            return
        self.counts.setText(f"Films received: {st.received} · screened: {st.screened} · failed: {st.errors} "
                            f"· refused: {st.refused} · DICOM results: {st.results_written}")

    def shutdown(self) -> None:
        """Stop and wait (the window is closing)."""
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.stop()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        self.shutdown()
        super().closeEvent(event)


def _result_text(result: Any) -> str:
    name = getattr(result, "relpath", "") or Path(result.path).name
    if result.ok:
        label = "COVID-19-like" if result.label == "covid" else str(result.label)
        return f"{label}  p={result.p_covid:.2f}  {name}"
    return f"could not be screened: {result.error}"


def open_receiving_panel(main_window: QMainWindow | None = None, **kwargs: Any) -> QtReceivingPanel:
    """The Receiving panel: docked on the right of ``main_window``, or a window of its own."""
    panel = QtReceivingPanel(**kwargs)
    if main_window is None:
        panel.setWindowTitle("Receiving (DICOM)")
        panel.show()
        return panel
    dock = QDockWidget("Receiving (DICOM)", main_window)
    dock.setObjectName("receivingDock")
    dock.setWidget(panel)
    main_window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    dock.show()
    return panel


__all__ = ["QtReceivingPanel", "open_receiving_panel"]

"""The report dialog's "DICOM results" option: a Secondary Capture and a Structured Report of the film.

Kept out of ``qt_report_dialog`` (one concern per module): :func:`add_dicom_results_option`
adds the check box to the dialog's form and, once the PDF is saved, writes the two DICOM
objects into the film's own study (``desktop.core.dicomnet.screening.results_for_prediction``)
in a worker, next to the PDF in ``dicom-results/``. Only DICOM films have a study to join.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QCheckBox, QFormLayout

from .qt_workers import create_worker

log = logging.getLogger(__name__)

#: Folder beside the saved PDF that receives the DICOM results.
RESULTS_FOLDER = "dicom-results"


def add_dicom_results_option(dialog: Any, form: QFormLayout) -> QCheckBox:
    """Add "Also write DICOM results" to ``form``; the dialog writes them after each save."""
    from desktop.core.dicomnet.results import is_dicom_film

    box = QCheckBox("Also write DICOM results (image with heatmap + structured report) for the PACS")
    film = str(getattr(dialog.xray, "source", "") or "")
    dicom = bool(film) and is_dicom_film(film)
    box.setEnabled(dicom)
    box.setToolTip(f"Written beside the PDF in {RESULTS_FOLDER}/, in the film's own study"
                   if dicom else "Only for DICOM films: a PNG or JPEG has no study to return them to")
    form.addRow("", box)
    dialog.dicom_results = box
    dialog.saved.connect(lambda pdf: _write(dialog, box, film, pdf))
    return box


def _write(dialog: Any, box: QCheckBox, film: str, pdf: str) -> Any:
    if not box.isChecked() or not box.isEnabled():
        return None
    from desktop.core.dicomnet.screening import results_for_prediction

    out = Path(pdf).parent / RESULTS_FOLDER
    worker = create_worker(
        results_for_prediction, film, dialog.xray, dialog.prediction, dialog.heatmap, out,
        model_sha256=getattr(dialog.bundle.card, "sha256", None),
        anonymize=dialog.anonymize.isChecked(), _start=False,
    )
    worker.signals.returned.connect(lambda written: log.info("DICOM results written to %s", out))
    worker.signals.errored.connect(lambda exc: dialog.errors.handle(exc, "Writing the DICOM results"))
    dialog._dicom_worker = worker
    worker.start()
    return worker


__all__ = ["RESULTS_FOLDER", "add_dicom_results_option"]

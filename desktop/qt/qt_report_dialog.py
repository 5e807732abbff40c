"""The report dialog: a form prefilled from the file, an anonymise option, a page-1 preview, save.

The PDF itself is written by :func:`desktop.core.report.write_study_report`
in a worker (:mod:`.qt_report_output`, no widgets). The preview is that
same PDF, written to a temporary file and its first page rasterised with
pypdfium2 when available (PySide6-Essentials has no QtPdf); without it, the
preview shows the images and the fields.
The report ID and time are fixed when the dialog opens, so the preview shows
the ID the saved file will carry; previews log nothing. A date the file does
not record (a PNG or JPEG has none) is left empty and prints "not recorded".
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop.core.imaging import Window, XRay
from desktop.core.overlay import SHOW_BELOW_THRESHOLD

from .qt_dicom_results import add_dicom_results_option
from .qt_errors import QtErrorHandler
from .qt_image_view import rgb_to_qimage
from .qt_report_output import ReportForm, preview, write_report
from .qt_settings import AppSettings
from .qt_workers import QtWorker, create_worker

log = logging.getLogger(__name__)

SEX_CHOICES = (("", "(not given)"), ("F", "Female"), ("M", "Male"), ("O", "Other"))


class QtReportDialog(QDialog):
    """Fill in, preview and save the PDF report of one X-ray."""

    saved = Signal(str)
    preview_ready = Signal()

    def __init__(
        self,
        xray: XRay,
        prediction: Any,
        heatmap: Any,
        bundle: Any,
        settings: AppSettings,
        errors: QtErrorHandler,
        *,
        window: Window | None = None,
        colormap: str = "jet",
        caution: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.xray = xray
        self.prediction = prediction
        self.heatmap = heatmap
        self.bundle = bundle
        self.settings = settings
        self.errors = errors
        self.display_window = window if window is not None and window is not xray.window else None
        self.colormap = colormap
        self.caution = caution  # the OOD flag's sentence (Analysis.caution): printed in the result box
        self.opacity = float(getattr(settings, "heatmap_opacity", 0.45))
        from desktop.core.report import make_report_id

        # one ID and time for the preview and the saved file
        self.analysed_at = _dt.datetime.now().astimezone()
        model_sha = str(getattr(getattr(bundle, "card", None), "sha256", "") or "")
        self.report_id = make_report_id(xray.sha256, model_sha, when=self.analysed_at)
        self.saved_path: str | None = None
        self._preview_worker: QtWorker | None = None
        self._preview_again = False
        self._save_worker: QtWorker | None = None
        self.preview_image: np.ndarray | None = None

        self.setWindowTitle(f"PDF report: {xray.name}")
        self.resize(1180, 820)
        meta = xray.metadata

        # --- patient ----------------------------------------------------------
        patient = QGroupBox("Patient and study (from the file; correct or complete as needed)")
        pf = QFormLayout(patient)
        self.patient_name = QLineEdit(meta.patient_name.replace("^", " ").strip())
        self.patient_id = QLineEdit(meta.patient_id)
        self.patient_sex = QComboBox()
        for code, label in SEX_CHOICES:
            self.patient_sex.addItem(label, code)
        self.patient_sex.setCurrentIndex(max(self.patient_sex.findData(meta.patient_sex.strip().upper()[:1]), 0))
        self.birth_date = QLineEdit(_date_text(meta.patient_birth_date))
        self.birth_date.setPlaceholderText("YYYY-MM-DD")
        self.age = QLineEdit(meta.patient_age)
        self.age.setPlaceholderText("e.g. 54Y")
        # never today's date: a PNG/JPEG records no study date, and the report says "not recorded"
        self.study_date = QLineEdit(_date_text(meta.study_date))
        self.study_date.setPlaceholderText("not recorded in the file (YYYY-MM-DD)")
        self.accession = QLineEdit(meta.accession_number)
        self.view_pos = QLineEdit(meta.view_position)
        self.view_pos.setPlaceholderText("PA or AP")
        pf.addRow("Patient &name:", self.patient_name)
        pf.addRow("Patient &ID:", self.patient_id)
        pf.addRow("&Sex:", self.patient_sex)
        pf.addRow("&Birth date:", self.birth_date)
        pf.addRow("A&ge:", self.age)
        pf.addRow("Stud&y date:", self.study_date)
        pf.addRow("A&ccession number:", self.accession)
        pf.addRow("&View:", self.view_pos)
        self._identifying = (self.patient_name, self.patient_id, self.birth_date, self.accession)

        # --- clinical context -------------------------------------------------
        clinical = QGroupBox("Clinical context for the remote doctor")
        kf = QFormLayout(clinical)
        self.urgency = QComboBox()
        for code, label in (("", "(not given)"), ("routine", "Routine"), ("urgent", "Urgent"),
                            ("emergency", "Emergency")):
            self.urgency.addItem(label, code)
        self.symptoms = QPlainTextEdit()
        self.symptoms.setPlaceholderText("e.g. cough and fever for 5 days, short of breath")
        self.symptoms.setFixedHeight(52)
        self.symptoms.setTabChangesFocus(True)
        self.spo2 = QLineEdit()
        self.spo2.setPlaceholderText("e.g. 92 (%)")
        self.temperature = QLineEdit()
        self.temperature.setPlaceholderText("e.g. 38.4 (\u00b0C)")
        kf.addRow("&Urgency:", self.urgency)
        kf.addRow("Sy&mptoms:", self.symptoms)
        kf.addRow("SpO\u2082:", self.spo2)
        kf.addRow("&Temperature:", self.temperature)

        self.anonymize = QCheckBox("&Anonymise: leave out name and birth date, replace IDs by pseudonyms")
        self.anonymize.setToolTip(
            "Tick this when the report leaves the clinic. The name and birth date are withheld, "
            "the patient ID, accession number and file name are replaced by a code only this "
            "installation can recompute, the study date is reduced to the year and the age to a band."
        )
        self.anonymize.toggled.connect(self._on_anonymize)

        # --- clinic -----------------------------------------------------------
        clinic = QGroupBox("Clinic (from Settings)")
        cf = QFormLayout(clinic)
        self.clinic_name = QLineEdit(settings.clinic_name)
        self.clinic_name.setPlaceholderText("Your clinic's name")
        self.clinic_address = QPlainTextEdit(settings.clinic_address)
        self.clinic_address.setFixedHeight(58)
        self.clinic_address.setTabChangesFocus(True)
        self.operator = QLineEdit(settings.operator)
        self.operator.setPlaceholderText("Your name")
        self.clinic_phone = QLineEdit(str(getattr(settings, "clinic_phone", "") or ""))
        self.clinic_phone.setPlaceholderText("for the doctor's reply")
        self.clinic_email = QLineEdit(str(getattr(settings, "clinic_email", "") or ""))
        self.clinic_email.setPlaceholderText("for the doctor's reply")
        self.prevalence = QDoubleSpinBox()
        self.prevalence.setRange(0.0, 99.0)
        self.prevalence.setDecimals(1)
        self.prevalence.setSuffix(" %")
        self.prevalence.setSpecialValueText("not set")
        self.prevalence.setToolTip("Share of COVID-19 among the patients you screen: the report then says "
                                   "how often a positive (and a negative) is right at your clinic")
        prevalence = getattr(settings, "prevalence", None)
        self.prevalence.setValue(100.0 * prevalence if prevalence else 0.0)
        self.remember = QCheckBox("Remember clinic and operator for the next reports")
        self.remember.setChecked(True)
        self.page_size = QComboBox()
        self.page_size.addItem("A4", "A4")
        self.page_size.addItem("Letter (US)", "LETTER")
        cf.addRow("C&linic:", self.clinic_name)
        cf.addRow("Add&ress:", self.clinic_address)
        cf.addRow("P&hone:", self.clinic_phone)
        cf.addRow("&E-mail:", self.clinic_email)
        cf.addRow("&Operator:", self.operator)
        cf.addRow("Pre&valence:", self.prevalence)
        cf.addRow("", self.remember)
        cf.addRow("&Paper:", self.page_size)

        # --- what the PDF carries ------------------------------------------------
        self.attach_original = QCheckBox("Attach the original image file to the PDF")
        self.attach_original.setToolTip("The doctor can open the original (e.g. the DICOM) in their own viewer. "
                                        "Not with Anonymise: the file carries the patient's data.")
        self.full_page_film = QCheckBox("Add a page with the film at full page size")
        self.heatmap_below = QCheckBox(SHOW_BELOW_THRESHOLD)
        self.heatmap_below.setToolTip("Hidden by default: below the threshold no region led to a flag")
        self.heatmap_below.setChecked(bool(getattr(settings, "heatmap_below_threshold", False)))  # as on screen
        cf.addRow("", self.attach_original)
        cf.addRow("", self.full_page_film)
        cf.addRow("", self.heatmap_below)
        add_dicom_results_option(self, cf)  # qt_dicom_results: SC + SR into the film's study, after saving

        summary = QLabel(
            f"<b>Result in this report:</b> p(COVID-19) {100 * prediction.p_covid:.1f}%, "
            f"{'positive' if prediction.label == bundle.card.positive_class else 'negative'} screen at "
            f"operating point <i>{prediction.operating_point}</i> (threshold {100 * prediction.threshold:.1f}%), "
            f"model {prediction.model} {prediction.model_version}."
        )
        summary.setWordWrap(True)

        form_box = QWidget()
        fl = QVBoxLayout(form_box)
        fl.addWidget(summary)
        fl.addWidget(patient)
        fl.addWidget(clinical)
        fl.addWidget(self.anonymize)
        fl.addWidget(clinic)
        fl.addStretch(1)
        form_scroll = QScrollArea()
        form_scroll.setWidget(form_box)
        form_scroll.setWidgetResizable(True)
        form_scroll.setMinimumWidth(440)

        # --- preview ------------------------------------------------------------
        self.preview = QLabel("Preparing the preview...")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.preview.setAccessibleName("Preview of page 1")
        preview_scroll = QScrollArea()
        preview_scroll.setWidget(self.preview)
        preview_scroll.setWidgetResizable(True)
        preview_scroll.setMinimumWidth(520)
        preview_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.preview_scroll = preview_scroll
        self._preview_qimage: QImage | None = None
        self.preview_status = QLabel("")
        preview_box = QWidget()
        pl = QVBoxLayout(preview_box)
        pl.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Preview of page 1</b>"))
        head.addStretch(1)
        head.addWidget(self.preview_status)
        pl.addLayout(head)
        pl.addWidget(preview_scroll, 1)

        body = QHBoxLayout()
        body.addWidget(form_scroll, 0)
        body.addWidget(preview_box, 1)

        self.buttons = QDialogButtonBox()
        self.save_button = QPushButton("&Save PDF...")
        self.save_button.setDefault(True)
        self.buttons.addButton(self.save_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.save_button.clicked.connect(self.save_dialog)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(body, 1)
        layout.addWidget(self.buttons)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(700)
        self._debounce.timeout.connect(self.update_preview)
        for edit in (self.patient_name, self.patient_id, self.birth_date, self.age, self.study_date,
                     self.accession, self.view_pos, self.clinic_name, self.operator, self.clinic_phone,
                     self.clinic_email, self.spo2, self.temperature):
            edit.textChanged.connect(self._schedule_preview)
        self.clinic_address.textChanged.connect(self._schedule_preview)
        self.symptoms.textChanged.connect(self._schedule_preview)
        self.urgency.currentIndexChanged.connect(self._schedule_preview)
        self.prevalence.valueChanged.connect(self._schedule_preview)
        for box in (self.full_page_film, self.heatmap_below):
            box.toggled.connect(self._schedule_preview)
        self.patient_sex.currentIndexChanged.connect(self._schedule_preview)
        self.page_size.currentIndexChanged.connect(self._schedule_preview)
        QTimer.singleShot(0, self, self.update_preview)

    # --- form ---------------------------------------------------------------
    def form(self) -> ReportForm:
        return ReportForm(
            patient_name=self.patient_name.text().strip(),
            patient_id=self.patient_id.text().strip(),
            patient_sex=str(self.patient_sex.currentData() or ""),
            birth_date=self.birth_date.text().strip(),
            age=self.age.text().strip(),
            study_date=self.study_date.text().strip(),
            accession=self.accession.text().strip(),
            view=self.view_pos.text().strip(),
            clinic_name=self.clinic_name.text().strip(),
            clinic_address=self.clinic_address.toPlainText().strip(),
            operator=self.operator.text().strip(),
            page_size=str(self.page_size.currentData()),
            anonymize=self.anonymize.isChecked(),
            clinic_phone=self.clinic_phone.text().strip(),
            clinic_email=self.clinic_email.text().strip(),
            symptoms=self.symptoms.toPlainText().strip(),
            spo2=self.spo2.text().strip(),
            temperature=self.temperature.text().strip(),
            urgency=str(self.urgency.currentData() or ""),
            prevalence=self.prevalence.value() / 100.0 if self.prevalence.value() > 0 else None,
            attach_original=self.attach_original.isChecked(),
            full_page_film=self.full_page_film.isChecked(),
            heatmap_below_threshold=self.heatmap_below.isChecked(),
            report_id=self.report_id,
            analysed_at=self.analysed_at,
        )

    def _on_anonymize(self, checked: bool) -> None:
        for edit in self._identifying:
            edit.setEnabled(not checked)
        self.attach_original.setEnabled(not checked)
        self._schedule_preview()

    def _schedule_preview(self) -> None:
        self._debounce.start()

    # --- preview ------------------------------------------------------------
    def update_preview(self) -> None:
        if self._preview_worker is not None and not self._preview_worker.is_done:
            self._preview_again = True
            return
        self.preview_status.setText("Updating...")
        worker = create_worker(
            preview, self.xray, self.prediction, self.heatmap, self.bundle, self.form(),
            self.display_window, self.colormap, self.opacity, self.caution, _start=False,
        )
        worker.signals.returned.connect(self._show_preview)
        worker.signals.errored.connect(self._preview_failed)
        worker.signals.finished.connect(self._preview_finished)
        self._preview_worker = worker
        worker.start()

    def _show_preview(self, rgb: np.ndarray | None) -> None:
        if rgb is None:
            self.preview.setText(
                "A preview needs the pypdfium2 package.\nThe saved PDF is not affected."
            )
            self.preview_status.setText("")
            self.preview_ready.emit()
            return
        self.preview_image = rgb
        self._preview_qimage = rgb_to_qimage(rgb)
        self._fit_preview()
        self.preview_status.setText("Up to date")
        self.preview_ready.emit()

    def _fit_preview(self) -> None:
        """Show the page as wide as the preview area (scroll down for the rest of the page)."""
        image = self._preview_qimage
        if image is None:
            return
        width = max(self.preview_scroll.viewport().width() - 4, 200)
        scaled = image.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
        self.preview.setPixmap(QPixmap.fromImage(scaled))
        self.preview.setMinimumSize(1, scaled.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_preview()

    def _preview_failed(self, exc: BaseException) -> None:
        self.preview.setText(f"The preview could not be made:\n{exc}")
        self.preview_status.setText("")
        log.warning("report preview failed", exc_info=exc)
        self.preview_ready.emit()

    def _preview_finished(self) -> None:
        if self._preview_again:
            self._preview_again = False
            QTimer.singleShot(0, self, self.update_preview)

    # --- save -----------------------------------------------------------------
    def default_file_name(self) -> str:
        from desktop.core.phi import file_label

        stem = Path(file_label(self.xray.source or "xray", anonymize=self.anonymize.isChecked())).stem
        return f"CXR-report_{stem}_{_dt.date.today().isoformat()}.pdf"

    def save_dialog(self) -> None:
        folder = self.settings.last_folder("report")
        path, _ = QFileDialog.getSaveFileName(
            self, "Save PDF report", str(Path(folder) / self.default_file_name()), "PDF (*.pdf)"
        )
        if not path:
            return
        if not path.lower().endswith(".pdf"):
            path += ".pdf"
        self.settings.set_last_folder("report", str(Path(path).parent))
        # The file dialog already asked before replacing an existing file.
        self.save_to(path, overwrite=True)

    def save_to(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> QtWorker:
        """Write the report to ``path`` in a worker; ``saved`` is emitted when done."""
        form = self.form()
        if self.remember.isChecked():
            self.settings.clinic_name = form.clinic_name
            self.settings.clinic_address = form.clinic_address
            self.settings.operator = form.operator
            for key in ("clinic_phone", "clinic_email", "prevalence"):
                if hasattr(type(self.settings), key):
                    setattr(self.settings, key, getattr(form, key))
        self.save_button.setEnabled(False)
        self.save_button.setText("Saving...")
        worker = create_worker(
            write_report, os.fspath(path), self.xray, self.prediction, self.heatmap, self.bundle,
            form, self.display_window, overwrite, True, self.colormap, self.opacity, self.caution, _start=False,
        )
        worker.signals.returned.connect(self._on_saved)
        worker.signals.errored.connect(lambda exc: self.errors.handle(exc, "Saving the report"))
        worker.signals.finished.connect(self._save_finished)
        self._save_worker = worker
        worker.start()
        return worker

    def _save_finished(self) -> None:
        self.save_button.setEnabled(True)
        self.save_button.setText("&Save PDF...")

    def _on_saved(self, path: str) -> None:
        self.saved_path = path
        self.saved.emit(path)
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Information)
        box.setWindowTitle("Report saved")
        box.setText(f"The report was saved as\n{path}")
        open_button = box.addButton("Open report", QMessageBox.ButtonRole.ActionRole)
        folder_button = box.addButton("Show folder", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Close)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def clicked(button: Any) -> None:
            if button is open_button:
                QDesktopServices.openUrl(QUrl.fromLocalFile(path))
            elif button is folder_button:
                QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(path).parent)))
            self.accept()

        box.buttonClicked.connect(clicked)
        self.saved_box = box
        box.open()


def _date_text(dicom_date: str) -> str:
    """DICOM YYYYMMDD as YYYY-MM-DD (anything else unchanged)."""
    text = (dicom_date or "").strip()
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


__all__ = ["QtReportDialog", "ReportForm"]

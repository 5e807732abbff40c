"""What the report dialog writes, without widgets: the form's values, the PDF (the same for the preview
and the saved file), its audit entry, and page 1 rasterised for the preview.

Kept out of ``qt_report_dialog`` (one concern per module): the dialog builds the form and runs these on
workers; nothing here imports Qt, so the writing is the same whether a dialog or a test calls it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from desktop.core.imaging import Window, XRay

log = logging.getLogger(__name__)

PREVIEW_WIDTH_PX = 1100
_PDFIUM_LOCK = threading.Lock()


@dataclass(frozen=True)
class ReportForm:
    """What the user typed (patient fields override the file's values)."""

    patient_name: str
    patient_id: str
    patient_sex: str
    birth_date: str
    age: str
    study_date: str
    accession: str
    view: str
    clinic_name: str
    clinic_address: str
    operator: str
    page_size: str
    anonymize: bool
    clinic_phone: str = ""
    clinic_email: str = ""
    symptoms: str = ""
    spo2: str = ""
    temperature: str = ""
    urgency: str = ""
    prevalence: float | None = None
    attach_original: bool = False
    full_page_film: bool = False
    heatmap_below_threshold: bool = False
    report_id: str | None = None
    analysed_at: _dt.datetime | None = None

    def report_info(self) -> Any:
        from desktop.core.report import ReportInfo

        return ReportInfo(
            clinic_name=self.clinic_name,
            clinic_address=self.clinic_address,
            clinic_phone=self.clinic_phone,
            clinic_email=self.clinic_email,
            operator=self.operator,
            symptoms=self.symptoms,
            spo2=self.spo2,
            temperature=self.temperature,
            urgency=self.urgency,
            prevalence=self.prevalence,
            attach_original=self.attach_original and not self.anonymize,
            full_page_film=self.full_page_film,
            show_heatmap_below_threshold=self.heatmap_below_threshold,
            report_id=self.report_id,
            analysed_at=self.analysed_at,
            patient_name=self.patient_name,
            patient_id=self.patient_id,
            patient_sex=self.patient_sex,
            birth_date=self.birth_date,
            age=self.age,
            study_date=self.study_date,
            accession=self.accession,
            view=self.view,
            page_size=self.page_size,
        )


def render_pdf_page(path: str | os.PathLike[str], width_px: int = PREVIEW_WIDTH_PX) -> np.ndarray | None:
    """Page 1 of a PDF as an RGB uint8 array, or None when pypdfium2 is not installed."""
    try:
        import pypdfium2 as pdfium
    except ImportError:
        return None
    with _PDFIUM_LOCK:
        pdf = pdfium.PdfDocument(os.fspath(path))
        try:
            page = pdf[0]
            scale = width_px / max(page.get_width(), 1.0)
            image = page.render(scale=scale).to_pil().convert("RGB")
            page.close()
        finally:
            pdf.close()
    return np.asarray(image)


def write_report(
    path: str, xray: XRay, prediction: Any, heatmap: Any, bundle: Any, form: ReportForm,
    window: Window | None, overwrite: bool, audit: bool, cmap: str | None = None, alpha: float | None = None,
    caution: str | None = None,
) -> str:
    from desktop.core.report import write_study_report

    out = write_study_report(
        path, xray, prediction, heatmap, bundle, form.report_info(),
        anonymize=form.anonymize, overwrite=overwrite, window=window, cmap=cmap, alpha=alpha,
        quiet=not audit, caution=caution,  # quiet: a preview is not a report written
    )
    if audit:
        audit_report(out, xray, prediction, bundle, form)
    return str(out)


def audit_report(out: Path, xray: XRay, prediction: Any, bundle: Any, form: ReportForm) -> None:
    try:
        from desktop.core.audit import AuditLog
        from desktop.core.hashing import sha256_file

        with AuditLog(operator=form.operator or None) as log_:
            log_.record(
                "report",
                file_sha256=xray.sha256,
                file_path=None if form.anonymize else xray.source,
                model=prediction.model,
                model_version=prediction.model_version,
                model_sha256=getattr(bundle.card, "sha256", None),
                operating_point=prediction.operating_point,
                threshold=prediction.threshold,
                result={"status": "ok", "label": prediction.label, "p_covid": float(prediction.p_covid)},
                anonymized=form.anonymize,
                output_sha256=sha256_file(out),
                source="gui",
            )
    except Exception:  # the audit log must never stop a report
        log.warning("audit entry for the report not written", exc_info=True)


def preview(
    xray: XRay, prediction: Any, heatmap: Any, bundle: Any, form: ReportForm, window: Window | None,
    cmap: str | None = None, alpha: float | None = None, caution: str | None = None,
) -> np.ndarray | None:
    with tempfile.TemporaryDirectory(prefix="cxr-preview-") as tmp:
        path = os.path.join(tmp, "preview.pdf")
        # no attachment in the preview: it is never shown and may be large
        form = replace(form, attach_original=False)
        write_report(path, xray, prediction, heatmap, bundle, form, window, True, False, cmap, alpha, caution)
        return render_pdf_page(path)

__all__ = ["PREVIEW_WIDTH_PX", "ReportForm", "audit_report", "preview", "render_pdf_page", "write_report"]

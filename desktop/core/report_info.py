"""What a report says, as plain values: the clinic's form, the patient block, the plain-words result.

Nothing here lays out a page (see :mod:`desktop.core.report_layout`): these
are the texts and numbers the study and batch pages print, kept apart so they
can be tested without reportlab. Values the file does not record print as
"not recorded" (a PNG or JPEG has no study date; nothing is invented), and
empty or machine-made values (an operator "root") are left out rather than
printed as junk.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any

from . import phi
from .bundle import measured_on
from .imaging import StudyMetadata
from .report_pdf import page_size

DASH = "\u2014"
NOT_RECORDED = "not recorded"
POSITIVE_CLASS_LABEL = "COVID-19"
#: Log-in names that say nothing about who ran the analysis: never printed as the operator.
SYSTEM_ACCOUNTS = frozenset({"root", "unknown", "admin", "administrator", "user", "nobody", "system"})
URGENCY_CHOICES = ("", "routine", "urgent", "emergency")


@dataclass(frozen=True)
class ReportInfo:
    """What the clinic adds to a report; patient fields override the DICOM metadata.

    A patient field left ``None`` keeps the file's value; ``""`` blanks it.
    ``report_id`` and ``analysed_at`` are filled in when the report is made
    (a caller that previews and then saves passes the same values to both, so
    the preview shows the saved report's ID). The clinical context
    (symptoms, SpO2, temperature, urgency) is what the remote doctor needs to
    act; ``clinic_phone``/``clinic_email`` tell them where to reply.
    ``prevalence`` (a fraction, e.g. 0.10) is the share of COVID-19 among the
    patients this clinic screens: with it the report says how often a
    positive (and a negative) is right here. ``attach_original`` embeds the
    original image file in the PDF (a PDF file attachment) for the doctor's
    own viewer; ``full_page_film`` adds a page with the film as large as the
    page allows; ``show_heatmap_below_threshold`` draws the heatmap of a
    negative result (hidden by default: it would show evidence the decision
    did not act on).
    """

    clinic_name: str = ""
    clinic_address: str = ""
    clinic_phone: str = ""
    clinic_email: str = ""
    operator: str = ""
    patient_name: str | None = field(default=None, repr=False)
    patient_id: str | None = field(default=None, repr=False)
    patient_sex: str | None = None
    birth_date: str | None = field(default=None, repr=False)
    age: str | None = None
    study_date: str | None = field(default=None, repr=False)
    accession: str | None = field(default=None, repr=False)
    modality: str | None = None
    view: str | None = None
    symptoms: str = field(default="", repr=False)
    spo2: str = ""
    temperature: str = ""
    urgency: str = ""
    prevalence: float | None = None
    page_size: str = "A4"
    report_id: str | None = None
    analysed_at: _dt.datetime | None = None
    attach_original: bool = False
    full_page_film: bool = False
    show_heatmap_below_threshold: bool = False

    def __post_init__(self) -> None:
        page_size(self.page_size)  # fail early on a bad value
        if self.prevalence is not None:
            p = float(self.prevalence)
            if not (math.isfinite(p) and 0.0 < p < 1.0):
                raise ValueError(f"prevalence must be a fraction between 0 and 1 (e.g. 0.1 for 10%). "
                                 f"Received: prevalence={self.prevalence!r}")
        if self.urgency.strip().lower() not in URGENCY_CHOICES:
            raise ValueError(f"urgency must be one of {URGENCY_CHOICES[1:]} or empty. Received: {self.urgency!r}")

    def apply_to(self, meta: StudyMetadata) -> StudyMetadata:
        """``meta`` with this form's patient and study fields laid over it."""
        overrides = {
            "patient_name": self.patient_name,
            "patient_id": self.patient_id,
            "patient_sex": self.patient_sex,
            "patient_birth_date": self.birth_date,
            "patient_age": self.age,
            "study_date": self.study_date,
            "accession_number": self.accession,
            "modality": self.modality,
            "view_position": self.view,
        }
        changes: dict[str, Any] = {k: v.strip() for k, v in overrides.items() if v is not None}
        return replace(meta, **changes)

    @property
    def operator_name(self) -> str:
        """The operator as printed: empty for a blank or a system account ("root")."""
        name = " ".join(self.operator.split())
        return "" if name.lower() in SYSTEM_ACCOUNTS else name

    def clinical_rows(self) -> list[tuple[str, str]]:
        """The clinical context the clinic gave, as (label, value) rows; empty fields left out."""
        rows: list[tuple[str, str]] = []
        if self.urgency.strip():
            rows.append(("Urgency", self.urgency.strip().lower()))
        if self.symptoms.strip():
            rows.append(("Symptoms", clip(self.symptoms.strip(), 400)))
        if self.spo2.strip():
            value = self.spo2.strip()
            rows.append(("SpO\u2082", value if value.endswith("%") else f"{value} %"))
        if self.temperature.strip():
            value = self.temperature.strip()
            rows.append(("Temperature", value if value[-1:].upper() in ("C", "F") else f"{value} \u00b0C"))
        return rows

    def reply_to(self) -> str:
        """``"phone +1 555 ...; e-mail x@y"`` for the doctor's answer, or ''."""
        parts = []
        if self.clinic_phone.strip():
            parts.append(f"phone {clip(self.clinic_phone.strip(), 60)}")
        if self.clinic_email.strip():
            parts.append(f"e-mail {clip(self.clinic_email.strip(), 80)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Patient:
    """The patient block as printed (every value a display string)."""

    name: str
    patient_id: str
    sex: str
    birth: str
    study_date: str
    accession: str
    modality_view: str
    file: str
    image_sha: str

    def rows(self, *, anonymize: bool) -> list[tuple[str, str]]:
        """(label, value) rows; empty identifiers are left out (no column of dashes)."""
        pseudo = " (pseudonym)" if anonymize else ""
        rows = [("Name", self.name)]
        if self.patient_id:
            rows.append(("Patient ID" + pseudo, self.patient_id))
        rows += [("Sex", self.sex), ("Birth date / age", self.birth)]
        rows.append(("Study date" + (" (year)" if anonymize and self.study_date != NOT_RECORDED else ""),
                     self.study_date))
        if self.accession:
            rows.append(("Accession no." + pseudo, self.accession))
        if self.modality_view:
            rows.append(("Modality / view", self.modality_view))
        rows.append(("Image file", self.file))
        return rows


def clip(text: str, limit: int = 160) -> str:
    """User text cut to a length that cannot break the layout, at a word boundary where there is one."""
    text = str(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space].rstrip(",;:")
    return cut + "\u2026"


def display_name(name: str) -> str:
    """DICOM person name ``Family^Given^Middle`` as ``Family, Given Middle``."""
    if "^" not in name:
        return name
    parts = [p.strip() for p in name.split("^")]
    family, rest = parts[0], " ".join(p for p in parts[1:] if p)
    return f"{family}, {rest}" if family and rest else (family or rest)


def patient_of(meta: StudyMetadata, *, file: str, image_sha: str, anonymize: bool) -> Patient:
    if anonymize:
        birth = phi.WITHHELD
        if meta.patient_age:
            birth += f"; age band {meta.patient_age}"
        name = phi.WITHHELD
    else:
        birth = phi.format_date(meta.patient_birth_date) or NOT_RECORDED
        years = phi.age_years(meta.patient_age, meta.patient_birth_date, meta.study_date)
        if years is not None:
            age = f"{int(years)} y" if years >= 2 else f"{int(round(years * 12))} months"
            birth = f"{birth} (age {age})" if birth != NOT_RECORDED else f"age {age}"
        name = display_name(meta.patient_name) or NOT_RECORDED
    modality_view = " / ".join(v for v in (meta.modality, meta.view_position) if v)
    return Patient(
        name=clip(name),
        patient_id=clip(meta.patient_id),
        sex=clip(phi.sex_label(meta.patient_sex)) or NOT_RECORDED,
        birth=clip(birth),
        study_date=clip(phi.format_date(meta.study_date)) or NOT_RECORDED,
        accession=clip(meta.accession_number),
        modality_view=clip(modality_view),
        file=clip(file) or NOT_RECORDED,
        image_sha=image_sha[:16] if image_sha else DASH,
    )


def now() -> _dt.datetime:
    return _dt.datetime.now().astimezone()


def stamp(when: _dt.datetime) -> str:
    offset = when.strftime("%z")
    tz = f"UTC{offset[:3]}:{offset[3:]}" if offset else ""
    return f"{when:%Y-%m-%d %H:%M} {tz}".strip()


def make_report_id(*parts: str, when: _dt.datetime) -> str:
    """``CXR-YYYYMMDD-HHMMSS-xxxxxx``: time plus a hash of non-identifying parts (image sha256, model)."""
    digest = hashlib.sha256("|".join([*parts, when.isoformat()]).encode("utf-8")).hexdigest()[:6]
    return f"CXR-{when:%Y%m%d-%H%M%S}-{digest}"


def decision_text(label: str, positive_class: str) -> tuple[str, bool]:
    positive = label == positive_class
    if positive:
        return f"FLAGGED: {POSITIVE_CLASS_LABEL} pattern suggested", True
    return f"NOT FLAGGED: no {POSITIVE_CLASS_LABEL} pattern found", False


def per_100(value: Any) -> int | None:
    try:
        return round(float(value) * 100)
    except (TypeError, ValueError):
        return None


def fmt_p(p: float, threshold: float) -> str:
    """p with 2 decimals, or 3 when 2 would make it look equal to the threshold."""
    text = f"{p:.2f}"
    if text == f"{threshold:.2f}" and p != threshold:
        text = f"{p:.3f}"
    return text


def predictive_values(sensitivity: Any, specificity: Any, prevalence: float) -> tuple[float, float] | None:
    """(PPV, NPV) at ``prevalence`` from the operating point's sensitivity and specificity (Bayes).

    None when either figure is missing or out of range.
    """
    try:
        se, sp, prev = float(sensitivity), float(specificity), float(prevalence)
    except (TypeError, ValueError):
        return None
    if not all(0.0 <= v <= 1.0 for v in (se, sp)) or not 0.0 < prev < 1.0:
        return None
    tp, fp = se * prev, (1.0 - sp) * (1.0 - prev)
    tn, fn = sp * (1.0 - prev), (1.0 - se) * prev
    if tp + fp <= 0 or tn + fn <= 0:
        return None
    return tp / (tp + fp), tn / (tn + fn)


def fmt_percent(fraction: float) -> str:
    value = 100.0 * fraction
    return f"{value:.0f}%" if value >= 10 or value == round(value) else f"{value:.1f}%"


def prevalence_sentence(op: dict[str, Any], prevalence: float | None) -> str:
    """"At a prevalence of 10%, a positive is right 35% of the time ..." or a note that none was set."""
    if prevalence is None:
        return ("How often a positive is right depends on how common COVID-19 is among the patients "
                "screened; no prevalence was set for this clinic (Settings), so it is not stated here.")
    values = predictive_values(op.get("sensitivity"), op.get("specificity"), prevalence)
    if values is None:
        return (f"No predictive value at the stated prevalence ({fmt_percent(prevalence)}): the model card gives "
                "no sensitivity/specificity for this threshold.")
    ppv, npv = values
    return (f"At the prevalence this clinic stated ({fmt_percent(prevalence)} of the patients screened "
            f"have COVID-19), a positive is right about {fmt_percent(ppv)} of the time and a negative "
            f"about {fmt_percent(npv)} of the time (from the sensitivity and specificity above).")


def plain_sentence(p: float, threshold: float, positive: bool, op: dict[str, Any], op_name: str) -> str:
    """What the result means, for a doctor who does not know the model."""
    sens, spec = per_100(op.get("sensitivity")), per_100(op.get("specificity"))
    where = f"the \u201c{op_name}\u201d operating point" if op_name else "the operating point"
    shown = fmt_p(p, threshold)
    measured = measured_on(op.get("description"))
    if positive:
        text = (
            f"The model rates this image as showing a pattern it associates with COVID-19 pneumonia "
            f"(p = {shown}, at or above the threshold {threshold:.2f} of {where})."
        )
        if sens is not None and spec is not None:
            text += (
                f" At this operating point, {measured}, it flagged about {sens} of 100 "
                f"COVID-19 images, and also flagged about {100 - spec} of 100 normal images by mistake."
            )
        text += " Please review the image: a flag is a reason to look, not a diagnosis."
    else:
        text = (
            f"The model did not find a COVID-19 pattern in this image "
            f"(p = {shown}, below the threshold {threshold:.2f} of {where})."
        )
        if sens is not None:
            text += (
                f" At this operating point it missed about {100 - sens} of 100 COVID-19 "
                f"images {measured}, so a negative result does not rule out COVID-19."
            )
    if abs(p - threshold) < 0.05:
        text += " The score is close to the threshold: treat this result as uncertain."
    return text


def reject_reason(result: Any) -> str | None:
    """The reason a scan row was not assessed by the input gate ("rejected"), or None.

    The gate's words and code ("hip film (not_chest)") when the row's ``error``
    holds them ("not assessable: hip film"), else the code in words. Only
    ``status == "rejected"`` rows have one (``reject_code`` is read with getattr).
    """
    if str(getattr(result, "status", "")) != "rejected":
        return None
    code = str(getattr(result, "reject_code", "") or "").strip()
    detail = str(getattr(result, "error", "") or "").strip()
    prefix = "not assessable: "
    if detail.lower().startswith(prefix):  # the gate's own words ("not assessable: hip film"), with its code
        detail = detail[len(prefix):].strip()
        return f"{detail} ({code})" if code and detail else detail or code.replace("_", " ")
    text = code.replace("_", " ") if code else ""
    return text or detail or "not a chest film the model was validated on"


GENERAL_LIMITS = (
    "Decision support only: this report is not a diagnosis and must not be used alone to include "
    "or exclude COVID-19.",
    "The model was validated only on adult frontal (PA/AP) chest radiographs like those in its "
    "validation data; it was not validated for children, lateral views, CT, images with devices or "
    "post-processing it has not seen, or other lung diseases, which it cannot name.",
    "The heatmap (Grad-CAM) shows which regions had most influence on the model's score; it is not a "
    "segmentation of lesions and can highlight regions outside the lungs.",
    "The final decision rests with the clinician, who takes the clinical picture, laboratory results "
    "and other imaging into account.",
)

__all__ = [
    "DASH",
    "GENERAL_LIMITS",
    "NOT_RECORDED",
    "Patient",
    "ReportInfo",
    "clip",
    "fmt_p",
    "make_report_id",
    "patient_of",
    "plain_sentence",
    "predictive_values",
    "prevalence_sentence",
    "reject_reason",
]

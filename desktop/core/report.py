"""PDF reports for the remote doctor: one study, or a whole batch scan.

The report is what leaves the clinic. A doctor who has only this PDF sees
whose study it is, the X-ray as displayed and where the model looked, the
result with how far to trust it (the operating point's sensitivity and
specificity with confidence intervals, validation and external results from
the model card), the limits of the tool, and a box for their findings and
signature.

Made with reportlab in the Qt-free core, so the CLI, a batch scan and the GUI
write the same file. Fonts (DejaVu Sans) are embedded, so Latin, Greek and
Cyrillic names print. Files are written atomically (temporary file, then
rename) and never overwrite unless asked; with ``anonymize=True`` no
identifying value reaches the text, the file name column or the PDF
metadata (see :mod:`desktop.core.phi`).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from reportlab.lib.units import mm
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    KeepTogether,
    PageBreak,
    Spacer,
    Table,
    TableStyle,
)

from desktop import __version__

from . import phi
from .errors import CXRError, OutputError
from .fileio import atomic_write_with, check_writable
from .filenames import display_name
from .imaging import StudyMetadata, Window, XRay
from .report_card import (
    bundle_field,
    card_of,
    fmt_num,
    text_of,
    training_text,
    validation_rows,
    value_with_ci,
)
from .report_card import operating_point as card_operating_point
from .report_images import attention_labels, colour_stops, study_images, thumbnail
from .report_pdf import (
    ACCENT,
    FONT,
    INK,
    NEGATIVE,
    POSITIVE,
    RULE,
    SHADE,
    ColourBar,
    Deferred,
    Footer,
    ImageBox,
    ProbabilityBar,
    Styles,
    esc,
    make_doc,
    page_size,
    para,
    rich,
    styles,
)

log = logging.getLogger(__name__)

SOFTWARE = f"CXR Screener {__version__}"
DASH = "\u2014"
POSITIVE_CLASS_LABEL = "COVID-19"


@dataclass(frozen=True)
class ReportInfo:
    """What the clinic adds to a report; patient fields override the DICOM metadata.

    A patient field left ``None`` keeps the file's value; ``""`` blanks it.
    ``report_id`` and ``analysed_at`` are filled in when the report is made.
    """

    clinic_name: str = ""
    clinic_address: str = ""
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
    page_size: str = "A4"
    report_id: str | None = None
    analysed_at: _dt.datetime | None = None

    def __post_init__(self) -> None:
        page_size(self.page_size)  # fail early on a bad value

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


# --------------------------------------------------------------------------
# What the report says (plain values, then laid out)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Patient:
    name: str
    patient_id: str
    sex: str
    birth: str
    study_date: str
    accession: str
    modality_view: str
    file: str
    image_sha: str


def _clip(text: str, limit: int = 160) -> str:
    """User text cut to a length that cannot break the layout (a cell taller than a page)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _display_name(name: str) -> str:
    """DICOM person name ``Family^Given^Middle`` as ``Family, Given Middle``."""
    if "^" not in name:
        return name
    parts = [p.strip() for p in name.split("^")]
    family, rest = parts[0], " ".join(p for p in parts[1:] if p)
    return f"{family}, {rest}" if family and rest else (family or rest)


def _patient(meta: StudyMetadata, *, file: str, image_sha: str, anonymize: bool) -> _Patient:
    if anonymize:
        birth = phi.WITHHELD
        if meta.patient_age:
            birth += f"; age band {meta.patient_age}"
        name = phi.WITHHELD
    else:
        birth = phi.format_date(meta.patient_birth_date) or DASH
        years = phi.age_years(meta.patient_age, meta.patient_birth_date, meta.study_date)
        if years is not None:
            age = f"{int(years)} y" if years >= 2 else f"{int(round(years * 12))} months"
            birth = f"{birth} (age {age})" if birth != DASH else f"age {age}"
        name = _display_name(meta.patient_name) or DASH
    modality_view = " / ".join(v for v in (meta.modality, meta.view_position) if v) or DASH
    return _Patient(
        name=_clip(name),
        patient_id=_clip(meta.patient_id) or DASH,
        sex=_clip(phi.sex_label(meta.patient_sex)) or DASH,
        birth=_clip(birth),
        study_date=_clip(phi.format_date(meta.study_date)) or DASH,
        accession=_clip(meta.accession_number) or DASH,
        modality_view=_clip(modality_view),
        file=_clip(file) or DASH,
        image_sha=image_sha[:16] if image_sha else DASH,
    )


def _now() -> _dt.datetime:
    return _dt.datetime.now().astimezone()


def _stamp(when: _dt.datetime) -> str:
    offset = when.strftime("%z")
    tz = f"UTC{offset[:3]}:{offset[3:]}" if offset else ""
    return f"{when:%Y-%m-%d %H:%M} {tz}".strip()


def make_report_id(*parts: str, when: _dt.datetime) -> str:
    """``CXR-YYYYMMDD-HHMMSS-xxxxxx``: time plus a hash of non-identifying parts (image sha256, model)."""
    digest = hashlib.sha256("|".join([*parts, when.isoformat()]).encode("utf-8")).hexdigest()[:6]
    return f"CXR-{when:%Y%m%d-%H%M%S}-{digest}"


def _decision_text(label: str, positive_class: str) -> tuple[str, bool]:
    positive = label == positive_class
    if positive:
        return f"FLAGGED: {POSITIVE_CLASS_LABEL} pattern suggested", True
    return f"NOT FLAGGED: no {POSITIVE_CLASS_LABEL} pattern found", False


def _per_100(value: Any) -> int | None:
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


def plain_sentence(p: float, threshold: float, positive: bool, op: dict[str, Any], op_name: str) -> str:
    """What the result means, for a doctor who does not know the model."""
    sens, spec = _per_100(op.get("sensitivity")), _per_100(op.get("specificity"))
    where = f"the \u201c{op_name}\u201d operating point" if op_name else "the operating point"
    shown = fmt_p(p, threshold)
    if positive:
        text = (
            f"The model rates this image as showing a pattern it associates with COVID-19 pneumonia "
            f"(p = {shown}, at or above the threshold {threshold:.2f} of {where})."
        )
        if sens is not None and spec is not None:
            text += (
                f" At this operating point, on validation images, it flagged about {sens} of 100 "
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
                "images on validation data, so a negative result does not rule out COVID-19."
            )
    if abs(p - threshold) < 0.05:
        text += " The score is close to the threshold: treat this result as uncertain."
    return text


GENERAL_LIMITS = (
    "Decision support only: this report is not a diagnosis and must not be used alone to include "
    "or exclude COVID-19.",
    "The model was validated only on adult frontal (PA/AP) chest radiographs like those in its "
    "validation data; it was not validated for children, lateral views, CT, images with devices or "
    "post-processing it has not seen, or other lung diseases, which it cannot name.",
    "The heatmap (Grad-CAM) shows which regions weighed most in the model's score; it is not a "
    "segmentation of lesions and can highlight regions outside the lungs.",
    "The final decision rests with the clinician, who takes the clinical picture, laboratory results "
    "and other imaging into account.",
)


# --------------------------------------------------------------------------
# Flowable builders
# --------------------------------------------------------------------------


def _style(commands: Sequence[tuple[Any, ...]]) -> TableStyle:
    """A table style whose cells default to the embedded font (reportlab's default is Helvetica)."""
    return TableStyle([("FONTNAME", (0, 0), (-1, -1), FONT), ("FONTSIZE", (0, 0), (-1, -1), 8), *commands])


class _Ctx:
    """What all sections share: styles, frame width, model card."""

    def __init__(self, bundle: Any, size_name: str, cmap: str | None = None) -> None:
        self.cmap = cmap
        self.st: Styles = styles()
        w, h = page_size(size_name)
        from .report_pdf import MARGIN

        self.width = w - 2 * MARGIN
        self.height = h - 2 * MARGIN - 4 * mm
        self.bundle = bundle
        self.card = card_of(bundle)
        self.positive_class = str(self.card.get("positive_class", "covid"))

    def model_line(self) -> str:
        name = bundle_field(self.bundle, self.card, "name", "?")
        version = bundle_field(self.bundle, self.card, "version", "")
        return f"{name} {version}".strip()


def _kv_table(ctx: _Ctx, rows: Sequence[tuple[str, str]], cols: int = 2, label_w: float = 28 * mm) -> Table:
    """Label/value pairs laid out in ``cols`` column pairs."""
    st = ctx.st
    value_w = ctx.width / cols - label_w
    data: list[list[Any]] = []
    for i in range(0, len(rows), cols):
        line: list[Any] = []
        for label, value in rows[i : i + cols]:
            line += [para(label, st.label), para(value, st.value)]
        while len(line) < 2 * cols:
            line += ["", ""]
        data.append(line)
    table = Table(data, colWidths=[label_w, value_w] * cols, hAlign="LEFT")
    table.setStyle(
        _style(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ("LEFTPADDING", (0, 0), (-1, -1), 2),
                ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
            ]
        )
    )
    return table


def _header(ctx: _Ctx, info: ReportInfo, *, title: str, when: _dt.datetime, report_id: str,
            clinic: str, address: str) -> Table:
    st = ctx.st
    left = [
        para(title, st.title),
        para("AI decision support for a chest radiograph \u2014 not a diagnosis", st.small),
    ]
    right_lines = []
    if clinic:
        right_lines.append(f"<b>{esc(_clip(clinic))}</b>")
    if address:
        lines = [_clip(line) for line in address.splitlines()[:6]]
        right_lines.append("<br/>".join(esc(line) for line in lines))
    right_lines.append(f"Operator: {esc(_clip(info.operator)) if info.operator else DASH}")
    right_lines.append(f"Analysed: {esc(_stamp(when))}")
    right_lines.append(f"Report ID: <b>{esc(report_id)}</b>")
    right = rich("<br/>".join(right_lines), st.right)
    table = Table([[left, right]], colWidths=[ctx.width * 0.6, ctx.width * 0.4])
    table.setStyle(
        _style(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                ("LINEBELOW", (0, 0), (-1, 0), 1.2, ACCENT),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        )
    )
    return table


def _patient_section(ctx: _Ctx, p: _Patient, *, anonymize: bool) -> list[Flowable]:
    st = ctx.st
    title = "Patient and study" + (" (anonymised: identifying fields withheld or pseudonymised)" if anonymize else "")
    rows = [
        ("Name", p.name),
        ("Patient ID" + (" (pseudonym)" if anonymize and p.patient_id != DASH else ""), p.patient_id),
        ("Sex", p.sex),
        ("Birth date / age", p.birth),
        ("Study date" + (" (year)" if anonymize and p.study_date != DASH else ""), p.study_date),
        ("Accession no." + (" (pseudonym)" if anonymize and p.accession != DASH else ""), p.accession),
        ("Modality / view", p.modality_view),
        ("Image file", p.file),
    ]
    note = f"Image sha256 (first 16 hex): {p.image_sha}"
    if anonymize:
        note += (". Anonymisation covers the text and metadata of this report, not text burned into "
                 "the image pixels: check the images before sending.")
    return [para(title, st.h2), _kv_table(ctx, rows), Spacer(1, 1 * mm), para(note, st.tiny)]


def _images_section(ctx: _Ctx, xray: XRay, heatmap: Any, *, window: Window | None, max_h: float,
                    dpi: int) -> list[Flowable]:
    st = ctx.st
    gap = 6 * mm
    box_w = (ctx.width - gap) / 2
    gray_jpg, over_jpg, w_pt, h_pt, _ = study_images(
        xray, heatmap, box_w, max_h, window=window, dpi=dpi, cmap=ctx.cmap
    )
    low, high = attention_labels()
    caption = "Grad-CAM overlay: where the model looked"
    if getattr(heatmap, "empty", False):
        caption += " (no region stood out: the map is empty)"

    win = window or xray.window
    win_text = f"window {win.name}" if win.name else f"window C {win.center:g} / W {win.width:g}"
    left = [ImageBox(gray_jpg, w_pt, h_pt), Spacer(1, 1.5 * mm),
            para(f"X-ray as displayed ({win_text})", st.caption)]
    right = [ImageBox(over_jpg, w_pt, h_pt), Spacer(1, 1.5 * mm),
             para(caption, st.caption), Spacer(1, 1 * mm),
             ColourBar(colour_stops(ctx.cmap), w_pt, low=low, high=high)]
    table = Table([[left, right]], colWidths=[box_w + gap / 2, box_w + gap / 2])
    table.setStyle(
        _style(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    out: list[Flowable] = [para("Images", st.h2), table]
    if xray.warnings:
        notes = "; ".join(xray.warnings)
        out.append(para(f"Image notes: {notes}", st.tiny))
    return out


def _result_section(ctx: _Ctx, prediction: Any) -> list[Flowable]:
    st = ctx.st
    p = float(prediction.p_covid)
    threshold = float(prediction.threshold)
    op_name = str(getattr(prediction, "operating_point", "") or "")
    op = card_operating_point(ctx.card, op_name)
    decision, positive = _decision_text(str(prediction.label), ctx.positive_class)
    colour = POSITIVE if positive else NEGATIVE

    score = [para("p(COVID-19)", st.label), para(fmt_p(p, threshold), st.big)]
    bar = ProbabilityBar(p, threshold, ctx.width - 40 * mm, positive=positive)
    top = Table([[score, bar]], colWidths=[36 * mm, ctx.width - 36 * mm])
    top.setStyle(_style([("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))

    op_label = f"\u201c{op_name}\u201d" if op_name else "(default)"
    desc = op.get("description", "")
    decision_p = rich(f"<font color='#{colour.hexval()[2:]}'>{esc(decision)}</font>", st.decision)
    lines: list[Flowable] = [
        decision_p,
        rich(
            f"Operating point {esc(op_label)}, threshold {threshold:.2f}"
            + (f": {esc(desc)}" if desc else ""),
            st.small,
        ),
    ]
    if op.get("sensitivity") is not None or op.get("specificity") is not None:
        sens = value_with_ci(op.get("sensitivity"), op.get("sensitivity_ci"))
        spec = value_with_ci(op.get("specificity"), op.get("specificity_ci"))
        lines.append(
            rich(
                f"At this operating point (model card, validation data): <b>sensitivity {esc(sens)}</b>, "
                f"<b>specificity {esc(spec)}</b>.",
                st.small,
            )
        )
    else:
        lines.append(para("The model card gives no sensitivity/specificity for this operating point.", st.small))
    lines.append(Spacer(1, 1.5 * mm))
    lines.append(para(plain_sentence(p, threshold, positive, op, op_name), st.body))
    model = para(
        f"Model {ctx.model_line()}; probabilities: "
        + ", ".join(f"{k} {fmt_num(v, 3)}" for k, v in _probabilities(prediction).items()),
        st.tiny,
    )
    box = Table([[top], [lines], [model]], colWidths=[ctx.width])
    box.setStyle(
        _style(
            [
                ("BOX", (0, 0), (-1, -1), 0.8, colour),
                ("BACKGROUND", (0, 0), (-1, 0), SHADE),
                ("LEFTPADDING", (0, 0), (-1, -1), 6),
                ("RIGHTPADDING", (0, 0), (-1, -1), 6),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
            ]
        )
    )
    return [para("Result", st.h2), box]


def _probabilities(prediction: Any) -> dict[str, float]:
    probs = getattr(prediction, "probabilities", None)
    if isinstance(probs, dict):
        return {str(k): float(v) for k, v in probs.items()}
    return {"covid": float(prediction.p_covid)}


def _model_section(ctx: _Ctx, op_name: str | None = None) -> list[Flowable]:
    st = ctx.st
    card = ctx.card
    arch = str(bundle_field(ctx.bundle, card, "architecture", "?"))
    arch_names = {"vgg19": "VGG19", "mobilenet": "MobileNet"}
    init = card.get("backbone_init", "")
    arch_text = arch_names.get(arch.lower(), arch) + (f" (backbone: {text_of(init, limit=240)})" if init else "")
    sha = str(bundle_field(ctx.bundle, card, "sha256", DASH))
    rows: list[tuple[str, str]] = [
        ("Model", ctx.model_line()),
        ("Architecture", arch_text),
        ("Model file sha256", sha),
        ("Created", str(card.get("created", DASH))),
        ("Trained on", training_text(card.get("training_data")) or DASH),
    ]
    rows.append(("Software", f"{SOFTWARE} (ONNX Runtime on CPU); report made with reportlab"))
    out: list[Flowable] = [para("Model and validation", st.h2), _kv_table(ctx, rows, cols=1, label_w=34 * mm)]
    mrows = validation_rows(card.get("metrics"), op_name)
    if mrows:
        data = [[para("Validation / external test", st.cell_bold), para("Result (95% CI)", st.cell_bold)]]
        data += [[para(a, st.cell), para(b, st.cell)] for a, b in mrows[:24]]
        table = Table(data, colWidths=[60 * mm, ctx.width - 60 * mm], repeatRows=1)
        table.setStyle(
            _style(
                [
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("BACKGROUND", (0, 0), (-1, 0), SHADE),
                    ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
                    ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ]
            )
        )
        out += [Spacer(1, 2 * mm), table]
        out.append(
            para(
                "External results come from image sources the model never saw in training; they are "
                "the best guide to how it behaves on images from this clinic.",
                st.tiny,
            )
        )
    else:
        out.append(para("The model card gives no validation results.", st.small))
    return out


def _limits_section(ctx: _Ctx) -> list[Flowable]:
    st = ctx.st
    items = list(GENERAL_LIMITS)
    card_limits = [str(x) for x in ctx.card.get("limitations") or [] if str(x).strip()]
    # the card's own "decision support" line repeats ours; its conditions replace our generic ones
    card_limits = [x for x in card_limits if not x.lower().startswith("decision support")]
    out: list[Flowable] = [para("Limits of this result", st.h2)]
    for text in items[:1] if card_limits else items[:2]:
        out.append(rich(f"\u2022 {esc(text)}", st.small))
    for text in card_limits:
        out.append(rich(f"\u2022 {esc(text)} <font color='#555555'>(model card)</font>", st.small))
    for text in items[2:]:
        out.append(rich(f"\u2022 {esc(text)}", st.small))
    return out


def _findings_section(ctx: _Ctx, height: float = 55 * mm) -> list[Flowable]:
    st = ctx.st
    box = Table(
        [[para("Findings and recommendation of the reviewing doctor", st.label)], [""]],
        colWidths=[ctx.width],
        rowHeights=[None, height],
    )
    box.setStyle(_style([("BOX", (0, 0), (-1, -1), 0.8, INK), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    line = "_" * 28
    sign = Table(
        [[para("Reviewing doctor (name)", st.label), para("Signature", st.label), para("Date", st.label)],
         [para(line, st.body), para(line, st.body), para("_" * 16, st.body)]],
        colWidths=[ctx.width * 0.4, ctx.width * 0.4, ctx.width * 0.2],
    )
    sign.setStyle(_style([("TOPPADDING", (0, 1), (-1, 1), 12), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    return [KeepTogether([para("Remote review", st.h2), box, Spacer(1, 3 * mm), sign])]


# --------------------------------------------------------------------------
# Single study
# --------------------------------------------------------------------------


def _pdf_meta(title: str, author: str, subject: str) -> dict[str, str]:
    return {
        "title": title,
        "author": author or "CXR Screener",
        "subject": subject,
        "creator": SOFTWARE,
        "keywords": "chest X-ray,COVID-19,Grad-CAM,decision support",
    }


#: Height of the images section beyond the images: heading, captions, colour bar.
_IMAGES_OVERHEAD = 23 + 6 + 1.5 * mm + 10 + 1 * mm + 5 * mm + 10 + 6


def _height(ctx: _Ctx, flowables: Sequence[Flowable]) -> float:
    """Total height the flowables take in the frame (KeepTogether groups measured by their parts)."""
    total = 0.0
    for f in flowables:
        parts = getattr(f, "_content", None) if isinstance(f, KeepTogether) else [f]
        for part in parts or []:
            _, h = part.wrap(ctx.width, ctx.height)
            total += h + part.getSpaceBefore() + part.getSpaceAfter()
    return total


def _study_flowables(
    ctx: _Ctx,
    xray: XRay,
    prediction: Any,
    heatmap: Any,
    info: ReportInfo,
    *,
    anonymize: bool,
    when: _dt.datetime,
    report_id: str,
    window: Window | None,
    compact: bool,
) -> list[Flowable]:
    meta = info.apply_to(xray.metadata)
    clinic = info.clinic_name or ("" if anonymize else meta.institution)
    if anonymize:
        meta = phi.anonymize_metadata(meta, fallback=xray.sha256)
    file = phi.file_label(xray.source, anonymize=anonymize) if xray.source else ""
    patient = _patient(meta, file=file, image_sha=xray.sha256, anonymize=anonymize)
    head = [
        _header(ctx, info, title="Chest X-ray screening report", when=when, report_id=report_id,
                clinic=clinic, address=info.clinic_address),
        *_patient_section(ctx, patient, anonymize=anonymize),
    ]
    tail: list[Flowable] = [
        *_result_section(ctx, prediction),
        Spacer(1, 2 * mm),
        para(
            "Decision support only, not a diagnosis: the final decision rests with the clinician."
            + (" Model validation and limits: next page." if not compact else ""),
            ctx.st.small_bold,
        ),
    ]
    if compact:
        # one page per study: the images get what the other sections leave
        tail += _findings_section(ctx, height=24 * mm)
        free = ctx.height - _height(ctx, head + tail) - _IMAGES_OVERHEAD - (9 if xray.warnings else 0)
        image_h = max(40 * mm, min(80 * mm, free - 6))
    else:
        image_h = min(95 * mm, ctx.height * 0.34)
    dpi = 200 if not compact else 160
    images = _images_section(ctx, xray, heatmap, window=window, max_h=image_h, dpi=dpi)
    if compact:
        excess = _height(ctx, head + images + tail) - ctx.height
        if excess > 0 and image_h - excess - 4 >= 40 * mm:  # the estimate was short: shrink once
            images = _images_section(ctx, xray, heatmap, window=window, max_h=image_h - excess - 4, dpi=dpi)
    story: list[Flowable] = [*head, *images, CondPageBreak(60 * mm), *tail]
    if not compact:
        page2: list[Flowable] = [
            para(
                f"Report {report_id} (continued) \u2014 patient: {patient.name}; ID: {patient.patient_id}; "
                f"study date: {patient.study_date}",
                ctx.st.tiny,
            ),
            *_model_section(ctx, str(getattr(prediction, "operating_point", "") or "") or None),
            *_limits_section(ctx),
        ]
        # the findings box takes the rest of page 2 (at least 35 mm, else a page of its own)
        free = ctx.height - _height(ctx, page2) - _height(ctx, _findings_section(ctx, height=0)) - 8
        box = min(max(free, 35 * mm), 70 * mm) if free >= 35 * mm else 70 * mm
        story += [PageBreak(), *page2, *_findings_section(ctx, height=box)]
    return story


def write_study_report(
    path: str | os.PathLike[str],
    xray: XRay,
    prediction: Any,
    heatmap: Any,
    bundle: Any,
    info: ReportInfo | None = None,
    *,
    anonymize: bool = False,
    overwrite: bool = False,
    window: Window | None = None,
    cmap: str | None = None,
) -> Path:
    """Write the single-study PDF for the remote doctor; return its path.

    ``prediction`` and ``heatmap`` come from ``Predictor.explain(xray)``;
    ``window`` is the display window the user chose (the file's default when
    None), ``cmap`` the overlay colour map (:data:`desktop.core.overlay.COLORMAPS`). Raises :class:`~desktop.core.errors.OutputError` (exists,
    unwritable, disk full) and leaves no partial file behind.
    """
    info = info or ReportInfo()
    target = check_writable(path, overwrite=overwrite)
    when = info.analysed_at or _now()
    ctx = _Ctx(bundle, info.page_size, cmap)
    model_sha = str(bundle_field(bundle, ctx.card, "sha256", ""))
    report_id = info.report_id or make_report_id(xray.sha256, model_sha, when=when)
    story = _study_flowables(
        ctx, xray, prediction, heatmap, info,
        anonymize=anonymize, when=when, report_id=report_id, window=window, compact=False,
    )
    footer = Footer(left=f"{SOFTWARE} \u2014 decision support, not a diagnosis", right=f"Report {report_id}")
    meta = _pdf_meta(
        title=f"Chest X-ray screening report {report_id}",
        author=info.clinic_name,
        subject=f"AI decision support (not a diagnosis): p(COVID-19) "
        f"{fmt_p(float(prediction.p_covid), float(prediction.threshold))}, "
        f"model {ctx.model_line()}",
    )
    _write(target, story, size_name=info.page_size, footer=footer, meta=meta, overwrite=overwrite)
    log.info("wrote study report %s", report_id)  # no file names in logs: they may name the patient
    return target


def _write(target: Path, story: list[Flowable], *, size_name: str, footer: Footer,
           meta: dict[str, str], overwrite: bool) -> None:
    def writer(fh: IO[bytes]) -> None:
        doc = make_doc(fh, size_name=size_name, footer=footer, meta=meta)
        doc.build_story(story)

    try:
        atomic_write_with(target, writer, overwrite=overwrite)
    except CXRError:
        raise
    except MemoryError as exc:
        raise OutputError(target, "not enough memory to build the report: nothing was written") from exc
    except Exception as exc:  # a layout error in reportlab: no partial file is left
        # reportlab's messages quote the text being laid out (patient names): log the type only
        log.error("report layout failed (%s)", type(exc).__name__)
        raise OutputError(target, f"could not lay out the report ({type(exc).__name__}): nothing was written") from exc


# --------------------------------------------------------------------------
# Batch
# --------------------------------------------------------------------------

THUMB_BOX = 15 * mm
_ROWS_PER_TABLE = 30


@dataclass(frozen=True)
class _Row:
    path: str
    relpath: str
    file: str
    patient: str
    p: float
    label: str
    op: str
    thumb: bytes | None
    thumb_w: float
    thumb_h: float


def _load_for_row(path: str) -> XRay | None:
    from .imaging import load_xray

    try:
        return load_xray(path)
    except CXRError as exc:
        log.warning("no thumbnail for %s: %s", phi.file_label(path, anonymize=True), exc.reason)
        return None


def _shown_xray(shown: Mapping[str, Any] | None, r: Any) -> XRay | None:
    """The scan's display of ``r`` (no decode), when the caller passed it."""
    made = (shown or {}).get(str(getattr(r, "relpath", "") or ""))
    display = getattr(made, "display", None)
    if display is None:
        return None
    try:
        return display.as_xray(source=str(r.path), sha256=str(getattr(r, "sha256", "")))
    except (OSError, ValueError) as exc:
        log.warning("no stored display for a row (%s): decoding it", type(exc).__name__)
        return None


def _batch_rows(results: Sequence[Any], *, anonymize: bool, ctx: _Ctx,
                shown: Mapping[str, Any] | None = None) -> list[_Row]:
    rows: list[_Row] = []
    for r in results:
        xray = _shown_xray(shown, r) or _load_for_row(str(r.path))
        thumb, tw, th = (None, 0.0, 0.0)
        patient = DASH
        if xray is not None:
            thumb, tw, th = thumbnail(xray, THUMB_BOX)
            meta = xray.metadata
            if anonymize:
                meta = phi.anonymize_metadata(meta)
            patient = meta.patient_id or DASH
            del xray
        rows.append(
            _Row(
                path=str(r.path),
                relpath=str(getattr(r, "relpath", "") or ""),
                file=phi.file_label(r.path, anonymize=anonymize),
                patient=patient,
                p=float(r.p_covid),
                label=str(r.label),
                op=str(r.operating_point or ""),
                thumb=thumb,
                thumb_w=tw,
                thumb_h=th,
            )
        )
    rows.sort(key=lambda row: (-row.p, row.file))
    return rows


def _rel(path: str, folder: str | os.PathLike[str]) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(folder).resolve()))
    except (ValueError, OSError):
        return Path(path).name


def _results_tables(ctx: _Ctx, rows: list[_Row], folder: str | os.PathLike[str], *,
                    anonymize: bool) -> list[Flowable]:
    st = ctx.st
    head = [para(h, st.cell_bold) for h in ("#", "", "File", "Patient ID" + (" (pseudonym)" if anonymize else ""),
                                             "p(COVID-19)", "Decision")]
    widths = [9 * mm, THUMB_BOX + 3 * mm, None, 36 * mm, 22 * mm, 40 * mm]
    fixed = sum(w for w in widths if w is not None)
    widths[2] = ctx.width - fixed
    out: list[Flowable] = []
    for start in range(0, len(rows), _ROWS_PER_TABLE):
        chunk = rows[start : start + _ROWS_PER_TABLE]
        data: list[list[Any]] = [head]
        styles_cmd: list[tuple[Any, ...]] = [
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("BACKGROUND", (0, 0), (-1, 0), SHADE),
            ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
            ("TOPPADDING", (0, 0), (-1, -1), 1),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
            ("LEFTPADDING", (0, 0), (-1, -1), 2),
            ("RIGHTPADDING", (0, 0), (-1, -1), 2),
        ]
        for i, row in enumerate(chunk, start=1):
            positive = row.label == ctx.positive_class
            thumb: Any = ImageBox(row.thumb, row.thumb_w, row.thumb_h) if row.thumb else para(DASH, st.cell)
            file_text = row.file if anonymize else display_name(row.relpath or _rel(row.path, folder))
            decision = ("FLAGGED" if positive else "not flagged") + (f" ({row.op})" if row.op else "")
            data.append([
                para(str(start + i), st.cell),
                thumb,
                para(file_text, st.cell),
                para(row.patient, st.cell),
                rich(f"<b>{row.p:.3f}</b>", st.cell),
                para(decision, st.cell_bold if positive else st.cell),
            ])
            if positive:
                styles_cmd.append(("TEXTCOLOR", (5, i), (5, i), POSITIVE))
        table = Table(data, colWidths=widths, repeatRows=1)
        table.setStyle(_style(styles_cmd))
        out.append(table)
    return out


def write_batch_report(
    path: str | os.PathLike[str],
    results: Iterable[Any],
    *,
    folder: str | os.PathLike[str],
    bundle: Any,
    operating_point: str | None,
    started: _dt.datetime,
    info: ReportInfo | None = None,
    study_pages: bool = False,
    anonymize: bool = False,
    overwrite: bool = False,
    shown: Mapping[str, Any] | None = None,
    predictor: Any = None,
) -> Path:
    """Write the batch-scan PDF: summary, results sorted by p(COVID-19), failures, optional study pages.

    ``results`` are :class:`desktop.core.batch.ScanResult` objects (anything
    with ``path``, ``status``, ``label``, ``p_covid``, ``operating_point``,
    ``threshold``, ``error``). Images are decoded again one at a time for the
    thumbnails (and, with ``study_pages``, for a Grad-CAM page each), so
    memory holds small JPEGs, not images. ``shown`` maps a result's
    ``relpath`` to what the scan made for it (a ScanResult with ``display``,
    ``prediction`` and ``explanation``): those rows are drawn from it without
    reading the file again. ``predictor`` is used for the rows without (a new
    one is made only if needed).
    """
    info = info or ReportInfo()
    target = check_writable(path, overwrite=overwrite)
    results = list(results)
    ctx = _Ctx(bundle, info.page_size)
    st = ctx.st
    when = info.analysed_at or _now()
    started_at = started if started.tzinfo else started.astimezone()
    ok = [r for r in results if r.status == "ok"]
    failed = [r for r in results if r.status != "ok"]
    model_sha = str(bundle_field(bundle, ctx.card, "sha256", ""))
    report_id = info.report_id or make_report_id(
        *sorted(str(getattr(r, "sha256", "")) for r in results), model_sha, when=when
    )
    op_name = operating_point or str(ctx.card.get("default_operating_point", "")) or ""
    if ok and not operating_point:
        op_name = str(ok[0].operating_point or op_name)
    op = card_operating_point(ctx.card, op_name)
    n_pos = sum(1 for r in ok if str(r.label) == ctx.positive_class)
    n_neg = len(ok) - n_pos

    folder_text = phi.WITHHELD if anonymize else str(folder)
    story: list[Flowable] = [
        _header(ctx, info, title="Chest X-ray batch report", when=when, report_id=report_id,
                clinic=info.clinic_name, address=info.clinic_address),
        para("Summary", st.h2),
    ]
    threshold = op.get("threshold", ok[0].threshold if ok else None)
    sens = value_with_ci(op.get("sensitivity"), op.get("sensitivity_ci")) or DASH
    spec = value_with_ci(op.get("specificity"), op.get("specificity_ci")) or DASH
    summary = [
        ("Scan started", _stamp(started_at)),
        ("Folder", folder_text),
        ("Model", ctx.model_line()),
        ("Operating point", f"{op_name or DASH}" + (f" (threshold {fmt_num(threshold)})" if threshold is not None else "")),
        ("Sensitivity", sens),
        ("Specificity", spec),
        ("Images", str(len(results))),
        (f"Flagged ({POSITIVE_CLASS_LABEL} pattern)", str(n_pos)),
        ("Not flagged", str(n_neg)),
        ("Failed (not analysed)", str(len(failed))),
    ]
    story.append(_kv_table(ctx, summary, cols=2, label_w=32 * mm))
    story.append(Spacer(1, 2 * mm))
    story.append(
        para(
            "Images are listed from the highest to the lowest p(COVID-19). A flag is a reason to review the "
            "image, not a diagnosis; an image not flagged can still show COVID-19 (see the sensitivity above).",
            st.small,
        )
    )
    if anonymize:
        story.append(
            para(
                "Anonymised: patient IDs and file names are pseudonyms (ANON-...), the folder is withheld. "
                "Anonymisation covers text and metadata, not text burned into the image pixels.",
                st.small,
            )
        )
    rows = _batch_rows(ok, anonymize=anonymize, ctx=ctx, shown=shown)
    story.append(para(f"Results ({len(rows)} images)", st.h2))
    if rows:
        story.extend(_results_tables(ctx, rows, folder, anonymize=anonymize))
    else:
        story.append(para("No image could be analysed.", st.body))
    if failed:
        story.append(para(f"Failed files ({len(failed)}): not analysed", st.h2))
        data = [[para("File", st.cell_bold), para("Reason", st.cell_bold)]]
        for r in sorted(failed, key=lambda r: str(r.path)):
            rel = str(getattr(r, "relpath", "") or "") or _rel(str(r.path), folder)
            name = phi.file_label(r.path, anonymize=anonymize) if anonymize else display_name(rel)
            reason = _reason_without_path(str(r.error or getattr(r, "error_kind", "") or "unknown error"),
                                          str(r.path), rel)
            data.append([para(name, st.cell), para(reason, st.cell)])
        table = Table(data, colWidths=[ctx.width * 0.4, ctx.width * 0.6], repeatRows=1)
        table.setStyle(_style([("VALIGN", (0, 0), (-1, -1), "TOP"), ("BACKGROUND", (0, 0), (-1, 0), SHADE),
                                   ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE)]))
        story.append(table)
    story += [CondPageBreak(90 * mm), *_model_section(ctx, op_name or None), *_limits_section(ctx)]
    if study_pages and rows:
        story.extend(_study_pages(ctx, rows, info, operating_point=op_name or None, anonymize=anonymize,
                                  when=when, report_id=report_id, shown=shown, predictor=predictor))
    footer = Footer(left=f"{SOFTWARE} \u2014 decision support, not a diagnosis", right=f"Report {report_id}")
    meta = _pdf_meta(
        title=f"Chest X-ray batch report {report_id}",
        author=info.clinic_name,
        subject=f"AI decision support (not a diagnosis): {len(results)} images, {n_pos} flagged, "
        f"{len(failed)} failed; model {ctx.model_line()}",
    )
    _write(target, story, size_name=info.page_size, footer=footer, meta=meta, overwrite=overwrite)
    log.info("wrote batch report (%d images, %s)", len(results), report_id)
    return target


def _reason_without_path(reason: str, path: str, rel: str = "") -> str:
    """A failure reason without the file's path or name (shown in its own column; may name the patient)."""
    tokens = {path, str(Path(path).resolve()) if path else "", rel, Path(path).name}
    tokens |= {display_name(t) for t in tokens}
    for token in sorted((t for t in tokens if t), key=len, reverse=True):
        reason = reason.replace(token, "")
    return reason.lstrip(" :") or reason


def _study_pages(ctx: _Ctx, rows: list[_Row], info: ReportInfo, *, operating_point: str | None,
                 anonymize: bool, when: _dt.datetime, report_id: str, shown: Mapping[str, Any] | None = None,
                 predictor: Any = None) -> list[Flowable]:
    """One compact single-study page per image, each made only when the layout reaches it."""
    made: list[Any] = [predictor]

    def get_predictor() -> Any:  # only rows the scan did not explain need one
        if made[0] is None:
            from .inference import Predictor

            made[0] = Predictor(ctx.bundle)
        return made[0]

    out: list[Flowable] = []
    for i, row in enumerate(rows, start=1):
        out.append(PageBreak())
        out.append(Deferred(functools.partial(
            _study_page, ctx, get_predictor, row, info, operating_point=operating_point, anonymize=anonymize,
            when=when, report_id=f"{report_id}-{i}", shown=shown,
        )))
    return out


def _study_page(ctx: _Ctx, get_predictor: Any, row: _Row, info: ReportInfo, *, operating_point: str | None,
                anonymize: bool, when: _dt.datetime, report_id: str,
                shown: Mapping[str, Any] | None = None) -> list[Flowable]:
    from .imaging import load_xray

    made: Any = (shown or {}).get(row.relpath)
    try:
        xray = _shown_xray(shown, made) if made is not None else None
        if xray is not None and made.explanation is not None and made.prediction is not None:
            prediction, heatmap = made.prediction, made.explanation
        else:
            xray = load_xray(row.path)
            prediction, heatmap = get_predictor().explain(xray, operating_point)
    except CXRError as exc:
        log.warning("no study page for %s: %s", phi.file_label(row.path, anonymize=True), exc.reason)
        name = row.file if anonymize else display_name(row.relpath or Path(row.path).name)
        reason = _reason_without_path(exc.reason, row.path, row.relpath)
        return [para(f"Study page for {name} could not be made: {reason}", ctx.st.body)]
    return _study_flowables(ctx, xray, prediction, heatmap, info, anonymize=anonymize, when=when,
                            report_id=report_id, window=None, compact=True)


__all__ = [
    "GENERAL_LIMITS",
    "ReportInfo",
    "make_report_id",
    "plain_sentence",
    "write_batch_report",
    "write_study_report",
]

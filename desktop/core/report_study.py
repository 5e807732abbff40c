"""The single-study report pages: what the remote doctor reads to act on one film.

Page 1 is in plain words: who and what (patient, clinical context, where to
reply), the result with how far to trust it here (sensitivity, specificity,
and the predictive value at the clinic's prevalence), the film and its
heatmap as large as the page allows. A full-page film follows when asked;
then the technical section (model internals, validation), the limits and the
findings box. The original file can travel inside the PDF (a file
attachment) when the user allows it. The same flowables make the compact
per-study pages of a batch report (:mod:`desktop.core.report_batch`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, PageBreak, Spacer, Table

from . import phi
from .bundle import measured_on
from .fileio import check_writable
from .imaging import Window, XRay
from .report_card import bundle_field, fmt_num, value_with_ci
from .report_card import operating_point as card_operating_point
from .report_images import colour_stops, influence_labels, study_images
from .report_info import (
    NOT_RECORDED,
    Patient,
    ReportInfo,
    decision_text,
    fmt_p,
    make_report_id,
    now,
    patient_of,
    plain_sentence,
    prevalence_sentence,
)
from .report_layout import (
    Ctx,
    findings_section,
    footer_for,
    header,
    height_of,
    kv_table,
    limits_section,
    model_section,
    pdf_meta,
    table_style,
    wrap_path,
    write_pdf,
)
from .report_pdf import (
    NEGATIVE,
    POSITIVE,
    SHADE,
    Attachment,
    AttachmentNote,
    ColourBar,
    ImageBox,
    ProbabilityBar,
    esc,
    para,
    rich,
)

log = logging.getLogger(__name__)

TITLE = "Chest X-ray screening report"
#: Largest original file attached to a PDF (a DICOM of a large detector is ~20-50 MB).
MAX_ATTACHMENT = 64 * 1024 * 1024


def patient_section(ctx: Ctx, p: Patient, info: ReportInfo, *, anonymize: bool) -> list[Flowable]:
    st = ctx.st
    title = "Patient and study" + (" (anonymised: identifying fields withheld or pseudonymised)" if anonymize else "")
    rows = p.rows(anonymize=anonymize)
    rows = [(label, "\u2014" if label == "Name" and value == NOT_RECORDED else value) for label, value in rows]
    # a file name breaks at its separators, never inside the extension
    value_w = ctx.width / 2 - 28 * mm - 4
    rows = [(label, rich(wrap_path(value, value_w, st.value.fontSize), st.value) if label == "Image file" else value)
            for label, value in rows]
    note = f"Image sha256 (first 16 hex): {p.image_sha}"
    if anonymize:
        note += (". Anonymisation covers the text and metadata of this report, not text burned into "
                 "the image pixels: check the images before sending.")
    out: list[Flowable] = [para(title, st.h2), kv_table(ctx, rows), Spacer(1, 1 * mm), para(note, st.tiny)]
    clinical = info.clinical_rows()
    if clinical:
        out += [para("Clinical context (from the clinic)", st.h2), kv_table(ctx, clinical)]
    return out


def images_section(ctx: Ctx, image: XRay | np.ndarray, heatmap: Any, *, window: Window | None, max_h: float,
                   dpi: int, draw: bool, warnings: tuple[str, ...] = (), window_text: str = "") -> list[Flowable]:
    """The film and its heatmap side by side, the colour bar with its scale, the lung-field share."""
    from .overlay import DRAW_FROM, HIDDEN_BELOW_THRESHOLD, WORD, lung_sentence

    st = ctx.st
    gap = 6 * mm
    box_w = (ctx.width - gap) / 2
    gray_jpg, over_jpg, w_pt, h_pt, share = study_images(
        image, heatmap, box_w, max_h, window=window, dpi=dpi, cmap=ctx.cmap, alpha=ctx.alpha, draw=draw
    )
    low, high = influence_labels()
    left = [ImageBox(gray_jpg, w_pt, h_pt), Spacer(1, 1.5 * mm),
            para(f"X-ray as displayed ({window_text})" if window_text else "X-ray as displayed", st.caption)]
    if over_jpg is not None:
        caption = f"Grad-CAM overlay: where the model looked ({WORD} on the COVID-19 score)"
        if getattr(heatmap, "empty", False):
            caption += " (no region had any: the map is empty)"
        right: list[Flowable] = [
            ImageBox(over_jpg, w_pt, h_pt), Spacer(1, 1.5 * mm), para(caption, st.caption), Spacer(1, 1 * mm),
            ColourBar(colour_stops(ctx.cmap), w_pt, low=low, high=high, floor=DRAW_FROM),
        ]
    elif heatmap is None:
        right = [para("No heatmap was made for this file.", st.caption)]
    else:
        right = [ImageBox(gray_jpg, w_pt, h_pt), Spacer(1, 1.5 * mm),
                 para(f"{HIDDEN_BELOW_THRESHOLD} It can be shown on request.", st.caption)]
    table = Table([[left, right]], colWidths=[box_w + gap / 2, box_w + gap / 2])
    table.setStyle(table_style([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("ALIGN", (0, 0), (-1, -1), "CENTER"),
        ("LEFTPADDING", (0, 0), (-1, -1), 0),
        ("RIGHTPADDING", (0, 0), (-1, -1), 0),
    ]))
    out: list[Flowable] = [para("Images", st.h2), table]
    if heatmap is not None and over_jpg is not None:  # said of a map the reader can see
        text, warn = lung_sentence(share)
        out.append(rich(("<b>Warning:</b> " if warn else "") + esc(text), st.small_bold if warn else st.small))
    if warnings:
        out.append(para(f"Image notes: {'; '.join(warnings)}", st.tiny))
    return out


def full_page_film(ctx: Ctx, image: XRay | np.ndarray, *, window: Window | None, caption: str) -> list[Flowable]:
    """The film alone, as large as the page allows (300 dpi), for reading."""
    jpg, _, w_pt, h_pt, _ = study_images(image, None, ctx.width, ctx.height - 30, window=window, dpi=300, draw=False)
    return [PageBreak(), ImageBox(jpg, w_pt, h_pt), Spacer(1, 2 * mm), para(caption, ctx.st.caption)]


def result_section(ctx: Ctx, prediction: Any, info: ReportInfo, *, compact: bool = False,
                   caution: str | None = None) -> list[Flowable]:
    """The result in plain words; the model's internals are in the technical section. ``caution``: the
    out-of-distribution flag's sentence (:data:`desktop.core.ood.FLAG_TEXT`) when the film is unlike the
    training films, printed in bold inside the result box."""
    st = ctx.st
    p = float(prediction.p_covid)
    threshold = float(prediction.threshold)
    op_name = str(getattr(prediction, "operating_point", "") or "")
    op = card_operating_point(ctx.card, op_name)
    decision, positive = decision_text(str(prediction.label), ctx.positive_class)
    colour = POSITIVE if positive else NEGATIVE

    score = [para("p(COVID-19)", st.label), para(fmt_p(p, threshold), st.big)]
    bar = ProbabilityBar(p, threshold, ctx.width - 40 * mm, positive=positive)
    top = Table([[score, bar]], colWidths=[36 * mm, ctx.width - 36 * mm])
    top.setStyle(table_style([("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))

    op_label = f"\u201c{op_name}\u201d" if op_name else "(default)"
    desc = op.get("description", "")
    lines: list[Flowable] = [
        rich(f"<font color='#{colour.hexval()[2:]}'>{esc(decision)}</font>", st.decision),
        rich(f"Decision threshold {threshold:.2f} (setting {esc(op_label)}"
             + (f": {esc(desc)}" if desc else "") + ")", st.small),
    ]
    claims = claims_for(ctx.bundle, op_name)
    if claims and str(op_name or "").startswith("site:"):  # a site's threshold: the site's own figures
        lines.append(para(claims, st.small))
    elif op.get("sensitivity") is not None or op.get("specificity") is not None:
        sens = value_with_ci(op.get("sensitivity"), op.get("sensitivity_ci"))
        spec = value_with_ci(op.get("specificity"), op.get("specificity_ci"))
        lines.append(rich(
            "At this threshold (model card"
            + ("" if claims else f", measured {esc(measured_on(op.get('description')))}") + "): "
            f"<b>sensitivity {esc(sens)}</b>, "
            f"<b>specificity {esc(spec)}</b>." + (f" {esc(claims)}" if claims else ""), st.small))
    else:
        lines.append(para("The model card gives no sensitivity/specificity for this threshold."
                          + (f" {claims}" if claims else ""), st.small))
    if info.prevalence is not None or not compact:
        lines.append(para(prevalence_sentence(op, info.prevalence), st.small))
    lines.append(Spacer(1, 1.5 * mm))
    lines.append(para(plain_sentence(p, threshold, positive, op, op_name), st.body))
    if caution:
        lines.append(rich(f"<b>Note: this film is {esc(caution)}.</b>", st.small))
    model = para(f"Model: {ctx.model_plain()} (details on a later page)", st.tiny)
    box = Table([[top], [lines], [model]], colWidths=[ctx.width])
    box.setStyle(table_style([
        ("BOX", (0, 0), (-1, -1), 0.8, colour),
        ("BACKGROUND", (0, 0), (-1, 0), SHADE),
        ("LEFTPADDING", (0, 0), (-1, -1), 6),
        ("RIGHTPADDING", (0, 0), (-1, -1), 6),
        ("TOPPADDING", (0, 0), (-1, -1), 4),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
    ]))
    return [para("Result", st.h2), box]


def claims_for(bundle: Any, op_name: str | None) -> str | None:
    """What the figures rest on (``desktop.core.site.claims_text``): the site's own figures with a site
    profile's threshold (``site:<name>``), else the validation figures *and* what a new site sees."""
    from .site import claims_text, load_profile

    if getattr(bundle, "path", None) is None or not hasattr(getattr(bundle, "card", None), "operating_point"):
        return None  # not a loaded bundle (a stand-in): nothing to quote
    try:
        name = str(op_name or "")
        profile = load_profile(name[len("site:"):], bundle) if name.startswith("site:") else None
        return claims_text(bundle, profile, compact=True)
    except Exception as exc:  # the claims are context: never fail a report for them
        log.warning("no performance claims in the report (%s)", exc)
        return None


def probabilities_row(prediction: Any) -> tuple[str, str]:
    probs = getattr(prediction, "probabilities", None)
    if not isinstance(probs, dict):
        probs = {"covid": float(prediction.p_covid)}
    return "Model output", ", ".join(f"{k} {fmt_num(v, 3)}" for k, v in probs.items())


#: Height of the images section beyond the images: heading, captions, colour bar, lung line.
_IMAGES_OVERHEAD = 23 + 6 + 1.5 * mm + 10 + 1 * mm + 4 * mm + 19 + 6 + 12


def study_flowables(
    ctx: Ctx,
    image: XRay | np.ndarray,
    prediction: Any,
    heatmap: Any,
    info: ReportInfo,
    *,
    anonymize: bool,
    when: _dt.datetime,
    report_id: str,
    window: Window | None,
    compact: bool,
    meta: Any = None,
    source: str = "",
    sha256: str = "",
    attachment: Attachment | None = None,
    caution: str | None = None,
) -> list[Flowable]:
    """The pages of one study. ``image`` is the X-ray, or its display image (uint8) with ``meta``/``source``;
    ``caution`` the OOD flag's sentence (see :func:`result_section`)."""
    xray = image if isinstance(image, XRay) else None
    if xray is not None:
        meta, source, sha256 = xray.metadata, xray.source or "", xray.sha256
    if meta is None:
        from .imaging import StudyMetadata

        meta = StudyMetadata()
    meta = info.apply_to(meta)
    clinic = info.clinic_name or ("" if anonymize else meta.institution)
    if anonymize:
        meta = phi.anonymize_metadata(meta, fallback=sha256)
    file = phi.file_label(source, anonymize=anonymize) if source else ""
    patient = patient_of(meta, file=file, image_sha=sha256, anonymize=anonymize)
    positive = str(prediction.label) == ctx.positive_class
    draw = positive or info.show_heatmap_below_threshold
    warnings = tuple(xray.warnings) if xray is not None else ()
    win_text = ""
    if xray is not None:
        win = window or xray.window
        win_text = f"window {win.name}" if win.name else f"window C {win.center:g} / W {win.width:g}"
    head = [
        header(ctx, info, title=TITLE, when=when, report_id=report_id, clinic=clinic, address=info.clinic_address),
        *patient_section(ctx, patient, info, anonymize=anonymize),
        *result_section(ctx, prediction, info, compact=compact, caution=caution),
    ]
    tail: list[Flowable] = [Spacer(1, 2 * mm), para(
        "Decision support only, not a diagnosis: the final decision rests with the clinician."
        + (" Technical details, validation and limits: later pages." if not compact else ""),
        ctx.st.small_bold)]
    if attachment is not None:
        tail.append(AttachmentNote(attachment, ctx.width, f"Original image attached to this PDF: {attachment.name} "
                                   f"({len(attachment.data) / 1e6:.1f} MB; open it from the viewer's attachments)"))
    if compact:
        tail += findings_section(ctx, height=20 * mm)
    extra = 9 if warnings else 0
    free = ctx.height - height_of(ctx, head + tail) - _IMAGES_OVERHEAD - extra
    min_h = 40 * mm if compact else 80 * mm  # a film a doctor can read: else it gets the next page to itself
    own_page = not compact and free - 6 < min_h
    if own_page:
        free = ctx.height - height_of(ctx, [head[0]]) - _IMAGES_OVERHEAD - extra
    image_h = max(min_h, min(170 * mm, free - 6))
    dpi = 200 if not compact else 160

    def images(max_h: float) -> list[Flowable]:
        return images_section(ctx, image, heatmap, window=window, max_h=max_h, dpi=dpi, draw=draw,
                              warnings=warnings, window_text=win_text)

    imgs = images(image_h)
    fixed = [head[0]] if own_page else head + tail
    for _ in range(2):  # the estimate was short: shrink (the page must hold the films and the findings box)
        excess = height_of(ctx, fixed + imgs) - (ctx.height - 6 * mm)  # a margin for spacing
        if excess <= 0 or image_h <= min_h:
            break
        image_h = max(min_h, image_h - excess - 4)
        imgs = images(image_h)
    findings_done = False
    if own_page:  # page 1: who, the context and the result; page 2: the films, large (and the findings box)
        story: list[Flowable] = [*head, *tail, PageBreak(),
                                 para(f"Report {report_id} \u2014 images", ctx.st.tiny), *imgs]
        room = ctx.height - height_of(ctx, story[-len(imgs) - 1:]) - height_of(ctx, findings_section(ctx, 0)) - 8
        if room >= 35 * mm:
            story += findings_section(ctx, height=min(room, 70 * mm))
            findings_done = True
    else:
        story = [*head, *imgs, *tail]
    if info.full_page_film:
        story += full_page_film(ctx, image, window=window,
                                caption=f"Report {report_id}: the X-ray as displayed, full page ({win_text or 'display'})")
    if not compact:
        page2: list[Flowable] = [
            para(f"Report {report_id} (continued) \u2014 patient: {patient.name}"
                 + (f"; ID: {patient.patient_id}" if patient.patient_id else "")
                 + f"; study date: {patient.study_date}", ctx.st.tiny),
            *model_section(ctx, str(getattr(prediction, "operating_point", "") or "") or None),
            kv_table(ctx, [probabilities_row(prediction)], cols=1, label_w=34 * mm),
            *limits_section(ctx),
        ]
        free = ctx.height - height_of(ctx, page2) - height_of(ctx, findings_section(ctx, height=0)) - 8
        box = min(max(free, 35 * mm), 70 * mm) if free >= 35 * mm else 70 * mm
        story += [PageBreak(), *page2, *([] if findings_done else findings_section(ctx, height=box))]
    return story


def original_attachment(source: str | os.PathLike[str] | None, *, anonymize: bool) -> Attachment | None:
    """The original file as an attachment, or None (no file, too large, or an anonymised report:
    the original carries the patient's data in its header and file name)."""
    if not source or anonymize:
        if anonymize and source:
            log.info("original file not attached: the report is anonymised")
        return None
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > MAX_ATTACHMENT:
            log.warning("original file not attached: %.0f MB is over the %d MB limit", size / 1e6,
                        MAX_ATTACHMENT // (1024 * 1024))
            return None
        data = path.read_bytes()
    except OSError as exc:
        log.warning("original file not attached (%s)", exc.strerror or type(exc).__name__)
        return None
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".dcm": "application/dicom"}
    return Attachment(name=path.name, data=data, mime=mime.get(path.suffix.lower(), "application/dicom"))


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
    alpha: float | None = None,
    quiet: bool = False,
    caution: str | None = None,
) -> Path:
    """Write the single-study PDF for the remote doctor; return its path.

    ``prediction`` and ``heatmap`` come from ``Predictor.explain(xray)``;
    ``window`` is the display window the user chose (the file's default when
    None), ``cmap``/``alpha`` the overlay colour map
    (:data:`desktop.core.overlay.COLORMAPS`) and opacity the user chose;
    ``caution`` the OOD flag's sentence of a film unlike the training films
    (``OODResult.text``), printed in the result box. ``quiet`` (a preview) logs nothing. Raises
    :class:`~desktop.core.errors.OutputError` (exists, unwritable, disk
    full) and leaves no partial file behind. A film the input gate rejected
    (``prediction.status == "rejected"``) gets no chest result: ValueError.
    """
    if str(getattr(prediction, "status", "ok")) == "rejected":
        raise ValueError("this film was not assessable (input gate): no chest report is made for it")
    info = info or ReportInfo()
    target = check_writable(path, overwrite=overwrite)
    when = info.analysed_at or now()
    ctx = Ctx(bundle, info.page_size, cmap, alpha)
    model_sha = str(bundle_field(bundle, ctx.card, "sha256", ""))
    report_id = info.report_id or make_report_id(xray.sha256, model_sha, when=when)
    attachment = original_attachment(xray.source, anonymize=anonymize) if info.attach_original else None
    story = study_flowables(
        ctx, xray, prediction, heatmap, info,
        anonymize=anonymize, when=when, report_id=report_id, window=window, compact=False, attachment=attachment,
        caution=caution,
    )
    meta = pdf_meta(
        title=f"{TITLE} {report_id}",
        author=info.clinic_name,
        subject=f"AI decision support (not a diagnosis): p(COVID-19) "
        f"{fmt_p(float(prediction.p_covid), float(prediction.threshold))}, "
        f"model {ctx.model_line()}",
    )
    write_pdf(target, story, size_name=info.page_size, footer=footer_for(report_id), meta=meta, overwrite=overwrite)
    if not quiet:
        log.info("wrote study report %s", report_id)  # no file names in logs: they may name the patient
    return target


__all__ = ["study_flowables", "write_study_report"]

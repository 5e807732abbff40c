"""Sections shared by the study and batch reports: header, tables, technical section, limits, findings, writing.

:mod:`desktop.core.report_study` and :mod:`desktop.core.report_batch`
compose pages from these; :mod:`desktop.core.report_pdf` is the reportlab
plumbing underneath (fonts, styles, page template, flowables).
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Flowable, KeepTogether, Spacer, Table, TableStyle

from desktop import __version__

from .errors import CXRError, OutputError
from .fileio import atomic_write_with
from .filenames import display_name
from .report_card import bundle_field, card_of, text_of, training_text, validation_rows
from .report_info import DASH, GENERAL_LIMITS, ReportInfo, clip, stamp
from .report_pdf import (
    ACCENT,
    FONT,
    INK,
    MARGIN,
    RULE,
    SHADE,
    Attachment,
    Footer,
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
_ARCH_NAMES = {"vgg19": "VGG19", "mobilenet": "MobileNet"}


def table_style(commands: Sequence[tuple[Any, ...]]) -> TableStyle:
    """A table style whose cells default to the embedded font (reportlab's default is Helvetica)."""
    return TableStyle([("FONTNAME", (0, 0), (-1, -1), FONT), ("FONTSIZE", (0, 0), (-1, -1), 8), *commands])


class Ctx:
    """What all sections share: styles, frame size, model card, the overlay's colour map and opacity."""

    def __init__(self, bundle: Any, size_name: str, cmap: str | None = None, alpha: float | None = None) -> None:
        self.cmap = cmap
        self.alpha = alpha
        self.st: Styles = styles()
        w, h = page_size(size_name)
        self.width = w - 2 * MARGIN
        self.height = h - 2 * MARGIN - 4 * mm
        self.bundle = bundle
        self.card = card_of(bundle)
        self.positive_class = str(self.card.get("positive_class", "covid"))

    def model_line(self) -> str:
        name = bundle_field(self.bundle, self.card, "name", "?")
        version = bundle_field(self.bundle, self.card, "version", "")
        trust = getattr(self.bundle, "trust", None)
        unverified = " (UNVERIFIED BUNDLE)" if trust is not None and not trust.verified else ""
        return f"{name} {version}".strip() + unverified

    def model_plain(self) -> str:
        """The model in plain words for page 1: ``"MobileNet screening model (test-mobilenet 9.8.7)"``."""
        arch = str(bundle_field(self.bundle, self.card, "architecture", ""))
        kind = _ARCH_NAMES.get(arch.lower(), arch)
        return f"{kind} screening model ({self.model_line()})" if kind else self.model_line()


def kv_table(ctx: Ctx, rows: Sequence[tuple[str, Any]], cols: int = 2, label_w: float = 28 * mm) -> Table:
    """Label/value pairs laid out in ``cols`` column pairs (a value is text, or a ready flowable)."""
    st = ctx.st
    value_w = ctx.width / cols - label_w
    data: list[list[Any]] = []
    for i in range(0, len(rows), cols):
        line: list[Any] = []
        for label, value in rows[i : i + cols]:
            line += [para(label, st.label), value if isinstance(value, Flowable) else para(value, st.value)]
        while len(line) < 2 * cols:
            line += ["", ""]
        data.append(line)
    table = Table(data, colWidths=[label_w, value_w] * cols, hAlign="LEFT")
    table.setStyle(
        table_style(
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


def header(ctx: Ctx, info: ReportInfo, *, title: str, when: _dt.datetime, report_id: str,
           clinic: str, address: str, subtitle: str | None = None) -> Table:
    st = ctx.st
    left = [
        para(title, st.title),
        para(subtitle or "AI decision support for a chest radiograph \u2014 not a diagnosis", st.small),
    ]
    right_lines = []
    if clinic:
        right_lines.append(f"<b>{esc(clip(clinic))}</b>")
    if address:
        lines = [clip(line) for line in address.splitlines()[:6]]
        right_lines.append("<br/>".join(esc(line) for line in lines))
    reply = info.reply_to()
    if reply:
        right_lines.append(f"Reply to: {esc(reply)}")
    if info.operator_name:
        right_lines.append(f"Operator: {esc(clip(info.operator_name))}")
    right_lines.append(f"Analysed: {esc(stamp(when))}")
    right_lines.append(f"Report ID: <b>{esc(report_id)}</b>")
    right = rich("<br/>".join(right_lines), st.right)
    table = Table([[left, right]], colWidths=[ctx.width * 0.6, ctx.width * 0.4])
    table.setStyle(
        table_style(
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


def model_section(ctx: Ctx, op_name: str | None = None) -> list[Flowable]:
    """The technical section (a later page): model identity, architecture, training data, validation."""
    st = ctx.st
    card = ctx.card
    arch = str(bundle_field(ctx.bundle, card, "architecture", "?"))
    init = card.get("backbone_init", "")
    sha = str(bundle_field(ctx.bundle, card, "sha256", DASH))
    rows: list[tuple[str, str]] = [
        ("Model", ctx.model_line()),
        ("Architecture", _ARCH_NAMES.get(arch.lower(), arch)),
    ]
    if init:  # the full developer note, in its own row and cut at a word boundary if ever
        rows.append(("Backbone weights", text_of(init, limit=900)))
    rows += [
        ("Model file sha256", sha),
        ("Integrity", _trust_text(ctx.bundle)),
        ("Created", str(card.get("created", DASH))),
        ("Trained on", training_text(card.get("training_data")) or DASH),
        ("Software", f"{SOFTWARE} (ONNX Runtime on CPU); report made with reportlab"),
    ]
    out: list[Flowable] = [para("Technical details: model and validation", st.h2),
                           kv_table(ctx, rows, cols=1, label_w=34 * mm)]
    mrows = validation_rows(card.get("metrics"), op_name)
    if mrows:
        data = [[para("Validation / external test", st.cell_bold), para("Result (95% CI)", st.cell_bold)]]
        data += [[para(a, st.cell), para(b, st.cell)] for a, b in mrows[:24]]
        table = Table(data, colWidths=[60 * mm, ctx.width - 60 * mm], repeatRows=1)
        table.setStyle(
            table_style(
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


def limits_section(ctx: Ctx) -> list[Flowable]:
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


def findings_section(ctx: Ctx, height: float = 55 * mm) -> list[Flowable]:
    st = ctx.st
    box = Table(
        [[para("Findings and recommendation of the reviewing doctor", st.label)], [""]],
        colWidths=[ctx.width],
        rowHeights=[None, height],
    )
    box.setStyle(table_style([("BOX", (0, 0), (-1, -1), 0.8, INK), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    line = "_" * 28
    sign = Table(
        [[para("Reviewing doctor (name)", st.label), para("Signature", st.label), para("Date", st.label)],
         [para(line, st.body), para(line, st.body), para("_" * 16, st.body)]],
        colWidths=[ctx.width * 0.4, ctx.width * 0.4, ctx.width * 0.2],
    )
    sign.setStyle(table_style([("TOPPADDING", (0, 1), (-1, 1), 12), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    return [KeepTogether([para("Remote review", st.h2), box, Spacer(1, 3 * mm), sign])]


def pdf_meta(title: str, author: str, subject: str) -> dict[str, str]:
    return {
        "title": title,
        "author": author or "CXR Screener",
        "subject": subject,
        "creator": SOFTWARE,
        "keywords": "chest X-ray,COVID-19,Grad-CAM,decision support",
    }


def height_of(ctx: Ctx, flowables: Sequence[Flowable]) -> float:
    """Total height the flowables take in the frame (KeepTogether groups measured by their parts)."""
    total = 0.0
    for f in flowables:
        parts = getattr(f, "_content", None) if isinstance(f, KeepTogether) else [f]
        for part in parts or []:
            _, h = part.wrap(ctx.width, ctx.height)
            total += h + part.getSpaceBefore() + part.getSpaceAfter()
    return total


def write_pdf(target: Path, story: list[Flowable], *, size_name: str, footer: Footer,
              meta: dict[str, str], overwrite: bool, attachments: Sequence[Attachment] = ()) -> None:
    """Lay out ``story`` and write it atomically; a layout error leaves no file and logs no patient text."""
    def writer(fh: IO[bytes]) -> None:
        doc = make_doc(fh, size_name=size_name, footer=footer, meta=meta, attachments=attachments)
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


def _trust_text(bundle: Any) -> str:
    """The bundle's trust as printed: "UNVERIFIED BUNDLE" when neither pinned nor signed by a trusted key."""
    trust = getattr(bundle, "trust", None)
    return DASH if trust is None else str(trust.label).upper() if not trust.verified else str(trust.label)


def reason_without_path(reason: str, path: str, rel: str = "") -> str:
    """A failure reason without the file's path or name (shown in its own column; may name the patient)."""
    tokens = {path, str(Path(path).resolve()) if path else "", rel, Path(path).name}
    tokens |= {display_name(t) for t in tokens}
    for token in sorted((t for t in tokens if t), key=len, reverse=True):
        reason = reason.replace(token, "")
    return reason.lstrip(" :") or reason


_BREAKS = re.compile(r"(?<=[/\\])|(?<=[_\-])(?=[^.]*\.)|(?<=[_\-])(?=[^.]*$)")


def wrap_path(text: str, width: float, font_size: float = 7.5) -> str:
    """Markup of a path broken into lines at path separators (then at _ or -), never inside the extension.

    reportlab wraps only at spaces, and splits a long word anywhere (``scan.d|cm``).
    """
    def w(s: str) -> float:
        return stringWidth(s, FONT, font_size)

    stem, dot, ext = text.rpartition(".")
    if not dot or "/" in ext or "\\" in ext or len(ext) > 8:
        stem, ext = text, ""
    parts = [p for p in _BREAKS.split(stem) if p]
    if ext:
        parts[-1 if parts else 0:] = [(parts[-1] if parts else "") + "." + ext]
    lines: list[str] = []
    line = ""
    for part in parts:
        if line and w(line + part) > width:
            lines.append(line)
            line = part
        else:
            line += part
    if line:
        lines.append(line)
    return "<br/>".join(esc(x) for x in lines)


def footer_for(report_id: str) -> Footer:
    return Footer(left=f"{SOFTWARE} \u2014 decision support, not a diagnosis", right=f"Report {report_id}")


__all__ = [
    "SOFTWARE",
    "Ctx",
    "findings_section",
    "footer_for",
    "header",
    "height_of",
    "kv_table",
    "limits_section",
    "model_section",
    "pdf_meta",
    "reason_without_path",
    "table_style",
    "wrap_path",
    "write_pdf",
]

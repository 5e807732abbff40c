"""The batch-scan report: summary, results sorted by p(COVID-19), films not assessable, failures, study pages.

It consumes what the scan already made: the :class:`~desktop.core.batch.ScanResult`
rows, the heatmap PNGs the scan wrote (``ScanResult.heatmap``), and, when the
caller has them, a display image and the Grad-CAM map per file
(:class:`BatchItem`). A file is decoded here only when nothing was provided
for it (``decode_missing``, on by default; then once, for the thumbnail and
its study page together), and explained again only with the caller's own
:class:`~desktop.core.inference.Predictor` when no heatmap exists at all:
no second model is ever built here.

Rows the input gate rejected (``status == "rejected"`` with a
``reject_code``) are listed as "not assessable: <reason>" and get no study
page: they are not chest results.
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import CondPageBreak, Flowable, PageBreak, Spacer, Table

from . import phi
from .errors import CXRError
from .fileio import check_writable
from .filenames import display_name
from .overlay import HIDDEN_BELOW_THRESHOLD
from .report_card import as_dict, bundle_field, fmt_num, value_with_ci
from .report_card import operating_point as card_operating_point
from .report_images import image_file_jpeg, jpeg_bytes, resample_gray, thumbnail
from .report_info import (
    DASH,
    POSITIVE_CLASS_LABEL,
    ReportInfo,
    fmt_percent,
    make_report_id,
    now,
    predictive_values,
    reject_reason,
    stamp,
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
    reason_without_path,
    table_style,
    wrap_path,
    write_pdf,
)
from .report_pdf import POSITIVE, RULE, SHADE, Deferred, ImageBox, para, rich
from .report_study import study_flowables

log = logging.getLogger(__name__)

#: Thumbnails in the results table: large enough to recognise the film.
THUMB_BOX = 21 * mm
#: Their resolution: 21 mm at 150 dpi is 124 px (a 500-image report stays a few MB)
THUMB_DPI = 150
_ROWS_PER_TABLE = 30
#: Longest side of the display image kept per row for its study page (JPEG in memory).
_PAGE_IMAGE_PX = 1400


@dataclass(frozen=True)
class BatchItem:
    """One scanned file with what the caller already has for it (all optional but ``result``).

    ``display`` is the film as displayed (uint8 HxW array, or the path of a
    PNG/JPEG of it); ``heatmap`` the :class:`~desktop.core.inference.Heatmap`
    (drawn with the report's colour map); ``heatmap_png`` a heatmap picture
    already written (defaults to ``result.heatmap``); ``metadata`` the file's
    :class:`~desktop.core.imaging.StudyMetadata`.
    """

    result: Any
    display: np.ndarray | str | os.PathLike[str] | None = None
    heatmap: Any = None
    heatmap_png: str | os.PathLike[str] | None = None
    metadata: Any = None


@dataclass
class _Row:
    item: BatchItem
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
    page_jpeg: bytes | None = None  # display image kept for the study page
    metadata: Any = None
    heatmap: Any = None  # made here with the caller's model when the scan made none (a 7x7 map: tiny)
    prediction: Any = None
    error: str | None = None  # why the file could not be read for its page


def with_heatmap_pngs(results: Iterable[Any], heatmap_dir: str | os.PathLike[str] | None) -> list[Any]:
    """The scan's results with the heatmap PNGs it wrote (:func:`desktop.core.scan.heatmaps.heatmap_path`)
    attached, so the report's study pages show them instead of running the model again."""
    from .scan.heatmaps import heatmap_path

    out: list[Any] = []
    for r in results:
        if isinstance(r, BatchItem):
            out.append(r)
            continue
        png = heatmap_path(heatmap_dir, getattr(r, "relpath", "") or Path(str(r.path)).name) \
            if heatmap_dir is not None else None
        if png is None or getattr(r, "heatmap", None) or not png.is_file():
            out.append(r)
        else:
            out.append(BatchItem(result=r, heatmap_png=png))
    return out


def _as_item(obj: Any) -> BatchItem:
    return obj if isinstance(obj, BatchItem) else BatchItem(result=obj)


def _display_array(display: Any) -> np.ndarray | None:
    if display is None:
        return None
    if isinstance(display, np.ndarray):
        return np.asarray(display, dtype=np.uint8)
    from PIL import Image

    try:
        with Image.open(os.fspath(display)) as im:
            return np.asarray(im.convert("L"))
    except OSError as exc:
        log.warning("display image not readable (%s)", type(exc).__name__)
        return None


def _shrunk(gray: np.ndarray, limit: int = _PAGE_IMAGE_PX) -> np.ndarray:
    h, w = gray.shape[:2]
    scale = min(1.0, limit / max(h, w))
    return gray if scale == 1.0 else resample_gray(gray, (max(1, round(w * scale)), max(1, round(h * scale))))


def _needs_model(item: BatchItem) -> bool:
    return item.heatmap is None and not (item.heatmap_png or getattr(item.result, "heatmap", None))


def _decided_at(r: Any, operating_point: str | None) -> Any:
    """What a row was decided at: a site's threshold (``site:<name>``, not in the card) as an OperatingPoint."""
    from .bundle import OperatingPoint

    name = str(getattr(r, "operating_point", "") or "")
    if name.startswith("site:") and getattr(r, "threshold", None) is not None:
        return OperatingPoint(name, float(r.threshold))
    return operating_point


def _rows(items: Sequence[BatchItem], *, anonymize: bool, keep_pages: bool, decode_missing: bool,
          predictor: Any = None, operating_point: str | None = None) -> list[_Row]:
    """One row per analysed file; each file is read at most once (thumbnail, page image and,
    only when the scan made no heatmap, the caller's model run on it together)."""
    from .imaging import load_xray

    rows: list[_Row] = []
    for item in items:
        r = item.result
        gray = _display_array(item.display)
        meta = item.metadata
        explain = keep_pages and predictor is not None and _needs_model(item)
        heat = prediction = error = None
        if decode_missing and (gray is None or explain):
            try:
                xray = load_xray(str(r.path))
                if explain:
                    prediction, heat = predictor.explain(xray, _decided_at(r, operating_point))
            except CXRError as exc:
                log.warning("no thumbnail for %s: %s", phi.file_label(r.path, anonymize=True), exc.reason)
                error = reason_without_path(exc.reason, str(r.path), str(getattr(r, "relpath", "") or ""))
            else:
                if gray is None:
                    gray = xray.to_uint8(None)
                meta = meta if meta is not None else xray.metadata
                del xray
        thumb, tw, th = (None, 0.0, 0.0)
        page_jpeg = None
        if gray is not None:
            thumb, tw, th = thumbnail(gray, THUMB_BOX, dpi=THUMB_DPI)
            if keep_pages:
                page_jpeg = jpeg_bytes(_shrunk(gray))
        patient = ""
        if meta is not None:
            shown = phi.anonymize_metadata(meta) if anonymize else meta
            patient = str(shown.patient_id or "")
        rows.append(_Row(
            item=item, path=str(r.path), relpath=str(getattr(r, "relpath", "") or ""),
            file=phi.file_label(r.path, anonymize=anonymize), patient=patient, p=float(r.p_covid),
            label=str(r.label), op=str(r.operating_point or ""), thumb=thumb, thumb_w=tw, thumb_h=th,
            page_jpeg=page_jpeg, metadata=meta, heatmap=heat, prediction=prediction, error=error,
        ))
    rows.sort(key=lambda row: (-row.p, row.file))
    return rows


def _rel(path: str, folder: str | os.PathLike[str]) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(folder).resolve()))
    except (ValueError, OSError):
        return Path(path).name


def _results_tables(ctx: Ctx, rows: list[_Row], folder: str | os.PathLike[str], *,
                    anonymize: bool) -> list[Flowable]:
    st = ctx.st
    show_patient = any(row.patient for row in rows)
    titles = ["#", "", "File"] + (["Patient ID" + (" (pseudonym)" if anonymize else "")] if show_patient else [])
    titles += ["p(COVID-19)", "Decision"]
    head = [para(h, st.cell_bold) for h in titles]
    widths: list[float | None] = [8 * mm, THUMB_BOX + 3 * mm, None]
    widths += [32 * mm] if show_patient else []
    widths += [20 * mm, 34 * mm]
    widths[2] = ctx.width - sum(w for w in widths if w is not None)
    file_w = float(widths[2]) - 4  # type: ignore[arg-type]
    out: list[Flowable] = []
    for start in range(0, len(rows), _ROWS_PER_TABLE):
        chunk = rows[start : start + _ROWS_PER_TABLE]
        data: list[list[Any]] = [head]
        styles_cmd: list[tuple[Any, ...]] = [
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("BACKGROUND", (0, 0), (-1, 0), SHADE),
            ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ("LEFTPADDING", (0, 0), (-1, -1), 2),
            ("RIGHTPADDING", (0, 0), (-1, -1), 2),
        ]
        decision_col = len(titles) - 1
        for i, row in enumerate(chunk, start=1):
            positive = row.label == ctx.positive_class
            thumb: Any = ImageBox(row.thumb, row.thumb_w, row.thumb_h) if row.thumb else para(DASH, st.cell)
            file_text = row.file if anonymize else display_name(row.relpath or _rel(row.path, folder))
            decision = ("FLAGGED" if positive else "not flagged") + (f" ({row.op})" if row.op else "")
            line = [para(str(start + i), st.cell), thumb, rich(wrap_path(file_text, file_w), st.cell)]
            if show_patient:
                line.append(para(row.patient, st.cell))
            cell: Any = para(decision, st.cell_bold if positive else st.cell)
            note = row.item.result.caution
            if note:  # the OOD flag, as the CSV's ood_flag and the GUI's table say it
                cell = [cell, para(note, st.cell)]
            line += [rich(f"<b>{row.p:.3f}</b>", st.cell), cell]
            data.append(line)
            if positive:
                styles_cmd.append(("TEXTCOLOR", (decision_col, i), (decision_col, i), POSITIVE))
        table = Table(data, colWidths=widths, repeatRows=1)
        table.setStyle(table_style(styles_cmd))
        out.append(table)
    return out


def _reason_table(ctx: Ctx, entries: list[tuple[str, str]]) -> Table:
    st = ctx.st
    file_w = ctx.width * 0.4
    data = [[para("File", st.cell_bold), para("Reason", st.cell_bold)]]
    data += [[rich(wrap_path(name, file_w - 4), st.cell), para(reason, st.cell)] for name, reason in entries]
    table = Table(data, colWidths=[file_w, ctx.width * 0.6], repeatRows=1)
    table.setStyle(table_style([("VALIGN", (0, 0), (-1, -1), "TOP"), ("BACKGROUND", (0, 0), (-1, 0), SHADE),
                                ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE)]))
    return table


def _name(r: Any, folder: str | os.PathLike[str], anonymize: bool) -> tuple[str, str]:
    rel = str(getattr(r, "relpath", "") or "") or _rel(str(r.path), folder)
    return (phi.file_label(r.path, anonymize=True) if anonymize else display_name(rel)), rel


def _basis(site: Any, bundle: Any, op_name: str) -> str:
    """What the threshold rests on, in the words the CLI, GUI and study PDF use (desktop.core.site)."""
    from .site import threshold_basis

    if site is not None:
        return threshold_basis(site)
    try:
        card = getattr(getattr(bundle, "bundle", bundle), "card", None)
        return threshold_basis(None, bundle, card.operating_point(op_name or None) if card is not None else None)
    except Exception:  # a stand-in bundle without a typed card, or a row-only name (site:...) without its profile
        return DASH


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
    predictor: Any = None,
    decode_missing: bool = True,
    cmap: str | None = None,
    alpha: float | None = None,
    site: Any = None,
) -> Path:
    """Write the batch-scan PDF: summary, results sorted by p(COVID-19), not assessable, failures, study pages.

    ``results`` are :class:`desktop.core.batch.ScanResult` objects (``path``,
    ``status``, ``label``, ``p_covid``, ``operating_point``, ``threshold``,
    ``error``, ``heatmap``) or :class:`BatchItem` wrapping one with what the
    caller already has (display image, heatmap). With ``study_pages`` each
    analysed file gets a compact study page, made from those: the heatmap
    object, else the heatmap PNG the scan wrote, else (only then) an
    explanation by the caller's ``predictor``; without any of them the page
    shows the film and says no heatmap was made (``predictor`` may be a
    callable returning one, called only if a page needs it). ``decode_missing=False``
    never opens an input file (rows without a display image get no thumbnail).
    """
    info = info or ReportInfo()
    target = check_writable(path, overwrite=overwrite)
    items = [_as_item(r) for r in results]
    ctx = Ctx(bundle, info.page_size, cmap, alpha)
    st = ctx.st
    when = info.analysed_at or now()
    started_at = started if started.tzinfo else started.astimezone()
    ok = [it for it in items if it.result.status == "ok"]
    rejected = [it for it in items if reject_reason(it.result) is not None]
    failed = [it for it in items if it.result.status != "ok" and reject_reason(it.result) is None]
    model_sha = str(bundle_field(bundle, ctx.card, "sha256", ""))
    report_id = info.report_id or make_report_id(
        *sorted(str(getattr(it.result, "sha256", "")) for it in items), model_sha, when=when
    )
    op_name = operating_point or str(ctx.card.get("default_operating_point", "")) or ""
    if ok and not operating_point:
        op_name = str(ok[0].result.operating_point or op_name)
    op = card_operating_point(ctx.card, op_name)
    if site is not None:  # a site profile (desktop.core.site): its threshold and its local figures
        op = as_dict(site.operating_point())
        op_name = str(op.get("name") or op_name)
    n_pos = sum(1 for it in ok if str(it.result.label) == ctx.positive_class)

    story: list[Flowable] = [
        header(ctx, info, title="Chest X-ray batch report", when=when, report_id=report_id,
               clinic=info.clinic_name, address=info.clinic_address),
        para("Summary", st.h2),
    ]
    threshold = op.get("threshold", ok[0].result.threshold if ok else None)
    summary = [
        ("Scan started", stamp(started_at)),
        ("Folder", phi.WITHHELD if anonymize else str(folder)),
        ("Model", ctx.model_plain()),
        ("Operating point", f"{op_name or DASH}"
         + (f" (threshold {fmt_num(threshold)})" if threshold is not None else "")),
        ("Sensitivity", value_with_ci(op.get("sensitivity"), op.get("sensitivity_ci")) or DASH),
        ("Specificity", value_with_ci(op.get("specificity"), op.get("specificity_ci")) or DASH),
        ("Threshold rests on", _basis(site, bundle, op_name)),
        ("Images", str(len(items))),
        (f"Flagged ({POSITIVE_CLASS_LABEL} pattern)", str(n_pos)),
        ("Not flagged", str(len(ok) - n_pos)),
        ("Not assessable", str(len(rejected))),
        ("Failed (not analysed)", str(len(failed))),
    ]
    if info.prevalence is not None:
        pv = predictive_values(op.get("sensitivity"), op.get("specificity"), info.prevalence)
        if pv is not None:
            summary.append((f"At {fmt_percent(info.prevalence)} prevalence",
                            f"a flag is right about {fmt_percent(pv[0])}, a no-flag about {fmt_percent(pv[1])}"))
    story += [kv_table(ctx, summary, cols=2, label_w=32 * mm), Spacer(1, 2 * mm), para(
        "Images are listed from the highest to the lowest p(COVID-19). A flag is a reason to review the "
        "image, not a diagnosis; an image not flagged can still show COVID-19 (see the sensitivity above).",
        st.small)]
    if anonymize:
        story.append(para(
            "Anonymised: patient IDs and file names are pseudonyms (ANON-...), the folder is withheld. "
            "Anonymisation covers text and metadata, not text burned into the image pixels.", st.small))
    if study_pages and predictor is not None and not hasattr(predictor, "explain") and callable(predictor):
        # a factory (e.g. the GUI's cached model): called only if some file has no heatmap
        predictor = predictor() if any(_needs_model(it) for it in ok) else None
    rows = _rows(ok, anonymize=anonymize, keep_pages=study_pages, decode_missing=decode_missing,
                 predictor=predictor, operating_point=op_name or None)
    story.append(para(f"Results ({len(rows)} images)", st.h2))
    story += _results_tables(ctx, rows, folder, anonymize=anonymize) if rows else [
        para("No image could be analysed.", st.body)]
    if rejected:
        story.append(para(f"Not assessable ({len(rejected)}): no chest result", st.h2))
        entries = [(_name(it.result, folder, anonymize)[0], f"not assessable: {reject_reason(it.result)}")
                   for it in sorted(rejected, key=lambda it: str(it.result.path))]
        story.append(_reason_table(ctx, entries))
    if failed:
        story.append(para(f"Failed files ({len(failed)}): not analysed", st.h2))
        entries = []
        for it in sorted(failed, key=lambda it: str(it.result.path)):
            r = it.result
            name, rel = _name(r, folder, anonymize)
            reason = reason_without_path(str(r.error or getattr(r, "error_kind", "") or "unknown error"),
                                         str(r.path), rel)
            entries.append((name, reason))
        story.append(_reason_table(ctx, entries))
    story += [CondPageBreak(90 * mm), *model_section(ctx, op_name or None), *limits_section(ctx)]
    if study_pages and rows:
        for i, row in enumerate(rows, start=1):
            story.append(PageBreak())
            story.append(Deferred(functools.partial(
                _study_page, ctx, row, info, anonymize=anonymize, when=when, report_id=f"{report_id}-{i}",
            )))
    meta = pdf_meta(
        title=f"Chest X-ray batch report {report_id}",
        author=info.clinic_name,
        subject=f"AI decision support (not a diagnosis): {len(items)} images, {n_pos} flagged, "
        f"{len(rejected)} not assessable, {len(failed)} failed; model {ctx.model_line()}",
    )
    write_pdf(target, story, size_name=info.page_size, footer=footer_for(report_id), meta=meta, overwrite=overwrite)
    log.info("wrote batch report (%d images, %s)", len(items), report_id)
    return target


def _prediction_of(r: Any) -> Any:
    return SimpleNamespace(p_covid=float(r.p_covid), label=str(r.label), threshold=float(r.threshold),
                           operating_point=str(r.operating_point or ""), model=str(getattr(r, "model", "")),
                           model_version=str(getattr(r, "model_version", "")), probabilities=None)


class _PictureHeatmap:
    """A heatmap picture the scan already wrote, shown as it is (it carries its own colour bar)."""

    empty = False

    def __init__(self, path: str) -> None:
        self.path = path


def _study_page(ctx: Ctx, row: _Row, info: ReportInfo, *, anonymize: bool, when: _dt.datetime,
                report_id: str) -> list[Flowable]:
    item, r = row.item, row.item.result
    name = row.file if anonymize else display_name(row.relpath or Path(row.path).name)
    heat: Any = item.heatmap if item.heatmap is not None else row.heatmap
    gray = None
    if row.page_jpeg is not None:
        from PIL import Image

        with Image.open(io.BytesIO(row.page_jpeg)) as im:
            gray = np.asarray(im.convert("L"))
    prediction = row.prediction if row.prediction is not None else _prediction_of(r)
    if row.error is not None and gray is None:
        return [para(f"Study page for {name} could not be made: {row.error}", ctx.st.body)]
    png = item.heatmap_png or r.heatmap
    if heat is None and png and Path(png).is_file():
        return _picture_page(ctx, row, info, prediction, str(png), gray, anonymize=anonymize, when=when,
                             report_id=report_id)
    if gray is None:
        return [para(f"Study page for {name}: no image was kept by the scan and the file was not read again.",
                     ctx.st.body)]
    return study_flowables(ctx, gray, prediction, heat, info, anonymize=anonymize, when=when, report_id=report_id,
                           window=None, compact=True, meta=row.metadata, source=row.path,
                           sha256=str(getattr(r, "sha256", "")), caution=r.caution)


def _picture_page(ctx: Ctx, row: _Row, info: ReportInfo, prediction: Any, png: str, gray: np.ndarray | None, *,
                  anonymize: bool, when: _dt.datetime, report_id: str) -> list[Flowable]:
    """A study page whose heatmap is the picture the scan wrote (no decode, no model run)."""
    from .report_study import patient_section, result_section

    st = ctx.st
    r = row.item.result
    meta = row.metadata
    if meta is None:
        from .imaging import StudyMetadata

        meta = StudyMetadata()
    meta = info.apply_to(meta)
    if anonymize:
        meta = phi.anonymize_metadata(meta, fallback=str(getattr(r, "sha256", "")))
    from .report_info import patient_of

    patient = patient_of(meta, file=phi.file_label(row.path, anonymize=anonymize), image_sha=str(r.sha256 or ""),
                         anonymize=anonymize)
    out: list[Flowable] = [
        header(ctx, info, title="Chest X-ray screening report", when=when, report_id=report_id,
               clinic=info.clinic_name, address=info.clinic_address),
        *patient_section(ctx, patient, info, anonymize=anonymize),
        *result_section(ctx, prediction, info, compact=True, caution=r.caution),
        para("Images", st.h2),
    ]
    positive = str(prediction.label) == ctx.positive_class
    # the films take what the page leaves after the text and the findings box
    box_h = max(40 * mm, min(110 * mm, ctx.height - height_of(ctx, out)
                             - height_of(ctx, findings_section(ctx, height=20 * mm)) - 16 * mm))
    if gray is not None:
        gap = 4 * mm
        half = (ctx.width - gap) / 2
        thumb, w1, h1 = thumbnail(gray, min(half, box_h), dpi=160)
        cells: list[Any] = [ImageBox(thumb, w1, h1)]
        if positive or info.show_heatmap_below_threshold:
            jpg, w2, h2 = image_file_jpeg(png, half, box_h, dpi=160)
            cells.append(ImageBox(jpg, w2, h2))
        table = Table([cells], colWidths=[half + gap / 2] * len(cells))
        table.setStyle(table_style([("VALIGN", (0, 0), (-1, -1), "TOP"), ("ALIGN", (0, 0), (-1, -1), "CENTER")]))
        out.append(table)
    elif positive or info.show_heatmap_below_threshold:
        jpg, w2, h2 = image_file_jpeg(png, ctx.width, box_h, dpi=160)
        out.append(ImageBox(jpg, w2, h2))
    out.append(para("Heatmap as written by the scan (fixed scale; only its upper part is drawn)."
                    if positive or info.show_heatmap_below_threshold else
                    HIDDEN_BELOW_THRESHOLD, st.caption))
    out += findings_section(ctx, height=20 * mm)
    return out


__all__ = ["THUMB_BOX", "BatchItem", "with_heatmap_pngs", "wrap_path", "write_batch_report"]

"""reportlab plumbing shared by the single-study and batch reports.

Fonts (DejaVu Sans, embedded, covering Latin, Greek and Cyrillic), paragraph
styles, the page template with its footer ("Page X of Y") and a few custom
flowables (probability bar, colour bar). Nothing here knows about models or
patients; :mod:`desktop.core.report` composes the pages.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfdoc, pdfmetrics
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas as rl_canvas
from reportlab.platypus import Flowable, Paragraph
from reportlab.platypus.doctemplate import BaseDocTemplate, PageTemplate
from reportlab.platypus.frames import Frame

from .errors import OutputError

log = logging.getLogger(__name__)

PAGE_SIZES: dict[str, tuple[float, float]] = {"A4": A4, "LETTER": LETTER}
MARGIN = 14 * mm

FONT = "CXRSans"
FONT_BOLD = "CXRSans-Bold"
FONT_ITALIC = "CXRSans-Oblique"
_FONT_FILES = {
    FONT: "DejaVuSans.ttf",
    FONT_BOLD: "DejaVuSans-Bold.ttf",
    FONT_ITALIC: "DejaVuSans-Oblique.ttf",
}
_fonts_lock = threading.Lock()
_fonts_done = False

INK = colors.HexColor("#1a1a1a")
MUTED = colors.HexColor("#555555")
RULE = colors.HexColor("#9aa5b1")
SHADE = colors.HexColor("#eef2f6")
ACCENT = colors.HexColor("#1f4e79")
POSITIVE = colors.HexColor("#b3261e")
NEGATIVE = colors.HexColor("#2e6b30")


def page_size(name: str) -> tuple[float, float]:
    key = str(name).strip().upper()
    if key not in PAGE_SIZES:
        raise ValueError(f"page size must be A4 or Letter. Received: page_size={name!r}")
    return PAGE_SIZES[key]


# --------------------------------------------------------------------------
# Fonts
# --------------------------------------------------------------------------


def font_dirs() -> list[Path]:
    """Where the TTF files are looked for: ``assets/fonts``, then matplotlib's own copy.

    matplotlib ships DejaVu Sans in ``mpl-data/fonts/ttf`` (and PyInstaller's
    matplotlib hook bundles ``mpl-data``), so the application needs no font of
    its own; a font in ``assets/fonts`` takes precedence.
    """
    from .paths import assets_dir

    dirs = [assets_dir() / "fonts"]
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            dirs.append(Path(loc) / "mpl-data" / "fonts" / "ttf")
    return dirs


def _find_font(filename: str) -> Path:
    for d in font_dirs():
        if (d / filename).is_file():
            return d / filename
    try:  # last resort: ask matplotlib (imports it)
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / filename
        if p.is_file():
            return p
    except Exception:  # pragma: no cover - matplotlib is a dependency
        pass
    raise OutputError(
        None, f"font {filename} not found in {', '.join(str(d) for d in font_dirs())}",
        "reinstall the application (matplotlib's fonts are missing)",
    )


def register_fonts() -> None:
    """Register the embedded fonts with reportlab once per process."""
    global _fonts_done
    with _fonts_lock:
        if _fonts_done:
            return
        for name, filename in _FONT_FILES.items():
            pdfmetrics.registerFont(TTFont(name, str(_find_font(filename))))
        pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT_ITALIC, boldItalic=FONT_BOLD)
        _fonts_done = True


# --------------------------------------------------------------------------
# Styles
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Styles:
    title: ParagraphStyle
    h2: ParagraphStyle
    body: ParagraphStyle
    small: ParagraphStyle
    small_bold: ParagraphStyle
    tiny: ParagraphStyle
    label: ParagraphStyle
    value: ParagraphStyle
    value_bold: ParagraphStyle
    right: ParagraphStyle
    caption: ParagraphStyle
    decision: ParagraphStyle
    big: ParagraphStyle
    cell: ParagraphStyle
    cell_bold: ParagraphStyle


def styles() -> Styles:
    register_fonts()
    base = ParagraphStyle("base", fontName=FONT, fontSize=9, leading=11.5, textColor=INK)
    return Styles(
        title=ParagraphStyle("title", parent=base, fontName=FONT_BOLD, fontSize=15, leading=18, textColor=ACCENT),
        h2=ParagraphStyle(
            "h2", parent=base, fontName=FONT_BOLD, fontSize=10.5, leading=13, textColor=ACCENT,
            spaceBefore=7, spaceAfter=3,
        ),
        body=base,
        small=ParagraphStyle("small", parent=base, fontSize=8, leading=10),
        small_bold=ParagraphStyle("small_bold", parent=base, fontName=FONT_BOLD, fontSize=8, leading=10),
        tiny=ParagraphStyle("tiny", parent=base, fontSize=7, leading=8.5, textColor=MUTED),
        label=ParagraphStyle("label", parent=base, fontSize=7.5, leading=9.5, textColor=MUTED),
        value=ParagraphStyle("value", parent=base, fontSize=9, leading=11),
        value_bold=ParagraphStyle("value_bold", parent=base, fontName=FONT_BOLD, fontSize=9.5, leading=11.5),
        right=ParagraphStyle("right", parent=base, alignment=TA_RIGHT, fontSize=8.5, leading=10.5),
        caption=ParagraphStyle("caption", parent=base, fontSize=7.5, leading=9, textColor=MUTED, alignment=TA_CENTER),
        decision=ParagraphStyle("decision", parent=base, fontName=FONT_BOLD, fontSize=12.5, leading=15.5),
        big=ParagraphStyle("big", parent=base, fontName=FONT_BOLD, fontSize=22, leading=25),
        cell=ParagraphStyle("cell", parent=base, fontSize=7.5, leading=9, alignment=TA_LEFT),
        cell_bold=ParagraphStyle("cell_bold", parent=base, fontName=FONT_BOLD, fontSize=7.5, leading=9),
    )


def _shaped(style: ParagraphStyle) -> ParagraphStyle:
    return ParagraphStyle(f"{style.name}-shaped", parent=style, shaping=1)


def para(text: str, style: ParagraphStyle) -> Paragraph:
    """A paragraph of plain text (escaped: user input never becomes markup), in any script
    (fonts per run, right-to-left in visual order: :mod:`desktop.core.report_fonts`)."""
    from .report_fonts import markup

    marked = markup(str(text), FONT)
    return Paragraph(marked.markup.replace("\n", "<br/>"), _shaped(style) if marked.shaping else style)


def rich(markup: str, style: ParagraphStyle) -> Paragraph:
    """A paragraph of trusted markup (the caller escaped every inserted value with :func:`esc`)."""
    from .report_fonts import FALLBACKS

    shaping = any(f'name="{fb.name}"' in markup for fb in FALLBACKS if fb.shaping) and not any(
        f'name="{fb.name}"' in markup for fb in FALLBACKS[:2])
    return Paragraph(markup, _shaped(style) if shaping else style)


def esc(text: object) -> str:
    """Escaped markup of a value for :func:`rich`, in any script."""
    from .report_fonts import markup

    return markup(str(text), FONT).markup


# --------------------------------------------------------------------------
# Page template with "Page X of Y"
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Footer:
    left: str
    right: str


def _numbered_canvas_class(footer: Footer) -> type[rl_canvas.Canvas]:
    class NumberedCanvas(rl_canvas.Canvas):
        """Holds page states until the end so each footer can say "Page X of Y"."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 (reportlab API)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self._footer(number, total)
                super().showPage()
            self._pages = []
            super().save()

        def _footer(self, number: int, total: int) -> None:
            width, _ = self._pagesize
            y = MARGIN * 0.55
            self.saveState()
            self.setStrokeColor(RULE)
            self.setLineWidth(0.5)
            self.line(MARGIN, y + 9, width - MARGIN, y + 9)
            self.setFillColor(MUTED)
            self.setFont(FONT, 7)
            self.drawString(MARGIN, y, footer.left)
            self.drawRightString(width - MARGIN, y, f"{footer.right}   Page {number} of {total}")
            self.restoreState()

    return NumberedCanvas


class ReportDoc(BaseDocTemplate):
    """One frame per page, the numbered footer, metadata set."""

    def __init__(
        self,
        fh: IO[bytes],
        *,
        size: tuple[float, float],
        footer: Footer,
        title: str,
        author: str,
        subject: str,
        creator: str,
        keywords: Sequence[str] = (),
    ) -> None:
        super().__init__(
            fh,
            pagesize=size,
            leftMargin=MARGIN,
            rightMargin=MARGIN,
            topMargin=MARGIN,
            bottomMargin=MARGIN + 4 * mm,
            title=title,
            author=author,
            subject=subject,
            creator=creator,
            keywords=list(keywords),
            lang="en",
            # reportlab's default initial font is Helvetica, which is not embedded
            initialFontName=FONT,
            initialFontSize=9,
        )
        frame = Frame(self.leftMargin, self.bottomMargin, self.width, self.height, id="body",
                      leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
        self.addPageTemplates([PageTemplate(id="page", frames=[frame])])
        self._footer = footer

    def build_story(self, story: list[Flowable]) -> None:
        self.build(story, canvasmaker=_numbered_canvas_class(self._footer))

    def filterFlowables(self, flowables: list[Flowable]) -> None:  # noqa: N802 (reportlab API)
        """Expand :class:`Deferred` placeholders just before they are laid out."""
        while flowables and isinstance(flowables[0], Deferred):
            flowables[0:1] = flowables[0].make()


class Deferred(Flowable):
    """A placeholder that becomes flowables only when the layout reaches it.

    A batch report with one study page per image makes each page's images
    (decode, Grad-CAM, JPEG) just before placing them, so memory holds the PDF
    being written plus one study, not every study's pictures at once.
    """

    def __init__(self, make: Callable[[], list[Flowable]]) -> None:
        super().__init__()
        self._make = make

    def make(self) -> list[Flowable]:
        return list(self._make())

    def wrap(self, aw: float, ah: float) -> tuple[float, float]:
        return 0.0, 0.0

    def draw(self) -> None:  # never reached: the document expands it first
        return None


# --------------------------------------------------------------------------
# Flowables
# --------------------------------------------------------------------------


def jpeg_reader(data: bytes) -> ImageReader:
    """An image reader that makes reportlab embed the JPEG bytes as they are (DCTDecode)."""
    return ImageReader(io.BytesIO(data))


class ImageBox(Flowable):
    """A JPEG drawn at a fixed size (points), with a thin frame."""

    def __init__(self, data: bytes, width: float, height: float, *, frame: bool = True) -> None:
        super().__init__()
        self._reader = jpeg_reader(data)
        self.width = width
        self.height = height
        self._frame = frame

    def wrap(self, aw: float, ah: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        c = self.canv
        c.drawImage(self._reader, 0, 0, self.width, self.height)
        if self._frame:
            c.setStrokeColor(RULE)
            c.setLineWidth(0.4)
            c.rect(0, 0, self.width, self.height, stroke=1, fill=0)


class ColourBar(Flowable):
    """A horizontal colour bar from RGB stops on the fixed 0-1 scale, with ticks.

    The part below ``floor`` (not drawn on the film) is light grey and says so.
    """

    def __init__(self, rgb: Sequence[tuple[float, float, float]], width: float, height: float = 4 * mm,
                 low: str = "low influence", high: str = "high influence", *, floor: float = 0.0,
                 title: str = "Grad-CAM influence (fixed scale 0\u20131)") -> None:
        super().__init__()
        self._rgb = list(rgb)
        self.width = width
        self._bar = height
        self._low, self._high = low, high
        self._floor = floor
        self._title = title
        # low/high words under the ticks only where they fit beside each other
        self._words = stringWidth(f"{low}  {high}", FONT, 6.5) + 10 < width
        self.height = height + 19 + (8 if self._words else 0)

    def wrap(self, aw: float, ah: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        c = self.canv
        n = len(self._rgb)
        step = self.width / n
        y0 = 10 + (8 if self._words else 0)
        for i, (r, g, b) in enumerate(self._rgb):
            if (i + 0.5) / n < self._floor:
                r = g = b = 0.9
            c.setFillColorRGB(r, g, b)
            c.rect(i * step, y0, step + 0.3, self._bar, stroke=0, fill=1)
        c.setStrokeColor(RULE)
        c.setLineWidth(0.4)
        c.rect(0, y0, self.width, self._bar, stroke=1, fill=0)
        c.setFillColor(MUTED)
        c.setFont(FONT, 6.5)
        for t in (0.0, 0.25, 0.5, 0.75, 1.0):
            x = self.width * t
            c.line(x, y0 - 1.5, x, y0)
            label = f"{t:g}"
            if t == 0.0:
                c.drawString(x, y0 - 8, label)
            elif t == 1.0:
                c.drawRightString(x, y0 - 8, label)
            else:
                c.drawCentredString(x, y0 - 8, label)
        if self._floor > 0 and stringWidth("not drawn", FONT, 6.5) < self.width * self._floor - 4:
            c.drawCentredString(self.width * self._floor / 2, y0 + self._bar / 2 - 2.2, "not drawn")
        if self._words:
            c.drawString(0, 1, self._low)
            c.drawRightString(self.width, 1, self._high)
        c.setFont(FONT, 7)
        c.drawCentredString(self.width / 2, y0 + self._bar + 2.5, self._title)


@dataclass(frozen=True)
class Attachment:
    """A file embedded in the PDF (the original image, for the doctor's own viewer)."""

    name: str
    data: bytes
    description: str = "original image file"
    mime: str = "application/octet-stream"


class _FileAttachmentAnnotation(pdfdoc.Annotation):
    """A /FileAttachment annotation (PDF 1.3+) carrying its file in an embedded file stream.

    reportlab has no API for embedded files; this writes the few PDF objects
    the standard asks for (annotation -> file specification -> /EF stream)
    with reportlab's own object classes, so no second PDF library rewrites
    the document.
    """

    permitted = pdfdoc.Annotation.permitted + ("FS", "Name")

    def __init__(self, rect: tuple[float, float, float, float], attachment: Attachment) -> None:
        self.Rect = rect
        self.attachment = attachment

    def Dict(self) -> Any:  # noqa: N802 (reportlab API)
        a = self.attachment
        stream = pdfdoc.PDFStream(
            pdfdoc.PDFDictionary({
                "Type": pdfdoc.PDFName("EmbeddedFile"),
                "Subtype": pdfdoc.PDFName(a.mime.replace("/", "#2F")),
                "Params": pdfdoc.PDFDictionary({"Size": len(a.data)}),
            }),
            a.data,
            filters=[pdfdoc.PDFZCompress],
        )
        spec = pdfdoc.PDFDictionary({
            "Type": pdfdoc.PDFName("Filespec"),
            "F": pdfdoc.PDFString(a.name),
            "UF": pdfdoc.PDFString(a.name),
            "Desc": pdfdoc.PDFString(a.description),
            "EF": pdfdoc.PDFDictionary({"F": stream, "UF": stream}),
        })
        return self.AnnotationDict(
            Rect=self.Rect, Contents=f"{a.description}: {a.name}", Subtype="/FileAttachment",
            FS=spec, Name=pdfdoc.PDFName("Paperclip"), F=4,
        )


class AttachmentNote(Flowable):
    """A line of text that carries the attached file: clicking it (or the viewer's attachment
    panel) opens the original image."""

    def __init__(self, attachment: Attachment, width: float, text: str) -> None:
        super().__init__()
        self.attachment = attachment
        self.width = width
        self.height = 11
        self._text = text

    def wrap(self, aw: float, ah: float) -> tuple[float, float]:
        return min(self.width, aw), self.height

    def draw(self) -> None:
        c = self.canv
        c.setFillColor(ACCENT)
        c.setFont(FONT, 7.5)
        c.drawString(14, 2, self._text)
        # the viewer draws its own paperclip icon in the annotation's small box
        x0, y0 = c.absolutePosition(0, 0)
        c._addAnnotation(_FileAttachmentAnnotation((x0 + 1, y0, x0 + 10, y0 + 11), self.attachment))


class ProbabilityBar(Flowable):
    """p(COVID-19) on a 0-1 scale, the threshold marked."""

    def __init__(self, p: float, threshold: float, width: float, *, positive: bool, height: float = 7 * mm) -> None:
        super().__init__()
        self.p = min(max(float(p), 0.0), 1.0)
        self.threshold = min(max(float(threshold), 0.0), 1.0)
        self.width = width
        self._bar = height
        self.height = height + 20
        self._positive = positive

    def wrap(self, aw: float, ah: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        c = self.canv
        y0 = 10
        c.setFillColor(SHADE)
        c.setStrokeColor(RULE)
        c.setLineWidth(0.5)
        c.rect(0, y0, self.width, self._bar, stroke=1, fill=1)
        c.setFillColor(POSITIVE if self._positive else NEGATIVE)
        c.rect(0, y0, self.width * self.p, self._bar, stroke=0, fill=1)
        # ticks
        c.setFillColor(MUTED)
        c.setFont(FONT, 6.5)
        for t in (0.0, 0.25, 0.5, 0.75, 1.0):
            x = self.width * t
            c.setStrokeColor(RULE)
            c.line(x, y0 - 2, x, y0)
            label = f"{t:g}"
            if t == 0.0:
                c.drawString(x, 2, label)
            elif t == 1.0:
                c.drawRightString(x, 2, label)
            else:
                c.drawCentredString(x, 2, label)
        # threshold marker
        xt = self.width * self.threshold
        c.setStrokeColor(INK)
        c.setLineWidth(1.2)
        c.setDash(2, 1.5)
        c.line(xt, y0 - 3, xt, y0 + self._bar + 3)
        c.setDash()
        c.setFillColor(INK)
        c.setFont(FONT, 6.5)
        text = f"threshold {self.threshold:.2f}"
        tw = pdfmetrics.stringWidth(text, FONT, 6.5)
        tx = min(max(xt - tw / 2, 0), self.width - tw)
        c.drawString(tx, y0 + self._bar + 4, text)


def make_doc(
    fh: IO[bytes],
    *,
    size_name: str,
    footer: Footer,
    meta: dict[str, str],
    attachments: Sequence[Attachment] = (),
) -> ReportDoc:
    register_fonts()
    del attachments  # placed by AttachmentNote flowables in the story
    return ReportDoc(
        fh,
        size=page_size(size_name),
        footer=footer,
        title=meta.get("title", ""),
        author=meta.get("author", ""),
        subject=meta.get("subject", ""),
        creator=meta.get("creator", ""),
        keywords=[k for k in meta.get("keywords", "").split(",") if k],
    )


Writer = Callable[[IO[bytes]], None]

__all__ = [
    "Attachment",
    "AttachmentNote",
    "FONT",
    "FONT_BOLD",
    "ColourBar",
    "Deferred",
    "Footer",
    "ImageBox",
    "ProbabilityBar",
    "ReportDoc",
    "Styles",
    "esc",
    "font_dirs",
    "jpeg_reader",
    "make_doc",
    "page_size",
    "para",
    "register_fonts",
    "rich",
    "styles",
]

"""Text in any script our users' patients write: a font per run, right-to-left runs in visual order.

reportlab draws each string with one font and left to right. A name in Thai,
Devanagari or Chinese set in DejaVu Sans prints as empty boxes, and Arabic or
Hebrew letters come out reversed and unjoined. :func:`markup` turns a plain
string into paragraph markup that

- splits it into runs, each set in the first font that has all its glyphs
  (DejaVu Sans, then the fallbacks in ``assets/fonts``: Noto Sans Arabic,
  Hebrew, Thai, Devanagari, Bengali, Tamil, Hangul, and Droid Sans Fallback
  for Chinese and Japanese);
- joins Arabic letters (arabic-reshaper, MIT) and puts each right-to-left run
  in visual order;
- asks reportlab to shape the paragraph with HarfBuzz (uharfbuzz, Apache 2.0)
  when it holds Indic or Thai text (vowel signs, conjuncts);
- replaces a character no font covers by a romanised or escaped form
  (``[U+1234]``) and logs a warning: never an empty box.

The right-to-left reordering is hand-written on purpose: python-bidi, the
usual library, is LGPL. It covers what a report holds (names and short
notes in a left-to-right document): a run of right-to-left letters, with the
spaces and punctuation between them, is reversed as a whole; digits inside
it keep their order; mirrored brackets are swapped. It is not the full
Unicode bidi algorithm (no explicit embeddings), which short fields do not need.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fallback:
    name: str  # reportlab font name
    file: str  # in assets/fonts
    shaping: bool = False  # needs HarfBuzz (Indic, Thai)


FALLBACKS = (
    Fallback("CXRArabic", "NotoSansArabic-Regular.ttf"),
    Fallback("CXRHebrew", "NotoSansHebrew-Regular.ttf"),
    Fallback("CXRThai", "NotoSansThai-Regular.ttf", shaping=True),
    Fallback("CXRDevanagari", "NotoSansDevanagari-Regular.ttf", shaping=True),
    Fallback("CXRBengali", "NotoSansBengali-Regular.ttf", shaping=True),
    Fallback("CXRTamil", "NotoSansTamil-Regular.ttf", shaping=True),
    Fallback("CXRHangul", "NotoSansCJKkr-Hangul-Regular.ttf"),
    Fallback("CXRCJK", "DroidSansFallbackFull.ttf"),
)

_lock = threading.Lock()
_coverage: dict[str, frozenset[int]] = {}
_registered: list[Fallback] = []
_loaded = False
_warned: set[str] = set()

_RTL = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")
_ARABIC = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff]")
_NEEDS_FONT = re.compile("[^\u0000-\u024f\u0370-\u03ff\u0400-\u04ff\u2000-\u206f\u20a0-\u20bf\u2100-\u214f]")
_MIRROR = str.maketrans("()[]{}<>\u00ab\u00bb", ")(][}{><\u00bb\u00ab")


def _font_dir() -> Path:
    from .paths import assets_dir

    return assets_dir() / "fonts"


def load_fallbacks(base_font: str) -> None:
    """Register the fallback fonts found in ``assets/fonts`` (once per process) and read their coverage."""
    global _loaded
    with _lock:
        if _loaded:
            return
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        _coverage[base_font] = frozenset(pdfmetrics.getFont(base_font).face.charToGlyph)
        for fb in FALLBACKS:
            path = _font_dir() / fb.file
            if not path.is_file():
                log.warning("report font %s missing: %s text will be romanised", fb.file, fb.name[3:])
                continue
            try:
                font = TTFont(fb.name, str(path))
            except Exception as exc:  # a damaged font file must not stop a report
                log.warning("report font %s unreadable (%s)", fb.file, type(exc).__name__)
                continue
            pdfmetrics.registerFont(font)
            pdfmetrics.registerFontFamily(fb.name, normal=fb.name, bold=fb.name, italic=fb.name, boldItalic=fb.name)
            _coverage[fb.name] = frozenset(font.face.charToGlyph)
            _registered.append(fb)
        _loaded = True


def _font_for(ch: str, base_font: str) -> str | None:
    cp = ord(ch)
    if cp in _coverage.get(base_font, ()) or unicodedata.category(ch) in ("Zs", "Cc"):
        return base_font
    for fb in _registered:
        if cp in _coverage[fb.name]:
            return fb.name
    return None


def romanise(ch: str) -> str:
    """A readable stand-in for a character no font covers: its letter name, else ``[U+XXXX]``."""
    name = unicodedata.name(ch, "")
    m = re.search(r"(?:LETTER|SYLLABLE) ([A-Z]+)$", name)
    if m and len(m.group(1)) <= 4:
        return m.group(1).lower()
    return f"[U+{ord(ch):04X}]"


def visual_order(text: str) -> str:
    """``text`` with Arabic joined and each right-to-left run reversed for left-to-right drawing."""
    if not _RTL.search(text):
        return text
    if _ARABIC.search(text):
        import arabic_reshaper

        text = arabic_reshaper.reshape(text)
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if not _RTL.match(text[i]):
            out.append(text[i])
            i += 1
            continue
        j = i
        # the run: RTL letters plus the neutrals and digits between them (not trailing ones)
        end = i
        while j < n and (_RTL.match(text[j]) or not text[j].isalpha()):
            if _RTL.match(text[j]):
                end = j + 1
            j += 1
        run = text[i:end]
        # digits keep their left-to-right order inside the reversed run
        pieces = re.findall(r"\d+(?:[.,:]\d+)*|\D", run)
        out.append("".join(p if p[0].isdigit() else p.translate(_MIRROR) for p in reversed(pieces)))
        i = end
    return "".join(out)


@dataclass(frozen=True)
class Marked:
    markup: str
    shaping: bool


def markup(text: str, base_font: str) -> Marked:
    """Escaped paragraph markup for plain ``text``: fonts per run, RTL in visual order, no boxes."""
    if not _NEEDS_FONT.search(text):
        return Marked(escape(text), False)
    load_fallbacks(base_font)
    rtl = bool(_RTL.search(text))
    text = visual_order(text)
    parts: list[str] = []
    shaping = False
    missing: list[str] = []
    run_font, run = base_font, ""

    def flush() -> None:
        if run:
            body = escape(run)
            parts.append(body if run_font == base_font else f'<font name="{run_font}">{body}</font>')

    for ch in text:
        font = _font_for(ch, base_font)
        if font is None:
            missing.append(ch)
            font, ch = base_font, romanise(ch)
        elif font != base_font and any(fb.shaping for fb in _registered if fb.name == font):
            shaping = True
        if font != run_font:
            flush()
            run_font, run = font, ""
        run += ch
    flush()
    if missing:
        key = "".join(sorted(set(missing)))
        if key not in _warned:
            _warned.add(key)
            scripts = sorted({unicodedata.name(c, "?").split(" ")[0] for c in missing})
            log.warning("report text has %d character(s) no embedded font covers (%s): printed romanised",
                        len(missing), ", ".join(scripts))
    # HarfBuzz would re-reverse the right-to-left runs we ordered: shape only left-to-right text
    return Marked("".join(parts), shaping and not rtl)


__all__ = ["FALLBACKS", "Marked", "load_fallbacks", "markup", "romanise", "visual_order"]

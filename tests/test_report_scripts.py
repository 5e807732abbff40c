"""Patient names in every script our users write: the right font per run, RTL in visual order, no boxes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from desktop.core import report_fonts
from desktop.core.imaging import load_xray
from desktop.core.report import ReportInfo, write_study_report
from desktop.core.report_pdf import FONT, register_fonts
from tests.report_helpers import (
    FakeBundle,
    FakeHeatmap,
    FakePrediction,
    embedded_fonts,
    flat,
    pdftotext,
    write_png,
)

NAMES = {
    "CXRCJK": "王秀英",
    "CXRHangul": "김민준",
    "CXRThai": "สมชาย ใจดี",
    "CXRDevanagari": "अनुष्का शर्मा",
    "CXRArabic": "محمد عبد الله",
    FONT: "דוד כהן",  # DejaVu Sans has Hebrew itself
}


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory):
    return load_xray(write_png(tmp_path_factory.mktemp("png") / "x.png"))


@pytest.mark.parametrize(("font", "name"), list(NAMES.items()))
def test_each_script_gets_a_font_that_has_its_glyphs(font: str, name: str) -> None:
    register_fonts()
    marked = report_fonts.markup(name, FONT)
    if font == FONT:
        assert "<font" not in marked.markup
    else:
        assert f'name="{font}"' in marked.markup
    report_fonts.load_fallbacks(FONT)
    for ch in name:
        if not ch.isspace():
            assert ord(ch) in report_fonts._coverage[font] or font == "CXRArabic", ch  # Arabic: joined forms
    assert "[U+" not in marked.markup
    assert marked.shaping == (font in ("CXRThai", "CXRDevanagari"))


def test_rtl_runs_are_reversed_and_arabic_joined() -> None:
    assert report_fonts.visual_order("דוד כהן") == "ןהכ דוד"
    assert report_fonts.visual_order("Mr דוד (12)") == "Mr דוד (12)"[:3] + "דוד"[::-1] + " (12)"
    assert report_fonts.visual_order("ab 12") == "ab 12"
    joined = report_fonts.visual_order("محمد")
    assert all(0xFE70 <= ord(c) <= 0xFEFF for c in joined)  # presentation forms: letters joined
    assert len(joined) == 4


def test_uncovered_characters_are_romanised_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    register_fonts()
    caplog.set_level(logging.WARNING, logger="desktop.core.report_fonts")
    marked = report_fonts.markup("ሀይሌ Gebre", FONT)
    assert "Gebre" in marked.markup
    assert "ሀ" not in marked.markup
    assert "ha" in marked.markup
    assert any("ETHIOPIC" in r.getMessage() for r in caplog.records)
    assert report_fonts.romanise("\U0001F600").startswith("[U+1F600")


@pytest.mark.parametrize(("font", "name"), list(NAMES.items()))
def test_report_embeds_the_script_font(tmp_path: Path, png, font: str, name: str) -> None:
    out = write_study_report(tmp_path / "r.pdf", png, FakePrediction(), FakeHeatmap(), FakeBundle(),
                             ReportInfo(patient_name=name))
    fonts = embedded_fonts(out)
    assert all(fonts.values()), fonts
    if font == FONT:
        return
    file_stem = next(fb.file for fb in report_fonts.FALLBACKS if fb.name == font).split("-")[0].split(".")[0]
    used = [f for f in fonts if file_stem.lower()[:12] in f.lower()]
    assert used, fonts
    text = pdftotext(out)
    if text is not None and font in ("CXRCJK", "CXRHangul", "CXRThai"):
        assert name in flat(text)  # the text layer reads back (left-to-right scripts without conjuncts)

"""Make NotoSansCJKkr-Hangul-Regular.ttf: the Hangul of Noto Sans CJK KR as a TrueType font.

reportlab embeds TrueType (glyf) fonts only, and Noto Sans CJK ships CFF outlines in a
TTC; this subsets the KR face to Hangul syllables, jamo and ASCII with fontTools and
converts its cubic outlines to quadratic ones (cu2qu). Usage (Debian/Ubuntu):

    apt-get download fonts-noto-cjk && dpkg-deb -x fonts-noto-cjk_*.deb x
    python assets/fonts/make_hangul_font.py x/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc 1 \
        assets/fonts/NotoSansCJKkr-Hangul-Regular.ttf

(face 1 of the collection is "Noto Sans CJK KR"). Licence of the result: SIL OFL 1.1.
"""
from __future__ import annotations

import argparse

from fontTools import subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, newTable

#: Hangul syllables, jamo, compatibility jamo, ASCII.
UNICODES = [*range(0xAC00, 0xD7A4), *range(0x1100, 0x1200), *range(0x3130, 0x3190), *range(0x20, 0x7F)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ttc")
    ap.add_argument("index", type=int)
    ap.add_argument("out")
    args = ap.parse_args()
    font = TTCollection(args.ttc).fonts[args.index]
    opts = subset.Options()
    opts.layout_features = ["*"]
    opts.name_IDs = ["*"]
    opts.notdef_outline = True
    opts.hinting = False
    opts.desubroutinize = True
    sub = subset.Subsetter(opts)
    sub.populate(unicodes=UNICODES)
    sub.subset(font)
    order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    font["loca"] = newTable("loca")
    glyf = font["glyf"] = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:  # cubic (CFF) to quadratic (TrueType) outlines
        pen = TTGlyphPen(glyph_set)
        glyph_set[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
        glyf[name] = pen.glyph()
    for table in ("CFF ", "VORG", "BASE"):
        if table in font:
            del font[table]
    maxp = font["maxp"] = newTable("maxp")
    maxp.tableVersion = 0x00010000
    maxp.maxZones = 1
    for attr in ("maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs",
                 "maxStackElements", "maxSizeOfInstructions", "maxComponentElements"):
        setattr(maxp, attr, 0)
    font["post"].formatType = 3.0
    font["head"].glyphDataFormat = 0
    font.sfntVersion = "\000\001\000\000"
    font.save(args.out)


if __name__ == "__main__":
    main()

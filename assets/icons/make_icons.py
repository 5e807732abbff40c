"""Draw the application icon: SVG, PNGs (16-512 px) and a Windows .ico, from one geometry.

    python assets/icons/make_icons.py

A teal rounded square, two white lungs with a spine between them, and a
warm spot on the left lung (the heatmap). Drawn with Pillow at 1024 px and
downsampled, so small sizes stay smooth; the SVG uses the same shapes.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
NAME = "cxr-screener"
BIG = 1024
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)

BACKGROUND = (18, 94, 110)
LUNG = (240, 244, 246)
SPINE = (200, 214, 220)
HOT = (236, 110, 40)

# Geometry on a 100 x 100 canvas.
CORNER = 20
LEFT_LUNG = (17, 20, 46, 82)  # bounding box (x0, y0, x1, y1) of an ellipse
RIGHT_LUNG = (54, 20, 83, 82)
SPINE_BOX = (47.5, 14, 52.5, 88)
HOT_SPOT = (22, 46, 40, 64)


def _scale(box: tuple[float, ...], size: int) -> tuple[float, ...]:
    return tuple(v * size / 100.0 for v in box)


def draw(size: int = BIG) -> Image.Image:
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((0, 0, size - 1, size - 1), radius=CORNER * size / 100, fill=BACKGROUND)
    d.ellipse(_scale(LEFT_LUNG, size), fill=LUNG)
    d.ellipse(_scale(RIGHT_LUNG, size), fill=LUNG)
    d.rounded_rectangle(_scale(SPINE_BOX, size), radius=2.5 * size / 100, fill=SPINE)
    glow = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(glow).ellipse(_scale(HOT_SPOT, size), fill=HOT + (235,))
    glow = glow.filter(ImageFilter.GaussianBlur(size / 60))
    # keep the warm spot inside the left lung
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse(_scale(LEFT_LUNG, size), fill=255)
    img.paste(glow, (0, 0), Image.composite(glow, Image.new("RGBA", (size, size)), mask).getchannel("A"))
    return img


def svg() -> str:
    def ellipse(box: tuple[float, ...], fill: str, extra: str = "") -> str:
        x0, y0, x1, y1 = box
        return (f'<ellipse cx="{(x0 + x1) / 2:g}" cy="{(y0 + y1) / 2:g}" rx="{(x1 - x0) / 2:g}" '
                f'ry="{(y1 - y0) / 2:g}" fill="{fill}"{extra}/>')

    def rgb(c: tuple[int, int, int]) -> str:
        return "#{:02x}{:02x}{:02x}".format(*c)

    sx0, sy0, sx1, sy1 = SPINE_BOX
    return "\n".join([
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100" width="256" height="256">',
        "  <defs>",
        '    <clipPath id="left"><ellipse cx="31.5" cy="51" rx="14.5" ry="31"/></clipPath>',
        '    <filter id="blur"><feGaussianBlur stdDeviation="1.7"/></filter>',
        "  </defs>",
        f'  <rect width="100" height="100" rx="{CORNER}" fill="{rgb(BACKGROUND)}"/>',
        "  " + ellipse(LEFT_LUNG, rgb(LUNG)),
        "  " + ellipse(RIGHT_LUNG, rgb(LUNG)),
        f'  <rect x="{sx0}" y="{sy0}" width="{sx1 - sx0:g}" height="{sy1 - sy0:g}" rx="2.5" fill="{rgb(SPINE)}"/>',
        '  <g clip-path="url(#left)">',
        "    " + ellipse(HOT_SPOT, rgb(HOT), ' fill-opacity="0.92" filter="url(#blur)"'),
        "  </g>",
        "</svg>",
        "",
    ])


def main() -> None:
    big = draw(BIG)
    for size in PNG_SIZES:
        big.resize((size, size), Image.Resampling.LANCZOS).save(HERE / f"{NAME}-{size}.png", optimize=True)
    big.resize((256, 256), Image.Resampling.LANCZOS).save(HERE / f"{NAME}.png", optimize=True)
    big.resize((256, 256), Image.Resampling.LANCZOS).save(
        HERE / f"{NAME}.ico", sizes=[(s, s) for s in ICO_SIZES]
    )
    (HERE / f"{NAME}.svg").write_text(svg(), encoding="utf-8")


if __name__ == "__main__":
    main()

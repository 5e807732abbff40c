"""What showing a screened film needs, without the film: a small uint8 image and its facts.

The scan's decoders send back a :class:`Display` instead of the
:class:`~desktop.core.imaging.XRay` (two full-size float32 arrays, ~72 MB for
a 3000x3000 film): the default view as uint8, long side at most
:data:`DISPLAY_SIDE` (never enlarged), plus the metadata, window and
warnings. Heatmap PNGs, report thumbnails and report study pages are drawn
from it. :meth:`Display.spill` moves the image to a PNG file so that a
long scan that keeps every result for its report holds only the small facts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .imaging import StudyMetadata, Window, XRay

#: Long side of the display image sent back by the decoders (pixels).
DISPLAY_SIDE = 1024


def shrink(gray: np.ndarray, side: int) -> np.ndarray:
    """``gray`` (uint8 HxW) with its long side at most ``side`` (area-averaged, never enlarged)."""
    h, w = gray.shape[:2]
    if max(h, w) <= side:
        return np.ascontiguousarray(gray)
    from PIL import Image

    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = Image.fromarray(np.ascontiguousarray(gray), mode="L")
    factor = min(im.size[0] // size[0], im.size[1] // size[1])
    if factor >= 2:
        im = im.reduce(factor)
    return np.asarray(im.resize(size, Image.Resampling.LANCZOS))


@dataclass(frozen=True, eq=False)
class Display:
    """The default view of one film (uint8, downsampled) and what a report says about it."""

    #: uint8 (h, w), bones white; None once spilled to :attr:`png`
    image: np.ndarray | None
    #: the film's full size (H, W)
    shape: tuple[int, int]
    metadata: StudyMetadata
    window: Window
    warnings: tuple[str, ...] = ()
    format: str = ""
    png: str | None = None

    @classmethod
    def from_xray(cls, xray: XRay, side: int = DISPLAY_SIDE) -> Display:
        return cls(image=shrink(xray.to_uint8(), side), shape=xray.shape, metadata=xray.metadata,
                   window=xray.window, warnings=tuple(xray.warnings), format=xray.format)

    def gray(self) -> np.ndarray:
        """The uint8 image (read back from :attr:`png` when spilled)."""
        if self.image is not None:
            return self.image
        if self.png is None:
            raise ValueError("display without an image")
        from PIL import Image

        with Image.open(self.png) as im:
            return np.asarray(im.convert("L"))

    def spill(self, folder: str | os.PathLike[str], key: str) -> Display:
        """This display with its image written to ``folder/<key>.png`` (atomically) and dropped from memory."""
        if self.image is None:
            return self
        import io

        from PIL import Image

        from .fileio import atomic_write_bytes

        target = Path(folder) / f"{key}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(self.image, mode="L").save(buf, format="PNG", compress_level=1)
        atomic_write_bytes(target, buf.getvalue(), overwrite=True)
        return replace(self, image=None, png=str(target))

    def as_xray(self, *, source: str | None, sha256: str) -> XRay:
        """A light :class:`XRay` of the display image (default view only: ``values`` are display pixels)."""
        from .imaging import XRay

        pixels = self.gray().astype(np.float32) / np.float32(255.0)
        return XRay(pixels=pixels, values=pixels, bit_depth=8, window=self.window, presets=(), invert=False,
                    format=self.format, metadata=self.metadata, source=source, sha256=sha256,
                    warnings=self.warnings)


__all__ = ["DISPLAY_SIDE", "Display", "shrink"]

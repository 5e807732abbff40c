"""Turn a file (path or bytes) into an :class:`XRay`: display-ready pixels plus metadata.

One entry point, :func:`load_xray`. The format is detected from the content (PNG/JPEG
signatures, ``DICM`` at byte 128, or a DICOM data set without preamble), never from the
file name.

Full or reduced decode
----------------------
``load_xray(path)`` decodes at full resolution: what the viewer, window/level and the
reports need. A caller that only needs the model input passes the size it will resize to::

    spec = predictor.spec                       # PreprocessSpec of the model card
    xray = load_xray(path, target=(spec.height, spec.width))
    x = model_input(xray, spec)                 # same preprocessing as ever

Large films are then decoded at a reduced resolution: the largest power-of-two factor that
keeps both sides at least twice the target (:mod:`.resolution`), by the codec where it can
(JPEG and JPEG-Baseline DICOM: libjpeg DCT scaling; JPEG 2000 DICOM: its resolution levels),
else by a box filter after a full decode (PNG, uncompressed, RLE, JPEG-LS, JPEG Lossless).
``xray.decode_scale`` is the factor (1: full), ``xray.full_shape`` the size in the file;
``metadata`` and ``sha256`` are those of the file, and so is the default window where the file
sets it (window tags, stored range); an "Image min-max" window is the reduced image's. p(covid) of the
bundled model moves by < 0.02 against the full decode (``tests/test_imaging_reduced.py``);
``benchmarks/bench_reduced_decode.py`` measures the gain. A scan worker that also wants a
heatmap or a thumbnail can derive it from this reduced image.

DICOM is shown as a radiologist's viewer shows it: modality LUT (rescale or LUT sequence),
then VOI LUT (LUT sequence, else the first window centre/width, else the full stored range),
then MONOCHROME1 inversion, so bones are always white. Colour and non-projection images
(CT, MR, ...) are refused with a clear message.

Hostile files: sizes are checked before anything is decoded (PNG chunks and CRCs and IHDR
size, the JPEG SOF size, DICOM Rows x Columns x frames x Bits Allocated against the bytes
present and MAX_PIXELS, element lengths against the end of the file, a deflated data set
inflated no further than its header declares), compressed DICOM frames must be complete
codestreams, and each transfer syntax has one decoder (DECODER_PLUGINS): python-gdcm only
for JPEG Lossless, after its header is validated, because it aborts the process on some
damaged data. Every failure is an ImageLoadError subclass naming the file;
``tests/test_hostile.py`` and ``tests/test_fuzz_loader.py`` hold it to that. Decode worker
processes can cap their own memory with :func:`set_memory_ceiling`.

Patient data read here (:class:`StudyMetadata`) is never logged: the dataclass keeps
identifying fields out of its ``repr``.

Modules, one concern each: :mod:`.types` (the values handed out), :mod:`.limits` (size
limits and checks), :mod:`.source` (sniffing, bounded reads), :mod:`.codestream` (PNG /
JPEG / JPEG 2000 / JPEG Lossless / RLE validators), :mod:`.raster` (PNG, JPEG),
:mod:`.dicom_tags`, :mod:`.dicom_checks`, :mod:`.dicom_decode`, :mod:`.luts`, :mod:`.dicom`
(DICOM), :mod:`.resolution` (reduced decode), :mod:`.memory` (worker memory ceiling),
:mod:`.loader` (:func:`load_xray`).

``MAX_PIXELS`` and ``MAX_FILE_BYTES`` are settings: assigning them here
(``imaging.MAX_PIXELS = n``) sets them in :mod:`.limits`, which every check reads.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from . import limits
from .dicom_checks import PROJECTION_MODALITIES, REFUSED_MODALITIES
from .dicom_decode import DECODER_PLUGINS
from .dicom_tags import NATIVE_TRANSFER_SYNTAXES, TRANSFER_SYNTAX_DECODERS
from .limits import MAX_FILE_BYTES, MAX_PIXELS, MIN_SIDE
from .loader import load_xray, loaders_available
from .memory import DEFAULT_WORKER_CEILING_MB, set_memory_ceiling
from .resolution import REDUCE_MARGIN
from .source import JPEG_SIGNATURE, PNG_SIGNATURE, detect_format
from .types import StudyMetadata, Window, XRay


class _Settings(ModuleType):
    """The package module: assigning a limit (e.g. in a test's monkeypatch) sets it in :mod:`.limits`."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in limits.SETTINGS:
            setattr(limits, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Settings

__all__ = [
    "DECODER_PLUGINS",
    "DEFAULT_WORKER_CEILING_MB",
    "JPEG_SIGNATURE",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "NATIVE_TRANSFER_SYNTAXES",
    "PNG_SIGNATURE",
    "PROJECTION_MODALITIES",
    "REDUCE_MARGIN",
    "REFUSED_MODALITIES",
    "TRANSFER_SYNTAX_DECODERS",
    "StudyMetadata",
    "Window",
    "XRay",
    "detect_format",
    "load_xray",
    "loaders_available",
    "set_memory_ceiling",
]

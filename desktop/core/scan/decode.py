"""Reading and decoding one file, once: what a decode worker does for each file.

:func:`decode_one` opens the file once (regular files only, bounded: a FIFO
or a device is refused before anything is read, so nothing blocks or spins),
hashes and decodes the *same bytes* (so the sha256 is that of what was
screened), checks that the file did not change meanwhile, preprocesses it to
the model input, and keeps what display needs (:class:`~desktop.core.display.Display`,
only when asked). The result, :class:`Decoded`, is what crosses the process
boundary: a 224x224x3 float32 input and at most a ~1 MB uint8 image.

Without display needs, large films may be decoded at reduced resolution:
:func:`load_for_model` is the one place that asks the loader for it.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from typing import Any

from desktop.core.display import DISPLAY_SIDE, Display
from desktop.core.errors import CXRError
from desktop.core.hashing import sha256_bytes
from desktop.core.imaging.resolution import scan_target
from desktop.core.imaging.source import read_regular

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wants:
    """What the caller needs back besides the model input."""

    #: long side of the display image (0: no display)
    display_side: int = 0

    @property
    def display(self) -> bool:
        return self.display_side > 0


NO_DISPLAY = Wants()
WITH_DISPLAY = Wants(DISPLAY_SIDE)


def as_wants(value: Wants | bool | None) -> Wants:
    """``Wants`` from the older ``want_xray`` flag too (True: display needed)."""
    if isinstance(value, Wants):
        return value
    return WITH_DISPLAY if value else NO_DISPLAY


@dataclass
class Decoded:
    """One file after its worker: ``status`` "ok" (input ready), "skip" (resume: same bytes), "error",
    or "rejected" (the input gate: ``error`` its text, ``error_kind`` its code)."""

    status: str
    sha256: str = ""
    input: Any = None  # (H, W, C) float32 model input
    display: Display | None = None
    error: str | None = None
    error_kind: str | None = None


#: The pipeline reads each file once, through imaging's one bounded reader.
read_input = read_regular


def load_for_model(data: bytes, name: str, target: tuple[int, int] | None) -> Any:
    """Decode ``data`` (the bytes of the file ``name``): the one place that asks for reduced resolution.

    ``target``: the (height, width) asked of the loader
    (:func:`desktop.core.imaging.resolution.scan_target` of the model input) when
    nothing else needs the pixels: large films are decoded at reduced
    resolution (JPEG DCT scaling, JPEG 2000 resolution levels). None: full
    resolution (display and heatmaps need it).
    """
    from desktop.core import imaging

    return imaging.load_xray(data, name=name, target=target)


def decode_one(path: str, expected_sha: str | None, spec: Any, wants: Wants | bool | None = None) -> Decoded:
    """Read, hash, decode and preprocess one file (see the module docstring). Never raises."""
    from desktop.core import gate
    from desktop.core.preprocess import model_input

    wants = as_wants(wants)
    try:
        data, before = read_input(path)
        sha = sha256_bytes(data)
        if expected_sha and sha == expected_sha:
            return Decoded("skip", sha)
        try:
            target = None if wants.display else scan_target(int(spec.height), int(spec.width))
            xray = load_for_model(data, path, target)
        except CXRError as exc:
            refused = gate.from_load_error(exc)  # a CT/MR refused by the loader: rejected, not failed
            if refused.code not in (None, "unreadable"):
                return Decoded("rejected", sha, error=refused.text, error_kind=refused.code)
            return Decoded("error", sha if exc.kind != "access" else "", error=str(exc), error_kind=exc.kind)
        try:
            after = os.stat(path)
        except FileNotFoundError:
            return Decoded("error", sha, error=f"{path}: file vanished while it was being read", error_kind="changed")
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            return Decoded("error", sha, error=f"{path}: file changed while it was being read; scan it again",
                           error_kind="changed")
        verdict = gate.check(xray)  # DICOM tags and pixel checks before the model (the learnt check follows)
        if verdict.rejected:
            return Decoded("rejected", sha, error=verdict.text, error_kind=verdict.code)
        inp = model_input(xray, spec)
        display = Display.from_xray(xray, wants.display_side) if wants.display else None
        return Decoded("ok", sha, input=inp, display=display)
    except FileNotFoundError:
        return Decoded("error", error=f"{path}: file vanished before it could be read", error_kind="access")
    except CXRError as exc:
        return Decoded("error", error=str(exc), error_kind=exc.kind)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return Decoded("error", error=f"{path}: file name too long to open", error_kind="access")
        return Decoded("error", error=f"{path}: cannot read the file ({exc.strerror or exc})", error_kind="access")
    except MemoryError:
        return Decoded("error", error=f"{path}: not enough memory to decode this image", error_kind="too_large")
    except Exception as exc:  # a bug: keep the scan alive, say what happened
        log.exception("unexpected error decoding %s", path)
        return Decoded("error", error=f"{path}: unexpected error ({type(exc).__name__})", error_kind="internal")


__all__ = ["NO_DISPLAY", "WITH_DISPLAY", "Decoded", "Wants", "as_wants", "decode_one", "load_for_model", "read_input"]

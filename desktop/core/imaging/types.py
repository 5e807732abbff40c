"""The values the imaging package hands out: :class:`Window`, :class:`StudyMetadata`, :class:`XRay`.

Plain frozen dataclasses, no I/O: every other module of the application (preprocessing,
inference, reports, the GUI) depends on these and on nothing else of the loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Window:
    """A display window in the image's own units (DICOM centre/width semantics).

    Values at or below ``low`` show black, at or above ``high`` white (before
    MONOCHROME1 inversion, which :class:`XRay` applies). ``function`` is the DICOM
    VOI LUT Function: ``LINEAR`` (the default), ``LINEAR_EXACT`` or ``SIGMOID``
    (PS3.3 C.11.2.1.2-3).
    """

    center: float
    width: float
    name: str = ""
    function: str = "LINEAR"

    @property
    def low(self) -> float:
        if self.function == "LINEAR_EXACT":
            return self.center - max(self.width, 1e-6) / 2.0
        return self.center - 0.5 - (max(self.width, 1.0) - 1.0) / 2.0

    @property
    def high(self) -> float:
        if self.function == "LINEAR_EXACT":
            return self.center + max(self.width, 1e-6) / 2.0
        return self.center - 0.5 + (max(self.width, 1.0) - 1.0) / 2.0

    @classmethod
    def from_range(cls, low: float, high: float, name: str = "") -> Window:
        """The window that maps ``low`` to black and ``high`` to white."""
        width = max(float(high) - float(low), 1e-6) + 1.0
        return cls(center=float(low) + 0.5 + (width - 1.0) / 2.0, width=width, name=name)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Map ``values`` to a new float32 array in [0, 1] (one allocation).

        Kept beside ``pydicom.pixels.apply_windowing``, which computes in float64 (twice the
        memory, and a second pass to scale to [0, 1]) and refuses the widths a user drags to;
        ``tests/test_imaging_luts.py`` holds the two equal (2e-6) for the three functions on the
        real and synthetic DICOMs.
        """
        if self.function == "SIGMOID":
            out = np.subtract(values, np.float32(self.center), dtype=np.float32)
            out *= np.float32(-4.0 / max(self.width, 1e-6))
            np.clip(out, -80.0, 80.0, out=out)  # exp stays finite
            np.exp(out, out=out)
            out += np.float32(1.0)
            return np.reciprocal(out, out=out)
        low, high = self.low, self.high
        span = max(high - low, 1e-12)
        out = np.subtract(values, np.float32(low), dtype=np.float32)
        out /= np.float32(span)
        return np.clip(out, 0.0, 1.0, out=out)


@dataclass(frozen=True)
class StudyMetadata:
    """What the file says about the patient and the study.

    Identifying fields are kept out of ``repr`` so that an accidental log
    line or traceback cannot leak them.
    """

    patient_name: str = field(default="", repr=False)
    patient_id: str = field(default="", repr=False)
    patient_sex: str = field(default="", repr=False)
    patient_birth_date: str = field(default="", repr=False)
    patient_age: str = field(default="", repr=False)
    study_date: str = field(default="", repr=False)
    study_time: str = field(default="", repr=False)
    accession_number: str = field(default="", repr=False)
    institution: str = field(default="", repr=False)
    modality: str = ""
    view_position: str = ""
    body_part: str = ""
    manufacturer: str = ""
    study_description: str = field(default="", repr=False)
    photometric: str = ""
    transfer_syntax: str = ""
    number_of_frames: int = 1

    #: Fields that identify a patient (used by anonymisation and log scrubbing).
    IDENTIFYING = (
        "patient_name",
        "patient_id",
        "patient_birth_date",
        "accession_number",
        "institution",
        "study_description",
    )

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def identifying_values(self) -> list[str]:
        """Non-empty identifying strings (for tests and scrubbing)."""
        return [v for k in self.IDENTIFYING if (v := str(getattr(self, k)).strip())]


@dataclass(frozen=True, eq=False)
class XRay:
    """A loaded radiograph.

    ``pixels`` is what a viewer shows by default: float32 in [0, 1], bones
    white. ``values`` holds the image in its own units (after the DICOM
    modality LUT, or the PNG/JPEG intensities) for window/level; ``render``
    applies another window to it.

    ``decode_scale`` is 1 for a full-resolution load. A load with a ``target``
    (see :func:`~desktop.core.imaging.load_xray`) may decode at a reduced
    resolution: then each side is ``full_shape`` divided by ``decode_scale``
    (rounded up), while ``metadata`` and ``sha256`` stay those of the file.
    """

    pixels: np.ndarray
    values: np.ndarray
    bit_depth: int
    window: Window
    presets: tuple[Window, ...]
    invert: bool
    format: str
    metadata: StudyMetadata
    source: str | None = None
    sha256: str = ""
    warnings: tuple[str, ...] = ()
    #: Power-of-two reduction of the decode (1: full resolution).
    decode_scale: int = 1
    #: (rows, columns) of the image in the file; None when it is ``shape`` (full decode).
    stored_shape: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    @property
    def full_shape(self) -> tuple[int, int]:
        """(rows, columns) of the image as stored in the file, whatever the decode scale."""
        return self.stored_shape or self.shape

    @property
    def reduced(self) -> bool:
        """True when the pixels were decoded at a reduced resolution (a ``target`` load)."""
        return self.decode_scale > 1

    @property
    def name(self) -> str:
        return Path(self.source).name if self.source else "<bytes>"

    def render(self, window: Window | None = None) -> np.ndarray:
        """Display pixels for ``window`` (the default view when None)."""
        if window is None:
            return self.pixels
        out = window.apply(self.values)
        if self.invert:
            np.subtract(np.float32(1.0), out, out=out)
        return out

    def to_uint8(self, window: Window | None = None) -> np.ndarray:
        """8-bit display image (rounded to nearest) for ``window`` (the default view when None)."""
        shown = self.render(window)
        scaled = np.multiply(shown, np.float32(255.0), dtype=np.float32)
        np.rint(scaled, out=scaled)
        return scaled.astype(np.uint8)


__all__ = ["StudyMetadata", "Window", "XRay"]

"""What the report tests share: a DICOM with patient data, a model card, PDF readers."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.dicom_factory import write_chest_dicom

PATIENT = {
    "name": "Doe^John",
    "id": "PID-998877",
    "birth": "19610415",
    "accession": "ACC-4242",
    "institution": "St Elsewhere Hospital",
}

CARD: dict[str, Any] = {
    "format_version": 1,
    "name": "test-mobilenet",
    "version": "9.8.7",
    "architecture": "mobilenet",
    "backbone_init": "ImageNet (Keras applications MobileNet, alpha 1.0)",
    "positive_class": "covid",
    "class_names": ["covid", "normal"],
    "sha256": "0123456789abcdef" * 4,
    "created": "2026-11-26",
    "operating_points": [
        {"name": "screening", "threshold": 0.3, "sensitivity": 0.95, "sensitivity_ci": [0.91, 0.97],
         "specificity": 0.78, "specificity_ci": [0.72, 0.83], "description": "few missed cases"},
        {"name": "balanced", "threshold": 0.5, "sensitivity": 0.88, "sensitivity_ci": [0.83, 0.92],
         "specificity": 0.9, "specificity_ci": [0.86, 0.93], "description": "equal errors"},
    ],
    "default_operating_point": "balanced",
    "metrics": {
        "validation": {"auc": 0.954, "auc_ci": [0.931, 0.972], "n_covid": 300, "n_normal": 400},
        "external": [
            {"held_out": "heldout-source-a", "auc": 0.812, "auc_ci": [0.751, 0.861]},
        ],
    },
    "training_data": {"sources": ["source-a", "source-b"], "n_covid": 1200, "n_normal": 1500},
    "limitations": ["Not validated on portable AP images of ventilated patients."],
}


@dataclass(frozen=True)
class FakeBundle:
    card: dict[str, Any] = field(default_factory=lambda: dict(CARD))
    name: str = "test-mobilenet"
    version: str = "9.8.7"


@dataclass(frozen=True)
class FakePrediction:
    p_covid: float = 0.873
    label: str = "covid"
    operating_point: str = "balanced"
    threshold: float = 0.5
    model: str = "test-mobilenet"
    model_version: str = "9.8.7"
    probabilities: dict[str, float] = field(default_factory=lambda: {"covid": 0.873, "normal": 0.127})


class FakeHeatmap:
    empty = False

    def __init__(self, n: int = 7) -> None:
        yy, xx = np.mgrid[0:n, 0:n]
        self.cam = np.exp(-((yy - n / 3) ** 2 + (xx - n / 3) ** 2) / n).astype(np.float32)

    def upsample(self, shape: tuple[int, int]) -> np.ndarray:
        from PIL import Image

        im = Image.fromarray(self.cam, mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.float32)


def chest_like(h: int = 640, w: int = 560, bits: int = 12) -> np.ndarray:
    """A smooth 'chest-like' 16-bit image: two dark lungs in a bright body."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    body = np.exp(-(((xx - w / 2) / (0.45 * w)) ** 4 + ((yy - h / 2) / (0.5 * h)) ** 4))
    lungs = sum(
        np.exp(-(((xx - cx) / (0.14 * w)) ** 2 + ((yy - 0.45 * h) / (0.25 * h)) ** 2))
        for cx in (0.32 * w, 0.68 * w)
    )
    img = np.clip(0.15 + 0.75 * body - 0.45 * lungs, 0, 1)
    return (img * (2**bits - 1)).astype(np.uint16)


def write_dicom(path: Path, *, name: str = PATIENT["name"], pid: str = PATIENT["id"], shape=(640, 560)) -> Path:
    """A chest CR DICOM carrying a patient name, ID, birth date, accession and institution."""
    return write_chest_dicom(
        path, chest_like(*shape),
        SpecificCharacterSet="ISO_IR 192", PatientName=name, PatientID=pid,
        PatientBirthDate=PATIENT["birth"], PatientSex="M", StudyDate="20260312", StudyTime="101500",
        AccessionNumber=PATIENT["accession"], InstitutionName=PATIENT["institution"],
        StudyDescription="Chest PA John Doe", ViewPosition="PA", WindowCenter=2048, WindowWidth=4096,
    )


def write_png(path: Path, shape=(520, 480)) -> Path:
    from PIL import Image

    arr = (chest_like(*shape, bits=8)).astype(np.uint8)
    Image.fromarray(arr, mode="L").save(path)
    return path


# --------------------------------------------------------------------------
# Reading PDFs back
# --------------------------------------------------------------------------


def pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def pdftotext(path: Path) -> str | None:
    exe = shutil.which("pdftotext")
    if exe is None:
        return None
    return subprocess.run([exe, "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True).stdout.decode()


def flat(text: str) -> str:
    """Whitespace collapsed (text extraction breaks lines where the layout does)."""
    return " ".join(text.split())


def pdf_metadata_text(path: Path) -> str:
    """Everything in /Info and the XMP stream (if any), as one string."""
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    parts = [f"{k}={v}" for k, v in (reader.metadata or {}).items()]
    root = reader.trailer["/Root"]
    if "/Metadata" in root:
        parts.append(root["/Metadata"].get_object().get_data().decode("utf-8", "replace"))
    return "\n".join(parts)


def raw_streams(path: Path) -> bytes:
    """Every object of the file, with non-binary streams decoded (page content, XMP, CMaps...).

    Image and font-program streams are left out: they are binary, where any
    three letters turn up by chance, and carry no text.
    """
    from pypdf import PdfReader
    from pypdf.generic import StreamObject

    reader = PdfReader(str(path))
    font_files: set[int] = set()
    objs = []
    for _gen, table in reader.xref.items():
        for num in table:
            try:
                obj = reader.get_object(num)
            except Exception:
                continue
            objs.append((num, obj))
            if isinstance(obj, dict):
                for key in ("/FontFile", "/FontFile2", "/FontFile3"):
                    if key in obj:
                        font_files.add(obj.raw_get(key).idnum)
    out = [repr(reader.trailer).encode("utf-8", "replace")]
    for num, obj in objs:
        if isinstance(obj, StreamObject) and num not in font_files and obj.get("/Subtype") != "/Image":
            out.append(obj.get_data())
        elif not isinstance(obj, StreamObject):
            out.append(repr(obj).encode("utf-8", "replace"))
    return b"\n".join(out)


@dataclass(frozen=True)
class PlacedImage:
    page: int
    name: str
    pixels: tuple[int, int]
    printed_pt: tuple[float, float]
    filter: str

    @property
    def dpi(self) -> float:
        return min(self.pixels[0] / (self.printed_pt[0] / 72.0), self.pixels[1] / (self.printed_pt[1] / 72.0))


def placed_images(path: Path) -> list[PlacedImage]:
    """Every image drawn on every page with its pixel size and printed size (from the CTM at ``Do``)."""
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    found: list[PlacedImage] = []
    for number, page in enumerate(reader.pages, start=1):
        xobjects = page["/Resources"].get("/XObject", {})
        xobjects = xobjects.get_object() if hasattr(xobjects, "get_object") else xobjects

        def visit(op: bytes, args: list[Any], cm: list[float], tm: list[float], *, _n=number, _x=xobjects) -> None:
            if op != b"Do":
                return
            name = str(args[0])
            obj = _x[name].get_object()
            if obj.get("/Subtype") != "/Image":
                return
            width = abs(cm[0]) + abs(cm[2])
            height = abs(cm[1]) + abs(cm[3])
            filt = obj.get("/Filter")
            found.append(
                PlacedImage(_n, name, (int(obj["/Width"]), int(obj["/Height"])), (width, height), str(filt))
            )

        page.extract_text(visitor_operand_before=visit)
    return found


def embedded_fonts(path: Path) -> dict[str, bool]:
    """Font base names used on any page -> whether the font program is embedded."""
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    out: dict[str, bool] = {}
    for page in reader.pages:
        fonts = page["/Resources"].get("/Font", {})
        for ref in fonts.values():
            font = ref.get_object()
            desc = font.get("/FontDescriptor")
            if desc is None and "/DescendantFonts" in font:
                desc = font["/DescendantFonts"][0].get_object().get("/FontDescriptor")
            desc = desc.get_object() if desc is not None else {}
            embedded = any(k in desc for k in ("/FontFile", "/FontFile2", "/FontFile3"))
            out[str(font.get("/BaseFont"))] = embedded
    return out

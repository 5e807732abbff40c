"""DICOM result objects for one screened film: a Secondary Capture and a Structured Report.

Both are built with highdicom from the source film, as new series of the
film's own study (patient and study modules copied, new series and instance
UIDs), so a PACS or a viewer files them beside the X-ray:

- **Secondary Capture** (``*_SC.dcm``): the film with the Grad-CAM heatmap,
  its colour bar and the result burned in, under a banner that says
  "decision support, not a diagnosis". RGB, 8 bits, uncompressed.
- **Comprehensive SR** (``*_SR.dcm``, TID 1500 measurement report): p(covid)
  as a measurement, the label as a qualitative evaluation, the algorithm
  (model name and version, with the operating point, threshold, model sha256
  and site as its parameters), the device observer (the model), and a
  reference to the source image.

The new UIDs are derived from the source's SOP Instance UID and the model's
sha256, so building the results for the same film again (a restart) gives the
same objects, never a second copy in the PACS.

Codes: where no standard code says exactly what the model outputs (a
*COVID-19-like appearance*, not the disease), a local coding scheme
``99CXRS`` is used, as DICOM PS3.16 allows ("99" private designators).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)

MANUFACTURER = "CXR Screener"
DISCLAIMER = "DECISION SUPPORT, NOT A DIAGNOSIS: to be read by a clinician"
SC_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902
#: Longest side of the Secondary Capture image (larger films are scaled down).
SC_MAX_SIDE = 2048
_SCHEME = "99CXRS"
_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root, as generate_uid uses

#: Storage SOP classes whose films get DICOM results (CR, DX for presentation/processing, SC).
IMAGE_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.1",  # CR Image Storage
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
)


@dataclass(frozen=True)
class ResultInfo:
    """What the results say about one film (from a prediction or a results.csv row)."""

    p_covid: float
    label: str
    model: str
    model_version: str
    operating_point: str | None = None
    threshold: float | None = None
    model_sha256: str | None = None
    site: str | None = None

    @classmethod
    def from_result(cls, result: Any, *, model_sha256: str | None = None, site: str | None = None) -> ResultInfo:
        """From a :class:`~desktop.core.batch.ScanResult` or a :class:`~desktop.core.inference.Prediction`."""
        return cls(
            p_covid=float(result.p_covid),
            label=str(result.label),
            model=str(result.model),
            model_version=str(result.model_version),
            operating_point=None if result.operating_point is None else str(result.operating_point),
            threshold=None if result.threshold is None else float(result.threshold),
            model_sha256=model_sha256,
            site=getattr(result, "site", None) or site or None,  # the site profile used, else --site
        )

    def label_text(self) -> str:
        return "COVID-19-like" if self.label == "covid" else "normal" if self.label == "normal" else self.label

    def summary(self) -> str:
        op = ""
        if self.operating_point:
            op = f" at operating point {self.operating_point}"
            if self.threshold is not None:
                op += f" (p >= {self.threshold:.3g})"
        return f"p(COVID-19) = {self.p_covid:.3f}: {self.label_text()}{op}"


@dataclass(frozen=True)
class WrittenResults:
    """The two files written for one film."""

    sc: Path
    sr: Path

    @property
    def paths(self) -> tuple[Path, Path]:
        return (self.sc, self.sr)


def results_names(sop_instance_uid: str) -> tuple[str, str]:
    """File names of the SC and SR of the film ``sop_instance_uid``."""
    return f"{sop_instance_uid}_SC.dcm", f"{sop_instance_uid}_SR.dcm"


def is_dicom_film(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a DICOM file (the ``DICM`` magic) that results can be made for."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def derived_uid(*parts: str) -> str:
    """A UID that is the same for the same parts (restart-safe, no duplicate objects)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=_UID_ROOT, entropy_srcs=[str(p) for p in parts]))


# --------------------------------------------------------------------------
# Patient data
# --------------------------------------------------------------------------


def anonymized_copy(ds: Any) -> Any:
    """A copy of ``ds`` with the patient and study identifiers pseudonymised or removed.

    Same rules as :func:`desktop.core.phi.anonymize_metadata`: the patient ID
    and accession number become their pseudonyms (the name becomes the
    patient pseudonym too, so viewers list something), birth date, age,
    institution, referring physician and descriptions are removed, the study
    date keeps its year. UIDs are kept, so the results stay in the study.
    """
    from desktop.core.phi import pseudonym

    out = ds.copy()
    ident = str(ds.get("PatientID", "") or "").strip() or str(ds.get("PatientName", "") or "").strip()
    pid = pseudonym(ident) if ident else ""
    out.PatientID = pid
    out.PatientName = f"{pid}^" if pid else ""  # one-component person name
    accession = str(ds.get("AccessionNumber", "") or "").strip()
    out.AccessionNumber = pseudonym(accession) if accession else ""
    date = str(ds.get("StudyDate", "") or "")
    if "StudyDate" in ds:
        out.StudyDate = f"{date[:4]}0101" if len(date) >= 4 and date[:4].isdigit() else ""
    for keyword in ("PatientBirthDate", "ReferringPhysicianName"):
        if keyword in out:
            setattr(out, keyword, "")
    if "StudyTime" in out:
        out.StudyTime = ""
    for keyword in ("PatientAge", "InstitutionName", "InstitutionAddress", "StudyDescription",
                    "SeriesDescription", "OtherPatientIDs", "OtherPatientNames",
                    "PatientAddress", "PatientTelephoneNumbers", "PerformingPhysicianName",
                    "OperatorsName", "RequestingPhysician", "PatientComments", "ImageComments",
                    "OtherPatientIDsSequence", "RequestAttributesSequence"):
        if keyword in out:
            delattr(out, keyword)
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = "CXR Screener --anonymize: pseudonymised IDs, dates to the year"
    return out


#: Type 2 attributes of the patient and study modules (present, maybe empty, in every result).
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def source_dataset(ref: Any, *, anonymize: bool) -> Any:
    """What the results copy their patient and study modules from (anonymised if asked)."""
    out = anonymized_copy(ref) if anonymize else ref.copy()
    for keyword in _TYPE2:
        if keyword not in out or out.get(keyword) is None:
            setattr(out, keyword, "")
    age = str(out.get("PatientAge", "") or "").strip()
    if age and not re.fullmatch(r"\d{3}[DWMY]", age):  # e.g. "68" from a non-conformant modality
        if re.fullmatch(r"\d{1,3}", age):
            out.PatientAge = f"{int(age):03d}Y"
        else:
            del out.PatientAge
    return out


# --------------------------------------------------------------------------
# The Secondary Capture
# --------------------------------------------------------------------------


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def burn_in(panel: np.ndarray, info: ResultInfo, *, max_side: int = SC_MAX_SIDE) -> np.ndarray:
    """``panel`` (uint8 RGB, the heatmap overlay with its colour bar) under a result banner."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(panel, dtype=np.uint8), mode="RGB")
    scale = min(1.0, max_side / max(img.size))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    size = max(12, img.width // 48)
    font = _font(size)
    lines = [
        f"CXR Screener - {info.model} {info.model_version}" + (f" - site {info.site}" if info.site else ""),
        info.summary(),
        DISCLAIMER,
    ]
    pad = size // 2
    banner_h = pad * 2 + len(lines) * int(size * 1.3)
    out = Image.new("RGB", (img.width, img.height + banner_h), (0, 0, 0))
    out.paste(img, (0, banner_h))
    draw = ImageDraw.Draw(out)
    y = pad
    for i, line in enumerate(lines):
        colour = (255, 210, 0) if i == len(lines) - 1 else (255, 255, 255)
        draw.text((pad, y), line, fill=colour, font=font)
        y += int(size * 1.3)
    return np.asarray(out)


def _mark_anonymized(obj: Any, src: Any) -> None:
    for keyword in ("PatientIdentityRemoved", "DeidentificationMethod"):
        if keyword in src:
            setattr(obj, keyword, src.get(keyword))


def _orientation(ref: Any) -> tuple[str, str]:
    """The film's Patient Orientation, else the usual chest display (towards left, towards feet)."""
    value = ref.get("PatientOrientation")
    if value is not None and not isinstance(value, str) and len(value) == 2 and all(value):
        return (str(value[0]), str(value[1]))
    return ("L", "F")


def build_sc(ref: Any, panel: np.ndarray, info: ResultInfo, *, anonymize: bool = False) -> Any:
    """The Secondary Capture dataset (highdicom ``SCImage``) of the film ``ref``."""
    import highdicom as hd
    from pydicom.dataset import Dataset

    src = source_dataset(ref, anonymize=anonymize)
    pixels = burn_in(panel, info)
    key = info.model_sha256 or f"{info.model}/{info.model_version}"
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=src,
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        patient_orientation=_orientation(ref),
        series_instance_uid=derived_uid(str(ref.StudyInstanceUID), "sc-series", key),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=derived_uid(str(ref.SOPInstanceUID), "sc", key),
        instance_number=int(ref.get("InstanceNumber", 1) or 1),
        manufacturer=MANUFACTURER,
        transfer_syntax_uid="1.2.840.10008.1.2.1",  # explicit VR little endian: every viewer reads it
    )
    sc.SeriesDescription = "CXR Screener heatmap (decision support)"
    _mark_anonymized(sc, src)
    sc.BurnedInAnnotation = "YES"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = f"Grad-CAM overlay by {info.model} {info.model_version}; {info.summary()}"[:1024]
    sc.ImageComments = f"{info.summary()}. {DISCLAIMER}"[:10240]
    item = Dataset()
    item.ReferencedSOPClassUID = ref.SOPClassUID
    item.ReferencedSOPInstanceUID = ref.SOPInstanceUID
    sc.SourceImageSequence = [item]
    for keyword in ("BodyPartExamined", "ViewPosition", "Laterality"):
        if keyword in ref and keyword not in sc:
            setattr(sc, keyword, ref.get(keyword))
    return sc


# --------------------------------------------------------------------------
# The Structured Report
# --------------------------------------------------------------------------


def _codes() -> dict[str, Any]:
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    return {
        "procedure": CodedConcept("399208008", "SCT", "Plain X-ray of chest"),
        "finding": codes.DCM.Finding,
        "p_covid": CodedConcept("PCOVID", _SCHEME, "Probability of COVID-19-like appearance"),
        "covid": CodedConcept("COVIDLIKE", _SCHEME, "COVID-19-like appearance"),
        "normal": CodedConcept("NORMAL", _SCHEME, "Normal appearance"),
        "no_units": codes.UCUM.NoUnits,
        "site": codes.SCT.Chest,
    }


def algorithm_parameters(info: ResultInfo) -> list[str]:
    params: list[str] = []
    if info.operating_point:
        params.append(f"operating point: {info.operating_point}")
    if info.threshold is not None:
        params.append(f"threshold: {info.threshold:.6g}")
    if info.model_sha256:
        params.append(f"model sha256: {info.model_sha256}")
    if info.site:
        params.append(f"site: {info.site}")
    return params


def build_sr(ref: Any, info: ResultInfo, *, anonymize: bool = False) -> Any:
    """The Comprehensive SR (TID 1500 measurement report) of the result for the film ``ref``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    src = source_dataset(ref, anonymize=anonymize)
    c = _codes()
    key = info.model_sha256 or f"{info.model}/{info.model_version}"
    algorithm = hd.sr.AlgorithmIdentification(
        name=info.model, version=info.model_version, parameters=algorithm_parameters(info) or None,
        manufacturer=MANUFACTURER,
    )
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid("device", key), name=f"{info.model} {info.model_version}",
        manufacturer_name=MANUFACTURER, model_name=info.model,
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(observer_type=codes.DCM.Device,
                                                      observer_identifying_attributes=device),
    )
    label_code = c["covid"] if info.label == "covid" else c["normal"]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(str(ref.SOPInstanceUID), "tracking", key), identifier="CXR Screener result"),
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(anatomic_location=c["site"])],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(src)],
        measurements=[hd.sr.Measurement(name=c["p_covid"], value=round(float(info.p_covid), 6),
                                        unit=c["no_units"], algorithm_id=algorithm)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=c["finding"], value=label_code)],
    )
    report = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=c["procedure"], imaging_measurements=[group],
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=[src],
        content=report,
        series_instance_uid=derived_uid(str(ref.StudyInstanceUID), "sr-series", key),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=derived_uid(str(ref.SOPInstanceUID), "sr", key),
        instance_number=int(ref.get("InstanceNumber", 1) or 1),
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,  # a machine result, not verified by a clinician
        is_verified=False,
    )
    sr.SeriesDescription = "CXR Screener result (decision support, not a diagnosis)"
    _mark_anonymized(sr, src)
    return sr


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def read_film(path: str | os.PathLike[str]) -> Any:
    """The source film's data set without its pixels (what the results copy and reference)."""
    import pydicom

    from desktop.core.errors import NotAnImageError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many kinds
        raise NotAnImageError(Path(path), f"not a readable DICOM file ({type(exc).__name__})") from exc


def write_results(
    film: str | os.PathLike[str] | Any,
    panel: np.ndarray,
    info: ResultInfo,
    out_dir: str | os.PathLike[str],
    *,
    anonymize: bool = False,
    overwrite: bool = True,
) -> WrittenResults:
    """Build and write the SC and SR for ``film`` (a path or a data set) into ``out_dir``.

    Files are ``<source SOP Instance UID>_SC.dcm`` / ``_SR.dcm``, written
    atomically; the same film gives the same objects again (same UIDs).
    """
    from desktop.core.errors import CXRError, OutputError
    from desktop.core.fileio import atomic_write_with

    ref = read_film(film) if isinstance(film, (str, os.PathLike)) else film
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SOPClassUID"):
        if not str(ref.get(keyword, "") or ""):
            where = Path(film) if isinstance(film, (str, os.PathLike)) else None
            raise CXRError(where, f"has no {keyword}: no DICOM results can be made for it")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(out, f"cannot create the folder ({exc.strerror or exc})") from exc
    with warnings.catch_warnings():
        # the film's PatientName is copied as the modality wrote it (often one component)
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        sc = build_sc(ref, panel, info, anonymize=anonymize)
        sr = build_sr(ref, info, anonymize=anonymize)
    sc_name, sr_name = results_names(str(ref.SOPInstanceUID))
    paths = []
    for ds, file_name in ((sc, sc_name), (sr, sr_name)):
        paths.append(atomic_write_with(out / file_name, _saver(ds), overwrite=overwrite))
    log.info("DICOM results written: %s, %s", paths[0].name, paths[1].name)
    return WrittenResults(paths[0], paths[1])


def _saver(ds: Any) -> Callable[[IO[bytes]], None]:
    def save(fh: IO[bytes]) -> None:
        ds.save_as(fh, enforce_file_format=True)

    return save


def panel_from_png(path: str | os.PathLike[str]) -> np.ndarray:
    """The heatmap panel a scan wrote (``heatmaps/*.heatmap.png``) as uint8 RGB."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def read_sr_result(ds: Any) -> dict[str, Any]:
    """p(covid), label and algorithm text of an SR written here (for tests and tools)."""
    out: dict[str, Any] = {"texts": []}

    def walk(items: Sequence[Any]) -> None:
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else ""
            if item.ValueType == "NUM" and name == "PCOVID":
                out["p_covid"] = float(item.MeasuredValueSequence[0].NumericValue)
            elif item.ValueType == "CODE" and name == "121071":
                out["label_code"] = item.ConceptCodeSequence[0].CodeValue
            elif item.ValueType == "TEXT":
                out["texts"].append(str(item.TextValue))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    return out


__all__ = [
    "DISCLAIMER",
    "IMAGE_SOP_CLASSES",
    "ResultInfo",
    "WrittenResults",
    "anonymized_copy",
    "build_sc",
    "build_sr",
    "burn_in",
    "derived_uid",
    "is_dicom_film",
    "panel_from_png",
    "read_film",
    "read_sr_result",
    "results_names",
    "write_results",
]

"""Patient data helpers: pseudonyms and anonymised metadata.

Used alike by the PDF reports, the CSV export and the GUI, so that one
patient gets one pseudonym everywhere:

- :func:`pseudonym` turns an identifier into ``"ANON-xxxxxxxx"``, a keyed
  hash (HMAC-SHA256). The key is this installation's secret
  (``<user data>/phi_key``, created on first use), so only the clinic that
  made the pseudonym can link it back to a patient by recomputing it; a
  short patient ID cannot be recovered from the pseudonym by trying all IDs.
  ``CXR_SCREENER_PHI_KEY`` sets the key explicitly (several workstations of
  one clinic share pseudonyms that way).
- :func:`anonymize_metadata` replaces identifying fields of a
  :class:`~desktop.core.imaging.StudyMetadata` and keeps what a reader needs
  clinically: sex, an age band, modality and view, the year of the study.
- :func:`scrub` removes identifying values from free text.

Nothing here logs a patient value.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from dataclasses import replace
from pathlib import Path

from .filenames import utf8_safe
from .imaging import StudyMetadata

log = logging.getLogger(__name__)

PREFIX = "ANON-"
#: Used only when no per-installation key can be created or read.
_APP_SALT = b"cxr-screener/phi/v1/3f0c9a6e"
_KEY_ENV = "CXR_SCREENER_PHI_KEY"
_KEY_FILE = "phi_key"
_key_lock = threading.Lock()
_key_cache: dict[str, bytes] = {}

#: Shown in place of a withheld value.
WITHHELD = "withheld (anonymised)"

_PSEUDONYM_RE = re.compile(r"^ANON-[0-9a-f]{8}$")
_BAND_RE = re.compile(r"^(under 1|\d{1,2}-\d{1,2}|90\+) y$")


# --------------------------------------------------------------------------
# Pseudonyms
# --------------------------------------------------------------------------


def _normalise(value: str) -> str:
    # DICOM pads with spaces and people type extra ones: "Doe^John " == "Doe^John"; a form
    # shows the DICOM name "Doe^John" as "Doe John": both give the same pseudonym.
    return " ".join(str(value).replace("^", " ").split())


def _ws(value: str) -> str:
    return " ".join(str(value).split())


def _key_path() -> Path:
    from .paths import user_data_dir

    return user_data_dir() / _KEY_FILE


def installation_key() -> bytes:
    """The key of this installation (created on first use, readable by the user only)."""
    env = os.environ.get(_KEY_ENV)
    if env:
        return env.encode("utf-8")
    path = _key_path()
    cache_id = str(path)
    with _key_lock:
        if cache_id in _key_cache:
            return _key_cache[cache_id]
        key = _read_or_create_key(path)
        _key_cache[cache_id] = key
        return key


def _read_or_create_key(path: Path) -> bytes:
    try:
        data = path.read_bytes().strip()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot read the pseudonym key %s (%s): using the built-in salt", path, exc.strerror)
        return _APP_SALT
    key = secrets.token_hex(32).encode("ascii")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_bytes().strip()
    except OSError as exc:
        log.warning("cannot create the pseudonym key %s (%s): using the built-in salt", path, exc.strerror)
        return _APP_SALT
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    log.info("created the pseudonym key %s", path)
    return key


def pseudonym(value: str, *, key: bytes | None = None) -> str:
    """A stable pseudonym ``"ANON-xxxxxxxx"`` for an identifier (same value, same pseudonym).

    Empty values give ``""``; a value that already is a pseudonym is returned
    unchanged (so anonymising twice is harmless).
    """
    text = _normalise(value)
    if not text:
        return ""
    if _PSEUDONYM_RE.match(text):
        return text
    digest = hmac.new(key if key is not None else installation_key(), utf8_safe(text).encode("utf-8"), hashlib.sha256)
    return PREFIX + digest.hexdigest()[:8]


def is_pseudonym(value: str) -> bool:
    return bool(_PSEUDONYM_RE.match(_normalise(value)))


def file_label(path: str | os.PathLike[str] | None, *, anonymize: bool, key: bytes | None = None) -> str:
    """How a file is named in a report or an export: its name, or a pseudonym of it.

    File names often carry patient names ("Doe_John_chest.dcm"), so anonymised
    output names a file by the pseudonym of its name (the clinic can recompute
    it), keeping the extension.
    """
    if path is None:
        return ""
    name = Path(os.fspath(path)).name
    if not anonymize:
        return name
    suffix = Path(name).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        suffix = ""
    return pseudonym(name, key=key) + suffix


# --------------------------------------------------------------------------
# Ages and dates
# --------------------------------------------------------------------------


def parse_dicom_date(text: str) -> _dt.date | None:
    """``YYYYMMDD`` (DICOM DA), ``YYYY-MM-DD`` or ``YYYY.MM.DD``; None if not a date."""
    digits = re.sub(r"[-./ ]", "", str(text).strip())
    if not re.fullmatch(r"\d{8}", digits):
        return None
    try:
        return _dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def format_date(text: str) -> str:
    """A DICOM date as ``YYYY-MM-DD``; anything else unchanged."""
    date = parse_dicom_date(text)
    return date.isoformat() if date else str(text).strip()


def age_years(age: str = "", birth_date: str = "", on: str = "") -> float | None:
    """Age in years from a DICOM age string (``045Y``, ``006M``, ``3W``, ``10D``, ``45``),
    else from the birth date and the study date ``on`` (today when empty)."""
    m = re.fullmatch(r"\s*0*(\d{1,3})\s*([YMWD]?)\s*", str(age).upper())
    if m:
        n = int(m.group(1))
        unit = m.group(2) or "Y"
        return {"Y": float(n), "M": n / 12.0, "W": n / 52.18, "D": n / 365.25}[unit]
    born = parse_dicom_date(birth_date)
    if born is None:
        return None
    ref = parse_dicom_date(on) or _dt.date.today()
    years = ref.year - born.year - ((ref.month, ref.day) < (born.month, born.day))
    return float(years) if years >= 0 else None


def age_band(age: str = "", birth_date: str = "", on: str = "") -> str:
    """A ten-year band (``"40-49 y"``, ``"under 1 y"``, ``"90+ y"``), or ``""`` if unknown.

    Ages of 90 and over are pooled, as in HIPAA's safe-harbour rule.
    """
    if _BAND_RE.match(str(age).strip()):
        return str(age).strip()  # already a band
    years = age_years(age, birth_date, on)
    if years is None:
        return ""
    if years < 1:
        return "under 1 y"
    if years >= 90:
        return "90+ y"
    low = int(years) // 10 * 10
    return f"{1 if low == 0 else low}-{low + 9} y"


def sex_label(sex: str) -> str:
    return {"M": "Male", "F": "Female", "O": "Other"}.get(str(sex).strip().upper(), str(sex).strip())


# --------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------


def anonymize_metadata(
    meta: StudyMetadata, *, fallback: str = "", key: bytes | None = None
) -> StudyMetadata:
    """A copy of ``meta`` with no identifying value left.

    - ``patient_id``: pseudonym of the patient ID (else of the name, else of
      ``fallback``, e.g. the image's sha256), so that the remote doctor and
      the clinic can refer to the patient;
    - ``patient_name``, ``patient_birth_date``, ``institution``,
      ``study_description``, ``study_time``: removed;
    - ``patient_age``: a ten-year band;
    - ``study_date``: the year only;
    - ``accession_number``: its pseudonym.

    Sex, modality, view, body part, manufacturer and the technical fields are kept.
    """
    ident = meta.patient_id or meta.patient_name or fallback
    year = ""
    study = parse_dicom_date(meta.study_date)
    if study is not None:
        year = f"{study.year:04d}"
    elif re.fullmatch(r"\d{4}", meta.study_date.strip()):
        year = meta.study_date.strip()
    return replace(
        meta,
        patient_name="",
        patient_id=pseudonym(ident, key=key) if ident else "",
        patient_birth_date="",
        patient_age=age_band(meta.patient_age, meta.patient_birth_date, meta.study_date),
        study_date=year,
        study_time="",
        accession_number=pseudonym(meta.accession_number, key=key) if meta.accession_number else "",
        institution="",
        study_description="",
    )


def identifying_values(meta: StudyMetadata, *extra: str) -> list[str]:
    """Every identifying string of ``meta`` plus ``extra`` ones (for scrubbing and tests)."""
    values = list(meta.identifying_values())
    values.extend(e for e in extra if e and e.strip())
    # A DICOM person name "Doe^John" also appears as "Doe", "John", "Doe John".
    for v in list(values):
        if "^" in v:
            parts = [p.strip() for p in v.split("^") if len(p.strip()) >= 2]
            values.extend(parts)
            values.append(" ".join(parts))
    seen: dict[str, None] = {}
    for v in values:
        v = _ws(v)
        if v and v not in seen:
            seen[v] = None
    return list(seen)


def scrub(text: str, values: list[str] | tuple[str, ...]) -> str:
    """``text`` with every occurrence of ``values`` (case-insensitive) replaced by ``[removed]``."""
    out = text
    for v in sorted({_ws(v) for v in values if v and _ws(v)}, key=len, reverse=True):
        if len(v) < 2:
            continue
        out = re.sub(re.escape(v), "[removed]", out, flags=re.IGNORECASE)
    return out


__all__ = [
    "PREFIX",
    "WITHHELD",
    "age_band",
    "age_years",
    "anonymize_metadata",
    "file_label",
    "format_date",
    "identifying_values",
    "installation_key",
    "is_pseudonym",
    "parse_dicom_date",
    "pseudonym",
    "scrub",
    "sex_label",
]

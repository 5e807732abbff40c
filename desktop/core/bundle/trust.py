"""Whether a bundle can be trusted: pinned in the application, or signed with a trusted key.

The card (``model_card.json``) holds the thresholds, the class order, the
preprocessing and the sha256 of every other file, so it cannot vouch for
itself. The integrity root lies outside the bundle:

- **Bundled models** (``assets/models``): the sha256 of the card and of every
  file are pinned in the application package (:mod:`desktop.core.bundle._pinned`,
  a generated Python module, so it is compiled into the wheel and the frozen
  app's archive). A bundled model whose name is pinned but whose card or file
  list differs is refused (:class:`BundleIntegrityError`); the files' bytes are
  then checked against the (pinned) card as before. Regenerate the pin after
  every export: ``python scripts/pin_bundles.py`` (``--check`` to verify).
- **Any other bundle** (the per-user models folder, a bundled folder the pin
  does not know): ``signature.json`` in the bundle holds an Ed25519 signature
  over the manifest {card sha256, every file's sha256}. It is *signed* when the
  signature verifies with a public key the application trusts (``*.pub`` /
  ``*.pem`` files in ``<user data>/trusted_keys/``, or ``trusted_public_keys`` in
  ``<user data>/settings.json``) and the manifest matches the card on disk;
  otherwise it is an **unverified bundle**: shown as such everywhere (models
  listing, GUI model card, PDF) and refused unless the user allows unverified
  models (``--allow-unverified``, ``CXR_SCREENER_ALLOW_UNVERIFIED=1``, or
  ``"allow_unverified_models": true`` in ``settings.json``).

Sign with ``python -m model_training sign --bundle DIR --key KEY.pem`` (key
pair: ``python -m model_training keygen --out DIR``); :func:`~desktop.core.bundle.signing.sign_bundle`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop.core.errors import BundleIntegrityError, CXRError
from desktop.core.jsonio import read_json
from desktop.core.paths import user_data_dir

from .card import ModelCard
from .schema import CARD_FILE, SIGNATURE_FILE

log = logging.getLogger(__name__)

PINNED_STATUS = "pinned"
SIGNED_STATUS = "signed"
UNVERIFIED_STATUS = "unverified"
SIGNATURE_FORMAT = 1
ALLOW_ENV = "CXR_SCREENER_ALLOW_UNVERIFIED"
#: Set by ``--allow-unverified`` for this process (None: the environment and settings decide).
_ALLOW_OVERRIDE: bool | None = None


@dataclass(frozen=True)
class Trust:
    """How a bundle was authenticated: ``status`` pinned | signed | unverified, and why."""

    status: str
    detail: str
    signer: str | None = None  # key id of a signed bundle

    @property
    def verified(self) -> bool:
        return self.status != UNVERIFIED_STATUS

    @property
    def label(self) -> str:
        """What the user is shown: "verified (pinned in the application)", "signed (key ...)", "unverified bundle"."""
        if self.status == PINNED_STATUS:
            return "verified (pinned in the application)"
        if self.status == SIGNED_STATUS:
            return f"signed (trusted key {self.signer})"
        return "unverified bundle"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "label": self.label, "detail": self.detail, "signer": self.signer}


# --------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------


def set_allow_unverified(value: bool | None) -> None:
    """``--allow-unverified`` for this process (None: back to the environment and settings)."""
    global _ALLOW_OVERRIDE
    _ALLOW_OVERRIDE = value


def user_settings() -> Mapping[str, Any]:
    """``<user data>/settings.json`` (bounded read); {} when absent or unreadable (logged)."""
    path = user_data_dir() / "settings.json"
    if not path.is_file():
        return {}
    try:
        data = read_json(path, max_bytes=1 << 20, max_depth=16)
    except (CXRError, OSError) as exc:
        log.warning("settings ignored: %s", exc)
        return {}
    return data if isinstance(data, dict) else {}


def allow_unverified() -> bool:
    """Whether unverified (unsigned or untrusted) bundles may be used."""
    if _ALLOW_OVERRIDE is not None:
        return _ALLOW_OVERRIDE
    env = os.environ.get(ALLOW_ENV, "").strip().lower()
    if env:
        return env in ("1", "true", "yes", "on")
    return user_settings().get("allow_unverified_models") is True


def trusted_keys_dir() -> Path:
    return user_data_dir() / "trusted_keys"


def key_id(raw_public_key: bytes) -> str:
    """A short, stable name of an Ed25519 public key: the first 16 hex digits of its sha256."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def public_key_bytes(text: str) -> bytes:
    """Raw 32 bytes of an Ed25519 public key given as PEM or base64 of the raw key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return raw


def trusted_keys() -> dict[str, bytes]:
    """{key id: raw public key} of every key the application trusts (bad files logged and skipped)."""
    found: dict[str, bytes] = {}
    folder = trusted_keys_dir()
    entries = sorted(folder.glob("*")) if folder.is_dir() else []
    texts: list[tuple[str, str]] = []
    for path in entries:
        if path.suffix.lower() in (".pub", ".pem") and path.is_file() and path.stat().st_size < 16384:
            try:
                texts.append((str(path), path.read_text(encoding="ascii")))
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("trusted key %s ignored: %s", path, exc)
    listed = user_settings().get("trusted_public_keys") or []
    if isinstance(listed, list):
        texts += [("settings.json", str(k)) for k in listed if isinstance(k, str)]
    for where, text in texts:
        try:
            raw = public_key_bytes(text)
        except (ValueError, TypeError, binascii.Error) as exc:
            log.warning("trusted key in %s ignored: %s", where, exc)
            continue
        found[key_id(raw)] = raw
    return found


# --------------------------------------------------------------------------
# Manifest, pin and signature
# --------------------------------------------------------------------------


def bundle_manifest(card: ModelCard, card_sha256: str) -> dict[str, str]:
    """{file name: sha256}: the card itself and every file it lists (what the pin and the signature cover)."""
    return {CARD_FILE: card_sha256, **{k: str(v) for k, v in card.files.items()}}


def signed_message(name: str, files: Mapping[str, str], kid: str) -> bytes:
    doc = {"algorithm": "ed25519", "bundle": name, "files": dict(sorted(files.items())),
           "format": SIGNATURE_FORMAT, "key_id": kid}  # fmt: skip
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def pinned_entries() -> Mapping[str, Mapping[str, Any]]:
    """The pin compiled into the application: {bundle name: {"files": {...}, "selftest": {...}, ...}}."""
    from . import _pinned

    return _pinned.PINNED


def check_pinned(folder: Path, card: ModelCard, card_sha256: str, *, bundled: bool) -> Trust | None:
    """``Trust("pinned")`` when the card and file list equal the pin; None when the pin does not apply.

    For a bundled model whose name is pinned, any difference is a
    :class:`BundleIntegrityError` naming what differs (the card edited, a
    file swapped and rehashed in the card...).
    """
    entry = pinned_entries().get(card.name)
    if entry is None:
        return None
    pinned = dict(entry.get("files") or {})
    actual = bundle_manifest(card, card_sha256)
    if actual == pinned:
        return Trust(PINNED_STATUS, f"card and {len(pinned) - 1} file hashes match the application's pin")
    if not bundled:
        return None  # a user copy that differs: it needs a signature like any user bundle
    if actual.get(CARD_FILE) != pinned.get(CARD_FILE):
        what = [k for k in sorted(set(actual) | set(pinned)) if k != CARD_FILE and actual.get(k) != pinned.get(k)]
        detail = "; files listed differently: " + ", ".join(what) if what else ""
        raise BundleIntegrityError(
            folder / CARD_FILE,
            f"the model card differs from the one pinned in the application (sha256 {card_sha256}, "
            f"pinned {pinned.get(CARD_FILE)}){detail}",
            "the bundled model was modified; reinstall the application",
        )
    raise BundleIntegrityError(folder, "the bundle's file list differs from the application's pin", "reinstall the application")


def check_signature(folder: Path, card: ModelCard, card_sha256: str) -> Trust:
    """``signed`` when ``signature.json`` verifies with a trusted key over this card, else ``unverified``."""
    sig_path = folder / SIGNATURE_FILE
    if not sig_path.is_file():
        return Trust(UNVERIFIED_STATUS, "not signed (no signature.json)")
    try:
        doc = read_json(sig_path, max_bytes=1 << 20, max_depth=8)
    except (CXRError, OSError) as exc:
        return Trust(UNVERIFIED_STATUS, f"unreadable signature ({getattr(exc, 'reason', exc)})")
    if not isinstance(doc, dict) or doc.get("format") != SIGNATURE_FORMAT or doc.get("algorithm") != "ed25519":
        return Trust(UNVERIFIED_STATUS, "signature.json is not an Ed25519 bundle signature of format 1")
    kid, files, sig = doc.get("key_id"), doc.get("files"), doc.get("signature")
    if not (isinstance(kid, str) and isinstance(files, dict) and isinstance(sig, str)):
        return Trust(UNVERIFIED_STATUS, "signature.json lacks key_id, files or signature")
    keys = trusted_keys()
    if kid not in keys:
        return Trust(UNVERIFIED_STATUS, f"signed by key {kid}, which this application does not trust")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(keys[kid]).verify(base64.b64decode(sig, validate=True),
                                                             signed_message(card.name, files, kid))  # fmt: skip
    except (InvalidSignature, ValueError, binascii.Error):
        return Trust(UNVERIFIED_STATUS, f"the signature does not verify with trusted key {kid}")
    if dict(files) != bundle_manifest(card, card_sha256):
        return Trust(UNVERIFIED_STATUS, "the card or its file list changed after signing")
    return Trust(SIGNED_STATUS, f"Ed25519 signature by trusted key {kid}", signer=kid)


def card_trust(folder: Path, card: ModelCard, card_sha256: str, *, bundled: bool) -> Trust:
    """The pin when it applies, else the signature (see the module docstring)."""
    pinned = check_pinned(folder, card, card_sha256, bundled=bundled)
    return pinned if pinned is not None else check_signature(folder, card, card_sha256)


# --------------------------------------------------------------------------
# Keys and signing (used by ``python -m model_training keygen|sign``)
# --------------------------------------------------------------------------


def generate_keypair() -> tuple[bytes, bytes]:
    """(private key PEM, public key PEM) of a new Ed25519 key pair."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


__all__ = [
    "ALLOW_ENV",
    "Trust",
    "allow_unverified",
    "bundle_manifest",
    "card_trust",
    "check_pinned",
    "check_signature",
    "generate_keypair",
    "key_id",
    "public_key_bytes",
    "signed_message",
    "pinned_entries",
    "set_allow_unverified",
    "trusted_keys",
    "trusted_keys_dir",
]

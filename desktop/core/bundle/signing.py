"""Signing a bundle (the ML engineer's side of :mod:`desktop.core.bundle.trust`).

Used by ``python -m model_training sign`` and ``export --sign-key``; lives in the
core so that signing and verification share one definition of the signed message.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from desktop.core.bundle.loading import read_card_with_hash, verify_files
from desktop.core.bundle.schema import SIGNATURE_FILE
from desktop.core.bundle.trust import SIGNATURE_FORMAT, bundle_manifest, key_id, signed_message
from desktop.core.fileio import atomic_write_bytes


def sign_bundle(folder: str | os.PathLike[str], private_key_pem: bytes, *, overwrite: bool = True) -> Path:
    """Verify the bundle's files against its card, then write ``signature.json``; returns its path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key must be an Ed25519 private key (python -m model_training keygen)")
    root = Path(folder)
    card, card_sha = read_card_with_hash(root)
    verify_files(root, card)
    raw_pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = key_id(raw_pub)
    files = bundle_manifest(card, card_sha)
    doc = {
        "format": SIGNATURE_FORMAT,
        "algorithm": "ed25519",
        "bundle": card.name,
        "key_id": kid,
        "public_key": base64.b64encode(raw_pub).decode("ascii"),
        "files": dict(sorted(files.items())),
        "signature": base64.b64encode(key.sign(signed_message(card.name, files, kid))).decode("ascii"),
    }
    return atomic_write_bytes(root / SIGNATURE_FILE, (json.dumps(doc, indent=2) + "\n").encode("utf-8"),
                              overwrite=overwrite)  # fmt: skip


__all__ = ["sign_bundle"]

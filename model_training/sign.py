"""``python -m model_training keygen`` and ``sign``: Ed25519 signatures of model bundles.

The application trusts a bundle outside ``assets/models`` only when its
``signature.json`` verifies with a public key the application trusts (see
:mod:`desktop.core.bundle.trust`)::

    python -m model_training keygen --out ~/keys/cxr          # cxr.pem (keep it secret), cxr.pub
    python -m model_training sign --bundle runs/out/my-model --key ~/keys/cxr.pem
    # on each workstation: copy cxr.pub into <user data>/trusted_keys/

``export --sign-key KEY.pem`` signs the bundle it writes. Signing checks the
files against the card first, then signs {sha256 of model_card.json, sha256
of every file}: any later edit of the card or a file makes the bundle
"unverified" again.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("keygen", help="create an Ed25519 key pair for signing model bundles")
    k.add_argument("--out", required=True, help="path prefix: writes PREFIX.pem (private) and PREFIX.pub (public)")
    k.add_argument("--overwrite", action="store_true")
    s = sub.add_parser("sign", help="sign a model bundle folder (writes signature.json into it)")
    s.add_argument("--bundle", required=True, help="the bundle folder")
    s.add_argument("--key", required=True, help="Ed25519 private key PEM (from keygen)")


def keygen(prefix: str | os.PathLike[str], *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``PREFIX.pem`` (private, mode 0600) and ``PREFIX.pub``; returns both paths."""
    from desktop.core.bundle.trust import generate_keypair
    from desktop.core.fileio import atomic_write_bytes

    private, public = generate_keypair()
    base = Path(prefix)
    priv_path, pub_path = base.with_name(base.name + ".pem"), base.with_name(base.name + ".pub")
    for p in (priv_path, pub_path):
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p}: already exists (pass --overwrite to replace it)")
    base.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(priv_path, private, overwrite=overwrite)
    os.chmod(priv_path, 0o600)
    atomic_write_bytes(pub_path, public, overwrite=overwrite)
    return priv_path, pub_path


def sign(bundle: str | os.PathLike[str], key: str | os.PathLike[str]) -> Path:
    """Sign ``bundle`` with the private key file ``key``; returns the signature file."""
    from desktop.core.bundle.signing import sign_bundle

    return sign_bundle(bundle, Path(key).read_bytes())


def run(args: argparse.Namespace) -> int:
    from desktop.core.bundle.trust import key_id

    if args.command == "keygen":
        priv, pub = keygen(args.out, overwrite=args.overwrite)
        from desktop.core.bundle.trust import public_key_bytes

        kid = key_id(public_key_bytes(pub.read_text(encoding="ascii")))
        sys.stdout.write(f"private key: {priv} (keep it secret)\npublic key:  {pub} (key id {kid}; copy it into "
                         "each workstation's trusted_keys folder)\n")  # fmt: skip
        return 0
    path = sign(args.bundle, args.key)
    sys.stdout.write(f"{path}\n")
    return 0

"""Model bundles: the folder that carries a model and everything needed to use it.

A bundle is a folder ``assets/models/<name>/`` (shipped) or
``<user data>/models/<name>/`` (dropped in later, no rebuild needed)::

    model.onnx         input "input" (N, H, W, C) float32; outputs "features", "probs"
    head.npz           weights of the layers after the Grad-CAM layer (numpy, no pickle)
    model_card.json    the card: schema-validated, lists the sha256 of every file
    MODEL_CARD.md      the same card, readable
    signature.json     (user bundles) Ed25519 signature over the card and file hashes

Loading reads the card bounded in size and depth, checks it against its
schema (:class:`ModelCardError`), decides its trust (pinned in the
application for bundled models, else a signature by a trusted key, else an
"unverified bundle", refused unless allowed), checks the sha256 of every
file the card lists (:class:`BundleIntegrityError`) and refuses executable
or pickle-like files. Nothing is ever unpickled and no Keras code is
deserialised: the application only reads JSON, ``.npz`` with
``allow_pickle=False`` and ONNX.

The package, one concern per module (this ``__init__`` re-exports the public names,
so ``from desktop.core.bundle import ...`` is the stable import path):

- :mod:`.schema`: file names, constants and :func:`validate_card`;
- :mod:`.card`: :class:`ModelCard` (frozen, typed, parsed once; unknown keys kept
  in ``card.raw`` / ``card.extra``), :class:`OperatingPoint`, the :class:`HeadLayer` types;
- :mod:`.card_md`: :func:`render_model_card_md` (``MODEL_CARD.md``);
- :mod:`.trust`: the pin of the bundled models, Ed25519 signatures, the unverified policy;
- :mod:`.loading`: :class:`Bundle`, :func:`load_bundle`, :func:`discover_bundles`, :func:`get_bundle`.
"""

from __future__ import annotations

from .card import (
    DenseLayer,
    DropoutLayer,
    FlattenLayer,
    GlobalPoolLayer,
    HeadLayer,
    MaxPool2DLayer,
    ModelCard,
    OperatingPoint,
    measured_on,
)
from .card_md import render_model_card_md
from .loading import (
    MAX_CARD_BYTES,
    MAX_CARD_DEPTH,
    Bundle,
    BundleDiscovery,
    discover_bundles,
    get_bundle,
    load_bundle,
    model_dirs,
    read_card,
    read_card_with_hash,
    sha256_bytes,
    sha256_file,
    verify_bytes,
    verify_files,
)
from .schema import (
    ALLOWED_LISTED_SUFFIXES,
    ARCHITECTURES,
    CARD_FILE,
    CARD_MD_FILE,
    DANGEROUS_SUFFIXES,
    DENSE_ACTIVATIONS,
    FORMAT_VERSION,
    HEAD_FILE,
    HEAD_TYPES,
    ONNX_FILE,
    REQUIRED_FILES,
    SIGNATURE_FILE,
    validate_card,
)
from .trust import Trust, allow_unverified, set_allow_unverified

__all__ = [
    "ALLOWED_LISTED_SUFFIXES",
    "ARCHITECTURES",
    "CARD_FILE",
    "CARD_MD_FILE",
    "DANGEROUS_SUFFIXES",
    "DENSE_ACTIVATIONS",
    "FORMAT_VERSION",
    "HEAD_FILE",
    "HEAD_TYPES",
    "MAX_CARD_BYTES",
    "MAX_CARD_DEPTH",
    "ONNX_FILE",
    "REQUIRED_FILES",
    "SIGNATURE_FILE",
    "Bundle",
    "BundleDiscovery",
    "DenseLayer",
    "DropoutLayer",
    "FlattenLayer",
    "GlobalPoolLayer",
    "HeadLayer",
    "MaxPool2DLayer",
    "ModelCard",
    "OperatingPoint",
    "measured_on",
    "Trust",
    "allow_unverified",
    "discover_bundles",
    "get_bundle",
    "load_bundle",
    "model_dirs",
    "read_card",
    "read_card_with_hash",
    "render_model_card_md",
    "set_allow_unverified",
    "sha256_bytes",
    "sha256_file",
    "validate_card",
    "verify_bytes",
    "verify_files",
]

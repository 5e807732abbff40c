"""Bundles on disk: read a card (bounded), check its trust and files, find every bundle.

:func:`load_bundle` reads ``model_card.json`` through :mod:`desktop.core.jsonio`
(size and depth bounded: a hostile card is one clear :class:`ModelCardError`),
validates it, decides its :class:`~desktop.core.bundle.trust.Trust` (pinned
in the application, signed by a trusted key, or unverified), refuses
executable or pickle-like files and (``verify``) checks every file's sha256.
:func:`discover_bundles` does it for the bundled and per-user folders, a
broken bundle being reported in ``problems`` and never stopping the others.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from desktop.core.errors import (
    BundleIntegrityError,
    BundleNotFoundError,
    ModelCardError,
    ModelError,
    UnverifiedBundleError,
)
from desktop.core.jsonio import JSONLimitError, loads_bounded
from desktop.core.paths import bundled_models_dir, user_models_dir

from .card import ModelCard
from .schema import CARD_FILE, DANGEROUS_SUFFIXES, HEAD_FILE, ONNX_FILE, SIGNATURE_FILE
from .trust import UNVERIFIED_STATUS, Trust, allow_unverified, card_trust

log = logging.getLogger(__name__)

#: A card is ~200 KB (the split lists every file name); anything over this is refused unread.
MAX_CARD_BYTES = 8 * 1024 * 1024
#: Nesting depth a card may have (the real ones reach ~7).
MAX_CARD_DEPTH = 32

_PATH_TRUST = Trust(UNVERIFIED_STATUS, "loaded from a path (trust not checked)")


@dataclass(frozen=True, eq=False)
class Bundle:
    """A bundle folder: where it is, its card, where it came from, how far it is trusted.

    ``trust.status`` is "pinned" (bundled, matches the application's pin),
    "signed" (Ed25519 signature by a trusted key) or "unverified";
    ``trust.label`` is what the user is shown.
    """

    path: Path
    card: ModelCard
    origin: str = "path"  # "bundled" | "user" | "path"
    warnings: tuple[str, ...] = field(default=())
    trust: Trust = _PATH_TRUST
    card_sha256: str = ""

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def verified(self) -> bool:
        """Pinned or signed by a trusted key (False: an "unverified bundle")."""
        return self.trust.verified

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def head_path(self) -> Path:
        return self.path / HEAD_FILE

    def summary(self) -> dict[str, Any]:
        out = self.card.summary()
        out["path"] = str(self.path)
        out["origin"] = self.origin
        out["trust"] = self.trust.status
        out["trust_label"] = self.trust.label
        out["trust_detail"] = self.trust.detail
        return out

    def __repr__(self) -> str:
        return f"Bundle({self.name!r} v{self.version}, {self.card.architecture}, {self.path}, {self.trust.status})"


class BundleDiscovery(NamedTuple):
    """What :func:`discover_bundles` found: usable bundles and the broken ones (as errors)."""

    bundles: list[Bundle]
    problems: list[ModelError]


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()



def read_card_with_hash(path: str | os.PathLike[str]) -> tuple[ModelCard, str]:
    """Read and validate ``<bundle>/model_card.json`` (bounded); (card, sha256 of the card's bytes)."""
    folder = Path(path)
    card_path = folder / CARD_FILE
    if not folder.is_dir():
        raise BundleNotFoundError(folder, "is not a model bundle folder")
    if not card_path.is_file():
        if card_path.exists() or card_path.is_symlink():  # a FIFO, a device, a dangling link: never opened
            raise ModelCardError(card_path, "is not a regular file; not read")
        raise BundleNotFoundError(folder, f"no {CARD_FILE}: not a model bundle")
    try:
        with open(card_path, "rb") as fh:
            raw = fh.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise ModelError(card_path, f"cannot read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_CARD_BYTES:
        raise ModelCardError(card_path, f"model card too large (over {MAX_CARD_BYTES // (1024 * 1024)} MB); not read")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelCardError(card_path, "is not UTF-8 text") from exc
    try:
        data = loads_bounded(text, card_path, max_depth=MAX_CARD_DEPTH)
    except JSONLimitError as exc:
        raise ModelCardError(card_path, exc.reason) from exc
    return ModelCard.from_dict(data, source=card_path, parsed=True), sha256_bytes(raw)


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate ``<bundle>/model_card.json`` (bounded; no file hashes checked)."""
    return read_card_with_hash(path)[0]


def load_bundle(
    path: str | os.PathLike[str],
    *,
    origin: str = "path",
    verify: bool = True,
    allow_unverified_bundle: bool | None = None,
) -> Bundle:
    """Load a bundle folder: bounded card, schema, trust, then (``verify``) the sha256 of every listed file.

    Trust (see :mod:`desktop.core.bundle.trust`): a ``"bundled"`` bundle whose
    name is pinned must match the pin (else :class:`BundleIntegrityError`);
    other bundles are "signed" or "unverified". An unverified bundle from the
    bundled or user folder is refused (:class:`UnverifiedBundleError`) unless
    ``allow_unverified_bundle`` (None: the user's policy,
    :func:`~desktop.core.bundle.trust.allow_unverified`). ``origin="path"``
    (a folder named by the caller: export, tests, tools) is never refused for
    trust, only labelled.

    Raises :class:`BundleNotFoundError`, :class:`ModelCardError`,
    :class:`BundleIntegrityError` or :class:`UnverifiedBundleError`, each
    naming the folder or file and the reason.
    """
    folder = Path(path)
    card, card_sha = read_card_with_hash(folder)
    trust = card_trust(folder, card, card_sha, bundled=origin == "bundled")
    if not trust.verified and origin != "path":
        allowed = allow_unverified() if allow_unverified_bundle is None else allow_unverified_bundle
        if not allowed:
            raise UnverifiedBundleError(
                folder,
                f"unverified bundle: {trust.detail}",
                "sign it (python -m model_training sign) with a key listed in the trusted keys, "
                "or allow unverified models (--allow-unverified)",
            )
    warnings = list(_check_unlisted(folder, card))
    if verify:
        verify_files(folder, card)
    if folder.name != card.name:
        warnings.append(f"folder name {folder.name!r} differs from the card's name {card.name!r}")
    if not trust.verified and origin != "path":
        warnings.append(f"unverified bundle: {trust.detail}")
    for w in warnings:
        log.warning("%s: %s", folder, w)
    return Bundle(path=folder, card=card, origin=origin, warnings=tuple(warnings), trust=trust, card_sha256=card_sha)

def verify_files(folder: Path, card: ModelCard) -> None:
    """sha256 of each file in ``card.files``; BundleIntegrityError on the first mismatch."""
    for fname, expected in card.files.items():
        fpath = folder / fname
        if fpath.is_symlink() or not fpath.is_file():
            raise BundleIntegrityError(fpath, "listed in the model card but missing (or not a regular file)")
        try:
            actual = sha256_file(fpath)
        except OSError as exc:
            raise BundleIntegrityError(fpath, f"cannot read ({exc.strerror or exc})") from exc
        if actual != expected:
            raise BundleIntegrityError(
                fpath,
                f"sha256 mismatch: the model card expects {expected}, the file has {actual}",
                "the bundle was modified or damaged; reinstall or re-export it",
            )


def verify_bytes(path: Path, data: bytes, expected: str) -> None:
    """The same check on bytes already read (no window between check and use)."""
    actual = sha256_bytes(data)
    if actual != expected:
        raise BundleIntegrityError(
            path,
            f"sha256 mismatch: the model card expects {expected}, the file has {actual}",
            "the bundle was modified or damaged; reinstall or re-export it",
        )



def _check_unlisted(folder: Path, card: ModelCard) -> Iterable[str]:
    """Refuse executable/pickle-like files the card does not list; warn about other extras."""
    listed = set(card.files) | {CARD_FILE, SIGNATURE_FILE}
    for entry in sorted(folder.rglob("*")):
        rel = entry.relative_to(folder).as_posix()
        if rel in listed or entry.is_dir():
            continue
        if entry.name.startswith(".") and entry.suffix.lower() not in DANGEROUS_SUFFIXES and not _is_exec(entry):
            continue  # .DS_Store and friends
        if entry.suffix.lower() in DANGEROUS_SUFFIXES or _is_exec(entry):
            raise BundleIntegrityError(
                entry,
                "unexpected executable or pickle-like file in a model bundle",
                "bundles hold only ONNX, .npz and the card; remove it or re-export the bundle",
            )
        yield f"unlisted file ignored: {rel}"


def _is_exec(path: Path) -> bool:
    if os.name == "nt":
        return False
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and bool(mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


def model_dirs() -> list[tuple[Path, str]]:
    """The folders searched for bundles, with their origin, in priority order."""
    return [(bundled_models_dir(), "bundled"), (user_models_dir(), "user")]


def discover_bundles(dirs: Sequence[tuple[Path, str]] | None = None, *, verify: bool = True) -> BundleDiscovery:
    """Every bundle in the bundled and user models folders, and the problems found.

    ``verify=True`` checks every file's sha256 (``cxr-screener models``,
    ``selftest``, the GUI's model list); ``verify=False`` only reads and
    validates the cards (fast: what :func:`get_bundle` uses to choose, before
    verifying the chosen bundle).

    A broken bundle (bad card, tampered file) is reported in ``problems`` and
    skipped: it never stops the others. A user bundle with the name of a
    bundled one is skipped too (rename it), so a shipped, verified model is
    never silently replaced. Bundles are sorted by name.
    """
    bundles: dict[str, Bundle] = {}
    problems: list[ModelError] = []
    for root, origin in dirs if dirs is not None else model_dirs():
        if not root.is_dir():
            continue
        try:
            entries = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as exc:
            problems.append(ModelError(root, f"cannot list models folder ({exc.strerror or exc})"))
            continue
        for folder in entries:
            if not ((folder / CARD_FILE).exists() or (folder / CARD_FILE).is_symlink()):
                continue  # not a bundle (e.g. an unrelated folder)
            try:
                bundle = load_bundle(folder, origin=origin, verify=verify)
            except ModelError as exc:
                log.warning("model bundle skipped: %s", exc)
                problems.append(exc)
                continue
            if bundle.name in bundles:
                other = bundles[bundle.name]
                problems.append(
                    ModelCardError(
                        folder,
                        f"a model named {bundle.name!r} is already loaded from {other.path}; this one is ignored",
                        "give the retrained model another name in its card",
                    )
                )
                continue
            bundles[bundle.name] = bundle
    return BundleDiscovery(sorted(bundles.values(), key=lambda b: b.name), problems)


def get_bundle(name: str | None = None, discovery: BundleDiscovery | None = None, *, verify: bool = True) -> Bundle:
    """The bundle called ``name`` (card name or folder name), or the default one, verified.

    With ``name=None``: the bundle whose card says ``"default": true``
    (bundled before user), else the first by name. Only the chosen bundle's
    files are hashed (``verify``): a damaged default model is reported, never
    silently replaced by another. Raises :class:`BundleNotFoundError`
    (listing what is available), :class:`BundleIntegrityError` or
    :class:`ModelCardError` for the requested bundle.
    """
    chosen = _choose(name, discovery if discovery is not None else discover_bundles(verify=False))
    if not verify:
        return chosen
    return load_bundle(chosen.path, origin=chosen.origin, verify=True)


def _choose(name: str | None, found: BundleDiscovery) -> Bundle:
    bundles = found.bundles
    if name is None:
        defaults = [b for b in bundles if b.card.default]
        defaults.sort(key=lambda b: (b.origin != "bundled", b.name))
        if defaults:
            return defaults[0]
        if bundles:
            return bundles[0]
        where = ", ".join(str(d) for d, _ in model_dirs())
        if found.problems:
            raise found.problems[0]
        raise BundleNotFoundError(
            bundled_models_dir(), f"no model bundles found (searched {where})", "install or export a model"
        )
    for b in bundles:
        if b.name == name:
            return b
    for b in bundles:
        if b.path.name == name:
            return b
    for problem in found.problems:
        if problem.path and name in Path(problem.path).parts:
            raise problem
    available = ", ".join(b.name for b in bundles) or "none"
    raise BundleNotFoundError(name, "no model bundle with this name", f"available: {available}")

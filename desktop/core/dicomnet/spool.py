"""The listener's spool: films received and not yet screened, then the received-films archive.

Layout under the output folder ``DIR``::

    DIR/spool/<SOP Instance UID>.dcm   received, waiting for (or being) screened
    DIR/films/<SOP Instance UID>.dcm   screened (its row is in DIR/results.csv)

A film is written atomically (a hidden temporary file, then a rename), so a
kill never leaves half a film where the scan looks; leftover temporary files
are removed at start. A film moves to ``films/`` only after its row is in
``results.csv``, so after a crash every film in ``spool/`` is either screened
on restart or, when its row is already there, just moved on: none is lost and
none is screened twice. A film whose SOP Instance UID was already received
(a modality sending again after a lost response) is acknowledged and not
stored again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path

from desktop.core.errors import OutputError

log = logging.getLogger(__name__)

SPOOL_NAME = "spool"
FILMS_NAME = "films"
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def film_name(sop_instance_uid: str) -> str:
    """The file name of a received film (a safe name even from a malformed UID)."""
    uid = str(sop_instance_uid).strip().rstrip("\0")
    if _UID_RE.match(uid) and len(uid) <= 64:
        return f"{uid}.dcm"
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:40] + ".dcm"


class Spool:
    """Received films on disk (see the module docstring)."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / SPOOL_NAME
        self.films = self.out_dir / FILMS_NAME
        for d in (self.dir, self.films):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(d, f"cannot create the folder ({exc.strerror or exc})") from exc
        for leftover in self.dir.glob(".*.tmp"):  # a kill during a write
            with contextlib.suppress(OSError):
                leftover.unlink()

    def has(self, sop_instance_uid: str) -> bool:
        name = film_name(sop_instance_uid)
        return (self.dir / name).exists() or (self.films / name).exists()

    def store(self, sop_instance_uid: str, data: bytes) -> Path | None:
        """Write a received film; None if this SOP instance was received before.

        Raises :class:`OutputError` (disk full, unwritable).
        """
        from desktop.core.errors import OutputExistsError
        from desktop.core.fileio import atomic_write_bytes

        if self.has(sop_instance_uid):
            return None
        try:
            return atomic_write_bytes(self.dir / film_name(sop_instance_uid), data)
        except OutputExistsError:
            return None  # the same film arrived twice at once

    def pending(self) -> list[Path]:
        """Films waiting to be screened (or archived), by name."""
        try:
            return sorted(p for p in self.dir.iterdir() if p.is_file() and not p.name.startswith("."))
        except OSError:
            return []

    def archive(self, film: Path) -> Path:
        """Move a screened film from the spool to ``films/``."""
        target = self.films / film.name
        try:
            os.replace(film, target)
        except OSError as exc:
            log.error("%s: could not move the screened film to %s (%s)", film.name, self.films, exc)
            return film
        return target


__all__ = ["FILMS_NAME", "SPOOL_NAME", "Spool", "film_name"]

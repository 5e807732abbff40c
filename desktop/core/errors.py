"""The project's documented errors.

Every error a user can meet derives from :class:`CXRError`, names the file
(or bundle, or output path) it is about and says why, and where it can, what
to do. Callers that process many files (batch scan, GUI) catch ``CXRError``
per file and carry on; anything else escaping the loader is a bug.

Messages never contain patient data (names, IDs, birth dates): only paths
and technical reasons.
"""

from __future__ import annotations

from pathlib import Path

from .filenames import display_name


def _name(path: str | Path | None) -> str:
    return "<bytes>" if path is None else display_name(str(path))


class CXRError(Exception):
    """Base class: ``path`` is the file concerned, ``reason`` the short why."""

    kind = "error"

    def __init__(self, path: str | Path | None, reason: str, hint: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        self.hint = hint
        # Errors about no particular file (an unknown model name, say) are just the reason.
        message = reason if path is None and isinstance(self, (ModelError, OutputError)) else f"{_name(path)}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:  # picklable across process pools
        return (self.__class__, (self.path, self.reason, self.hint))


# --- input files -----------------------------------------------------------


class ImageLoadError(CXRError):
    """The file could not be turned into an X-ray."""

    kind = "load"


class FileAccessError(ImageLoadError):
    """Missing file, a directory, no permission, I/O error."""

    kind = "access"


class NotAnImageError(ImageLoadError):
    """The content is neither PNG, JPEG nor DICOM (detected by content, not name)."""

    kind = "not_an_image"


class CorruptImageError(ImageLoadError):
    """Recognised format but the data is truncated or damaged."""

    kind = "corrupt"


class ImageTooLargeError(ImageLoadError):
    """More pixels (or declared bytes) than the safety limit: a decompression bomb or not an X-ray."""

    kind = "too_large"


class UnsupportedImageError(ImageLoadError):
    """A valid file this application does not read: CT/MR, colour, unknown transfer syntax..."""

    kind = "unsupported"


class MissingDecoderError(UnsupportedImageError):
    """A DICOM transfer syntax whose decoder is not installed."""

    kind = "missing_decoder"


# --- models ----------------------------------------------------------------


class ModelError(CXRError):
    """A model bundle is missing, invalid, tampered with or cannot run."""

    kind = "model"


class BundleNotFoundError(ModelError):
    kind = "model_not_found"


class BundleIntegrityError(ModelError):
    """sha256 of a bundle file differs from the model card, or an unexpected file."""

    kind = "model_integrity"


class ModelCardError(ModelError):
    """The model card fails its schema."""

    kind = "model_card"


class ModelInputError(ModelError):
    """An input of the wrong shape or type for the model."""

    kind = "model_input"


# --- outputs ---------------------------------------------------------------


class OutputError(CXRError):
    """A result, image or report could not be written (exists, unwritable, disk full)."""

    kind = "output"


class OutputExistsError(OutputError):
    kind = "output_exists"


__all__ = [
    "BundleIntegrityError",
    "BundleNotFoundError",
    "CXRError",
    "CorruptImageError",
    "FileAccessError",
    "ImageLoadError",
    "ImageTooLargeError",
    "MissingDecoderError",
    "ModelCardError",
    "ModelError",
    "ModelInputError",
    "NotAnImageError",
    "OutputError",
    "OutputExistsError",
    "UnsupportedImageError",
]

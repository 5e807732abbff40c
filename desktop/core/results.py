"""The outcome of screening one file: :class:`ScanResult`, shared by scan, report, GUI and listener."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .display import Display
    from .inference import Heatmap, Prediction

#: ``ScanResult.status`` values: screened, failed to load/screen, refused by the input gate.
STATUSES = ("ok", "error", "rejected")


@dataclass(frozen=True)
class ScanResult:
    """The outcome for one file. ``status`` is one of :data:`STATUSES`."""

    path: str
    sha256: str
    status: str
    label: str | None
    p_covid: float | None
    model: str
    model_version: str
    operating_point: str | None
    threshold: float | None
    error: str | None
    error_kind: str | None
    #: The heatmap PNG written for this file, if heatmaps were asked for.
    heatmap: str | None = None
    #: The path as written in results.csv (relative to the scanned folder).
    relpath: str = ""
    #: Why the input gate refused the film (a stable code), when ``status == "rejected"``.
    reject_code: str | None = None
    #: The site profile whose threshold was used, if any.
    site: str | None = None
    #: Out-of-distribution flag of an accepted film (:mod:`desktop.core.ood`; None: not assessed).
    ood_flag: bool | None = None
    ood_score: float | None = field(default=None, compare=False)
    # What the scan made for showing this film again without reading it (only when asked for:
    # ``ScreenOptions.keep_display``); not written to results.csv, not compared.
    #: the default view, downsampled (uint8)
    display: Display | None = field(default=None, compare=False, repr=False)
    #: the model's full output (probabilities per class)
    prediction: Prediction | None = field(default=None, compare=False, repr=False)
    #: the Grad-CAM map, when the file was explained
    explanation: Heatmap | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        """An error (a rejected film is not a failure: the gate did its job)."""
        return self.status == "error"

    @property
    def rejected(self) -> bool:
        return self.status == "rejected"

    @property
    def caution(self) -> str | None:
        """The OOD flag's sentence of an accepted film unlike the training films
        (:data:`desktop.core.ood.FLAG_TEXT`), else None; a rejected or failed film is never assessed."""
        from .ood import FLAG_TEXT

        return FLAG_TEXT if self.ok and self.ood_flag else None

    def csv_row(self) -> list[str]:
        """The cells of this result's ``results.csv`` row (see :mod:`desktop.core.results_csv`)."""
        from .results_csv import row_cells

        return row_cells(self)


def same_threshold(a: float, b: float) -> bool:
    """Whether two decision thresholds are the same one (as written to and read back from results.csv): a
    resumed scan must not mix rows decided at two thresholds under one operating-point name."""
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9)


__all__ = ["STATUSES", "ScanResult", "same_threshold"]

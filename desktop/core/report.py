"""PDF reports for the remote doctor: one study, or a whole batch scan.

The report is what leaves the clinic. A doctor who has only this PDF sees
whose study it is and the clinical context, the X-ray as displayed and where
the model found evidence, the result with how far to trust it (sensitivity
and specificity with confidence intervals, the predictive value at the
clinic's prevalence), the limits of the tool, the model's technical details
on a later page, and a box for their findings and signature.

Made with reportlab in the Qt-free core, so the CLI, a batch scan and the GUI
write the same file. Fonts are embedded (DejaVu Sans, with Noto fallbacks for
other scripts: see :mod:`desktop.core.report_fonts`). Files are written
atomically and never overwrite unless asked; with ``anonymize=True`` no
identifying value reaches the text, the file name column or the PDF metadata
(see :mod:`desktop.core.phi`).

This module is the stable import path; the parts live in one module each:

- :mod:`desktop.core.report_info` — the form (:class:`ReportInfo`) and the texts;
- :mod:`desktop.core.report_layout` — sections both reports share;
- :mod:`desktop.core.report_study` — the single-study pages;
- :mod:`desktop.core.report_batch` — the batch report (consumes the scan's results);
- :mod:`desktop.core.report_images`, :mod:`desktop.core.report_pdf`,
  :mod:`desktop.core.report_card` — pictures, reportlab plumbing, the model card.
"""

from __future__ import annotations

from .report_batch import BatchItem, write_batch_report
from .report_info import (
    GENERAL_LIMITS,
    NOT_RECORDED,
    ReportInfo,
    fmt_p,
    make_report_id,
    plain_sentence,
    predictive_values,
    prevalence_sentence,
)
from .report_layout import SOFTWARE
from .report_study import write_study_report

__all__ = [
    "GENERAL_LIMITS",
    "NOT_RECORDED",
    "SOFTWARE",
    "BatchItem",
    "ReportInfo",
    "fmt_p",
    "make_report_id",
    "plain_sentence",
    "predictive_values",
    "prevalence_sentence",
    "write_batch_report",
    "write_study_report",
]

"""Batch scan of a folder: the names older callers import (the code is in :mod:`desktop.core.scan`).

::

    for result in scan(folder, predictor, results_csv=out / "results.csv"):
        ...

- :mod:`desktop.core.scan.walk`: which files (sorted, hidden and output folders skipped).
- :mod:`desktop.core.scan.decode` / :mod:`~desktop.core.scan.pool`: each file read once,
  hashed and decoded from the same bytes in worker processes with a timeout.
- :mod:`desktop.core.scan.pipeline`: :func:`screen_files`, the one file -> result pipeline.
- :mod:`desktop.core.scan.folder`: :func:`scan`, the folder scan with results.csv, resume and
  the output-folder lock.
- :mod:`desktop.core.results_csv`: the one results.csv writer and reader.
"""

from __future__ import annotations

import os  # noqa: F401  (tests patch batch.os.write)

from .cpu import available_cpus, scan_inference_threads
from .cpu import decode_workers as default_workers
from .progress import CancelToken, Progress, ProgressFn
from .results import ScanResult
from .results_csv import CSV_COLUMNS, RESULTS_NAME, ResultsWriter, csv_text, csv_value, read_results
from .scan.decode import Decoded as _Decoded  # noqa: F401
from .scan.decode import decode_one as _decode_one
from .scan.folder import anonymized_rel, scan
from .scan.pipeline import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODE_TIMEOUT,
    ScanStats,
    ScreenOptions,
    screen_files,
)
from .scan.pool import DecodeFn
from .scan.pool import ThreadPool as _ThreadPool
from .scan.walk import DOCUMENT_EXTENSIONS, OUTPUT_MARKER, Entry, list_files, mark_output_folder

#: ONNX Runtime threads for a scan (see :mod:`desktop.core.cpu`).
inference_threads = scan_inference_threads

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_DECODE_TIMEOUT",
    "DOCUMENT_EXTENSIONS",
    "OUTPUT_MARKER",
    "RESULTS_NAME",
    "CancelToken",
    "DecodeFn",
    "Entry",
    "Progress",
    "ProgressFn",
    "ResultsWriter",
    "ScanResult",
    "ScanStats",
    "ScreenOptions",
    "_decode_one",
    "_ThreadPool",
    "anonymized_rel",
    "available_cpus",
    "csv_text",
    "csv_value",
    "default_workers",
    "inference_threads",
    "list_files",
    "mark_output_folder",
    "read_results",
    "scan",
    "screen_files",
]

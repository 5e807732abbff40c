"""Screening files: the folder walk, the decode pool, the one file -> result pipeline, the folder scan.

- :mod:`.walk` finds the candidate files of a folder (:class:`Entry`).
- :mod:`.decode` reads one file once (bounded, regular files only), hashes
  and decodes the same bytes, preprocesses, and keeps what display needs.
- :mod:`.pool` runs :func:`.decode.decode_one` in worker processes with a
  per-file timeout and crash recovery (threads where processes cannot start).
- :mod:`.pipeline` turns files into :class:`~desktop.core.results.ScanResult`
  (:func:`screen_files`): batching, the model, heatmaps, the audit.
- :mod:`.folder` is the folder scan on top (:func:`scan`): results.csv,
  resume, the output lock (:mod:`.lock`).

:mod:`desktop.core.batch` re-exports the public names for older callers.
"""

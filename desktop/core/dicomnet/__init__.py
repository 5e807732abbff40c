"""DICOM in, DICOM out: receive films by C-STORE, screen them, return results into the study.

- :mod:`.results`: the Secondary Capture (heatmap and result burned in) and the
  Structured Report (TID 1500) of one screened film, built with highdicom.
- :mod:`.screening`: the one adapter from a folder of films to the scan
  pipeline (``results.csv``), shared by the listener and the watched folder.
- :mod:`.spool`: received films, written atomically; what is left to screen.
- :mod:`.listener`: the Storage SCP (pynetdicom) and its screening worker.
- :mod:`.sender`: C-STORE of the results to a PACS, with a restart-safe outbox.
- :mod:`.watcher`: the watched-folder mode (watchdog).

Everything here is Qt-free; ``desktop/qt/qt_receiving.py`` wires the listener to a panel.
"""

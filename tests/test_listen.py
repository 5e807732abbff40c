"""End-to-end: ``cxr-screener listen`` receives films as from a modality, screens them, returns DICOM results.

All traffic is on 127.0.0.1. The listener runs as a subprocess (the real
command) with the test bundle.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pydicom
import pytest

from tests.batch_support import (
    bundle_source,  # noqa: F401  (fixture)
    model_name,  # noqa: F401  (fixture)
)
from tests.listen_support import (
    CR,
    CT,
    SC,
    SR_COMPREHENSIVE,
    ListenProcess,
    free_port,
    in_thread,
    make_films,
    pacs,
    rows_of,
    send,
    wait_rows,
)
from tests.test_dicom_results import assert_valid_dicom

pytest.importorskip("pynetdicom")
pytest.importorskip("highdicom")


def _results_by_source(results_dir: Path) -> dict[str, dict[str, pydicom.Dataset]]:
    out: dict[str, dict[str, pydicom.Dataset]] = {}
    for f in sorted(results_dir.glob("*.dcm")):
        uid, kind = f.stem.rsplit("_", 1)
        out.setdefault(uid, {})[kind] = pydicom.dcmread(f)
    return out


def test_listen_end_to_end(tmp_path: Path, model_name: str, shared_dicom_dir: Path) -> None:  # noqa: F811
    films = make_films(tmp_path / "films", 4)
    rsna = shared_dicom_dir / "rsna_c64d5667_CR_chest_AP_mono2_8bit_jpegbaseline.dcm"
    films.append(rsna)  # real chest CR, JPEG baseline
    films.append(shared_dicom_dir / "wg04_RG1_J2KI_CR_chest_PA_mono1_15bit_j2k_lossy.dcm")  # JPEG 2000
    ct = shared_dicom_dir / "pydicom_CT_small_negative_case.dcm"
    out, results = tmp_path / "received", tmp_path / "dicom-results"
    import numpy as np

    from desktop.core import site
    from desktop.core.bundle import get_bundle

    # the clinic calibrated its threshold ("Clinic A"): the listener uses it and names it in every row
    site.save_profile(site.make_profile("Clinic A", get_bundle(model_name), list(np.random.default_rng(1).beta(2, 5, 40))))
    port = free_port()
    proc = ListenProcess(out, port, "--model", model_name, "--dicom-results", str(results),
                         "--site", "Clinic A", "--allow-ae", "MODALITY,PACS")
    try:
        proc.wait_listening()
        # a modality: the chest films and one CT in the same association
        statuses = send(port, [*films[:2], ct, *films[2:]])
        assert statuses[0] == statuses[1] == 0
        assert "refused" in str(statuses[2]), statuses  # CT: presentation context rejected
        assert statuses[3:] == [0] * (len(films) - 2)
        # a CT sent under the Secondary Capture class arrives, and is recorded as an error
        assert send(port, [ct], sop_class=SC) == [0]
        # an AE title not allowed gets no association; the called AE must be ours
        assert send(port, films[:1], calling="INTRUDER") == ["no association"]
        assert send(port, films[:1], ae_title="OTHER") == ["no association"]
        rows = wait_rows(out / "results.csv", len(films) + 1, proc=proc)
        time.sleep(1.0)
        assert proc.alive(), proc.text()
        # the same film sent again is acknowledged and not screened twice
        assert send(port, films[:1]) == [0]
        time.sleep(2.0)
        rows = rows_of(out / "results.csv")
        assert proc.alive()
    finally:
        code = proc.stop(signal.SIGTERM, timeout=20)
    assert code == 0, proc.text()
    ok = [r for r in rows if r["status"] == "ok"]
    errors = [r for r in rows if r["status"] != "ok"]
    assert len(ok) == len(films), rows
    assert len(errors) == 1, errors
    assert "CT" in errors[0]["error"], errors
    assert {r["model"] for r in ok} == {model_name}
    assert {r["site"] for r in ok} == {"Clinic A"}
    assert {r["operating_point"] for r in ok} == {"site:Clinic A"}
    sources = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in films}
    assert {r["path"].removesuffix(".dcm") for r in ok} == set(sources)
    # the films are kept, the spool is empty
    assert sorted(p.name for p in (out / "films").iterdir()) == sorted(r["path"] for r in rows)
    assert not [p for p in (out / "spool").iterdir() if not p.name.startswith(".")]
    # one SC and one SR per chest film, in its study, new series and instances
    by_source = _results_by_source(results)
    assert set(by_source) == set(sources)
    for uid, objs in by_source.items():
        src = pydicom.dcmread(sources[uid], stop_before_pixels=True)
        sc, sr = objs["SC"], objs["SR"]
        assert sc.SOPClassUID == SC
        assert sr.SOPClassUID == SR_COMPREHENSIVE
        for obj in (sc, sr):
            assert obj.StudyInstanceUID == src.StudyInstanceUID
            assert obj.SeriesInstanceUID != src.SeriesInstanceUID
            assert obj.SOPInstanceUID != src.SOPInstanceUID
            assert obj.PatientID == src.PatientID
            assert obj.PatientName == src.PatientName
        assert sc.SeriesInstanceUID != sr.SeriesInstanceUID
        text = str(sr)
        assert model_name in text
        assert "Clinic A" in text
        ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        assert ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == uid
        row = next(r for r in ok if r["path"] == f"{uid}.dcm")
        from desktop.core.dicomnet.results import read_sr_result

        assert read_sr_result(sr)["p_covid"] == pytest.approx(float(row["p_covid"]), abs=1e-6)
    for f in results.glob("*.dcm"):
        assert_valid_dicom(f)
    # films of one study share one SC series and one SR series
    study_series = {(o["SC"].StudyInstanceUID, o["SC"].SeriesInstanceUID) for o in by_source.values()}
    assert len({s for s, _ in study_series}) == len(study_series)


def test_listen_kill9_and_restart(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    """kill -9 while films arrive and are screened; restart, the modality sends again: 0 lost, 0 twice."""
    films = make_films(tmp_path / "films", 40, size=320)
    out, results = tmp_path / "received", tmp_path / "dicom-results"
    port = free_port()
    # with DICOM results (Grad-CAM, SC, SR per film) screening is slower than receiving: a backlog
    args = ("--model", model_name, "--dicom-results", str(results))
    proc = ListenProcess(out, port, *args)
    statuses: list[int | str] = []
    try:
        proc.wait_listening()
        sender = in_thread(lambda: statuses.extend(send(port, films)))
        deadline = time.monotonic() + 120
        spool = out / "spool"

        def waiting() -> int:  # received and not yet screened
            return len([p for p in spool.iterdir() if not p.name.startswith(".")]) if spool.exists() else 0

        while time.monotonic() < deadline and not (len(rows_of(out / "results.csv")) >= 1 and waiting() >= 6):
            time.sleep(0.01)
        at_kill = waiting()
    finally:
        proc.kill9()
    sender.join(60)
    before = rows_of(out / "results.csv")
    acknowledged = [f for f, s in zip(films, statuses, strict=False) if s == 0]
    print(f"at kill -9: {len(acknowledged)} films acknowledged, {len(before)} rows, {at_kill} in the spool")
    assert before
    assert len(before) < len(films)
    uid = {f: f"{pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID}.dcm" for f in films}
    assert {r["path"] for r in before} <= {uid[f] for f in acknowledged}
    proc = ListenProcess(out, port, *args, log_name="listen2.log")
    try:
        proc.wait_listening()
        # the films received before the kill are screened on restart, before anything is sent
        wait_rows(out / "results.csv", len(acknowledged), proc=proc)
        # the modality sends again what it sent (the unacknowledged ones and, for some, all)
        assert send(port, films) == [0] * len(films)
        rows = wait_rows(out / "results.csv", len(films), proc=proc)
        time.sleep(1.5)
        rows = rows_of(out / "results.csv")
    finally:
        assert proc.stop() == 0, proc.text()
    paths = [r["path"] for r in rows]
    assert set(paths) == set(uid.values())  # 0 lost
    assert len(paths) == len(set(paths)) == len(films)  # 0 duplicated
    assert all(r["status"] == "ok" for r in rows)
    assert "duplicate" in proc.text() or len(acknowledged) == 0
    # every film has its SC and SR, once
    assert sorted(p.name for p in results.glob("*.dcm")) == sorted(
        f"{u.removesuffix('.dcm')}_{kind}.dcm" for u in uid.values() for kind in ("SC", "SR"))


def test_listen_send_to_pacs(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    films = make_films(tmp_path / "films", 2)
    out, results = tmp_path / "received", tmp_path / "dicom-results"
    port = free_port()
    with pacs() as store:
        proc = ListenProcess(out, port, "--model", model_name, "--dicom-results", str(results),
                             "--send", f"127.0.0.1:{store.port}", "--send-ae", "PACS", "--anonymize")
        try:
            proc.wait_listening()
            assert send(port, films) == [0, 0]
            deadline = time.monotonic() + 120
            while len(store.received) < 4 and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            assert proc.stop() == 0, proc.text()
        got = list(store.received)
    assert sorted(str(ds.SOPClassUID) for ds in got) == sorted([SC, SC, SR_COMPREHENSIVE, SR_COMPREHENSIVE])
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in films]
    for ds in got:
        assert ds.StudyInstanceUID in {s.StudyInstanceUID for s in sources}
        assert str(ds.PatientID).startswith("ANON-")  # --anonymize honoured
        assert "Doe" not in str(ds.PatientName)
        assert "PID" not in str(ds)
        assert "ACC0" not in str(ds)
        assert "19700101" not in str(ds)
    assert not [p for p in (out / "outbox").iterdir() if not p.name.startswith(".")]  # all sent


def test_listen_refuses_bad_options(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    from tests.batch_support import run_cli

    r = run_cli("listen", "--port", "0", "--out", str(tmp_path / "o"), "--send", "127.0.0.1:1")
    assert r.returncode == 2
    assert "--send needs --dicom-results" in r.stderr
    r = run_cli("listen", "--port", "70000", "--out", str(tmp_path / "o"), "--model", model_name)
    assert r.returncode == 2
    assert "--port" in r.stderr
    r = run_cli("listen", "--port", "0", "--out", str(tmp_path / "o"), "--ae-title", "X" * 17)
    assert r.returncode == 2
    assert "--ae-title" in r.stderr


def test_listen_port_in_use(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    import socket

    from tests.batch_support import run_cli

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("listen", "--port", str(port), "--out", str(tmp_path / "o"), "--model", model_name,
                    timeout=120)
    assert r.returncode == 2, r.stderr
    assert "cannot listen" in r.stderr


def test_spool_names_and_duplicates(tmp_path: Path) -> None:
    from desktop.core.dicomnet.spool import Spool, film_name

    assert film_name("1.2.3") == "1.2.3.dcm"
    assert film_name("../../etc/passwd").startswith("x")
    assert "/" not in film_name("../../etc/passwd")
    spool = Spool(tmp_path)
    (spool.dir / ".1.2.3.dcm.abc.tmp").write_bytes(b"half")  # a kill during a write
    spool = Spool(tmp_path)
    assert not list(spool.dir.iterdir())
    assert spool.store("1.2.3", b"data") is not None
    assert spool.store("1.2.3", b"data") is None
    film = spool.pending()[0]
    spool.archive(film)
    assert spool.pending() == []
    assert spool.store("1.2.3", b"other") is None


def test_storage_classes_are_the_radiographs() -> None:
    from desktop.core.dicomnet.listener import STORAGE_SOP_CLASSES

    assert CR in STORAGE_SOP_CLASSES
    assert SC in STORAGE_SOP_CLASSES
    assert CT not in STORAGE_SOP_CLASSES
    assert shutil.which  # keep the import used where dciodvfy is absent


def test_restart_after_a_crash_between_row_and_archive(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    """A film whose row is written but which is still in the spool: archived, its results made, no new row."""
    from desktop.core.commands._model import load_model
    from desktop.core.dicomnet.listener import Listener, ListenerConfig

    loaded = load_model(model_name, None)
    out, results = tmp_path / "received", tmp_path / "dres"
    film = make_films(tmp_path / "films", 1)[0]

    def run_once(send_film: bool) -> None:
        port = free_port()
        listener = Listener(ListenerConfig(out_dir=out, port=port, dicom_results=results), lambda: loaded)
        listener.start()
        try:
            if send_film:
                assert send(port, [film]) == [0]
            deadline = time.monotonic() + 60
            while (listener.spool.pending() or listener.stats.screened == 0) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            listener.stop()

    run_once(True)
    rows = rows_of(out / "results.csv")
    assert len(rows) == 1
    name = rows[0]["path"]
    (out / "films" / name).rename(out / "spool" / name)  # as if killed before the move
    for f in results.glob("*.dcm"):
        f.unlink()  # and before its results were written
    run_once(False)
    assert rows_of(out / "results.csv") == rows  # not screened again
    assert (out / "films" / name).exists()
    assert not (out / "spool" / name).exists()
    assert len(list(results.glob("*.dcm"))) == 2


def test_ctrl_c_stops_within_seconds_mid_backlog(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    films = make_films(tmp_path / "films", 20, size=320)
    out = tmp_path / "received"
    port = free_port()
    proc = ListenProcess(out, port, "--model", model_name, "--dicom-results", str(tmp_path / "dres"))
    try:
        proc.wait_listening()
        assert send(port, films) == [0] * len(films)
        t0 = time.monotonic()
        code = proc.stop(signal.SIGINT, timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.alive():
            proc.kill9()
    assert code == 0, proc.text()
    assert took < 10, took
    rows = rows_of(out / "results.csv")
    waiting = [p for p in (out / "spool").iterdir() if not p.name.startswith(".")]
    assert len(rows) + len(waiting) == len(films)  # screened, or waiting for the next start
    assert f"{len(waiting)} left to screen" in proc.text()


def test_outbox_keeps_what_the_pacs_did_not_take(tmp_path: Path) -> None:
    import numpy as np

    from desktop.core.dicomnet.results import ResultInfo, write_results
    from desktop.core.dicomnet.sender import Outbox, SendTarget

    film = make_films(tmp_path / "films", 1)[0]
    written = write_results(film, np.zeros((64, 64, 3), np.uint8),
                            ResultInfo(0.2, "normal", "m", "1"), tmp_path / "dres")
    down = SendTarget("127.0.0.1", free_port(), "PACS")
    box = Outbox(tmp_path / "out", down)
    box.add(written.paths)
    assert box.flush() == 2  # nobody listening: both kept
    assert len(box.pending()) == 2
    with pacs() as store:
        box.target = SendTarget("127.0.0.1", store.port, "PACS")
        assert box.flush() == 0
        assert sorted(str(ds.SOPInstanceUID) for ds in store.received) == sorted(
            str(pydicom.dcmread(p).SOPInstanceUID) for p in written.paths)
    assert box.pending() == []
    assert written.sc.exists()  # the results themselves stay
    with pytest.raises(ValueError, match="HOST:PORT"):
        SendTarget.parse("pacs", "PACS")


def test_negotiation_transfer_syntaxes_and_echo(tmp_path: Path) -> None:
    """What a modality negotiates: CR/DX/SC in every usual transfer syntax, C-ECHO; CT and C-FIND refused."""
    from pynetdicom import AE

    from desktop.core.dicomnet.listener import TRANSFER_SYNTAXES, Listener, ListenerConfig

    port = free_port()
    listener = Listener(ListenerConfig(out_dir=tmp_path / "out", port=port), lambda: None)
    listener.start()
    try:
        ae = AE(ae_title="MODALITY")
        dx_processing = "1.2.840.10008.5.1.4.1.1.1.1.1"
        for ts in TRANSFER_SYNTAXES:
            ae.add_requested_context(CR, ts)
        ae.add_requested_context(dx_processing, "1.2.840.10008.1.2.4.90")
        ae.add_requested_context(SC, "1.2.840.10008.1.2.5")
        ae.add_requested_context(CT, "1.2.840.10008.1.2.1")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.2.2.1")  # Study Root C-FIND
        ae.add_requested_context("1.2.840.10008.1.1")  # Verification
        assoc = ae.associate("127.0.0.1", port, ae_title="CXRSCREENER")
        assert assoc.is_established
        try:
            accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
            rejected = {c.abstract_syntax for c in assoc.rejected_contexts}
            assert {(CR, ts) for ts in TRANSFER_SYNTAXES} <= accepted
            assert (dx_processing, "1.2.840.10008.1.2.4.90") in accepted
            assert (SC, "1.2.840.10008.1.2.5") in accepted
            assert {CT, "1.2.840.10008.5.1.4.1.2.2.1"} <= rejected
            assert assoc.send_c_echo().Status == 0
        finally:
            assoc.release()
    finally:
        listener.stop()
    assert listener.stats.received == 0

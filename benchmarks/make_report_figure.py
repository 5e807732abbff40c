"""Make the README figures of the PDF reports: page 1 of a study report and of a batch report.

    .venv/bin/python benchmarks/make_report_figure.py                 # default model
    .venv/bin/python benchmarks/make_report_figure.py --model NAME --pdf docs/sample_report.pdf

The study report is made with the real pipeline (load_xray, Predictor.explain,
write_study_report) on a licence-clear sample X-ray from ``assets/samples``,
with a fictional patient (Unicode name) and clinical context given as overrides,
as the GUI form or ``cxr-screener report --patient-name ... --symptoms ...`` would;
the sample file is attached to the PDF. The batch report scans
``assets/samples`` with ``desktop.core.batch.scan``. Pages are rendered with
``pdftoppm`` (poppler-utils).

Model: ``--model NAME``, else the default bundled model, else the tiny
random-weights test bundle (``tests/data/tiny-mobilenet``: its scores and
heatmaps mean nothing, the layout is what the figure shows).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = REPO / "assets" / "samples" / "ieee8023__12941_2020_358_Fig1_HTML.jpg"


def _bundle(name: str | None):  # noqa: ANN202
    from desktop.core.bundle import get_bundle, load_bundle
    from desktop.core.errors import BundleNotFoundError

    try:
        return get_bundle(name)
    except BundleNotFoundError:
        if name:
            raise
        tiny = REPO / "tests" / "data" / "tiny-mobilenet"
        print(f"no bundled model: using the random-weights test bundle {tiny}", file=sys.stderr)
        return load_bundle(tiny)


def _render(pdf: Path, png: Path, dpi: int) -> None:
    exe = shutil.which("pdftoppm")
    if exe is None:
        raise SystemExit("pdftoppm not found: install poppler-utils (apt-get install poppler-utils)")
    with tempfile.TemporaryDirectory() as tmp:
        stem = Path(tmp) / "page"
        subprocess.run([exe, "-r", str(dpi), "-f", "1", "-l", "1", "-png", "-singlefile", str(pdf), str(stem)],
                       check=True)
        png.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stem.with_suffix(".png"), png)
    print(f"wrote {png}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model bundle name (default: the default bundle)")
    ap.add_argument("--image", type=Path, default=SAMPLE, help="X-ray for the study report")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "report_page1.png")
    ap.add_argument("--batch-out", type=Path, default=REPO / "docs" / "report_batch_page1.png")
    ap.add_argument("--pdf", type=Path, help="also keep the study report PDF here")
    ap.add_argument("--dpi", type=int, default=100, help="rendering resolution of the PNGs")
    args = ap.parse_args(argv)

    from desktop.core.batch import scan
    from desktop.core.imaging import load_xray
    from desktop.core.inference import Predictor
    from desktop.core.report import ReportInfo, write_batch_report, write_study_report

    bundle = _bundle(args.model)
    predictor = Predictor(bundle)
    info = ReportInfo(
        clinic_name="Centro de Salud Rural San Martín",
        clinic_address="Ruta 40 km 1234, Cafayate, Salta",
        clinic_phone="+54 3868 555 0101",
        clinic_email="rx@cs-sanmartin.example",
        operator="Lic. Zoë Ñúñez-Łukasz (radiology technician)",
        symptoms="Dry cough and fever for 6 days, short of breath since yesterday",
        spo2="91",
        temperature="38.4",
        urgency="urgent",
        prevalence=0.10,
        attach_original=True,
        full_page_film=True,
        patient_name="Иванов Пётр (fictional)",
        patient_id="CS-2026-00417",
        patient_sex="M",
        birth_date="1958-07-21",
        study_date="2026-11-24",
        accession="A-558120",
        modality="CR",
        view="PA",
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        xray = load_xray(args.image)
        prediction, heatmap = predictor.explain(xray)
        pdf = write_study_report(tmp / "study.pdf", xray, prediction, heatmap, bundle, info)
        _render(pdf, args.out, args.dpi)
        if args.pdf:
            args.pdf.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pdf, args.pdf)
            print(f"wrote {args.pdf}")

        folder = REPO / "assets" / "samples"
        started = dt.datetime.now().astimezone()
        results = list(scan(folder, predictor, workers=0))
        batch_pdf = write_batch_report(tmp / "batch.pdf", results, folder=folder, bundle=bundle,
                                       operating_point=None, started=started,
                                       info=ReportInfo(clinic_name=info.clinic_name, operator="Lic. Zoë Ñúñez-Łukasz",
                                                       prevalence=0.10),
                                       predictor=predictor)
        _render(batch_pdf, args.batch_out, args.dpi)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

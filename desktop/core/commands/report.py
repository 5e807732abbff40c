"""``cxr-screener report FILE -o OUT.pdf [--model NAME] [--operating-point NAME] [--anonymize] ...``.

Screens one X-ray and writes the PDF report for the remote doctor: the image
and its Grad-CAM overlay, the result with the operating point's sensitivity
and specificity, the model and its validation, the limits, a findings box.
Patient fields come from the DICOM file and can be overridden here.

Exit codes: 0 written; 1 the image could not be read; 2 usage errors (unknown
model or operating point, output exists or cannot be written). Nothing is
left behind on failure.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="screen one X-ray and write the PDF report for a remote doctor",
        description="Screen one PNG, JPEG or DICOM chest X-ray and write a PDF report: patient and "
        "study, the X-ray and its Grad-CAM overlay, p(COVID-19) and the decision at the operating "
        "point with its sensitivity/specificity, model and validation, limits, and a box for the "
        "remote doctor's findings. Patient fields are read from DICOM; the options override them.",
    )
    p.add_argument("file", metavar="FILE", help="PNG, JPEG or DICOM file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.pdf", help="the PDF to write")
    p.add_argument("--model", help="model bundle name (default: the default bundle; see `cxr-screener models`)")
    p.add_argument("--operating-point", metavar="NAME", help="decision threshold by name (default: the model's)")
    p.add_argument(
        "--anonymize",
        action="store_true",
        help="replace the patient's name, ID, birth date and accession number by pseudonyms or withhold "
        "them; no identifying text anywhere in the PDF, its metadata included",
    )
    p.add_argument("--clinic", metavar="NAME", default="", help="clinic name for the header")
    p.add_argument("--clinic-address", metavar="TEXT", default="", help="clinic address (use \\n for new lines)")
    p.add_argument("--operator", metavar="NAME", help="who ran the analysis (default: $CXR_SCREENER_OPERATOR or login)")
    g = p.add_argument_group("patient and study (override the DICOM values)")
    g.add_argument("--patient-name", metavar="NAME")
    g.add_argument("--patient-id", metavar="ID")
    g.add_argument("--patient-sex", metavar="M|F|O")
    g.add_argument("--birth-date", metavar="YYYY-MM-DD")
    g.add_argument("--age", metavar="YEARS", help="age in years (or a DICOM age such as 045Y)")
    g.add_argument("--study-date", metavar="YYYY-MM-DD")
    g.add_argument("--accession", metavar="NUMBER", help="accession number")
    g.add_argument("--modality", metavar="CR|DX|...")
    g.add_argument("--view", metavar="PA|AP|...", help="view position")
    p.add_argument("--page-size", choices=("A4", "Letter"), default="A4", type=_page_size, help="paper size (default A4)")
    p.add_argument("--window", nargs=2, type=float, metavar=("CENTER", "WIDTH"), help="display window for the X-ray")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.pdf if it exists")
    # [site/gate hook, issue 16]
    p.add_argument("--site", metavar="NAME", help="use this site's calibrated threshold (see `cxr-screener calibrate`)")
    p.set_defaults(handler=run)


def _page_size(text: str) -> str:
    for choice in ("A4", "Letter"):
        if text.strip().lower() == choice.lower():
            return choice
    return text


def run(args: argparse.Namespace) -> int:
    import hashlib
    import sys
    from pathlib import Path

    from desktop.core.audit import AuditLog, default_operator
    from desktop.core.commands._model import load_model
    from desktop.core.fileio import check_writable
    from desktop.core.imaging import Window, load_xray
    from desktop.core.report import ReportInfo, write_study_report

    check_writable(args.output, overwrite=args.overwrite)  # exit 2 before any work
    loaded = load_model(args.model, args.operating_point)
    # [site/gate hook, issue 16] the site's threshold; no chest report for a film the gate rejects
    from desktop.core import gate
    from desktop.core.input_stats import load_for
    from desktop.core.site import resolve

    profile, site_op = resolve(getattr(args, "site", None), loaded.bundle)
    op = site_op or loaded.operating_point
    try:
        xray = load_xray(args.file)
    except Exception as exc:
        refused = gate.from_load_error(exc)
        if refused.code != "unreadable" and sys.stderr is not None:
            sys.stderr.write(f"cxr-screener report: {args.file}: {refused.text} ({refused.code}); no report written\n")
            return 1
        raise
    (screened,) = gate.screen(loaded.predictor, [xray], stats=load_for(loaded.bundle), operating_point=op)
    if screened.gate.rejected:
        if sys.stderr is not None:
            sys.stderr.write(f"cxr-screener report: {args.file}: {screened.gate.text} ({screened.gate.code}); "
                             "no chest report written\n")
        return 1
    prediction, heatmap = loaded.predictor.explain(xray, operating_point=op)
    operator = args.operator if args.operator is not None else default_operator()
    info = ReportInfo(
        clinic_name=args.clinic,
        clinic_address=args.clinic_address.replace("\\n", "\n"),
        operator=operator,
        patient_name=args.patient_name,
        patient_id=args.patient_id,
        patient_sex=args.patient_sex,
        birth_date=args.birth_date,
        age=args.age,
        study_date=args.study_date,
        accession=args.accession,
        modality=args.modality,
        view=args.view,
        page_size=args.page_size,
    )
    window = Window(args.window[0], args.window[1], "command line") if args.window else None
    out = write_study_report(
        args.output, xray, prediction, heatmap, loaded.bundle, info,
        anonymize=args.anonymize, overwrite=args.overwrite, window=window,
    )
    audit = AuditLog(operator=operator)
    audit.record(
        "report",
        file_sha256=xray.sha256,
        file_path=args.file,
        model=loaded.name,
        model_version=loaded.version,
        model_sha256=loaded.sha256,
        operating_point=str(prediction.operating_point),
        threshold=float(prediction.threshold),
        result={"status": "ok", "label": str(prediction.label), "p_covid": round(float(prediction.p_covid), 6)},
        anonymized=bool(args.anonymize),
        output_sha256=hashlib.sha256(Path(out).read_bytes()).hexdigest(),
    )
    audit.close()
    if audit.failed and sys.stderr is not None:
        sys.stderr.write(f"cxr-screener report: warning: audit log not written ({audit.failed})\n")
    if sys.stdout is not None:
        sys.stdout.write(f"{out}\n")
    return 0

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
    p.add_argument("--clinic-phone", metavar="TEXT", default="", help="phone number for the doctor's reply")
    p.add_argument("--clinic-email", metavar="ADDRESS", default="", help="e-mail address for the doctor's reply")
    p.add_argument("--operator", metavar="NAME", help="who ran the analysis, printed in the PDF (default: "
                   "$CXR_SCREENER_OPERATOR; the login name is recorded in the audit log only)")
    c = p.add_argument_group("clinical context (printed for the remote doctor)")
    c.add_argument("--symptoms", metavar="TEXT", default="", help="symptoms and their duration")
    c.add_argument("--spo2", metavar="PERCENT", default="", help="oxygen saturation, e.g. 91")
    c.add_argument("--temperature", metavar="DEG_C", default="", help="body temperature, e.g. 38.4")
    c.add_argument("--urgency", choices=("routine", "urgent", "emergency"), default="", help="how soon a reply is needed")
    c.add_argument("--prevalence", metavar="PERCENT", type=_percent,
                   help="share of COVID-19 among the patients this clinic screens, in percent: the report "
                   "then says how often a positive (and a negative) is right here")
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
    p.add_argument("--colormap", default=None, metavar="NAME", type=_colormap, help="heatmap colour map (jet, cividis, viridis, inferno, turbo)")
    p.add_argument("--opacity", type=_opacity, default=None, metavar="0-1", help="heatmap opacity (default 0.45)")
    p.add_argument("--heatmap-below-threshold", action="store_true",
                   help="draw the heatmap for a negative result too (hidden by default)")
    p.add_argument("--full-page-film", action="store_true", help="add a page with the film as large as the page")
    p.add_argument("--attach-original", action="store_true",
                   help="embed the original image file in the PDF (not with --anonymize: it carries the patient's data)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.pdf if it exists")
    p.add_argument("--site", metavar="NAME", help="use this site's calibrated threshold (see `cxr-screener calibrate`)")
    p.add_argument("--dicom-results", metavar="DIR",
                   help="also write a Secondary Capture (heatmap) and a Structured Report of a DICOM film here")
    p.set_defaults(handler=run)


def _percent(text: str) -> float:
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        value = -1.0
    if not 0.0 < value < 100.0:
        raise argparse.ArgumentTypeError(f"a percentage between 0 and 100 (e.g. 10). Received: {text!r}")
    return value


def _opacity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a number from 0 to 1. Received: {text!r}")
    return value


def _colormap(text: str) -> str:
    from desktop.core.overlay import COLORMAPS

    if text not in COLORMAPS:
        raise argparse.ArgumentTypeError(f"one of {', '.join(COLORMAPS)}. Received: {text!r}")
    return text


def _page_size(text: str) -> str:
    for choice in ("A4", "Letter"):
        if text.strip().lower() == choice.lower():
            return choice
    return text


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from desktop.core.audit import OPERATOR_ENV, AuditLog, default_operator
    from desktop.core.commands._model import load_model
    from desktop.core.fileio import check_writable
    from desktop.core.hashing import sha256_file
    from desktop.core.imaging import Window, load_xray
    from desktop.core.report import ReportInfo, write_study_report

    check_writable(args.output, overwrite=args.overwrite)  # exit 2 before any work
    loaded = load_model(args.model, args.operating_point)
    # the site's threshold; no chest report for a film the input gate rejects
    from desktop.core import gate
    from desktop.core.input_stats import load_for
    from desktop.core.site import resolve

    profile, site_op = resolve(args.site, loaded.bundle)
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
    # the PDF names a person only when one was given: a login name ("root") is not an operator
    printed = args.operator if args.operator is not None else os.environ.get(OPERATOR_ENV, "").strip()
    info = ReportInfo(
        clinic_name=args.clinic,
        clinic_address=args.clinic_address.replace("\\n", "\n"),
        clinic_phone=args.clinic_phone,
        clinic_email=args.clinic_email,
        operator=printed,
        symptoms=args.symptoms,
        spo2=args.spo2,
        temperature=args.temperature,
        urgency=args.urgency,
        prevalence=args.prevalence / 100.0 if args.prevalence is not None else None,
        attach_original=args.attach_original,
        full_page_film=args.full_page_film,
        show_heatmap_below_threshold=args.heatmap_below_threshold,
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
        anonymize=args.anonymize, overwrite=args.overwrite, window=window, cmap=args.colormap, alpha=args.opacity,
        caution=None if screened.ood is None else screened.ood.text,
    )
    if args.dicom_results:  # desktop.core.dicomnet: SC + SR in the film's study
        from desktop.core.dicomnet.screening import results_for_prediction

        written = results_for_prediction(args.file, xray, prediction, heatmap, args.dicom_results,
                                         model_sha256=loaded.sha256, anonymize=args.anonymize)
        if sys.stderr is not None:
            sys.stderr.write(f"DICOM results: {written.sc}, {written.sr}\n" if written else
                             "cxr-screener report: not a DICOM file: no DICOM results written\n")
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
        output_sha256=sha256_file(out),
    )
    audit.close()
    if audit.failed and sys.stderr is not None:
        sys.stderr.write(f"cxr-screener report: warning: audit log not written ({audit.failed})\n")
    if sys.stdout is not None:
        sys.stdout.write(f"{out}\n")
    return 0

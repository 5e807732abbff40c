"""``cxr-screener calibrate --site NAME --normals DIR [--positives DIR] [--target-specificity 0.95]``.

Screens a folder of the site's own confirmed-normal films (and optionally
COVID-19 films), sets the site threshold so that the local specificity
meets the target, and writes a site profile (see :mod:`desktop.core.site`)
bound to the model. Files that fail to load are listed and left out; films
the input gate rejects are listed and not counted. Fewer than 30 readable,
accepted normal films: refused (exit 2).

Prints a summary on stderr and the profile's path and figures as one JSON
object on stdout. Exit 0: profile written; 2: refused (too few films,
unknown model, profile exists without ``--overwrite``...).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "calibrate",
        help="set a site threshold from the site's own normal films (writes a site profile)",
        description="Screen a folder of this site's confirmed-normal chest films, set the threshold so that "
        "the local specificity meets the target, and save a site profile for --site on predict/scan/report. "
        "At least 30 readable normal films are needed.",
    )
    p.add_argument("--site", required=True, help="site name (e.g. 'Clinic North')")
    p.add_argument("--normals", required=True, metavar="DIR", help="folder of confirmed-normal films of this site")
    p.add_argument("--positives", metavar="DIR", help="folder of confirmed COVID-19 films of this site (optional)")
    p.add_argument("--target-specificity", type=float, default=0.95, metavar="X",
                   help="local specificity the threshold must reach (default 0.95)")
    p.add_argument("--model", help="model bundle name (default: the default bundle)")
    p.add_argument("--operator", help="who calibrated (default: $CXR_SCREENER_OPERATOR or login)")
    p.add_argument("--overwrite", action="store_true", help="replace this site's existing profile for the model")
    p.set_defaults(handler=run)


def _operator(name: str | None) -> str:
    import getpass
    import os

    if name:
        return name
    try:
        return os.environ.get("CXR_SCREENER_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return ""


def collect(folder: str, predictor: object, stats: object, label: str) -> tuple[list[float], list[str], list[str]]:
    """(scores of accepted films, unreadable files, 'file: reason' of rejected films) of one folder."""
    from pathlib import Path

    from desktop.core.errors import OutputError
    from desktop.core.gate import screen_folder

    if not Path(folder).is_dir():
        raise OutputError(folder, f"the {label} folder does not exist or is not a folder")
    scores: list[float] = []
    unreadable: list[str] = []
    rejected: list[str] = []
    for _, _, item in screen_folder(folder, predictor, stats=stats):
        if item.status == "ok" and item.p_covid is not None:
            scores.append(item.p_covid)
        elif item.status == "rejected":
            rejected.append(f"{item.path}: {item.code} ({item.reason})")
        else:
            unreadable.append(f"{item.path}: {item.reason}")
    return scores, unreadable, rejected


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from desktop.core.bundle import get_bundle
    from desktop.core.inference import Predictor
    from desktop.core.input_stats import load_for
    from desktop.core.site import make_profile, profile_path, save_profile, threshold_basis

    def say(line: str) -> None:
        if sys.stderr is not None:
            sys.stderr.write(line + "\n")

    bundle = get_bundle(args.model)
    target = profile_path(args.site, bundle.card.name)
    if target.exists() and not args.overwrite:
        from desktop.core.errors import OutputExistsError

        raise OutputExistsError(target, f"site {args.site!r} already has a profile for this model",
                                "use --overwrite to recalibrate")
    predictor = Predictor(bundle)
    stats = load_for(bundle)
    normals, bad_n, rej_n = collect(args.normals, predictor, stats, "normals")
    positives, bad_p, rej_p = (collect(args.positives, predictor, stats, "positives")
                               if args.positives else ([], [], []))
    for what, items in (("could not be read, left out", bad_n + bad_p), ("rejected by the input gate, not counted", rej_n + rej_p)):
        if items:
            say(f"{len(items)} file(s) {what}:")
            for line in items:
                say(f"  {line}")
    data = make_profile(
        args.site, bundle, normals, target_specificity=args.target_specificity,
        positive_scores=positives if args.positives else None, operator=_operator(args.operator), stats=stats,
        excluded={"unreadable": len(bad_n) + len(bad_p), "rejected": len(rej_n) + len(rej_p)},
    )
    prof = save_profile(data, overwrite=args.overwrite)
    say(f"site profile written: {prof.path}")
    say(f"threshold p(covid) >= {prof.threshold:.4f}: {threshold_basis(prof)}")
    if sys.stdout is not None:
        sys.stdout.write(json.dumps({
            "site": prof.site, "profile": str(prof.path), "threshold": prof.threshold,
            "normals": prof.n_normals, "specificity": data["normals"]["specificity"],
            "specificity_ci": data["normals"]["specificity_ci"],
            "expected_sensitivity": data["expected_sensitivity"],
            "positives": None if not data["positives"] else {
                k: v for k, v in data["positives"].items() if k != "scores"},
            "threshold_basis": threshold_basis(prof),
        }) + "\n")
    return 0

"""``cxr-screener render FILE -o OUT.png [--window C W] [--heatmap]``."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("render", help="write the display image (or the heatmap overlay) as an 8-bit PNG")
    p.add_argument("file", help="PNG, JPEG or DICOM")
    p.add_argument("-o", "--output", required=True, help="output PNG")
    p.add_argument("--window", nargs=2, type=float, metavar=("CENTER", "WIDTH"), help="display window")
    p.add_argument("--heatmap", action="store_true", help="overlay the Grad-CAM heatmap of the model")
    p.add_argument("--model", help="model bundle name (default: the default bundle)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import io
    import math
    import sys

    from PIL import Image

    from desktop.core.fileio import atomic_write_bytes, check_writable
    from desktop.core.imaging import Window, load_xray

    if args.window and not (math.isfinite(args.window[0]) and math.isfinite(args.window[1]) and args.window[1] > 0):
        sys.stderr.write(
            "cxr-screener render: error: --window CENTER WIDTH needs finite numbers and WIDTH > 0. "
            f"Received: --window {args.window[0]:g} {args.window[1]:g}\n"
        )
        return 2
    check_writable(args.output, overwrite=args.overwrite)
    xray = load_xray(args.file)
    window = Window(args.window[0], args.window[1], "command line") if args.window else None
    for note in xray.warnings:
        log.warning("%s: %s", xray.name, note)
    if args.heatmap:
        from desktop.core.overlay import render_heatmap_png

        data = render_heatmap_png(xray, model=args.model, window=window)
    else:
        buf = io.BytesIO()
        Image.fromarray(xray.to_uint8(window), mode="L").save(buf, format="PNG")
        data = buf.getvalue()
    atomic_write_bytes(args.output, data, overwrite=args.overwrite)
    return 0

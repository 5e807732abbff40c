"""Predict + Grad-CAM per image vs a bare ONNX Runtime forward pass of the same model.

    .venv/bin/python benchmarks/bench_inference.py                 # MobileNet 224, random weights (needs TF)
    .venv/bin/python benchmarks/bench_inference.py --model NAME    # an installed bundle (no TF)
    .venv/bin/python benchmarks/bench_inference.py --bundle DIR    # a bundle folder (no TF)

Target (issue 3): ``Predictor.explain`` (one ONNX run for probabilities and
the feature map, plus the numpy Grad-CAM) within 1.3x of a bare ONNX Runtime
``session.run`` of the same ONNX file on the same preprocessed input, with the
same thread settings. The timings are interleaved (bare, predict, explain,
bare, ...) so that a noisy machine slows all three alike; medians are
compared. Also reported: preprocessing of a full-size X-ray and putting the
heatmap on it (upsample + overlay), which the GUI and the CLI add on top.

Writes ``benchmarks/results/inference.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from desktop.core.bundle import ONNX_FILE, load_bundle  # noqa: E402
from desktop.core.inference import Predictor, default_threads  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "inference.json"
TARGET = 1.3


def _build_mobilenet_224(tmp: Path) -> Path:
    from tests.model_fixtures import make_test_bundle

    return make_test_bundle(tmp, "mobilenet", 224, name="bench-mobilenet-224", head="gap")  # type: ignore[no-any-return]


def _xray(size: tuple[int, int] = (2048, 2048)):  # type: ignore[no-untyped-def]
    import io

    from PIL import Image

    from desktop.core.imaging import load_xray

    rng = np.random.default_rng(0)
    small = rng.random((16, 16)).astype(np.float32)
    img = Image.fromarray(small, mode="F").resize((size[1], size[0]), Image.Resampling.BICUBIC)
    arr = np.clip(np.asarray(img) * 65535, 0, 65535).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return load_xray(buf.getvalue(), name="bench.png")


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--bundle", help="bundle folder")
    src.add_argument("--model", help="installed bundle name")
    ap.add_argument("--rounds", type=int, default=40, help="interleaved rounds (default 40)")
    ap.add_argument("--threads", type=int, default=None, help=f"intra-op threads (default {default_threads()})")
    ap.add_argument("--out", default=str(RESULTS), help="results JSON")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    tmp = tempfile.TemporaryDirectory()
    if args.bundle:
        path = Path(args.bundle)
        source = str(path)
    elif args.model:
        from desktop.core.bundle import get_bundle

        path = get_bundle(args.model).path
        source = f"installed bundle {args.model}"
    else:
        path = _build_mobilenet_224(Path(tmp.name))
        source = "MobileNet alpha 1.0, 224x224, weights=None (random), GAP head, cut at conv_pw_13_relu"

    bundle = load_bundle(path)
    predictor = Predictor(bundle, threads=args.threads)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = predictor.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    bare = ort.InferenceSession(str(bundle.path / ONNX_FILE), opts, providers=["CPUExecutionProvider"])

    xray = _xray()
    x = predictor.preprocess(xray)[None]
    feed = {"input": x}

    def run_bare() -> object:
        return bare.run(["probs"], feed)

    def run_predict() -> object:
        return predictor.predict_inputs(x)

    def run_explain() -> object:
        return predictor.explain_input(x[0])

    for _ in range(3):  # warm-up
        run_bare()
        run_predict()
        run_explain()
    times: dict[str, list[float]] = {"bare_forward": [], "predict": [], "predict_gradcam": []}
    for _ in range(args.rounds):
        times["bare_forward"].append(_time(run_bare))
        times["predict"].append(_time(run_predict))
        times["predict_gradcam"].append(_time(run_explain))

    pre = [_time(lambda: predictor.preprocess(xray)) for _ in range(5)]
    _, heat = predictor.explain_input(x[0])

    def put_on_image() -> object:
        from desktop.core.overlay import overlay_rgb

        return overlay_rgb(xray.pixels, heat.upsample(xray.shape))

    put_on_image()
    overlay = [_time(put_on_image) for _ in range(5)]

    def stats(v: list[float]) -> dict[str, float]:
        s = sorted(v)
        return {"median_ms": 1000 * statistics.median(s), "p90_ms": 1000 * s[int(0.9 * (len(s) - 1))],
                "min_ms": 1000 * s[0]}  # fmt: skip

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["predict_gradcam"] / med["bare_forward"]
    result = {
        "benchmark": "predict + Grad-CAM per image vs bare ONNX Runtime forward (same model, same input)",
        "command": "python benchmarks/bench_inference.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
        "model": source,
        "input": list(x.shape),
        "feature_map": list(predictor.feature_shape),
        "threads": predictor.threads,
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "onnxruntime": ort.__version__},  # fmt: skip
        "timings": {k: stats(v) for k, v in times.items()},
        "ratio_predict_gradcam_over_bare": round(ratio, 3),
        "ratio_predict_over_bare": round(med["predict"] / med["bare_forward"], 3),
        "target_ratio": TARGET,
        "meets_target": ratio <= TARGET,
        "extra": {
            "preprocess_2048x2048_median_ms": 1000 * statistics.median(pre),
            "heatmap_upsample_overlay_2048x2048_median_ms": 1000 * statistics.median(overlay),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    t = result["timings"]
    print(f"bare forward     {t['bare_forward']['median_ms']:8.2f} ms (median of {args.rounds})")
    print(f"predict          {t['predict']['median_ms']:8.2f} ms  ({result['ratio_predict_over_bare']:.2f}x)")
    print(f"predict+Grad-CAM {t['predict_gradcam']['median_ms']:8.2f} ms  ({ratio:.2f}x, target <= {TARGET}x: "
          f"{'met' if ratio <= TARGET else 'NOT met'})")  # fmt: skip
    print(f"preprocess 2048^2 {result['extra']['preprocess_2048x2048_median_ms']:.1f} ms, "
          f"heatmap on image {result['extra']['heatmap_upsample_overlay_2048x2048_median_ms']:.1f} ms")  # fmt: skip
    print(f"written to {out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

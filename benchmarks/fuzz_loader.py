"""Long fuzzing run of the image loader (the CI-sized run is tests/test_fuzz_loader.py).

    python benchmarks/fuzz_loader.py --minutes 10

Mutates small valid PNG, JPEG and DICOM files (8/12/16-bit; uncompressed, RLE, JPEG baseline,
JPEG Lossless, JPEG-LS, JPEG 2000) and the hostile corpus of tests/hostile.py with a fixed seed,
and loads every input in worker processes, each with an address-space limit, a per-input
timeout and a traced-memory peak. It counts what came out: loaded, each documented error
class, and failures: an undocumented exception, a crash (the worker died) or a hang (over
the timeout). Writes benchmarks/results/fuzz.json and fuzz.md; inputs that failed are saved
for reproduction. Exit status 1 if any failure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"


# --- worker -----------------------------------------------------------------


def _worker(conn: Connection, memory_mb: int, max_pixels: int | None) -> None:
    import tracemalloc

    if memory_mb and sys.platform.startswith("linux"):
        import resource

        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from desktop.core import imaging
    from desktop.core.errors import ImageLoadError

    if max_pixels:
        imaging.MAX_PIXELS = max_pixels
    from tests.hostile import valid_samples

    for name, data in valid_samples().items():  # import every decoder before measuring
        imaging.load_xray(data, name=name)
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        idx, name, data = job
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            imaging.load_xray(data, name=name)
            outcome, cls, msg = "ok", "", ""
        except ImageLoadError as exc:
            outcome, cls, msg = "error", type(exc).__name__, exc.reason
            if name not in str(exc):
                outcome, cls, msg = "unexpected", type(exc).__name__, "message does not name the file"
        except BaseException as exc:  # noqa: BLE001 - anything else is the bug we look for
            outcome, cls, msg = "unexpected", type(exc).__name__, str(exc)[:300]
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        conn.send((idx, outcome, cls, msg, elapsed, peak))


class Worker:
    def __init__(self, ctx: Any, memory_mb: int, max_pixels: int | None) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, memory_mb, max_pixels), daemon=True)
        self.proc.start()
        child.close()
        msg = self.conn.recv()
        assert msg == ("ready",), msg
        self.job: tuple[int, str, bytes, str] | None = None
        self.started = 0.0

    def submit(self, idx: int, name: str, data: bytes, origin: str) -> None:
        self.job = (idx, name, data, origin)
        self.started = time.perf_counter()
        self.conn.send((idx, name, data))

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


# --- inputs -----------------------------------------------------------------


def inputs(seed: int, only: list[str] | None = None) -> Iterator[tuple[str, bytes, str]]:
    """(name, bytes, origin): the hostile corpus once, then mutations of the valid samples forever."""
    from tests.hostile import apply_mutations, hostile_cases, random_mutations, valid_samples

    if not only:
        for case in hostile_cases():
            if case.data is not None and not case.special:
                yield case.name, case.data, "corpus"
    samples = valid_samples()
    names = sorted(n for n in samples if not only or n in only)
    rng = random.Random(seed)
    while True:
        name = rng.choice(names)
        ops = random_mutations(rng)
        yield f"mut_{name}", apply_mutations(samples[name], ops), name


# --- main -------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    fail_dir = Path(args.save_failures or tempfile.mkdtemp(prefix="cxr_fuzz_failures_"))
    fail_dir.mkdir(parents=True, exist_ok=True)
    workers = [Worker(ctx, args.memory_mb, args.max_pixels) for _ in range(args.workers)]
    gen = inputs(args.seed, args.samples)
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    by_origin: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    examples: dict[str, str] = {}
    failures: list[dict[str, Any]] = []
    max_elapsed, max_elapsed_input = 0.0, ""
    max_peak, max_peak_input = 0, ""
    total_elapsed = 0.0
    tried = 0
    t_start = time.perf_counter()
    deadline = t_start + args.minutes * 60.0
    idx = 0

    def fail(kind: str, w: Worker, detail: str) -> None:
        assert w.job is not None
        i, name, data, origin = w.job
        path = fail_dir / f"{kind}_{i:07d}_{name}"
        path.write_bytes(data)
        failures.append({"kind": kind, "input": i, "origin": origin, "detail": detail, "saved": str(path)})
        outcomes[kind] += 1
        print(f"[{kind}] input {i} ({origin}): {detail} -> {path}", file=sys.stderr, flush=True)

    def feed(w: Worker) -> bool:
        nonlocal idx
        if time.perf_counter() >= deadline or (args.max_inputs and idx >= args.max_inputs):
            return False
        name, data, origin = next(gen)
        w.submit(idx, name, data, origin)
        idx += 1
        return True

    busy = [w for w in workers if feed(w)]

    def replace_worker(w: Worker) -> None:
        """Kill a crashed or hung worker and put a fresh one in its place."""
        busy.remove(w)
        workers.remove(w)
        w.kill()
        nw = Worker(ctx, args.memory_mb, args.max_pixels)
        workers.append(nw)
        if feed(nw):
            busy.append(nw)

    last_report = time.perf_counter()
    while busy:
        ready = wait([w.conn for w in busy], timeout=0.25)
        now = time.perf_counter()
        for w in list(busy):
            if w.conn in ready:
                try:
                    i, outcome, cls, msg, elapsed, peak = w.conn.recv()
                except (EOFError, OSError):
                    w.proc.join(5)
                    fail("crash", w, f"worker died (exit code {w.proc.exitcode})")
                    tried += 1
                    replace_worker(w)
                    continue
                assert w.job is not None
                tried += 1
                by_origin[w.job[3]] += 1
                total_elapsed += elapsed
                if elapsed > max_elapsed:
                    max_elapsed, max_elapsed_input = elapsed, w.job[3]
                if peak > max_peak:
                    max_peak, max_peak_input = peak, w.job[3]
                if outcome == "unexpected":
                    fail("unexpected_exception", w, f"{cls}: {msg}")
                else:
                    outcomes[outcome] += 1
                    if outcome == "error":
                        errors[cls] += 1
                        examples.setdefault(cls, msg[:160])
                        reasons[msg.split(" (")[0][:70]] += 1
                if not feed(w):
                    busy.remove(w)
            elif now - w.started > args.timeout:
                fail("hang", w, f"no result after {args.timeout:.0f} s")
                tried += 1
                replace_worker(w)
        if now - last_report > 30:
            last_report = now
            print(f"{now - t_start:6.0f} s  {tried} inputs  {dict(outcomes)}", file=sys.stderr, flush=True)
    for w in workers:
        w.stop()
    duration = time.perf_counter() - t_start
    return {
        "command": "python benchmarks/fuzz_loader.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": args.seed,
        "minutes_budget": args.minutes,
        "duration_s": round(duration, 1),
        "workers": args.workers,
        "timeout_s": args.timeout,
        "memory_limit_mb": args.memory_mb,
        "max_pixels": args.max_pixels,
        "inputs_tried": tried,
        "inputs_per_s": round(tried / duration, 1) if duration else 0.0,
        "by_origin": dict(sorted(by_origin.items())),
        "loaded_ok": outcomes.get("ok", 0),
        "documented_errors": sum(errors.values()),
        "errors_by_type": dict(errors.most_common()),
        "top_reasons": dict(reasons.most_common(15)),
        "example_reason_by_type": examples,
        "crashes": outcomes.get("crash", 0),
        "hangs": outcomes.get("hang", 0),
        "unexpected_exceptions": outcomes.get("unexpected_exception", 0),
        "failures": failures[:50],
        "failures_saved_in": str(fail_dir) if failures else None,
        "max_load_s": round(max_elapsed, 3),
        "max_load_s_origin": max_elapsed_input,
        "mean_load_ms": round(1000 * total_elapsed / max(tried, 1), 2),
        "max_traced_memory_mb": round(max_peak / 2**20, 1),
        "max_traced_memory_origin": max_peak_input,
        "environment": _environment(),
    }


def _environment() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    env = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("pydicom", "pillow", "numpy", "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle",
                 "pyjpegls", "python-gdcm"):
        try:
            env[dist] = version(dist)
        except PackageNotFoundError:
            env[dist] = "not installed"
    return env


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Loader fuzzing",
        "",
        f"`{r['command']}` ({r['date']}, seed {r['seed']}, {r['workers']} worker(s), "
        f"{r['duration_s']:.0f} s, per-input timeout {r['timeout_s']:.0f} s, address space "
        f"limit {r['memory_limit_mb']} MiB per worker)",
        "",
        "| | count |",
        "|---|---:|",
        f"| inputs tried | {r['inputs_tried']} |",
        f"| loaded (mutation left a valid image) | {r['loaded_ok']} |",
    ]
    for cls, n in r["errors_by_type"].items():
        lines.append(f"| refused: `{cls}` | {n} |")
    lines += [
        f"| undocumented exceptions | {r['unexpected_exceptions']} |",
        f"| crashes | {r['crashes']} |",
        f"| hangs (> {r['timeout_s']:.0f} s) | {r['hangs']} |",
        "",
        f"Slowest input {r['max_load_s']:.2f} s ({r['max_load_s_origin']}), mean "
        f"{r['mean_load_ms']:.1f} ms; largest traced memory {r['max_traced_memory_mb']:.1f} MiB "
        f"({r['max_traced_memory_origin']}).",
        "",
        "Inputs by origin: " + ", ".join(f"{k} {v}" for k, v in r["by_origin"].items()) + ".",
        "",
        "Most frequent reasons:",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in r["top_reasons"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="time budget (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=max(1, min(2, mp.cpu_count())))
    p.add_argument("--timeout", type=float, default=20.0, help="per-input limit in seconds")
    p.add_argument("--memory-mb", type=int, default=3072, help="address-space limit per worker")
    p.add_argument("--max-pixels", type=int, default=None, help="override MAX_PIXELS in the workers")
    p.add_argument("--max-inputs", type=int, default=0, help="stop after this many inputs")
    p.add_argument("--samples", nargs="*", help="mutate only these seed files (e.g. valid_jpll.dcm)")
    p.add_argument("--out", default=str(RESULTS), help="folder for fuzz.json / fuzz.md")
    p.add_argument("--save-failures", default=None, help="folder for inputs that failed")
    args = p.parse_args(argv)
    result = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "fuzz.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    bad = result["crashes"] + result["hangs"] + result["unexpected_exceptions"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""One file -> result pipeline: :func:`screen_files` turns files into :class:`ScanResult`.

::

    for result in screen_files(["a.dcm", "b.png"], predictor, ScreenOptions(heatmap_dir=out)):
        ...

Every caller that screens files goes through here: ``scan`` (the folder walk
on top, :mod:`.folder`), ``predict``, the GUI's batch scan, the DICOM
listener (over its spool folder). Per file:

1. a decoder (worker process, thread or inline; :mod:`.pool`) reads the
   file once, hashes and decodes the same bytes, preprocesses it to the
   model input and, only when display is needed (heatmaps, reports, GUI),
   makes a small uint8 :class:`~desktop.core.display.Display`
   (:mod:`.decode`);
2. the main thread runs consecutive decoded files through the model in
   batches (ONNX Runtime releases the GIL, so decoding overlaps inference);
   with heatmaps each file is explained once from its model input (one
   forward pass gives the probabilities and the Grad-CAM features) and its
   PNG written once, drawn on the display image;
3. the result goes to the ``sink`` (results.csv), the audit log, the
   progress object, and is yielded, in input order.

At most ``window`` files are in flight, so memory stays flat however many
files there are. Files whose sha256 equals ``done[rel]`` (resume) are
skipped: counted, not yielded.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from desktop.core.cpu import decode_workers
from desktop.core.errors import CXRError, OutputError
from desktop.core.progress import CancelToken, Progress, ProgressFn
from desktop.core.results import ScanResult

from .decode import NO_DISPLAY, Decoded, Wants, decode_one
from .heatmaps import write_heatmap_png
from .pool import DecodeFn, DecodePool, PoolUnavailable, ThreadPool
from .walk import Entry

log = logging.getLogger(__name__)

#: Seconds one file may take to read, decode and preprocess before it is given up.
DEFAULT_DECODE_TIMEOUT = 60.0
#: Files run through the model together.
DEFAULT_BATCH_SIZE = 8


@dataclass
class ScanStats:
    """Counts of the last scan (filled while it runs)."""

    total: int = 0
    done: int = 0
    ok: int = 0
    errors: int = 0
    #: films the input gate rejected (not failures)
    rejected: int = 0
    skipped: int = 0
    #: documents left out (README, PDF, CSV... whose content is not an image)
    ignored: int = 0
    cancelled: bool = False
    elapsed_s: float = 0.0
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class ScreenOptions:
    """How to screen files (everything but the files and the model)."""

    operating_point: str | None = None
    #: decoders: None = :func:`desktop.core.cpu.decode_workers`, 0 = inline (no timeout)
    workers: int | None = None
    #: decode in threads instead of processes (a few files: no process start-up to pay)
    threads: bool = False
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT
    batch_size: int = DEFAULT_BATCH_SIZE
    #: explain each file and write its heatmap PNG to ``heatmap_target(entry)``
    heatmap_target: Callable[[Entry], Path] | None = None
    heatmap_overwrite: bool = True
    #: keep a :class:`~desktop.core.display.Display`, the prediction and the heatmap on each result
    keep_display: bool = False
    #: explain each file even without heatmap PNGs (reports' study pages)
    explain: bool = False
    audit: Any = None
    audit_event: str = "scan"
    #: the name the audit may record for a result (default: its path); e.g. a pseudonym
    audit_name: Callable[[ScanResult], str] | None = None
    decode_fn: DecodeFn | None = None
    #: :mod:`desktop.core.input_stats` of the bundle: the learnt input gate and the OOD flag (None: neither)
    input_stats: Any = None
    #: a :class:`~desktop.core.site.SiteProfile`: its threshold replaces ``operating_point``
    site: Any = None

    @property
    def wants(self) -> Wants:
        from .decode import WITH_DISPLAY

        return WITH_DISPLAY if (self.heatmap_target is not None or self.keep_display) else NO_DISPLAY

    @property
    def explaining(self) -> bool:
        return self.heatmap_target is not None or self.explain


class ModelView:
    """What the pipeline needs from a Predictor: its spec, names, and a forward pass of model inputs.

    Reads ``predictor.bundle`` (a :class:`desktop.core.bundle.Bundle`); a
    stand-in without a bundle may provide ``spec``, ``name`` and ``version``.
    """

    def __init__(self, predictor: Any, operating_point: Any, input_stats: Any = None, site: Any = None) -> None:
        self.predictor = predictor
        self.input_stats = input_stats
        #: the site profile's name (its threshold is the operating point)
        self.site: str | None = None if site is None else str(site.site)
        if site is not None:
            operating_point = site.operating_point()
        #: an OperatingPoint object (a site's) rather than a name from the card
        self.op_object = operating_point if not isinstance(operating_point, (str, type(None))) else None
        bundle = getattr(predictor, "bundle", None)
        card = getattr(bundle, "card", None)
        self.spec: Any = getattr(predictor, "spec", None)
        if self.spec is None:
            self.spec = card.preprocess  # type: ignore[union-attr]
        self.name = str(getattr(bundle, "name", None) or getattr(predictor, "name", ""))
        self.version = str(getattr(bundle, "version", None) or getattr(predictor, "version", ""))
        self.sha256: str | None = getattr(card, "sha256", None)
        self.operating_point = operating_point
        self.threshold: float | None = None
        if self.op_object is not None:
            self.operating_point = str(self.op_object.name)
            self.threshold = float(self.op_object.threshold)
        elif card is not None:
            op = card.operating_point(operating_point)  # ModelError if unknown: before any work
            self.operating_point = op.name
            self.threshold = float(op.threshold)
        self.ood: dict[int, Any] = {}  # id(prediction) -> desktop.core.ood assessment
        self._last_ood: Any = None

    @property
    def _op(self) -> Any:
        return self.op_object if self.op_object is not None else self.operating_point

    def _gated(self) -> bool:
        return self.input_stats is not None and callable(getattr(self.predictor, "forward_raw", None))

    def spec_dict(self) -> dict[str, Any]:
        return dict(self.spec.to_dict())

    def predict(self, inputs: Sequence[Any]) -> list[Any]:
        """Predictions in order; with input statistics, a film the learnt gate rejects gives its GateResult."""
        import numpy as np

        batch = np.stack(list(inputs))
        if self._gated():
            # one forward pass gives the features too: the learnt gate and the OOD score from them
            fmap, probs = self.predictor.forward_raw(batch)
            op = self.predictor.operating_point(self._op)
            out = [self._verdict(fmap[j : j + 1], functools.partial(self.predictor._prediction, probs[j], op))
                   for j in range(len(batch))]
            self._remember([p for p in out if hasattr(p, "p_covid")])
            return out
        fast = getattr(self.predictor, "predict_inputs", None)
        if callable(fast):
            preds = fast(batch, operating_point=self._op)
        else:  # Predictor.predict takes model inputs (H, W, C) too
            preds = self.predictor.predict(list(inputs), operating_point=self._op)
        self._remember(preds)
        return list(preds)

    def explain(self, inp: Any) -> tuple[Any, Any]:
        """(prediction, heatmap); ``(GateResult, None)`` for a film the learnt gate rejects.

        Gated, the model runs once: the gate and the OOD score read the feature map of the same forward
        pass the Grad-CAM comes from (``Predictor.explain_outputs``)."""
        gated = self._gated()
        from_outputs = None
        if gated:
            import numpy as np

            fmap, probs = self.predictor.forward_raw(np.asarray(inp)[None])
            verdict = self._verdict(fmap, lambda: None)
            if getattr(verdict, "rejected", False):
                return verdict, None
            from_outputs = getattr(self.predictor, "explain_outputs", None)
        if callable(from_outputs):
            pred, heatmap = from_outputs(fmap, probs, self.predictor.operating_point(self._op))
        else:  # a stand-in predictor without explain_outputs runs its own pass
            fn = getattr(self.predictor, "explain_input", None) or self.predictor.explain
            pred, heatmap = fn(inp, self._op)
        if gated:
            self.ood[id(pred)] = self._last_ood
        self._remember([pred])
        return pred, heatmap

    def _verdict(self, fmap: Any, make: Callable[[], Any]) -> Any:
        """The learnt gate's GateResult if it rejects the film, else ``make()`` (its OOD assessment kept)."""
        from desktop.core.gate import check_learnt
        from desktop.core.ood import assess

        verdict = check_learnt(fmap, self.input_stats)
        if verdict.rejected:
            return verdict
        self._last_ood = assess(fmap, self.input_stats)
        pred = make()
        if pred is not None:
            self.ood[id(pred)] = self._last_ood
        return pred

    def _remember(self, preds: Sequence[Any]) -> None:
        if preds and self.threshold is None:
            self.threshold = float(preds[0].threshold)
            self.operating_point = str(preds[0].operating_point)


def as_entries(items: Sequence[str | os.PathLike[str] | Entry]) -> list[Entry]:
    """Entries for paths given one by one (``predict``): the path as given is also its name."""
    return [i if isinstance(i, Entry) else Entry(os.fspath(i), os.fspath(i)) for i in items]


def screen_files(
    items: Sequence[str | os.PathLike[str] | Entry],
    predictor: Any,
    options: ScreenOptions | None = None,
    *,
    done: Mapping[str, str] | None = None,
    sink: Callable[[ScanResult], None] | None = None,
    progress: Progress | ProgressFn | None = None,
    cancel: CancelToken | None = None,
    stats: ScanStats | None = None,
) -> Iterator[ScanResult]:
    """Screen ``items`` (paths or :class:`Entry`); yield one :class:`ScanResult` each, in order.

    ``done`` maps ``Entry.rel`` to a recorded sha256 (resume: same bytes are
    skipped; ``""`` means recorded as unreadable). ``sink`` gets each result
    before it is yielded (the results.csv writer; its :class:`OutputError`
    stops the run). Raises :class:`~desktop.core.errors.ModelError` for an
    unknown operating point before any file is read.
    """
    options = options or ScreenOptions()
    model = ModelView(predictor, options.operating_point, options.input_stats, options.site)
    run = _Run(as_entries(items), model, options, done or {}, sink,
               progress, cancel, stats if stats is not None else ScanStats())
    yield from run


class _Run:
    """One pass of the pipeline over a list of entries (see :func:`screen_files`)."""

    def __init__(self, entries: list[Entry], model: ModelView, options: ScreenOptions, done: Mapping[str, str],
                 sink: Callable[[ScanResult], None] | None, progress: Progress | ProgressFn | None,
                 cancel: CancelToken | None, stats: ScanStats) -> None:
        from desktop.core.preprocess import PreprocessSpec

        self.entries = entries
        self.model = model
        self.options = options
        self.done = done
        self.sink = sink
        self.stats = stats
        self.cancel = cancel if cancel is not None else (progress if isinstance(progress, Progress) else None)
        if isinstance(progress, Progress):
            self.progress = progress
        else:
            self.progress = Progress()
            if progress is not None:
                self.progress.subscribe(progress)
        self.spec = PreprocessSpec.from_dict(model.spec_dict())
        self.wants = options.wants
        self.decode_fn: DecodeFn = options.decode_fn or decode_one
        self.batch_size = max(1, options.batch_size)
        self.ready: dict[int, Decoded] = {}
        self.queue: deque[int] = deque()  # dispatched but not yet decoded (inline mode)
        self.next_dispatch = 0
        self.next_out = 0
        self.pool: DecodePool | ThreadPool | None = None
        n_workers = decode_workers() if options.workers is None else max(0, options.workers)
        self.n_workers = n_workers
        in_flight = 1 if options.explaining else self.batch_size
        self.window = max(2, (n_workers or 1) * DecodePool.DEPTH + in_flight)

    def _start_pool(self) -> None:
        o, n = self.options, self.n_workers
        if not n or not self.entries:
            return
        if not o.threads:
            try:
                self.pool = DecodePool(n, self.model.spec_dict(), self.wants, o.decode_timeout, decode_fn=o.decode_fn)
                return
            except PoolUnavailable as exc:
                log.warning("decoding processes unavailable (%s): decoding in threads instead", exc)
        self.pool = ThreadPool(n, self.spec, self.wants, o.decode_timeout, decode_fn=o.decode_fn)

    def __iter__(self) -> Iterator[ScanResult]:
        self.stats.total = len(self.entries)
        self.progress.start(len(self.entries))
        t0 = time.monotonic()
        try:
            self._start_pool()
            yield from self._loop(t0)
        finally:
            if self.pool is not None:
                self.pool.close()
            self.stats.elapsed_s = time.monotonic() - t0

    def _cancelled(self) -> bool:
        if self.cancel is not None and self.cancel.cancelled:
            self.stats.cancelled = True
            return True
        return False

    def _fill(self) -> None:
        """Hand out work, keeping at most ``window`` files between dispatch and output."""
        n = len(self.entries)
        while self.next_dispatch < n and self.next_dispatch - self.next_out < self.window:
            i = self.next_dispatch
            entry = self.entries[i]
            recorded = self.done.get(entry.rel)
            if entry.error is not None:
                self.ready[i] = Decoded("skip") if recorded is not None else Decoded(
                    "error", error=entry.error, error_kind=entry.error_kind)
            elif recorded == "" and entry.rel in self.done:
                self.ready[i] = Decoded("skip")  # recorded as unreadable before
            elif self.pool is not None:
                worker: Any = self.pool.idle()
                if worker is None:
                    return
                self.pool.submit(worker, i, entry.path, recorded)
            else:
                self.queue.append(i)
            self.next_dispatch += 1

    def _loop(self, t0: float) -> Iterator[ScanResult]:
        n = len(self.entries)
        while self.next_out < n:
            if self._cancelled():
                return
            self._fill()
            if self.pool is not None:
                # Collect what is finished (wait only if the next file is not), then give the freed
                # workers new files *before* the model runs, so decoding overlaps inference.
                for task_id, got in self.pool.poll(0.0 if self.next_out in self.ready else 0.2):
                    self.ready[task_id] = got
                self._fill()
            elif self.next_out not in self.ready and self.queue:
                i = self.queue.popleft()
                entry = self.entries[i]
                self.ready[i] = self.decode_fn(entry.path, self.done.get(entry.rel), self.spec, self.wants)
            if self.next_out not in self.ready:
                continue
            group: list[int] = []
            while self.next_out + len(group) in self.ready and len(group) < self.batch_size:
                group.append(self.next_out + len(group))
            decoded = [self.ready.pop(i) for i in group]
            self.next_out += len(group)
            for result in self._infer(group, decoded):
                if result is None:
                    self.stats.skipped += 1
                    self.stats.done += 1
                    self.progress.advance(processed=False)
                    continue
                self._record(result)
                self.stats.elapsed_s = time.monotonic() - t0
                self.progress.advance()
                yield result
                if self._cancelled():
                    return

    def _record(self, result: ScanResult) -> None:
        if self.sink is not None:
            self.sink(result)
        self._audit(result)
        s = self.stats
        s.done += 1
        if result.ok:
            s.ok += 1
            if result.label:
                s.labels[result.label] = s.labels.get(result.label, 0) + 1
        elif result.rejected:
            s.rejected += 1
        else:
            s.errors += 1

    # ------------------------------------------------------------------ the model

    def _infer(self, group: list[int], decoded: list[Decoded]) -> list[ScanResult | None]:
        """Results for a run of consecutive files (None for a resume skip), in order."""
        model, o = self.model, self.options
        ok = [k for k, d in enumerate(decoded) if d.status == "ok"]
        preds: dict[int, Any] = {}
        heat: dict[int, Any] = {}
        heat_png: dict[int, str] = {}
        errors: dict[int, tuple[str, str]] = {}
        rejected: dict[int, Any] = {}  # k -> GateResult of the learnt gate
        if ok:
            try:
                if o.explaining:
                    for k in ok:
                        entry = self.entries[group[k]]
                        try:
                            pred, heatmap = model.explain(decoded[k].input)
                            if heatmap is None and getattr(pred, "rejected", False):
                                rejected[k] = pred
                                continue
                            preds[k], heat[k] = pred, heatmap
                        except CXRError as exc:
                            if isinstance(exc, OutputError):
                                raise
                            errors[k] = (f"{entry.path}: {exc.reason}", exc.kind)
                            continue
                        if o.heatmap_target is not None:
                            try:
                                target = o.heatmap_target(entry)
                                display = decoded[k].display
                                assert display is not None
                                heat_png[k] = str(write_heatmap_png(target, display.gray(), heat[k],
                                                                    overwrite=o.heatmap_overwrite))
                            except (CXRError, OSError) as exc:
                                errors[k] = (f"heatmap not written: {exc}", "heatmap")
                else:
                    for k, pred in zip(ok, model.predict([decoded[k].input for k in ok]), strict=True):
                        if getattr(pred, "rejected", False):
                            rejected[k] = pred
                        else:
                            preds[k] = pred
            except CXRError as exc:
                if isinstance(exc, OutputError):
                    raise
                for k in ok:
                    errors.setdefault(k, (f"{self.entries[group[k]].path}: {exc.reason}", exc.kind))
        out: list[ScanResult | None] = [None] * len(group)
        for k, d in enumerate(decoded):
            if d.status == "skip":
                continue
            entry = self.entries[group[k]]
            pred = preds.get(k)
            err = errors.get(k)
            if d.status == "rejected" or k in rejected:  # a reason and a code, never a p(covid)
                verdict = rejected.get(k)
                out[k] = ScanResult(
                    path=entry.path, sha256=d.sha256, status="rejected", label=None, p_covid=None,
                    model=model.name, model_version=model.version, operating_point=model.operating_point,
                    threshold=model.threshold, error=verdict.text if verdict is not None else d.error,
                    error_kind=None, relpath=entry.rel,
                    reject_code=verdict.code if verdict is not None else d.error_kind, site=model.site,
                )
                continue
            if d.status == "ok" and pred is not None and (err is None or err[1] == "heatmap"):
                ood = model.ood.pop(id(pred), None)
                result = ScanResult(
                    path=entry.path, sha256=d.sha256, status="ok", label=str(pred.label),
                    p_covid=float(pred.p_covid), model=str(getattr(pred, "model", model.name)),
                    model_version=str(getattr(pred, "model_version", model.version)),
                    operating_point=str(pred.operating_point), threshold=float(pred.threshold),
                    error=err[0] if err else None, error_kind=err[1] if err else None,
                    heatmap=heat_png.get(k), relpath=entry.rel, site=model.site,
                    ood_flag=None if ood is None else bool(ood.flagged),
                    ood_score=None if ood is None else float(ood.score),
                )
                if o.keep_display:
                    result = replace(result, display=d.display, prediction=pred, explanation=heat.get(k))
            else:
                message, kind = err or (d.error or f"{entry.path}: failed", d.error_kind or "error")
                result = ScanResult(
                    path=entry.path, sha256=d.sha256, status="error", label=None, p_covid=None,
                    model=model.name, model_version=model.version, operating_point=model.operating_point,
                    threshold=model.threshold, error=message, error_kind=kind, relpath=entry.rel,
                    reject_code="unreadable", site=model.site,
                )
            out[k] = result
        return out

    def _audit(self, result: ScanResult) -> None:
        audit, o = self.options.audit, self.options
        if audit is None:
            return
        res: dict[str, Any] = {"status": result.status}
        if result.ok:
            res.update(label=result.label, p_covid=result.p_covid)
        else:  # a rejected film: its gate code (the audit log has no reject_code key)
            res["error_kind"] = result.reject_code if result.rejected else result.error_kind
        try:
            audit.record(
                o.audit_event,
                file_sha256=result.sha256 or None,
                file_path=o.audit_name(result) if o.audit_name is not None else result.path,
                model=result.model,
                model_version=result.model_version,
                model_sha256=self.model.sha256,
                operating_point=result.operating_point,
                threshold=result.threshold,
                result=res,
            )
        except Exception:
            log.exception("audit log entry failed")


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_DECODE_TIMEOUT",
    "ModelView",
    "ScanStats",
    "ScreenOptions",
    "as_entries",
    "screen_files",
]

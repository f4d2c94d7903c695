"""Analyse radiographs with the discovered models (Qt-free use case).

For one image (one registry snapshot): the body-region gate runs first; classifiers and
segmenters whose manifest says ``"applies_to": {"body_region": [...]}`` run only when the gate's
answer is in that list (or when forced, and then the result says so). Each result is built from
its manifest's declarations (docs/MODELS.md): one mask overlay per declared segment, one call
per finding of a multi-label model, the declared measurements; then Grad-CAM++ maps for the
classifiers and their declared ``heatmap_share`` inside the masks of a role (``lung_field``),
never "the first segmentation". Batches stream their results to a callback and keep at most a
few images in flight, so memory stays bounded however long the batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from viewer.core.overlay import heatmap_mass_inside
from viewer.core.preprocess import InputSpec
from viewer.inference.gradcam import cam_to_image, gradcam_plusplus
from viewer.inference.manifest import MeasurementDecl, ModelManifest
from viewer.inference.registry import ModelRegistry
from viewer.inference.runner import ModelContractError, ModelOutputs, RunTerminated, run_model
from viewer.inference.sessions import SessionPool
from viewer.services.analysis_types import (
    ERROR, NOT_PROJECTION_RADIOGRAPHY, OK, OUT_OF_SCOPE, OUT_OF_SCOPE_REASON, OUTSIDE_DATA,
    OUTSIDE_DATA_REASON, AnalysisInput,
    NEGATIVE, POSITIVE, AnalysisResult, FindingResult, GateAnswer, Measurement, ModelResult,
    Overlay, confidence_band, date_outside, population_caution,
)
from viewer.services.support_log import file_token, log_file_error
from viewer.services.tasks import CancelToken, Cancelled, ProgressFn, no_progress
from viewer.core.messages import exception_words

log = logging.getLogger(__name__)

__all__ = ["AnalysisService", "BatchSummary", "gate_answer"]

T = TypeVar("T")


def gate_answer(manifest: ModelManifest, out: ModelOutputs, inp: AnalysisInput) -> GateAnswer:
    """Turn the gate's outputs into a region, applying its OOD rule (docs/MODELS.md).

    The answer is "unknown" when the DICOM modality is not projection radiography (CT, MR,
    US, ...: :data:`NOT_PROJECTION_RADIOGRAPHY`), when the image is mostly colour (its colour
    fraction is above ``ood.max_colour_fraction``: radiographs are greyscale), when the energy score
    ``-logsumexp(logits)`` is above ``ood.threshold`` (or the top class's own entry of
    ``ood.class_thresholds``), or when the calibrated top-class confidence is below
    ``ood.confidence_floor``.
    """
    probs = out.probabilities
    assert probs is not None
    top = int(np.argmax(probs))
    confidence = float(probs[top])
    ood = manifest.ood or {}
    # The energy threshold: the top class's own (ood.class_thresholds), else the global one.
    raw_limit = (ood.get("class_thresholds") or {}).get(manifest.labels[top], ood.get("threshold"))
    limit = None if raw_limit is None else float(raw_limit)
    reason = None
    max_colour = ood.get("max_colour_fraction")
    modality = inp.modality.strip().upper()
    if modality in NOT_PROJECTION_RADIOGRAPHY:
        reason = f"DICOM modality {modality}: not a projection radiograph"
    elif max_colour is not None and inp.colour_fraction > float(max_colour):
        reason = (f"a colour image ({100 * inp.colour_fraction:.0f}% of pixels coloured, "
                  f"limit {100 * float(max_colour):.0f}%): radiographs are greyscale")
    elif limit is not None and out.energy is not None and out.energy > limit:
        reason = f"energy {out.energy:.2f} above {limit:.2f}"
    elif confidence < float(ood.get("confidence_floor", 0.0)):
        reason = f"confidence {confidence:.2f} below {float(ood['confidence_floor']):.2f}"
    return GateAnswer(
        region="unknown" if reason else manifest.labels[top],
        confidence=confidence,
        energy=out.energy,
        unknown_reason=reason,
        body_part_examined=inp.body_part_examined,
        view_position=inp.view_position,
    )


class _Terminator:
    """Links a :class:`CancelToken` to ``RunOptions.terminate`` of the runs in flight."""

    def __init__(self, cancel: CancelToken | None) -> None:
        self._cancel = cancel
        self._live: set[ort.RunOptions] = set()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if cancel is not None:
            self._thread = threading.Thread(target=self._watch, name="ort-terminator", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        # Wakes at once on close() (so closing never waits), polls the token every 20 ms.
        assert self._cancel is not None
        while not self._done.wait(0.02):
            if self._cancel.cancelled:
                with self._lock:
                    for ro in self._live:
                        ro.terminate = True
                return

    @contextmanager
    def options(self) -> Iterator[ort.RunOptions]:
        ro = ort.RunOptions()
        with self._lock:
            if self._cancel is not None and self._cancel.cancelled:
                raise Cancelled()
            self._live.add(ro)
        try:
            yield ro
        finally:
            with self._lock:
                self._live.discard(ro)

    def close(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()


@dataclass(frozen=True)
class BatchSummary:
    """Counts of a finished (or cancelled) batch."""

    images: int
    done: int
    errors: int
    cancelled: bool
    seconds: float


class AnalysisService:
    """Runs the registry's models on images.

    Parameters
    ----------
    registry
        Where the models come from.
    sessions
        Shared sessions; one is created (2 intra-op threads) if not given.
    """

    def __init__(self, registry: ModelRegistry, sessions: SessionPool | None = None) -> None:
        self.registry = registry
        self.sessions = sessions or SessionPool()

    # ---- one image -------------------------------------------------------------------------
    def analyse(
        self,
        inp: AnalysisInput,
        *,
        models: Collection[str] | None = None,
        force: bool | Collection[str] = False,
        cancel: CancelToken | None = None,
        heatmaps: bool = True,
    ) -> AnalysisResult:
        """Analyse one image with the gate and the selected models.

        Parameters
        ----------
        inp
            The display image and its identifiers.
        models
            Ids to run (default: every available model). The gate runs whenever a selected
            model is gated by body region (or when its own id is selected).
        force
            ``True`` or a set of ids: run those models even when out of their intended input;
            their results are marked ``forced``.
        cancel
            Cancels promptly, also mid-run (``RunOptions.terminate``); raises ``Cancelled``.
        heatmaps
            Compute Grad-CAM++ heatmaps for the classifiers.
        """
        terminator = _Terminator(cancel)
        try:
            return self._analyse_with(terminator, inp, models, force, heatmaps)
        finally:
            terminator.close()

    def _analyse_with(self, term: _Terminator, inp: AnalysisInput, models: Collection[str] | None,
                      force: bool | Collection[str], heatmaps: bool) -> AnalysisResult:
        try:
            return self._analyse(inp, models, force, term, heatmaps)
        except RunTerminated as exc:
            raise Cancelled() from exc

    def _analyse(self, inp: AnalysisInput, models: Collection[str] | None,
                 force: bool | Collection[str], term: _Terminator, heatmaps: bool) -> AnalysisResult:
        t0 = time.perf_counter()
        shape = (int(inp.display.shape[0]), int(inp.display.shape[1]))
        views: dict[InputSpec, np.ndarray] = {}
        # One registry for the whole image: the UI may swap ``self.registry`` (a new models
        # folder) while a batch runs; an image must not mix the old gate with the new models.
        registry = self.registry
        gate_m = registry.gate()
        chosen = [m for m in registry.available() if not m.gate
                  and (models is None or m.id in models)]
        messages: list[str] = []
        results: list[ModelResult] = []
        gate = None
        if gate_m is not None and models is not None and gate_m.id not in models and not any(
                m.applies_to for m in chosen):
            gate_m = None  # nothing selected needs gating: skip the gate's run
        if gate_m is not None:
            res, out = self._run_one(gate_m, inp, term, False, views)
            if out is not None:
                gate = gate_answer(gate_m, out, inp)
                res = _replace_label(res, gate)
            results.append(res)
        elif registry.gate() is None and any(m.applies_to for m in chosen):
            messages.append("no body-region model: inputs are not checked against intended use")
        classifiers = [m for m in chosen if m.task == "classification"]
        segmenters = [m for m in chosen if m.task == "segmentation"]
        outs: dict[str, ModelOutputs] = {}
        for m in classifiers + segmenters:
            in_scope = _in_scope(m, gate, registry.gate() is not None)
            forced = force is True or (not isinstance(force, bool) and m.id in force)
            if not in_scope and not forced:
                results.append(_out_of_scope(m, gate))
                continue
            res, out = self._run_one(m, inp, term, not in_scope, views, forced)
            results.append(res)
            if out is not None:
                outs[m.id] = out
        by_id = {m.id: m for m in chosen}
        if heatmaps:
            results = [self._with_heatmap(r, outs.get(r.model_id), shape, by_id.get(r.model_id),
                                          results, by_id) for r in results]
        else:  # the declared shares stay in the rows, unmeasured (stable columns)
            results = [_unmeasured_shares(r, by_id.get(r.model_id), "no heatmaps computed")
                       for r in results]
        messages.extend(self.sessions.messages())
        total = {"total": (time.perf_counter() - t0) * 1e3}
        log.debug("analysed %s: %d models in %.0f ms", file_token(inp.source or inp.image_id),
                  len(results), total["total"])
        return AnalysisResult(inp.image_id, inp.source, shape, gate, tuple(results), total,
                              tuple(messages))

    def _run_one(self, m: ModelManifest, inp: AnalysisInput, term: _Terminator, forced: bool,
                 views: dict[InputSpec, np.ndarray], run_anyway: bool = False
                 ) -> tuple[ModelResult, ModelOutputs | None]:
        """Run one model. ``forced``: it runs outside its intended input (the gate said so);
        ``run_anyway``: the user asked for results even outside the model's data."""
        base = ModelResult(m.id, m.version, m.task, ERROR, forced=forced, threshold=m.threshold,
                           positive_label=m.positive_label,
                           caution=None if m.gate else population_caution(
                               inp, m.age_range, m.population))
        try:
            info = self.sessions.get(m.onnx_path)
            with term.options() as ro:
                out = run_model(info.session, m, inp.display, ro, views.get(m.input_spec))
            views.setdefault(m.input_spec, out.view)
        except (RunTerminated, Cancelled):
            raise
        except Exception as exc:
            log_file_error(log, f"model {m.id} {m.version}", inp.source or inp.image_id, exc)
            why = str(exc) if isinstance(exc, ModelContractError) else exception_words(exc)
            return _evolve(base, reason=f"the model failed: {why}"), None
        timings = dict(out.timings_ms)
        if m.task == "segmentation":
            return _segmenter_result(m, base, out, timings, info.provider), out
        outside = _outside_data(m, inp, out)
        if outside is not None and not run_anyway:
            return _evolve(base, status=OUTSIDE_DATA, reason=outside, model_view=out.view,
                           timings_ms=timings, provider=info.provider), None
        if outside is not None:
            base = _evolve(base, forced=True, caution="; ".join(
                c for c in (base.caution, f"{outside}; run anyway") if c))
        probs = out.probabilities
        assert probs is not None
        if m.multilabel:
            return _multilabel_result(m, base, probs, out, timings, info.provider), out
        label_idx = _decide(m, probs)
        confidence = float(probs[label_idx])
        res = _evolve(
            base, status=OK, label=m.labels[label_idx],
            probabilities={lab: float(p) for lab, p in zip(m.labels, probs)},
            confidence=confidence, band=confidence_band(confidence, m.bands),
            model_view=out.view, timings_ms=timings, provider=info.provider,
        )
        return res, out

    def _with_heatmap(self, res: ModelResult, out: ModelOutputs | None, shape: tuple[int, int],
                      m: ModelManifest | None, results: Sequence[ModelResult],
                      manifests: Mapping[str, ModelManifest]) -> ModelResult:
        """Grad-CAM++ of the reported class (a multi-label model: its most probable finding)
        and the declared ``heatmap_share`` measurements. ``m`` and ``manifests`` come from the
        registry snapshot of this image."""
        if (out is None or m is None or m.gate or m.gradcam_weight is None
                or out.activations is None or res.label is None):
            return _unmeasured_shares(res, m, "no Grad-CAM++ heatmap for this result")
        t0 = time.perf_counter()
        cams = gradcam_plusplus(out.activations, np.asarray(m.gradcam_weight, np.float32))
        if res.findings:
            target = max(res.findings, key=lambda f: f.probability).label
        else:
            target = m.positive_label or res.label
        spec = m.input_spec
        heat = cam_to_image(cams[m.labels.index(target)], shape, (spec.height, spec.width))
        overlay = Overlay("heatmap", m.id, target, heat)
        shares = tuple(_heatmap_share(m, d, heat, results, manifests)
                       for d in m.measurements if d.kind == "heatmap_share")
        timings = {**res.timings_ms, "gradcam": (time.perf_counter() - t0) * 1e3}
        return _evolve(res, cams=cams, overlays=(*res.overlays, overlay),
                       measurements=(*res.measurements, *shares), timings_ms=timings)

    def heatmap_for(self, res: ModelResult, label: str, shape: tuple[int, int]) -> np.ndarray:
        """The Grad-CAM++ heatmap of another class (or finding) of a classifier result."""
        m = self.registry.get(res.model_id)
        if res.cams is None or m is None or label not in m.labels:
            raise ValueError(f"{res.model_id}: no activations kept for this result")
        spec = m.input_spec
        return cam_to_image(res.cams[m.labels.index(label)], shape, (spec.height, spec.width))

    # ---- batches ---------------------------------------------------------------------------
    def iter_batch(
        self,
        items: Sequence[T],
        load: Callable[[T], AnalysisInput],
        executor: Executor,
        *,
        cancel: CancelToken | None = None,
        progress: ProgressFn = no_progress,
        in_flight: int = 4,
        keep_arrays: bool = True,
        on_analysed: Callable[[AnalysisInput, AnalysisResult], None] | None = None,
        **options: object,
    ) -> Iterator[tuple[T, AnalysisResult | BaseException]]:
        """Analyse ``items`` on ``executor``, yielding ``(item, result or error)`` as they finish.

        At most ``in_flight`` images are loaded or analysed at once, and nothing is kept after it
        is yielded, so memory is bounded. ``keep_arrays=False`` drops masks and heatmaps from the
        yielded results (counts and scores only). ``on_analysed(input, result)`` runs on the
        worker right after each analysis, while the display image is still at hand (e.g. to
        write overlay files). Errors while loading or analysing an item are
        yielded as exceptions; a cancellation stops submitting and returns.
        """
        unknown = set(options) - {"models", "force", "heatmaps"}
        if unknown:
            raise TypeError(f"unexpected options: {sorted(unknown)}")
        cancel = cancel or CancelToken()
        total = len(items)
        pending: deque[tuple[T, Future[AnalysisResult]]] = deque()
        terminator = _Terminator(cancel)  # one watcher for the whole batch

        def job(item: T) -> AnalysisResult:
            cancel.raise_if_cancelled()
            inp = load(item)
            result = self._analyse_with(
                terminator, inp, options.get("models"), options.get("force", False),  # type: ignore[arg-type]
                bool(options.get("heatmaps", True)))
            if on_analysed is not None:
                on_analysed(inp, result)
            return result if keep_arrays else result.without_arrays()

        it = iter(items)
        try:
            yield from self._drain(it, pending, job, executor, cancel, in_flight, progress, total)
        finally:
            terminator.close()

    @staticmethod
    def _drain(it: Iterator[T], pending: deque[tuple[T, Future[AnalysisResult]]],
               job: Callable[[T], AnalysisResult], executor: Executor, cancel: CancelToken,
               in_flight: int, progress: ProgressFn, total: int,
               ) -> Iterator[tuple[T, AnalysisResult | BaseException]]:
        exhausted = False
        done = 0
        while True:
            while not exhausted and len(pending) < in_flight and not cancel.cancelled:
                try:
                    item = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending.append((item, executor.submit(job, item)))
            if not pending:
                return
            item, fut = pending.popleft()
            try:
                value: AnalysisResult | BaseException = fut.result()
            except Cancelled:
                continue
            except Exception as exc:
                value = exc
            done += 1
            progress(done, total)
            yield item, value

    def analyse_batch(
        self,
        items: Sequence[T],
        load: Callable[[T], AnalysisInput],
        executor: Executor,
        on_result: Callable[[T, AnalysisResult | BaseException], None],
        *,
        cancel: CancelToken | None = None,
        progress: ProgressFn = no_progress,
        **options: Any,
    ) -> BatchSummary:
        """Like :meth:`iter_batch`, delivering each outcome to ``on_result``; returns counts."""
        cancel = cancel or CancelToken()
        t0 = time.perf_counter()
        done = errors = 0
        for item, value in self.iter_batch(items, load, executor, cancel=cancel,
                                           progress=progress, **options):
            done += 1
            errors += isinstance(value, BaseException)
            on_result(item, value)
        return BatchSummary(len(items), done, errors, cancel.cancelled, time.perf_counter() - t0)


def _evolve(res: ModelResult, **changes: object) -> ModelResult:
    return replace(res, **changes)  # type: ignore[arg-type]


def _segmenter_result(m: ModelManifest, base: ModelResult, out: ModelOutputs,
                      timings: Mapping[str, float], provider: str | None) -> ModelResult:
    """One mask overlay per declared segment and the declared measurements on them."""
    masks = out.masks
    assert masks is not None
    overlays = tuple(Overlay("mask", m.id, seg.label, masks[i], seg.role)
                     for i, seg in enumerate(m.segments))
    fractions = {seg.label: float(np.count_nonzero(masks[i])) / max(1, masks[i].size)
                 for i, seg in enumerate(m.segments)}
    measurements = []
    for d in m.measurements:
        assert d.segment is not None
        frac = fractions[d.segment]
        if d.kind == "presence":
            value = 1.0 if frac > (d.min_area_fraction or 0.0) else 0.0
            measurements.append(Measurement(d.key(m.id), d.kind, m.id, d.segment, value,
                                            "boolean", note=f"area fraction {frac:.4f}"))
        else:
            measurements.append(Measurement(d.key(m.id), d.kind, m.id, d.segment, frac))
    return _evolve(base, status=OK, label=", ".join(s.label for s in m.segments),
                   overlays=overlays, measurements=tuple(measurements), model_view=out.view,
                   timings_ms=timings, provider=provider)


def _multilabel_result(m: ModelManifest, base: ModelResult, probs: np.ndarray,
                       out: ModelOutputs, timings: Mapping[str, float],
                       provider: str | None) -> ModelResult:
    """Each finding called at its own threshold, with its own band (confidence in the call)."""
    findings = []
    for f, p in zip(m.findings, probs):
        p = float(p)
        positive = p >= f.threshold
        sure = p if positive else 1.0 - p
        findings.append(FindingResult(f.label, p, f.threshold, POSITIVE if positive else NEGATIVE,
                                      confidence_band(sure, f.bands)))
    called = [f for f in findings if f.positive]
    top = max(called or findings, key=lambda f: f.probability)
    confidence = top.probability if top.positive else 1.0 - top.probability
    return _evolve(base, status=OK, label=top.label if top.positive else "no finding",
                   probabilities={f.label: f.probability for f in findings},
                   findings=tuple(findings), confidence=confidence, band=top.band,
                   threshold=None, model_view=out.view, timings_ms=timings, provider=provider)


def _unmeasured_shares(res: ModelResult, m: ModelManifest | None, why: str) -> ModelResult:
    """The declared ``heatmap_share`` measurements of an OK classifier result without a
    heatmap, as ``None`` with the reason (so its CSV/JSON keys do not come and go)."""
    if m is None or res.status != OK or m.task != "classification":
        return res
    shares = tuple(Measurement(d.key(m.id), d.kind, m.id, d.role or "", None, note=why)
                   for d in m.measurements if d.kind == "heatmap_share")
    return _evolve(res, measurements=(*res.measurements, *shares)) if shares else res


def _heatmap_share(m: ModelManifest, decl: MeasurementDecl, heat: np.ndarray,
                   results: Sequence[ModelResult],
                   manifests: Mapping[str, ModelManifest]) -> Measurement:
    """The share of ``heat``'s mass inside the union of the masks of role ``decl.role``, from
    the first segmenter (by model id) that ran on the image and declares that role."""
    assert decl.role is not None
    key = decl.key(m.id)
    for res in sorted(results, key=lambda r: r.model_id):
        seg_m = manifests.get(res.model_id)
        if res.status != OK or seg_m is None or seg_m.task != "segmentation":
            continue
        masks = [o.array for o in res.overlays if o.kind == "mask" and o.role == decl.role]
        if not masks or masks[0].shape != heat.shape:
            continue
        union = masks[0] if len(masks) == 1 else np.logical_or.reduce(masks).view(np.uint8)
        return Measurement(key, decl.kind, m.id, decl.role, heatmap_mass_inside(heat, union),
                           source=res.model_id)
    return Measurement(key, decl.kind, m.id, decl.role, None,
                       note=f"no segmenter with a {decl.role} segment ran on this image")


def _decide(m: ModelManifest, probs: np.ndarray) -> int:
    """Label index: the positive label when its probability reaches the threshold, else the
    most probable other label (argmax for models without a positive label)."""
    pos = m.positive_index
    if pos is None or m.threshold is None:
        return int(np.argmax(probs))
    if probs[pos] >= m.threshold:
        return pos
    others = np.array(probs, dtype=np.float64)
    others[pos] = -1.0
    return int(np.argmax(others))


def _outside_data(m: ModelManifest, inp: AnalysisInput, out: ModelOutputs) -> str | None:
    """Why this image is outside the model's data, or ``None``: its own applicability check
    (manifest ``applicability``), or a study date before the population it learnt from
    (``study_date_from``)."""
    if m.gate:
        return None
    reasons = []
    dated = date_outside(inp.study_date, m.study_date_from)
    if dated:
        reasons.append(dated)
    check, score = m.applicability, out.applicability
    if check is not None and score is not None and not score <= check.threshold:  # NaN: outside
        reasons.append(f"the image is unlike the films it learnt from (applicability score "
                       f"{score:.3g} > {check.threshold:.3g})")
    if not reasons:
        return None
    return f"{OUTSIDE_DATA_REASON}: " + "; ".join(reasons)


def _in_scope(m: ModelManifest, gate: GateAnswer | None, have_gate: bool) -> bool:
    allowed = m.applies_to.get("body_region")
    if not allowed:
        return True
    if not have_gate:
        return True  # reported once in messages
    return gate is not None and not gate.is_unknown and gate.region in allowed


def _out_of_scope(m: ModelManifest, gate: GateAnswer | None) -> ModelResult:
    where = "gate failed" if gate is None else (
        f"body region {gate.region}" + (f" ({gate.unknown_reason})" if gate.unknown_reason else ""))
    return ModelResult(m.id, m.version, m.task, OUT_OF_SCOPE, reason=f"{OUT_OF_SCOPE_REASON}: {where}",
                       threshold=m.threshold, positive_label=m.positive_label)


def _replace_label(res: ModelResult, gate: GateAnswer) -> ModelResult:
    if gate.is_unknown:
        # "unknown / not a radiograph" has no confidence of its own: the top-class
        # probability would read as confidence in "unknown". The probabilities stay.
        return _evolve(res, label=gate.region, reason=gate.unknown_reason, confidence=None,
                       band=None)
    return _evolve(res, label=gate.region, reason=gate.unknown_reason)

"""Run one model on one display image: preprocess -> onnxruntime -> postprocess."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Mapping

import numpy as np
import onnxruntime as ort

from viewer.core.preprocess import model_view, normalise, to_gray_u8
from viewer.inference.manifest import ModelContractError, ModelManifest, channel_index
from viewer.inference.postprocess import POSTPROCESSORS, energy_score

__all__ = ["ModelOutputs", "ModelContractError", "RunTerminated", "check_contract", "run_model"]


class RunTerminated(RuntimeError):
    """The run was stopped through ``RunOptions.terminate``."""


@dataclass(frozen=True)
class ModelOutputs:
    """Processed outputs of one run, keyed by output kind."""

    by_kind: Mapping[str, np.ndarray]
    view: np.ndarray  # uint8 (H, W): what the model saw, before normalisation
    energy: float | None
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def probabilities(self) -> np.ndarray | None:
        """Exclusive classes' calibrated softmax, or a multi-label model's sigmoids."""
        value = self.by_kind.get("logits")
        return self.by_kind.get("multilabel_logits") if value is None else value

    @property
    def masks(self) -> np.ndarray | None:
        """``(S, rows, cols)`` uint8 masks, one per declared segment."""
        return self.by_kind.get("segmentation_logits")

    @property
    def mask(self) -> np.ndarray | None:
        """The first declared segment's mask."""
        masks = self.masks
        return None if masks is None or len(masks) == 0 else masks[0]

    @property
    def activations(self) -> np.ndarray | None:
        return self.by_kind.get("activations")

    @property
    def applicability(self) -> float | None:
        """The model's own applicability score (larger: less like its training data)."""
        value = self.by_kind.get("applicability")
        return None if value is None or value.size == 0 else float(value.reshape(-1)[0])


def check_contract(session: Any, manifest: ModelManifest) -> None:
    """Raise :class:`ModelContractError` when the manifest names an input or output the graph
    lacks (onnxruntime's own error text is not shown: messages are built from our words)."""
    inputs = [i.name for i in session.get_inputs()]
    outputs = {o.name for o in session.get_outputs()}
    if manifest.input_name not in inputs:
        raise ModelContractError(f"the manifest's input {manifest.input_name!r} is not an input of "
                                 f"{manifest.onnx_path.name} (its inputs: {', '.join(inputs)})")
    missing = [n for n in manifest.outputs if n not in outputs]
    if missing:
        raise ModelContractError(f"the manifest's outputs {', '.join(map(repr, missing))} are not "
                                 f"outputs of {manifest.onnx_path.name} (its outputs: "
                                 f"{', '.join(sorted(outputs))})")
    _check_shapes(session, manifest)


def _static(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _check_shapes(session: Any, manifest: ModelManifest) -> None:
    """Check the declared outputs against the graph's static shapes (dynamic dims are checked
    on the arrays at run time, by the postprocessors)."""
    shapes = {o.name: list(o.shape or []) for o in session.get_outputs()}
    for name, kind in manifest.outputs.items():
        shape = shapes.get(name, [])
        last = _static(shape[-1]) if shape else None
        if kind == "logits" and last is not None and last != len(manifest.labels):
            raise ModelContractError(f"labels: the output {name!r} has {last} logits for "
                                     f"{len(manifest.labels)} labels")
        if kind == "multilabel_logits" and last is not None and last != len(manifest.findings):
            raise ModelContractError(f"findings: the output {name!r} has {last} logits for "
                                     f"{len(manifest.findings)} declared findings")
        if kind == "segmentation_logits" and len(shape) == 4 and _static(shape[1]) is not None:
            for i, seg in enumerate(manifest.segments):
                channel_index(seg, f"segments[{i}]", int(shape[1]))


def run_model(
    session: ort.InferenceSession,
    manifest: ModelManifest,
    display_u8: np.ndarray,
    run_options: ort.RunOptions | None = None,
    view: np.ndarray | None = None,
) -> ModelOutputs:
    """Preprocess ``display_u8``, run ``session`` and postprocess every declared output.

    Parameters
    ----------
    session
        The model's shared session.
    manifest
        The model's manifest (input spec, outputs and their kinds).
    display_u8
        2-D uint8 display image (or RGB, converted to grey), bone bright, any size.
    run_options
        Options whose ``terminate`` flag cancels the run (raises :class:`RunTerminated`).
    view
        ``model_view(display_u8, manifest.input_spec)`` if already computed (models sharing an
        input spec share it; resizing a 2500 x 2000 image costs tens of ms).
    """
    t0 = time.perf_counter()
    grey = to_gray_u8(display_u8)
    if view is None:
        view = model_view(grey, manifest.input_spec)
    x = normalise(view, manifest.input_spec)
    t1 = time.perf_counter()
    names = list(manifest.outputs)
    check_contract(session, manifest)
    try:
        raw = session.run(names, {manifest.input_name: x}, run_options)
    except Exception as exc:  # onnxruntime raises its own Fail type
        if run_options is not None and run_options.terminate:
            raise RunTerminated(str(exc)) from exc
        raise
    t2 = time.perf_counter()
    by_kind: dict[str, np.ndarray] = {}
    energy = None
    for name, value in zip(names, raw):
        kind = manifest.outputs[name]
        if kind == "logits":  # the gate's energy score (exclusive classes only)
            energy = energy_score(value)
        by_kind.setdefault(kind, POSTPROCESSORS[kind](value, manifest, grey.shape))
    t3 = time.perf_counter()
    timings = {"preprocess": (t1 - t0) * 1e3, "run": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
    return ModelOutputs(by_kind, view, energy, timings)

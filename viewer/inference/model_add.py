"""``radview models add``: turn a plain ONNX model into a user model (docs/MODELS.md, "Your own
model").

Reads the graph with the ``onnx`` package (imported lazily: it is a development tool, not part of
the packaged viewer), checks the input and the outputs against what the user says the model is,
looks for a global-average-pool + linear head to wire Grad-CAM++ (:mod:`viewer.inference.gradcam`
needs the activations fed to the pool as a graph output and the head's weight in the manifest),
and writes ``<id>.onnx`` + ``<id>.json`` into the user models folder. The user's own file is
never modified: when an output must be added, a copy is written. Everything is checked before
anything lands in the folder: the head is only declared when it reproduces the graph's logits,
the manifest must load with :func:`viewer.inference.manifest.load_manifest`, and the model must
run through :func:`viewer.inference.runner.run_model`, the path the window and the CLI use.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from viewer.inference.manifest import DEFAULT_BANDS, ROLES, load_manifest, sha256_file
from viewer.runtime_paths import user_data_dir
from viewer.inference.registry import ModelRegistry, bundled_models_dir
from viewer.inference.onnx_graph import (
    GraphInfo, LinearHead, ModelAddError, TensorInfo, find_gap_linear_head, inspect_graph,
    load_onnx, uses_external_data, with_output,
)

__all__ = [
    "USER_MODELS_ENV", "TASKS", "ModelAddError", "TensorInfo", "GraphInfo", "LinearHead",
    "AddOptions", "AddReport", "user_models_dir", "load_onnx", "inspect_graph",
    "find_gap_linear_head", "add_model",
]

USER_MODELS_ENV = "RADVIEW_MODELS_DIR"
TASKS = ("classification", "multilabel", "segmentation")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def user_models_dir() -> Path:
    """The user models folder ``models add`` writes to and the CLI searches first.

    ``$RADVIEW_MODELS_DIR`` wins; else the platform's per-user data folder
    (``~/.local/share/radview/models``, ``%LOCALAPPDATA%\\radview\\models``,
    ``~/Library/Application Support/radview/models``), beside the support log's folder.
    """
    return user_data_dir("models", USER_MODELS_ENV)


# ---- options and the manifest --------------------------------------------------------------
@dataclass(frozen=True)
class AddOptions:
    """What ``radview models add`` was told (see its ``--help``)."""

    source: Path
    task: str
    labels: tuple[str, ...]
    folder: Path
    model_id: str | None = None
    name: str | None = None
    version: str = "1.0.0"
    threshold: float | None = None
    positive: str | None = None
    input_size: tuple[int, int] | None = None
    mean: float | None = None
    std: float | None = None
    applies_to: tuple[str, ...] = ()
    roles: Mapping[str, str] = field(default_factory=dict)  # segment label (or "*") -> role
    codes: Mapping[str, Any] = field(default_factory=dict)  # label -> {"category": .., "type": ..}
    logits_output: str | None = None
    force: bool = False


@dataclass(frozen=True)
class AddReport:
    manifest_path: Path
    onnx_path: Path
    manifest: Mapping[str, Any]
    gradcam: bool
    gradcam_note: str  # how Grad-CAM++ was wired, or why it could not be
    notes: tuple[str, ...] = ()


def _input(info: GraphInfo, opts: AddOptions) -> tuple[TensorInfo, int, tuple[int, int]]:
    if len(info.inputs) != 1:
        raise ModelAddError(f"MODEL: expected one image input, the graph has {len(info.inputs)}: "
                            + ", ".join(i.describe() for i in info.inputs))
    inp = info.inputs[0]
    if inp.dtype != "float32":
        raise ModelAddError(f"input {inp.name!r} is {inp.dtype}; radview feeds float32 "
                            "(normalised) images")
    if inp.shape is None or len(inp.shape) != 4:
        raise ModelAddError(f"input {inp.describe()}: expected 4 dimensions N x C x H x W")
    c, h, w = inp.shape[1:]
    if c not in (1, 3):
        raise ModelAddError(f"input {inp.describe()}: expected 1 channel (grey) or 3 (the grey "
                            f"image repeated), got {c!r}")
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        if opts.input_size is not None and tuple(opts.input_size) != (h, w):
            raise ModelAddError(f"--input-size {opts.input_size[0]} {opts.input_size[1]}: the graph's "
                                f"input is fixed at {h} x {w}")
        return inp, int(c), (h, w)
    if opts.input_size is None:
        raise ModelAddError(f"input {inp.describe()} has a dynamic size: give --input-size H W "
                            "(the size the model was trained at)")
    return inp, int(c), (int(opts.input_size[0]), int(opts.input_size[1]))


def _pick_output(info: GraphInfo, opts: AddOptions, rank: int) -> TensorInfo:
    names = ", ".join(o.describe() for o in info.outputs)
    if opts.logits_output is not None:
        found = next((o for o in info.outputs if o.name == opts.logits_output), None)
        if found is None:
            raise ModelAddError(f"--logits-output {opts.logits_output!r} is not an output of the "
                                f"graph (its outputs: {names})")
        return found
    fits = [o for o in info.outputs if o.shape is None or len(o.shape) == rank]
    if len(fits) > 1:
        fits = [o for o in fits if o.name == "logits"] or fits
    if len(fits) != 1:
        what = "N x classes" if rank == 2 else "N x C x H x W"
        raise ModelAddError(f"expected one output of shape {what}, the graph has "
                            f"{len(fits)} ({names}); name it with --logits-output")
    return fits[0]


def _width(out: TensorInfo, axis: int) -> int | None:
    if out.shape is None or len(out.shape) <= axis:
        return None
    d = out.shape[axis]
    return d if isinstance(d, int) and d > 0 else None


def _codes(opts: AddOptions, label: str) -> dict[str, list[str]]:
    block = opts.codes.get(label)
    if block is None:
        return {}
    out: dict[str, list[str]] = {}
    for key in ("category", "type"):
        value = block.get(key) if isinstance(block, Mapping) else None
        if (not isinstance(value, (list, tuple)) or len(value) != 3
                or not all(isinstance(v, str) and v.strip() for v in value)):
            raise ModelAddError(f"--codes {label}.{key}: expected [scheme, value, meaning], e.g. "
                                f"[\"SCT\", \"39607008\", \"Lung\"], got {value!r}")
        out[key] = [str(v) for v in value]
    return out


def _check_labels(opts: AddOptions) -> None:
    if len(set(opts.labels)) != len(opts.labels) or not all(x.strip() for x in opts.labels):
        raise ModelAddError(f"--labels: expected distinct non-empty names, got {','.join(opts.labels)}")
    unknown = sorted(set(opts.codes) - set(opts.labels))
    if unknown:
        raise ModelAddError(f"--codes: {', '.join(map(repr, unknown))} is not one of --labels")
    if opts.codes and opts.task == "classification":
        raise ModelAddError("--codes: only for the findings of --task multilabel and the segments "
                            "of --task segmentation")
    for label in opts.codes:
        _codes(opts, label)  # each one well formed, before anything runs
    if opts.task != "segmentation" and opts.roles:
        raise ModelAddError("--role: only for --task segmentation (a segment's role)")
    if opts.task == "segmentation" and opts.positive is not None:
        raise ModelAddError("--positive: only for --task classification")
    for label, role in opts.roles.items():
        if role not in ROLES:
            raise ModelAddError(f"--role {label}={role}: expected one of {', '.join(ROLES)}"
                                if label != "*" else f"--role {role}: expected one of {', '.join(ROLES)}")
        if label != "*" and label not in opts.labels:
            raise ModelAddError(f"--role {label}={role}: {label!r} is not one of --labels")


def _segments(opts: AddOptions, channels: int | None, out: TensorInfo) -> tuple[list[str], list[dict[str, Any]]]:
    labels = list(opts.labels)
    if channels == 1 or (channels is None and len(labels) == 1):
        if labels[:1] == ["background"]:
            labels = labels[1:]
        if len(labels) != 1:
            raise ModelAddError(f"--labels: the output {out.describe()} has 1 channel (one "
                                f"segment), got {len(labels)} labels ({','.join(opts.labels)})")
        labels = ["background", labels[0]]
    elif channels is not None and len(labels) != channels:
        raise ModelAddError(f"--labels: the output {out.describe()} has {channels} channels, "
                            f"got {len(labels)} labels ({','.join(labels)}); give one per channel")
    segments = []
    for channel, label in enumerate(labels):
        if label == "background":
            continue
        role = opts.roles.get(label, opts.roles.get("*", "region"))
        segments.append({"label": label, "channel": channel, "role": role, **_codes(opts, label)})
    return labels, segments


def build_manifest(opts: AddOptions, model_id: str, info: GraphInfo, inp: TensorInfo, channels: int,
                   size: tuple[int, int], logits: TensorInfo, head: LinearHead | None,
                   activations: str | None, file_name: str, sha256: str) -> dict[str, Any]:
    """The schema-2 manifest of the model (docs/MODELS.md)."""
    task = "segmentation" if opts.task == "segmentation" else "classification"
    m: dict[str, Any] = {
        "schema": 2, "id": model_id, "version": opts.version, "name": opts.name or model_id,
        "task": task, "file": file_name, "sha256": sha256, "opset": info.opset,
    }
    spec = {"name": inp.name, "size": list(size), "channels": channels,
            "mean": 0.5 if opts.mean is None else opts.mean,
            "std": 0.25 if opts.std is None else opts.std, "clahe": False, "clahe_clip": 2.0,
            "resize": "stretch",
            "source": "display image: 8-bit grey after modality LUT, VOI window, MONOCHROME1 inversion"}
    threshold = 0.5 if opts.threshold is None else opts.threshold
    if opts.task == "segmentation":
        labels, segments = _segments(opts, _width(logits, 1), logits)
        m["labels"] = labels
        m["input"] = spec
        m["outputs"] = [{"name": logits.name, "kind": "segmentation_logits"}]
        m["threshold"] = threshold
        m["segments"] = segments
        m["measurements"] = [{"kind": "area_fraction", "segment": s["label"]} for s in segments]
    else:
        m["labels"] = list(opts.labels)
        m["input"] = spec
        kind = "multilabel_logits" if opts.task == "multilabel" else "logits"
        m["outputs"] = [{"name": logits.name, "kind": kind}]
        if opts.task == "multilabel":
            m["findings"] = [{"label": lab, "threshold": threshold,
                              **({"codes": c} if (c := _codes(opts, lab)) else {})}
                             for lab in opts.labels]
        elif opts.positive is not None:
            m["positive_label"] = opts.positive
            m["threshold"] = threshold
        m["bands"] = dict(DEFAULT_BANDS)
        if head is not None and activations is not None:
            m["outputs"].append({"name": activations, "kind": "activations"})
            m["gradcam"] = {"activations_output": activations, "head": "gap_linear",
                            "weight": [[round(float(v), 7) for v in row] for row in head.weight],
                            "bias": [round(float(v), 7) for v in head.bias]}
            if "chest" in opts.applies_to:
                m["measurements"] = [{"kind": "heatmap_share", "role": "lung_field"}]
    if opts.applies_to:
        m["applies_to"] = {"body_region": list(opts.applies_to)}
    m["intended_use"] = ("Research use, not for diagnosis. Added by its user with radview models "
                         "add; not validated by radview.")
    m["added_with"] = {"tool": "radview models add", "original_file": opts.source.name,
                       "original_sha256": sha256_file(opts.source),
                       "graph_changes": ([] if head is None or activations in
                                         {o.name for o in info.outputs}
                                         else [f"added output {activations!r}: the tensor fed to "
                                               f"the {head.path[0]} (Grad-CAM++)"])}
    m["created"] = dt.date.today().isoformat()
    return m


# ---- checks with onnxruntime ----------------------------------------------------------------
def _session(model_bytes: bytes) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def _run_checks(model_bytes: bytes, inp: TensorInfo, channels: int, size: tuple[int, int],
                logits: TensorInfo, opts: AddOptions, head: LinearHead | None,
                activations: str | None) -> str | None:
    """Run the graph on two random images: check the output shapes (raises) and whether the
    head reproduces the logits (returns why not, or ``None``)."""
    try:
        sess = _session(model_bytes)
    except Exception as exc:
        raise ModelAddError(f"onnxruntime cannot open the model: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    rng = np.random.default_rng(0)
    names = [logits.name] + ([activations] if activations else [])
    worst = 0.0
    for _ in range(2):
        x = rng.normal(0.0, 1.0, (1, channels, *size)).astype(np.float32)
        try:
            outs = sess.run(names, {inp.name: x})
        except Exception as exc:
            raise ModelAddError(f"the model does not run on a 1 x {channels} x {size[0]} x {size[1]} "
                                f"input: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                                ) from exc
        z = np.asarray(outs[0], np.float64)
        if opts.task == "segmentation":
            if z.ndim != 4 or z.shape[0] != 1:
                raise ModelAddError(f"output {logits.name!r} has shape {z.shape}; a segmenter's "
                                    "output must be 1 x C x H x W")
            _segments(opts, int(z.shape[1]), TensorInfo(logits.name, tuple(z.shape), "float32"))
            continue
        if z.size != len(opts.labels):
            raise ModelAddError(f"--labels: the output {logits.name!r} gives {z.size} values per "
                                f"image (shape {tuple(z.shape)}), got {len(opts.labels)} labels "
                                f"({','.join(opts.labels)})")
        if head is None or activations is None:
            continue
        a = np.asarray(outs[1], np.float64)
        if a.ndim != 4 or a.shape[1] != head.weight.shape[1]:
            return (f"the activations {tuple(a.shape)} do not match the head's weight "
                    f"{tuple(head.weight.shape)}")
        ref = head.weight @ a[0].mean(axis=(1, 2)) + head.bias
        worst = max(worst, float(np.abs(ref - z.reshape(-1)).max() / max(1.0, np.abs(z).max())))
    if head is not None and worst > 1e-3:
        return (f"the head found ({' -> '.join(head.path)}) does not reproduce the logits "
                f"(relative difference {worst:.2g})")
    return None


def _check_in_viewer(manifest_path: Path) -> None:
    """Load the manifest with the viewer's loader and run the model through its runner."""
    from viewer.inference.gradcam import gradcam_plusplus
    from viewer.inference.runner import run_model

    entry = load_manifest(manifest_path)
    if not entry.available or entry.manifest is None:
        raise ModelAddError(f"the manifest written does not load in radview: {entry.reason}")
    m = entry.manifest
    yy, xx = np.mgrid[0:300, 0:240]
    image = ((xx * 3 + yy) % 256).astype(np.uint8)  # any grey picture: the runner resizes it
    try:
        out = run_model(_session(m.onnx_path.read_bytes()), m, image)
    except Exception as exc:
        raise ModelAddError(f"the model does not run in radview: {type(exc).__name__}: {exc}") from exc
    if m.gradcam_weight is not None:
        if out.activations is None:
            raise ModelAddError("the model does not run in radview: no activations for Grad-CAM++")
        cams = gradcam_plusplus(out.activations, np.asarray(m.gradcam_weight, np.float32))
        if not np.isfinite(cams).all():
            raise ModelAddError("Grad-CAM++ gives non-finite values on a test image")


def add_model(opts: AddOptions) -> AddReport:
    """Inspect, wire, write and validate one model (see the module docstring).

    Raises
    ------
    ModelAddError
        With a message naming the option or the part of the graph at fault. Nothing is left in
        the folder then.
    """
    if opts.task not in TASKS:
        raise ModelAddError(f"--task: expected one of {', '.join(TASKS)}, got {opts.task!r}")
    source = Path(opts.source)
    model_id = opts.model_id or re.sub(r"[^A-Za-z0-9_.-]+", "-", source.stem).strip("-.")
    if not _ID.match(model_id):
        raise ModelAddError(f"--id: {model_id!r} is not a usable model id (letters, digits, "
                            "'_', '.', '-', up to 64, starting with a letter or digit)")
    _check_labels(opts)
    notes: list[str] = []
    if opts.task != "classification" and opts.positive is not None:
        raise ModelAddError("--positive: a multi-label classifier has one call per finding")
    if opts.task == "classification":
        if len(opts.labels) < 2:
            raise ModelAddError("--labels: an exclusive classifier needs at least two labels")
        if opts.positive is not None and opts.positive not in opts.labels:
            raise ModelAddError(f"--positive {opts.positive!r} is not one of --labels")
        if opts.threshold is not None and opts.positive is None:
            if len(opts.labels) != 2:
                raise ModelAddError(f"--threshold needs --positive LABEL for a classifier with "
                                    f"{len(opts.labels)} labels")
            opts = _replace(opts, positive=opts.labels[1])
            notes.append(f"the threshold applies to P({opts.labels[1]}) (the second label; "
                         "--positive chooses another)")
    if opts.threshold is not None and not 0.0 < opts.threshold < 1.0:
        raise ModelAddError(f"--threshold {opts.threshold}: expected a probability in (0, 1)")
    if opts.std is not None and not opts.std > 0:
        raise ModelAddError(f"--std {opts.std}: expected a positive number")
    if opts.mean is None or opts.std is None:
        notes.append("normalisation: mean 0.5, std 0.25 of x/255 (default; give --mean/--std "
                     "as in training)")
    folder = Path(opts.folder)
    target = folder / f"{model_id}.json"
    if target.exists() and not opts.force:
        raise ModelAddError(f"a model with id {model_id!r} is already in {folder} ({target.name}); "
                            "--force replaces it, --id chooses another id")
    if opts.applies_to:
        gate = ModelRegistry([folder, bundled_models_dir()], verify_checksum=False).gate()
        unknown = [r for r in opts.applies_to if gate is not None and r not in gate.labels]
        if unknown:
            assert gate is not None
            raise ModelAddError(f"--applies-to {','.join(unknown)}: not a body region of the gate "
                                f"model (it knows {', '.join(gate.labels)})")
    if not opts.force and (bundled_models_dir() / target.name).is_file():
        raise ModelAddError(f"--id {model_id}: a bundled model has this id, and a user model "
                            "replaces it (--force to do so, --id to choose another id)")
    model = load_onnx(source)
    info = inspect_graph(model)
    inp, channels, size = _input(info, opts)
    logits = _pick_output(info, opts, 4 if opts.task == "segmentation" else 2)
    width = _width(logits, 1)
    if opts.task != "segmentation" and width is not None and width != len(opts.labels):
        raise ModelAddError(f"--labels: the output {logits.describe()} has {width} classes, got "
                            f"{len(opts.labels)} labels ({','.join(opts.labels)})")
    if opts.task == "segmentation":
        _segments(opts, width, logits)  # the label count against the channels, before running
    head: LinearHead | None = None
    activations: str | None = None
    gradcam_note = "no Grad-CAM++ for a segmenter (its masks are the overlay)"
    if opts.task != "segmentation":
        try:
            head = find_gap_linear_head(model, logits.name)
        except ModelAddError as exc:
            gradcam_note = f"no Grad-CAM++: {exc}"
    if head is not None:
        existing = {o.name for o in info.outputs}
        if head.activations in existing:
            activations = head.activations
        else:
            activations = next(n for n in ("activations", "radview_activations", "radview_act")
                               if n not in existing)
            model = with_output(model, head.activations, activations)
        gradcam_note = (f"Grad-CAM++ wired: {' -> '.join(head.path)} head, activations "
                        f"{activations!r}" + ("" if head.activations in existing
                                               else " (added as an output in the copy)"))
    model_bytes = model.SerializeToString()
    why_not = _run_checks(model_bytes, inp, channels, size, logits, opts, head, activations)
    if why_not is not None:
        head, activations = None, None
        gradcam_note = f"no Grad-CAM++: {why_not}"
        model = load_onnx(source)
        model_bytes = model.SerializeToString()
    modified = head is not None and activations not in {o.name for o in info.outputs}
    file_name = f"{model_id}.onnx"
    if (folder / file_name).resolve() == source.resolve() and modified:
        file_name = f"{model_id}.radview.onnx"  # never overwrite the user's own file
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".add-", dir=folder))
    try:
        staged_onnx = staging / file_name
        if modified or uses_external_data(source):
            staged_onnx.write_bytes(model_bytes)  # one self-contained file
        else:
            shutil.copyfile(source, staged_onnx)
        manifest = build_manifest(opts, model_id, info, inp, channels, size, logits, head,
                                  activations, file_name, sha256_file(staged_onnx))
        import json

        staged_json = staging / target.name
        staged_json.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        _check_in_viewer(staged_json)
        onnx_path = folder / file_name
        if onnx_path.resolve() != source.resolve():
            os.replace(staged_onnx, onnx_path)
        os.replace(staged_json, target)  # last: the registry discovers models by manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return AddReport(target, folder / file_name, manifest, head is not None, gradcam_note,
                     tuple(notes))


def _replace(opts: AddOptions, **changes: Any) -> AddOptions:
    from dataclasses import replace

    return replace(opts, **changes)


def parse_codes(text: str | None) -> dict[str, Any]:
    """``--codes``: a JSON object (inline or a file) ``{label: {"category": [...], "type": [...]}}``."""
    import json

    if not text:
        return {}
    raw = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ModelAddError(f"--codes: {text!r} is neither a JSON object nor a file")
        raw = path.read_text(encoding="utf-8")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelAddError(f"--codes: not valid JSON ({exc.msg} at line {exc.lineno} column "
                            f"{exc.colno})") from exc
    if not isinstance(value, dict):
        raise ModelAddError('--codes: expected an object {"label": {"category": [...], "type": [...]}}')
    return value


def parse_roles(values: Sequence[str]) -> dict[str, str]:
    """``--role ROLE`` (every segment) or ``--role LABEL=ROLE`` (repeatable, or comma-separated)."""
    roles: dict[str, str] = {}
    for value in values:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            label, _, role = part.rpartition("=")
            roles[label.strip() or "*"] = role.strip()
    return roles

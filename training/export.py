"""ONNX export (checked against torch with onnxruntime), manifest and model card.

The manifest follows docs/MODELS.md. Classifiers export ``logits`` and ``activations`` (the
tensor fed to global average pooling) and carry the head weight for Grad-CAM++.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .common import MODELS, RUNS, get_logger
from .data import file_digest
from .provenance import INFO, INTENDED_USE, training_data
from .recipes import Recipe

OPSET = 17
TOLERANCE = 1e-4


class _Seg(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# The gate's OOD rule as written into its manifest (from the evaluation's ``ood`` block).
OOD_KEYS = ("score", "definition", "threshold", "class_thresholds", "confidence_floor",
            "max_colour_fraction", "fitted_on")


def output_names(recipe: Recipe, model: nn.Module) -> list[str]:
    if recipe.task == "segmentation":
        return ["mask_logits"]
    from .applicability import WithApplicability, WithLayeredApplicability

    checked = isinstance(model, (WithApplicability, WithLayeredApplicability))
    return ["logits", "activations"] + (["applicability"] if checked else [])


def export_onnx(recipe: Recipe, model: nn.Module, path: Path) -> None:
    """Write a single-file ONNX (opset 17, dynamic batch) with the contract's output names."""
    model = model.eval()
    dummy = torch.zeros(1, recipe.spec.channels, recipe.spec.height, recipe.spec.width)
    outs = output_names(recipe, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(recipe, model, dummy, path, outs)
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))


def _export(recipe: Recipe, model: nn.Module, dummy: torch.Tensor, path: Path, outs: list[str]) -> None:
    torch.onnx.export(model if recipe.task != "segmentation" else _Seg(model), (dummy,), str(path),
                      input_names=["input"], output_names=outs, opset_version=OPSET,
                      dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in outs}},
                      dynamo=False, do_constant_folding=True)


def check_onnx(recipe: Recipe, model: nn.Module, path: Path, inputs: np.ndarray) -> float:
    """Max abs difference between onnxruntime and torch outputs on ``inputs`` (NCHW float32)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": inputs})
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(inputs))
    ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    # Relative beyond 1 (the applicability score can be in the hundreds far from the data).
    return max(float((np.abs(g - r.numpy()) / np.maximum(1.0, np.abs(r.numpy()))).max())
               for g, r in zip(got, ref))


def build_manifest(recipe: Recipe, model: nn.Module, onnx_path: Path, ev: dict[str, Any],
                   train_records: list[dict[str, Any]]) -> dict[str, Any]:
    info = INFO[recipe.model_id]
    m: dict[str, Any] = {
        "schema": 2, "id": recipe.model_id, "version": recipe.version, "name": recipe.name,
        "task": recipe.task, "file": onnx_path.name, "sha256": file_digest(onnx_path),
        "opset": OPSET, "labels": list(recipe.labels), "input": {"name": "input", **recipe.spec.to_manifest()},
    }
    if recipe.task == "segmentation":
        m["outputs"] = [{"name": "mask_logits", "kind": "segmentation_logits"}]
        # Declared outputs (docs/MODELS.md): the lung field, coded for DICOM SEG.
        m["segments"] = [{"label": "lung", "channel": 1, "role": "lung_field",
                          "category": ["SCT", "123037004", "Anatomical Structure"],
                          "type": ["SCT", "39607008", "Lung"]}]
        m["measurements"] = [{"kind": "area_fraction", "segment": "lung"}]
        m["threshold"] = 0.5
        m["metrics"] = {"split": "test: 15% patient-grouped, never used for training or model selection",
                        "dice_mean": round(ev["test"]["dice_mean"], 4),
                        "dice_per_source": {s: round(v["dice_mean"], 4) for s, v in ev["test"]["per_source"].items()},
                        "n": ev["test"]["n"], "measured_at": "the image's own resolution (logits resized back)"}
    else:
        w = model.head.weight.detach().numpy().astype(float)
        m["outputs"] = [{"name": "logits", "kind": "logits"}, {"name": "activations", "kind": "activations"}]
        if "applicability" in output_names(recipe, model):
            a = ev["applicability"]
            m["outputs"].append({"name": "applicability", "kind": "applicability"})
            m["applicability"] = {"output": "applicability", "threshold": a["threshold"],
                                  "method": a["method"],
                                  **{k: a[k] for k in ("components", "layers", "shrinkage") if k in a},
                                  "fitted_on": a["fitted_on"], "threshold_rule": a["threshold_rule"],
                                  "rates": a["rates"]}
        if recipe.positive:  # share of the Grad-CAM++ mass inside the lung field
            m["measurements"] = [{"kind": "heatmap_share", "role": "lung_field"}]
        m["calibration"] = {k: ev["calibration"][k] for k in ("method", "temperature", "ece_before", "ece_after", "fitted_on")}
        m["threshold"] = ev["threshold"] if ev["threshold"] is not None else 0.5
        if ev.get("threshold_rule"):
            m["threshold_rule"] = ev["threshold_rule"]
        if recipe.positive:
            m["positive_label"] = recipe.positive
        m["bands"] = {"green": 0.9, "orange": 0.7}
        if recipe.tta_hflip:
            m["test_time_augmentation"] = "horizontal flip, averaged inside the graph"
        if recipe.members > 1:
            m["ensemble"] = {"members": recipe.members, "combination": "mean of the members' logits "
                             "(activations concatenated, head weights divided by the member count)"}
        m["gradcam"] = {"activations_output": "activations", "head": "gap_linear",
                        "weight": [[round(v, 7) for v in row] for row in w.tolist()],
                        "bias": [round(float(v), 7) for v in model.head.bias.detach().numpy()]}
        t = ev["test"]
        metrics = {"split": "test: 15% grouped by patient/near-duplicate, never used for training, "
                            "calibration or threshold", "n": ev["n_test"], "accuracy": round(t["accuracy"], 4)}
        if recipe.positive:
            metrics.update({k: round(t[k], 4) for k in ("roc_auc", "sensitivity", "specificity", "balanced_accuracy")})
        else:
            metrics.update({"balanced_accuracy": round(t["balanced_accuracy"], 4),
                            "gate_accuracy": round(t["gate_accuracy"], 4),
                            "per_class_accuracy": {c: round(v["accuracy"], 4) for c, v in t["per_class"].items()}})
            m["gate"] = True
            m["ood"] = {k: ev["ood"][k] for k in OOD_KEYS if k in ev["ood"]}
        m["metrics"] = metrics
        if "external" in ev:
            e = ev["external"]
            m["metrics_external"] = {"split": e["data"] + "; chooses checkpoint, temperature and threshold",
                                     "n": e["n"], **{k: round(e[k], 4) for k in (
                                         "accuracy", "roc_auc", "sensitivity", "specificity",
                                         "balanced_accuracy", "ece_before", "ece_after")}}
    m["applies_to"] = info["applies_to"]
    m["population"] = info["population"]
    if info.get("age_years"):
        m["age_years"] = info["age_years"]
    if info.get("study_date_from"):
        m["study_date_from"] = info["study_date_from"]
    m["intended_use"] = INTENDED_USE
    m["training_data"] = training_data(recipe.model_id, train_records)
    if recipe.arch == "lite0":
        from .provenance import LITE0_PRETRAINED

        m["pretrained_weights"] = dict(LITE0_PRETRAINED)
    m["created"] = dt.date.today().isoformat()
    return m


def export(recipe: Recipe, run_dir: Path | None = None, out_dir: Path = MODELS,
           limit: int | None = None, reports: bool = True) -> Path:
    """Evaluate (if needed), export ONNX, verify it, write manifest, card and figures."""
    from .card import write_card
    from .evaluate import evaluate, file_views, split_records
    from .loop import load_trained

    torch.set_num_threads(2)
    run = run_dir or RUNS / recipe.model_id
    log = get_logger(recipe.model_id, run / "train.log")
    ev_path = run / "eval.json"
    ev = json.loads(ev_path.read_text()) if ev_path.exists() else evaluate(recipe, run, limit, reports)
    train_records = split_records(recipe, "train")
    model = load_trained(recipe, run)
    from . import applicability as ap

    if recipe.positive is not None and recipe.task == "classification":
        if "applicability" not in ev:
            raise RuntimeError(f"{run}: no applicability statistics; run `python -m training evaluate`")
        if "layers" in ev["applicability"] and (run / ap.FILE_V2).exists():
            stats, layers, _, _ = ap.load_layers(run / ap.FILE_V2)
            model = ap.WithLayeredApplicability(model, stats, layers).eval()
        elif (run / ap.FILE).exists():
            stats, _, _ = ap.load(run / ap.FILE)
            model = ap.WithApplicability(model, stats).eval()
        else:
            raise RuntimeError(f"{run}: no applicability statistics; run `python -m training evaluate`")
    onnx_path = out_dir / f"{recipe.model_id}.onnx"
    export_onnx(recipe, model, onnx_path)
    from viewer.core.preprocess import normalise

    sample = normalise(file_views(recipe, split_records(recipe, "test", 4)), recipe.spec)
    diff = check_onnx(recipe, model, onnx_path, sample)
    if diff > TOLERANCE:
        raise RuntimeError(f"ONNX differs from torch by {diff:.2e} > {TOLERANCE}")
    manifest = build_manifest(recipe, model, onnx_path, ev, train_records)
    (out_dir / f"{recipe.model_id}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    write_card(recipe, manifest, ev, out_dir)
    if recipe.population_check:
        from .population import graft

        graft(recipe, out_dir, limit, reports, run_dir=run)
    log.info("exported %s (%.2f MB, max |onnx - torch| = %.2e)", onnx_path,
             onnx_path.stat().st_size / 1e6, diff)
    return onnx_path

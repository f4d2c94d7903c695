"""Add the applicability output to a committed classifier's ONNX without retraining it.

``python -m training graft covid``: the committed ``models/<id>.onnx`` is run with onnxruntime
(the weights are not in ``training/runs``), the applicability statistics are fitted on its
pooled activations of the training split exactly as :func:`training.evaluate.applicability_eval`
does for a trained run, and the score is appended to the graph as ONNX nodes:

    pooled = ReduceMean(activations, axes=[2, 3]);  z = (pooled - mu) @ V
    applicability = ReduceMean(z * z * inv_lambda, axes=[1])

Logits and activations are untouched (the same nodes and weights); the manifest gains the
``applicability`` output and block, the version's minor number goes up, and the model card
gains the applicability section.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from viewer.core.preprocess import InputSpec

from .common import MODELS, RUNS, get_logger
from .data import file_digest
from .recipes import Recipe


class OrtClassifier(nn.Module):
    """An ONNX classifier (``logits``, ``activations``) behind the torch module interface that
    :mod:`training.evaluate` feeds (no gradients; CPU execution provider)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, act = self.sess.run(["logits", "activations"], {"input": x.numpy()})
        return torch.from_numpy(logits), torch.from_numpy(act)


def graft_onnx(src: Path, dst: Path, stats: dict[str, np.ndarray]) -> None:
    """Append the applicability nodes (output ``applicability``, shape (batch,)) to ``src``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    if any(o.name == "applicability" for o in g.output):
        raise ValueError(f"{src} already has an applicability output")
    mu = np.asarray(stats["mu"], np.float32)[None, :]
    inv_lam = (1.0 / np.asarray(stats["lam"], np.float32))[None, :]
    g.initializer.extend([numpy_helper.from_array(mu, "applicability_mu"),
                          numpy_helper.from_array(np.asarray(stats["V"], np.float32), "applicability_V"),
                          numpy_helper.from_array(inv_lam, "applicability_inv_lambda")])
    g.node.extend([
        helper.make_node("ReduceMean", ["activations"], ["applicability_pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("Sub", ["applicability_pooled", "applicability_mu"], ["applicability_centred"]),
        helper.make_node("MatMul", ["applicability_centred", "applicability_V"], ["applicability_z"]),
        helper.make_node("Mul", ["applicability_z", "applicability_z"], ["applicability_z2"]),
        helper.make_node("Mul", ["applicability_z2", "applicability_inv_lambda"], ["applicability_w"]),
        helper.make_node("ReduceMean", ["applicability_w"], ["applicability"], axes=[1], keepdims=0),
    ])
    g.output.append(helper.make_tensor_value_info("applicability", TensorProto.FLOAT, ["batch"]))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def _bump_minor(version: str) -> str:
    major, minor, *_ = (version.split(".") + ["0", "0"])[:3]
    return f"{major}.{int(minor) + 1}.0"


def graft(recipe: Recipe, out_dir: Path = MODELS, limit: int | None = None,
          reports: bool = True, run_dir: Path | None = None) -> Path:
    """Fit and append the applicability check to the committed ``<out_dir>/<id>.onnx``."""
    from .applicability import FILE, load
    from .card import _applicability_lines, restamp
    from .evaluate import applicability_eval, record_outputs, split_records

    torch.set_num_threads(2)
    run = run_dir or RUNS / f"{recipe.model_id}_graft"
    run.mkdir(parents=True, exist_ok=True)
    log = get_logger(recipe.model_id, run / "train.log")
    mpath = out_dir / f"{recipe.model_id}.json"
    manifest: dict[str, Any] = json.loads(mpath.read_text())
    onnx_path = out_dir / manifest["file"]
    if file_digest(onnx_path) != manifest["sha256"]:
        raise RuntimeError(f"{onnx_path} does not match its manifest")
    spec = InputSpec.from_manifest(manifest["input"])
    recipe = replace(recipe, spec=spec)
    clf = OrtClassifier(onnx_path)
    t = float(manifest["calibration"]["temperature"])
    thr = float(manifest["threshold"])
    pools = {s: record_outputs(clf, recipe, split_records(recipe, s, limit))[1] for s in ("val", "test")}
    a = applicability_eval(recipe, clf, run, t, thr, pools, limit, reports)
    stats, _, _ = load(run / FILE)
    tmp = onnx_path.with_suffix(".grafted.onnx")
    graft_onnx(onnx_path, tmp, stats)
    # The grafted graph must give the same logits and activations, and the numpy score.
    import onnxruntime as ort

    from .applicability import score

    x = np.random.default_rng(0).normal(size=(3, spec.channels, spec.height, spec.width)).astype(np.float32)
    old = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    new = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    for o, n in zip(old, new[:2]):
        np.testing.assert_array_equal(o, n)
    ref = score(old[1].mean(axis=(2, 3)), stats)
    np.testing.assert_allclose(new[2], ref, rtol=1e-3, atol=1e-4)
    tmp.replace(onnx_path)
    manifest["version"] = _bump_minor(str(manifest["version"]))
    manifest["sha256"] = file_digest(onnx_path)
    manifest["outputs"] = [o for o in manifest["outputs"] if o["kind"] != "applicability"] + [
        {"name": "applicability", "kind": "applicability"}]
    manifest["applicability"] = {"output": "applicability", "threshold": a["threshold"],
                                 "method": a["method"], "components": a["components"],
                                 "fitted_on": a["fitted_on"], "threshold_rule": a["threshold_rule"],
                                 "rates": a["rates"],
                                 "added": "grafted onto the unchanged committed graph (training/graft.py)"}
    manifest["created"] = dt.date.today().isoformat()
    mpath.write_text(json.dumps(manifest, indent=1) + "\n")
    card = out_dir / f"{recipe.model_id}.md"
    if card.exists():
        text = card.read_text()
        text = re.sub(r"\n## Applicability check.*?(?=\n## Limitations)", "\n", text, flags=re.S)
        text = restamp(text, manifest)
        section = "\n".join(_applicability_lines(recipe, a)) + "\n"
        note = (f"Version {manifest['version']}: the applicability output was added to the unchanged "
                "graph and weights of the previous version (`python -m training graft "
                f"{recipe.model_id}`); every other figure on this card is that version's.\n")
        text = text.replace("\n## Limitations", "\n" + section + note + "\n## Limitations", 1)
        card.write_text(text)
    (run / "eval.json").write_text(json.dumps({"applicability": a}, indent=1))
    log.info("grafted applicability onto %s (version %s): %s", onnx_path, manifest["version"],
             json.dumps(a["rates"]))
    return onnx_path

"""Smoke test: every recipe trains a few steps on a handful of real images, then exports.

The export is run through onnxruntime and compared with torch inside ``export`` (1e-4); here
we also check the manifest against docs/MODELS.md and the output shapes.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from training import MODEL_IDS, data as tdata, splits as tsplits  # noqa: E402
from training.export import export  # noqa: E402
from training.loop import member_dir, train  # noqa: E402
from training.recipes import get  # noqa: E402


def _subset(dataset: str, per_split_label: int) -> set[str]:
    """A few paths per (split, label) from the committed split CSV."""
    with open(tsplits.split_file(dataset), newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked: dict[tuple[str, str], int] = {}
    out = set()
    for r in rows:
        key = (r["split"], r["label"])
        if picked.get(key, 0) < per_split_label:
            picked[key] = picked.get(key, 0) + 1
            out.add(r["path"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_recipe_trains_and_exports(model_id: str, data_root: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = get(model_id)
    monkeypatch.setattr(tdata, "CACHE", tmp_path / "cache")
    tdata.build_cache(recipe.dataset, recipe.cache_size, data=data_root,
                      paths=_subset(recipe.dataset, 3))
    run = tmp_path / "run"
    for member in range(recipe.members):  # an ensemble recipe trains each member (own seed)
        # limit: also caps the external selection set (pneumonia/external_val) scored per epoch
        got = train(recipe, max_steps=2, limit=8, run_dir=member_dir(run, member), member=member)
        assert (got / "last.pt").exists() and (got / "best.pt").exists()
        log = (got / "train.log").read_text()
        assert "epoch 0 done" in log and f"(member {member}, seed {recipe.seed + member})" in log
    out = tmp_path / "models"
    onnx_path = export(recipe, run_dir=run, out_dir=out, limit=4, reports=False)
    manifest = json.loads((out / f"{model_id}.json").read_text())
    assert manifest["id"] == model_id and manifest["opset"] >= 17
    assert manifest["sha256"] == tdata.file_digest(onnx_path)
    assert (out / f"{model_id}.md").read_text().startswith("# ")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    h, w = manifest["input"]["size"]
    x = np.zeros((2, 1, h, w), np.float32)
    outs = sess.run(None, {"input": x})
    if recipe.task == "segmentation":
        assert [o.name for o in sess.get_outputs()] == ["mask_logits"]
        assert outs[0].shape == (2, 1, h, w)
    else:
        names = [o.name for o in sess.get_outputs()]
        assert outs[0].shape == (2, len(recipe.labels))
        weight = np.asarray(manifest["gradcam"]["weight"])
        assert weight.shape == (len(recipe.labels), outs[1].shape[1])
        if recipe.positive is None:  # the gate has its own OOD rule
            assert names == ["logits", "activations"]
        else:  # disease classifiers: the applicability check inside the graph
            assert names == ["logits", "activations", "applicability"]
            assert outs[2].shape == (2,) and outs[2].dtype == np.float32
            assert {"name": "applicability", "kind": "applicability"} in manifest["outputs"]
            app = manifest["applicability"]
            assert app["output"] == "applicability" and app["threshold"] > 0
            assert {"method", "fitted_on", "threshold_rule", "rates"} <= set(app)
            # v1 (PCA of the pooled activations) or v2 (layer statistics of a Lite0 network)
            assert ("layers" in app) == (recipe.arch == "lite0") and ("components" in app or "layers" in app)
            assert {"validation_refused", "test_refused"} <= set(app["rates"])
            # covid: the learnt population term grafted after export (training/population.py)
            assert ("population" in app) == recipe.population_check
            if recipe.population_check:
                assert app["threshold"] == 1.0 and "paediatric_kermany_refused" in app["rates"]


def test_resume_continues_from_last_checkpoint(data_root: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = replace(get("covid"), ema=0.998)  # EMA state must resume too
    monkeypatch.setattr(tdata, "CACHE", tmp_path / "cache")
    tdata.build_cache(recipe.dataset, recipe.cache_size, data=data_root, paths=_subset(recipe.dataset, 3))
    run = train(recipe, epochs=1, run_dir=tmp_path / "run")
    train(recipe, epochs=2, resume=True, run_dir=run)
    log = (run / "train.log").read_text()
    assert "resumed from epoch 0" in log and "epoch 1 done" in log
    assert "ema" in torch.load(run / "last.pt", weights_only=False)  # EMA resumes too

"""Evaluation on the exact inference path, calibration, threshold and test metrics.

Every image is read from disk and turned into the network input by
:func:`viewer.core.preprocess.model_view` + ``normalise`` (the viewer's path), not from the
training cache. Temperature, threshold and OOD rule are fitted on the validation split; the
test split is only measured. Results go to ``training/runs/<model>/eval.json``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viewer.core.preprocess import model_view, normalise, resize_to_image

from .calibration import fit_temperature, softmax
from .common import DATA, RUNS, get_logger
from .data import read_image, read_mask, records
from .loop import load_trained
from .metrics import balanced_accuracy, confusion, dice, ece, reliability, roc_auc, roc_curve
from .recipes import Recipe
from .splits import read_split

CONFIDENCE_FLOOR = 0.6
OOD_KEEP = 0.99  # fraction of validation radiographs the energy rule must keep


def balanced_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Operating point on calibrated P(positive) where validation sensitivity = specificity.

    Not accuracy-maximising: with class-weighted training, temperature scaling alone leaves
    P(positive) shifted, so 0.5 would trade sensitivity for specificity; the balanced point is
    the principled alternative (FIELD-NOTES "Models and scores").
    """
    fpr, tpr, thr = roc_curve(y, p)
    finite = np.isfinite(thr)
    j = int(np.argmin(np.abs(tpr[finite] - (1.0 - fpr[finite]))))
    return round(float(thr[finite][j]), 6)


def split_records(recipe: Recipe, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    assign = read_split(recipe.dataset)
    recs = [r for r in records(recipe.dataset) if assign.get(r["path"]) == split]
    return recs[:limit] if limit else recs


@torch.no_grad()
def run_views(model: torch.nn.Module, recipe: Recipe, views: np.ndarray, batch: int = 64
              ) -> np.ndarray:
    outs = []
    for s in range(0, len(views), batch):
        out = model(torch.from_numpy(normalise(views[s:s + batch], recipe.spec)))
        outs.append((out[0] if isinstance(out, tuple) else out[:, 0]).numpy())
    return np.concatenate(outs)


def file_views(recipe: Recipe, recs: list[dict[str, Any]], data: Path = DATA) -> np.ndarray:
    return np.stack([model_view(read_image(data / r["path"]), recipe.spec) for r in recs])


def _labels(recipe: Recipe, recs: list[dict[str, Any]]) -> np.ndarray:
    return np.array([recipe.labels.index(r["label"]) for r in recs], np.int64)


def _per_group(key: list[str], y: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(key):
        groups[k].append(i)
    for k, idx in sorted(groups.items()):
        out[k] = {"n": len(idx), "accuracy": float((y[idx] == pred[idx]).mean())}
    return out


def evaluate_classifier(recipe: Recipe, model: torch.nn.Module, limit: int | None = None,
                        reports: bool = True) -> dict[str, Any]:
    val, test = split_records(recipe, "val", limit), split_records(recipe, "test", limit)
    lv, lt = run_views(model, recipe, file_views(recipe, val)), run_views(model, recipe, file_views(recipe, test))
    yv, yt = _labels(recipe, val), _labels(recipe, test)
    t = fit_temperature(lv, yv)
    pv0, pv1, pt0, pt1 = softmax(lv), softmax(lv, t), softmax(lt), softmax(lt, t)
    res: dict[str, Any] = {
        "calibration": {"method": "temperature", "temperature": round(t, 4),
                        "ece_before": round(ece(pv0, yv), 4), "ece_after": round(ece(pv1, yv), 4),
                        "fitted_on": "validation",
                        "test_ece_before": round(ece(pt0, yt), 4), "test_ece_after": round(ece(pt1, yt), 4)},
        "reliability_test_before": reliability(pt0, yt), "reliability_test_after": reliability(pt1, yt),
        "n_val": len(val), "n_test": len(test),
    }
    k = len(recipe.labels)
    if recipe.positive is not None:
        pos = recipe.labels.index(recipe.positive)
        threshold = balanced_threshold(yv == pos, pv1[:, pos])
        pred = np.where(pt1[:, pos] >= threshold, pos, 1 - pos)
        pred_v = np.where(pv1[:, pos] >= threshold, pos, 1 - pos)
        fpr, tpr, _ = roc_curve(yt == pos, pt1[:, pos])
        cm = confusion(yt, pred, k)
        sens = cm[pos, pos] / max(1, cm[pos].sum())
        spec = cm[1 - pos, 1 - pos] / max(1, cm[1 - pos].sum())
        res.update({
            "threshold": threshold,
            "threshold_rule": "balanced sensitivity/specificity on validation (calibrated probability)",
            "val": {"accuracy": float((pred_v == yv).mean()), "roc_auc": roc_auc(yv == pos, pv1[:, pos]),
                    "accuracy_at_0.5": float((np.where(pv1[:, pos] >= 0.5, pos, 1 - pos) == yv).mean())},
            "test": {"accuracy": float((pred == yt).mean()), "roc_auc": roc_auc(yt == pos, pt1[:, pos]),
                     "accuracy_at_0.5": float((np.where(pt1[:, pos] >= 0.5, pos, 1 - pos) == yt).mean()),
                     "sensitivity": float(sens), "specificity": float(spec),
                     "balanced_accuracy": balanced_accuracy(yt, pred, k),
                     "confusion": cm.tolist(), "per_source": _per_group([r["source"] for r in test], yt, pred)},
            "roc_test": {"fpr": fpr[:: max(1, len(fpr) // 300)].tolist(), "tpr": tpr[:: max(1, len(tpr) // 300)].tolist()},
        })
    else:
        from .gate import gate_eval
        res.update(gate_eval(recipe, model, lv, yv, lt, yt, t, test, pt1, reports))
    return res


def evaluate_segmenter(recipe: Recipe, model: torch.nn.Module, limit: int | None = None,
                       reports: bool = True) -> dict[str, Any]:
    res: dict[str, Any] = {"threshold": 0.5}
    for split in ("val", "test"):
        recs = split_records(recipe, split, limit)
        per: dict[str, list[float]] = defaultdict(list)
        for r in recs:
            img = read_image(DATA / r["path"])
            mask = read_mask(DATA / r["mask"])
            logit = run_views(model, recipe, model_view(img, recipe.spec)[None])[0]
            full = resize_to_image(logit, img.shape)  # bilinear on logits, then threshold
            per[r["source"]].append(dice(full > 0.0, mask))
        allv = [d for v in per.values() for d in v]
        res[split] = {"dice_mean": float(np.mean(allv)), "n": len(allv),
                      "per_source": {s: {"n": len(v), "dice_mean": float(np.mean(v)),
                                         "dice_median": float(np.median(v)), "dice_min": float(np.min(v))}
                                     for s, v in sorted(per.items())}}
    return res


def evaluate(recipe: Recipe, run_dir: Path | None = None, limit: int | None = None,
             reports: bool = True) -> dict[str, Any]:
    """Evaluate the best checkpoint; write and return ``eval.json``.

    ``limit`` caps the validation/test images and ``reports=False`` skips the gate's DICOM and
    photograph reports (both for smoke tests only).
    """
    torch.set_num_threads(2)
    run = run_dir or RUNS / recipe.model_id
    log = get_logger(recipe.model_id, run / "train.log")
    model = load_trained(recipe, run)
    res = (evaluate_segmenter if recipe.task == "segmentation" else evaluate_classifier)(recipe, model, limit, reports)
    (run / "eval.json").write_text(json.dumps(res, indent=1))
    log.info("evaluation: %s", json.dumps({k: res[k] for k in ("test", "val") if k in res})[:1500])
    return res

"""Evaluation on the exact inference path, calibration, threshold and test metrics.

Every image is read from disk and turned into the network input by
:func:`viewer.core.preprocess.model_view` + ``normalise`` (the viewer's path), not from the
training cache. Temperature, threshold and OOD rule are fitted on the validation split; the
test split is only measured. Results go to ``training/runs/<model>/eval.json``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viewer.core.preprocess import InputSpec, model_view, normalise, resize_to_image

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


def _tapped(model: torch.nn.Module) -> torch.nn.Module | None:
    """The layered-applicability view of a Lite0 classifier (training.applicability.Tapped)."""
    from .applicability import Tapped

    try:
        return Tapped(model).eval()
    except TypeError:
        return None


def image_batches(images: Iterable[np.ndarray], spec: InputSpec, batch: int = 16) -> Iterator[np.ndarray]:
    """Display images as normalised model inputs, ``batch`` at a time (the viewer's preprocessing)."""
    chunk: list[np.ndarray] = []
    for img in images:
        chunk.append(model_view(img, spec))
        if len(chunk) == batch:
            yield normalise(np.stack(chunk), spec)
            chunk = []
    if chunk:
        yield normalise(np.stack(chunk), spec)


def _iter_outputs(model: torch.nn.Module, recipe: Recipe, images: Any, batch: int = 16
                  ) -> tuple[np.ndarray, Any]:
    """Logits and the applicability features of display images, streamed.

    The features are the pooled activations (mean_hw of ``activations``) for the v1 check, or,
    for Lite0 classifiers, a dict of layer features (``training.applicability.LAYERS``).
    """
    model.eval()
    tapped = _tapped(model)
    logits: list[np.ndarray] = []
    pooled: list[Any] = []
    for xb in image_batches(images, recipe.spec, batch):
        x = torch.from_numpy(xb)
        with torch.no_grad():
            if tapped is not None:
                lg, _, taps = tapped(x)
                pooled.append({k: v.numpy() for k, v in taps.items()})
            else:
                lg, act = model(x)[:2]
                pooled.append(act.mean(dim=(2, 3)).numpy())
        logits.append(lg.numpy())
    if not logits:
        return np.zeros((0, len(recipe.labels)), np.float32), np.zeros((0, 0), np.float32)
    if isinstance(pooled[0], dict):
        return np.concatenate(logits), {k: np.concatenate([p[k] for p in pooled]) for k in pooled[0]}
    return np.concatenate(logits), np.concatenate(pooled)


def record_outputs(model: torch.nn.Module, recipe: Recipe, recs: list[dict[str, Any]],
                   data: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """Logits and pooled activations of records, each read from disk the viewer's way."""
    return _iter_outputs(model, recipe, (read_image(data / r["path"]) for r in recs))


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Operating point maximising sensitivity + specificity (Youden's J) on calibrated P."""
    fpr, tpr, thr = roc_curve(y, p)
    finite = np.isfinite(thr)
    j = int(np.argmax(tpr[finite] - fpr[finite]))
    return round(float(thr[finite][j]), 6)


def binary_block(recipe: Recipe, logits: np.ndarray, y: np.ndarray, temperature: float,
                 threshold: float) -> dict[str, Any]:
    """Accuracy at the threshold, ROC AUC, sensitivity, specificity, ECE of a binary classifier."""
    pos = recipe.labels.index(str(recipe.positive))
    p0, p1 = softmax(logits), softmax(logits, temperature)
    pred = np.where(p1[:, pos] >= threshold, pos, 1 - pos)
    cm = confusion(y, pred, 2)
    return {"n": int(len(y)), "accuracy": float((pred == y).mean()),
            "roc_auc": roc_auc(y == pos, p1[:, pos]),
            "accuracy_at_0.5": float((np.where(p1[:, pos] >= 0.5, pos, 1 - pos) == y).mean()),
            "sensitivity": float(cm[pos, pos] / max(1, cm[pos].sum())),
            "specificity": float(cm[1 - pos, 1 - pos] / max(1, cm[1 - pos].sum())),
            "balanced_accuracy": balanced_accuracy(y, pred, 2), "confusion": cm.tolist(),
            "ece_before": round(ece(p0, y), 4), "ece_after": round(ece(p1, y), 4)}


# The other population a disease model must not report its finding on (name, data set).
OTHER_POPULATION = {"pneumonia": ("adult_covid_db", "covid"),
                    "covid": ("paediatric_kermany", "pneumonia")}
# Images per label drawn (seeded) from the other population, and training images the
# applicability statistics are fitted on: CPU time on 2 shared cores, not a statistical need
# (a 48-component PCA of 1280-d features is stable from ~1,000 images).
OTHER_PER_LABEL = 400
FIT_IMAGES = 5000


def _draw(recs: list[dict[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """A seeded random subset of ``n`` records in their original order (all when fewer)."""
    if len(recs) <= n:
        return recs
    idx = np.random.default_rng(seed).permutation(len(recs))[:n]
    return [recs[i] for i in sorted(idx.tolist())]


def draw_records(dataset: str, splits: tuple[str, ...], per_label: int, limit: int | None = None,
                 seed: int = 0) -> list[dict[str, Any]]:
    """Records of ``dataset`` in ``splits``: a seeded draw of ``per_label`` per label (the first
    ``limit`` records instead when set, for smoke tests)."""
    assign, everything = read_split(dataset), records(dataset)
    pool = [x for x in everything if assign.get(x["path"]) in splits]
    if limit:
        return pool[:limit]
    labels = sorted({x["label"] for x in everything})
    return [r for lab in labels for r in _draw([x for x in pool if x["label"] == lab], per_label, seed)]


K_CANDIDATES = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def _cached_outputs(model: torch.nn.Module, recipe: Recipe, recs: list[dict[str, Any]], run: Path,
                    key: str) -> tuple[np.ndarray, Any]:
    """:func:`record_outputs`, cached in ``run/features/<key>.npz`` for this checkpoint."""
    ck = run / "best.pt"
    stamp = f"v2:{ck.stat().st_mtime_ns if ck.exists() else 0}:{len(recs)}:{recs[0]['path'] if recs else ''}"
    path = run / "features" / f"{key}.npz"
    if path.exists():
        with np.load(path) as z:
            if str(z["stamp"]) == stamp:
                if "pooled" in z.files:
                    return z["logits"], z["pooled"]
                return z["logits"], {k[2:]: z[k] for k in z.files if k.startswith("f_")}
    logits, pooled = record_outputs(model, recipe, recs)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(pooled, dict):
        np.savez(path, logits=logits, stamp=np.array(stamp), **{f"f_{k}": v for k, v in pooled.items()})
    else:
        np.savez(path, logits=logits, pooled=pooled, stamp=np.array(stamp))
    return logits, pooled


def applicability_eval(recipe: Recipe, model: torch.nn.Module, run: Path, temperature: float,
                       threshold: float, pooled: dict[str, np.ndarray], limit: int | None,
                       reports: bool) -> dict[str, Any]:
    """Fit the applicability statistics on the training split, set the threshold on the own
    validation split, measure refusal rates elsewhere, and save ``run/applicability.npz``.

    The number of components k is chosen among ``K_CANDIDATES`` by the refusal rate on a
    *tuning* draw of the other population (its train/val splits); the rates reported for the
    other population are of a disjoint draw from its test split.
    """
    from . import applicability as ap

    log = get_logger(recipe.model_id, run / "train.log")
    pos = recipe.labels.index(str(recipe.positive))
    train = _draw(split_records(recipe, "train", limit), FIT_IMAGES)
    _, p_train = _cached_outputs(model, recipe, train, run, "train_fit")
    other_recs: dict[str, list[dict[str, Any]]] = {}
    name, dataset = OTHER_POPULATION.get(recipe.model_id, ("", ""))
    if dataset:
        other_recs["tune"] = draw_records(dataset, ("train", "val"), OTHER_PER_LABEL // 2, limit)
        other_recs["report"] = draw_records(dataset, ("test",), OTHER_PER_LABEL, limit)
    tune_pooled = (_cached_outputs(model, recipe, other_recs["tune"], run, "other_tune")[1]
                   if other_recs else None)
    sweep: dict[str, float] = {}
    layered = isinstance(p_train, dict)
    if layered:  # v2: layer statistics; the layer set is chosen like k below
        all_stats = ap.fit_layers(p_train, pooled["val"])
        for cand_set in ap.LAYER_SETS:
            t_c = float(np.quantile(ap.score_layers(pooled["val"], all_stats, cand_set), ap.KEEP))
            if tune_pooled is not None:
                sweep["+".join(cand_set)] = round(float(
                    (ap.score_layers(tune_pooled, all_stats, cand_set) > t_c).mean()), 4)
        chosen = (tuple(max(sweep, key=lambda c: (sweep[c], -len(c))).split("+")) if sweep
                  else ("b10", "head"))

        def score_fn(x: Any) -> np.ndarray:
            return ap.score_layers(x, all_stats, chosen)
        k = 0
    else:
        best_k = ap.COMPONENTS
        for cand in K_CANDIDATES:
            kk = int(min(cand, len(p_train) - 1, p_train.shape[1]))
            st = ap.fit(p_train, kk)
            t_k = float(np.quantile(ap.score(pooled["val"], st), ap.KEEP))
            if tune_pooled is not None:
                sweep[str(kk)] = round(float((ap.score(tune_pooled, st) > t_k).mean()), 4)
        if sweep:
            best_k = int(max(sweep, key=lambda c: (sweep[c], -int(c))))
        k = int(min(best_k, len(p_train) - 1, p_train.shape[1]))
        stats = ap.fit(p_train, k)

        def score_fn(x: Any) -> np.ndarray:
            return ap.score(x, stats)
    s_val = score_fn(pooled["val"])
    thr = float(np.quantile(s_val, ap.KEEP))
    rates: dict[str, float] = {"validation_refused": float((s_val > thr).mean()),
                               "test_refused": float((score_fn(pooled["test"]) > thr).mean())}
    if "external" in pooled:
        rates["external_val_refused"] = float((score_fn(pooled["external"]) > thr).mean())
    other: dict[str, Any] = {}
    if other_recs:
        recs = other_recs["report"]
        lo, po = _cached_outputs(model, recipe, recs, run, "other_report")
        refused = score_fn(po) > thr
        positive = (~refused) & (softmax(lo, temperature)[:, pos] >= threshold)
        rates[f"{name}_refused"] = float(refused.mean())
        rates[f"{name}_reported_{recipe.positive}"] = float(positive.mean())
        rates[f"{name}_reported_{recipe.positive}_without_check"] = float(
            (softmax(lo, temperature)[:, pos] >= threshold).mean())
        labs = np.array([r["label"] for r in recs])
        for lab in sorted(set(labs)):
            sel = labs == lab
            other[lab] = {"n": int(sel.sum()), "refused": float(refused[sel].mean()),
                          f"reported_{recipe.positive}": float(positive[sel].mean()),
                          f"reported_{recipe.positive}_without_check":
                              float((softmax(lo[sel], temperature)[:, pos] >= threshold).mean())}
        other = {"name": name, "by_label": other,
                 "data": f"shared/data/{dataset}: {len(recs)} images of its test split (up to "
                         f"{OTHER_PER_LABEL} per label, seeded random draw)",
                 "k_sweep": {"tuned_on": f"{len(other_recs['tune'])} other images of its "
                                         "train/validation splits (disjoint from the reported ones)",
                             ("refused_by_layers" if layered else "refused_by_k"): sweep}}
    dicom: dict[str, Any] = {}
    if reports:
        from .gate import viewer_dicom_displays

        for fname, img in viewer_dicom_displays().items():
            if isinstance(img, str):
                dicom[fname] = {"verdict": img}
                continue
            lg, pl = _iter_outputs(model, recipe, [img])
            sc = float(score_fn(pl)[0])
            pp = float(softmax(lg, temperature)[0, pos])
            verdict = ("refused: outside this model's data" if sc > thr
                       else (recipe.positive if pp >= threshold else recipe.labels[1 - pos]))
            dicom[fname] = {"verdict": verdict, "p_positive": round(pp, 4), "applicability": round(sc, 3)}
        if dicom:
            shown = [v for v in dicom.values() if "p_positive" in v]
            rates["dicom_reported_" + str(recipe.positive)] = float(
                np.mean([v["verdict"] == recipe.positive for v in shown])) if shown else 0.0
    n_split = len(split_records(recipe, "train", limit))
    drawn = "all" if len(train) == n_split else f"{len(train)} of {n_split}, seeded random draw"
    if layered:
        dims = {n: int(all_stats[f"{n}.mu"].shape[0]) for n in chosen}
        info = {"layers": list(chosen), "layer_dims": dims, "shrinkage": ap.SHRINK,
                "fitted_on": f"training split ({drawn} images), layer statistics",
                "threshold_rule": f"{100 * ap.KEEP:g}th percentile of the own validation split "
                                  f"({len(s_val)} images)",
                "layers_rule": (f"the set of {['+'.join(c) for c in ap.LAYER_SETS]} with the most "
                                "refusals of a tuning draw of the other population at that threshold"
                                if sweep else "fixed")}
        ap.save_layers(run / ap.FILE_V2, all_stats, chosen, thr, info)
        method = ("s = mean over the layers " + ", ".join(chosen) + " of d_l(x)^2 / (dim_l * m_l): "
                  "d_l the Mahalanobis distance of layer l's features (per-channel mean and standard "
                  "deviation over the image of the outputs of Lite0 blocks 4/7/10/14; 'head' = the "
                  "pooled final activations) from the training split's mean, with a shrunk covariance "
                  f"((1-{ap.SHRINK}) C + {ap.SHRINK} tr(C)/d I), m_l its median on the own validation "
                  "split; refused when s > threshold")
    else:
        info = {"components": k, "fitted_on": f"training split ({drawn} images), pooled activations",
                "threshold_rule": f"{100 * ap.KEEP:g}th percentile of the own validation split "
                                  f"({len(s_val)} images)",
                "components_rule": (f"k in {list(K_CANDIDATES)} with the most refusals of a tuning draw "
                                    "of the other population at that threshold" if sweep else "fixed")}
        ap.save(run / ap.FILE, stats, thr, info)
        method = ("s = mean_i z_i^2 / lambda_i with z = (pooled activations - mu) @ V, the top "
                  f"{k} principal directions of the training split's pooled activations "
                  "(Mahalanobis distance in that subspace / k); refused when s > threshold")
    res = {"threshold": round(thr, 4), **info, "rates": {k2: round(v, 4) for k2, v in rates.items()},
           "other_population": other, "dicom": dicom, "method": method}
    log.info("applicability: threshold %.3f, rates %s", thr, json.dumps(res["rates"]))
    return res


def evaluate_classifier(recipe: Recipe, model: torch.nn.Module, limit: int | None = None,
                        reports: bool = True, run: Path | None = None) -> dict[str, Any]:
    val, test = split_records(recipe, "val", limit), split_records(recipe, "test", limit)
    yv, yt = _labels(recipe, val), _labels(recipe, test)
    if recipe.positive is None:  # the gate: logits only, OOD rule in gate.py
        lv = run_views(model, recipe, file_views(recipe, val))
        lt = run_views(model, recipe, file_views(recipe, test))
    else:
        rdir = run or RUNS / recipe.model_id
        lv, pv_pool = _cached_outputs(model, recipe, val, rdir, "val")
        lt, pt_pool = _cached_outputs(model, recipe, test, rdir, "test")
    ext: list[dict[str, Any]] = []
    if recipe.select_on == "external":
        from .data import external_records

        ext = external_records(recipe.dataset)
        if limit:  # both labels (the file lists normals first) in smoke runs
            ext = ext[:limit // 2] + ext[len(ext) - (limit - limit // 2):]
        le, pe_pool = _cached_outputs(model, recipe, ext, run or RUNS / recipe.model_id, "external")
        ye = _labels(recipe, ext)
        cal_logits, cal_y = le, ye
        fitted_on = f"external_val ({len(ext)} images, pneumonia/external_val)"
    else:
        cal_logits, cal_y, fitted_on = lv, yv, "validation"
    t = fit_temperature(cal_logits, cal_y)
    pv1, pt0, pt1 = softmax(lv, t), softmax(lt), softmax(lt, t)
    pc0, pc1 = softmax(cal_logits), softmax(cal_logits, t)
    res: dict[str, Any] = {
        "calibration": {"method": "temperature", "temperature": round(t, 4),
                        "ece_before": round(ece(pc0, cal_y), 4), "ece_after": round(ece(pc1, cal_y), 4),
                        "fitted_on": fitted_on,
                        "test_ece_before": round(ece(pt0, yt), 4), "test_ece_after": round(ece(pt1, yt), 4)},
        "reliability_test_before": reliability(pt0, yt), "reliability_test_after": reliability(pt1, yt),
        "n_val": len(val), "n_test": len(test),
    }
    if recipe.positive is not None:
        pos = recipe.labels.index(recipe.positive)
        threshold = balanced_threshold(cal_y == pos, pc1[:, pos])
        pred = np.where(pt1[:, pos] >= threshold, pos, 1 - pos)
        pred_v = np.where(pv1[:, pos] >= threshold, pos, 1 - pos)
        fpr, tpr, _ = roc_curve(yt == pos, pt1[:, pos])
        res.update({
            "threshold": threshold,
            "threshold_rule": ("balanced sensitivity/specificity on " + ("external_val" if ext else "validation")
                               + " (calibrated probability)"),
            "val": {"accuracy": float((pred_v == yv).mean()), "roc_auc": roc_auc(yv == pos, pv1[:, pos]),
                    "accuracy_at_0.5": float((np.where(pv1[:, pos] >= 0.5, pos, 1 - pos) == yv).mean())},
            "test": {**binary_block(recipe, lt, yt, t, threshold),
                     "per_source": _per_group([r["source"] for r in test], yt, pred)},
            "roc_test": {"fpr": fpr[:: max(1, len(fpr) // 300)].tolist(), "tpr": tpr[:: max(1, len(tpr) // 300)].tolist()},
        })
        pools = {"val": pv_pool, "test": pt_pool}
        if ext:
            fe, te, _ = roc_curve(ye == pos, pc1[:, pos])
            res["external"] = {**binary_block(recipe, le, ye, t, threshold),
                               "youden_threshold": youden_threshold(ye == pos, pc1[:, pos]),
                               "data": "pneumonia/external_val: half of the official Kermany test split"}
            res["reliability_external_before"] = reliability(pc0, ye)
            res["reliability_external_after"] = reliability(pc1, ye)
            res["roc_external"] = {"fpr": fe.tolist(), "tpr": te.tolist()}
            pools["external"] = pe_pool
        res["applicability"] = applicability_eval(recipe, model, run or RUNS / recipe.model_id, t,
                                                  threshold, pools, limit, reports)
    else:
        from .gate import gate_eval
        res.update(gate_eval(recipe, model, lv, yv, lt, yt, t, test, pt1, reports))
    return res


def evaluate_segmenter(recipe: Recipe, model: torch.nn.Module, limit: int | None = None,
                       reports: bool = True) -> dict[str, Any]:
    """Dice per split at each image's own resolution; ``test_clinical``: the test images again
    with ``augment.clinical_look`` on the model view (seeded by the image's index), how the
    segmenter holds up on films that look like processed clinical DICOM."""
    from .augment import clinical_look

    res: dict[str, Any] = {"threshold": 0.5}
    for split in ("val", "test", "test_clinical"):
        recs = split_records(recipe, "test" if split == "test_clinical" else split, limit)
        per: dict[str, list[float]] = defaultdict(list)
        for i, r in enumerate(recs):
            img = read_image(DATA / r["path"])
            mask = read_mask(DATA / r["mask"])
            view = model_view(img, recipe.spec)
            if split == "test_clinical":
                look = clinical_look(view.astype(np.float32) / 255.0, np.random.default_rng(i))
                view = np.clip(look * 255.0 + 0.5, 0, 255).astype(np.uint8)
            logit = run_views(model, recipe, view[None])[0]
            full = resize_to_image(logit, img.shape)  # bilinear on logits, then threshold
            per[r["source"]].append(dice(full > 0.0, mask))
        allv = [d for v in per.values() for d in v]
        res[split] = {"dice_mean": float(np.mean(allv)), "n": len(allv),
                      "per_source": {s: {"n": len(v), "dice_mean": float(np.mean(v)),
                                         "dice_median": float(np.median(v)), "dice_min": float(np.min(v))}
                                     for s, v in sorted(per.items())}}
    if reports:
        res["dicom"] = _segmenter_dicom(recipe, model)
    return res


def _segmenter_dicom(recipe: Recipe, model: torch.nn.Module) -> dict[str, dict[str, Any]]:
    """What the segmenter says on every real DICOM file (no reference masks exist for them):
    the mask's share of the image and its pieces larger than 1 % of the image."""
    import cv2

    from .gate import dicom_expectations, viewer_dicom_displays

    shows = dicom_expectations()
    out: dict[str, dict[str, Any]] = {}
    for name, img in viewer_dicom_displays().items():
        if isinstance(img, str):
            out[name] = {"shows": shows.get(name, ("?",))[0], "verdict": img}
            continue
        logit = run_views(model, recipe, model_view(img, recipe.spec)[None])[0]
        mask = (resize_to_image(logit, img.shape) > 0.0).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        big = int((stats[1:, cv2.CC_STAT_AREA] > 0.01 * mask.size).sum()) if n > 1 else 0
        out[name] = {"shows": shows.get(name, ("?",))[0], "area_fraction": round(float(mask.mean()), 4),
                     "pieces": big}
    return out


def evaluate(recipe: Recipe, run_dir: Path | None = None, limit: int | None = None,
             reports: bool = True) -> dict[str, Any]:
    """Evaluate the best checkpoint; write and return ``eval.json``.

    ``limit`` caps the validation/test images and ``reports=False`` skips the gate's DICOM and
    photograph reports (both for smoke tests only).
    """
    torch.set_num_threads(int(os.environ.get("RADVIEW_TRAIN_THREADS", "2")))
    run = run_dir or RUNS / recipe.model_id
    log = get_logger(recipe.model_id, run / "train.log")
    model = load_trained(recipe, run)
    res = (evaluate_segmenter(recipe, model, limit, reports) if recipe.task == "segmentation"
           else evaluate_classifier(recipe, model, limit, reports, run))
    (run / "eval.json").write_text(json.dumps(res, indent=1))
    log.info("evaluation: %s", json.dumps({k: res[k] for k in ("external", "test", "val") if k in res})[:2000])
    return res

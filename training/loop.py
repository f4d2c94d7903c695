"""The training loop: seeded, logged to a file, checkpointed every epoch, resumable.

``train(recipe)`` writes ``training/runs/<model>/{train.log,last.pt,best.pt}``. The best epoch
is chosen on the validation split only (ROC AUC / balanced accuracy / Dice).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from viewer.core.preprocess import normalise

from . import outliers
from .augment import augment, centre_view
from .common import RUNS, SEED, get_logger, seed_everything
from .data import load_cache
from .metrics import balanced_accuracy, dice, roc_auc
from .nets import Ensemble, FlipAveraged
from .recipes import Recipe
from .splits import read_split


@dataclass
class Arrays:
    """Cached images (and masks) of one split, with integer labels."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    masks: np.ndarray | None = None


def split_arrays(recipe: Recipe, split: str, limit: int | None = None) -> Arrays:
    cache = load_cache(recipe.dataset, recipe.cache_size)
    assign = read_split(recipe.dataset)
    paths = [str(p) for p in cache["paths"]]
    idx = [i for i, p in enumerate(paths) if assign.get(p) == split]
    if limit is not None:  # keep both classes present in tiny smoke runs
        rng = np.random.default_rng(SEED)
        idx = sorted(rng.permutation(idx)[:limit].tolist())
    from .data import records
    label_of = {r["path"]: r["label"] for r in records(recipe.dataset)}
    lab = np.array([recipe.labels.index(label_of[paths[i]]) if label_of[paths[i]] in recipe.labels
                    else 0 for i in idx], np.int64)
    masks = cache["masks"][idx] if "masks" in cache else None
    return Arrays(cache["images"][idx], lab, [paths[i] for i in idx], masks)


def to_tensor(views: np.ndarray, recipe: Recipe) -> torch.Tensor:
    return torch.from_numpy(normalise(views, recipe.spec))


@torch.no_grad()
def predict(model: torch.nn.Module, recipe: Recipe, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Logits (classification, (N, K)) or mask logits ((N, H, W)) on centre views."""
    model.eval()
    size = recipe.spec.height
    outs = []
    for s in range(0, len(images), batch):
        views = np.stack([centre_view(im, size) for im in images[s:s + batch]])
        out = model(to_tensor(views, recipe))
        outs.append((out[0] if isinstance(out, tuple) else out[:, 0]).numpy())
    return np.concatenate(outs) if outs else np.zeros((0,))


def external_arrays(recipe: Recipe, limit: int | None = None) -> Arrays | None:
    """The recipe's external selection set (``select_on="external"``) as model views read
    from disk the viewer's way (``model_view``), or None."""
    if recipe.select_on != "external":
        return None
    from viewer.core.preprocess import model_view

    from .common import DATA
    from .data import external_records, read_image

    recs = external_records(recipe.dataset)
    if limit is not None:
        rng = np.random.default_rng(SEED)
        recs = [recs[i] for i in sorted(rng.permutation(len(recs))[:limit].tolist())]
    views = np.stack([model_view(read_image(DATA / r["path"]), recipe.spec) for r in recs])
    lab = np.array([recipe.labels.index(r["label"]) for r in recs], np.int64)
    return Arrays(views, lab, [r["path"] for r in recs])


def val_score(recipe: Recipe, logits: np.ndarray, val: Arrays) -> float:
    if recipe.task == "segmentation":
        size = recipe.spec.height
        ds = []
        for lg, m in zip(logits, val.masks):
            gt = centre_view(m, size) if m.shape[0] != size else m
            ds.append(dice(lg > 0, gt))
        return float(np.mean(ds))
    if len(recipe.labels) == 2:
        p = torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()
        return roc_auc(val.labels, p)
    return balanced_accuracy(val.labels, logits.argmax(1), len(recipe.labels))


def _class_weights(labels: np.ndarray, k: int, power: float) -> torch.Tensor:
    counts = np.bincount(labels, minlength=k).astype(np.float64) + 1.0
    w = counts ** -power
    return torch.tensor(w / (w * counts).sum() * counts.sum(), dtype=torch.float32)


def seg_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice over pixels whose mask is not 127 (ignore)."""
    valid = (mask != 127).float()
    target = (mask == 255).float()
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=valid, reduction="sum")
    bce = bce / valid.sum().clamp_min(1.0)
    p = torch.sigmoid(logits) * valid
    inter = (p * target).sum((1, 2))
    soft_dice = 1 - (2 * inter + 1) / (p.sum((1, 2)) + (target * valid).sum((1, 2)) + 1)
    return bce + soft_dice.mean()


def member_dir(run: Path, member: int = 0) -> Path:
    """Run directory of an ensemble member: member 0 is the model's run directory itself."""
    return run if member == 0 else run / f"member{member}"


def train(recipe: Recipe, *, epochs: int | None = None, max_steps: int | None = None,
          limit: int | None = None, resume: bool = False, run_dir: Path | None = None,
          init: Path | None = None, member: int = 0) -> Path:
    """Train ``recipe`` from scratch (or resume) and return the run directory.

    ``init`` starts from the weights of another checkpoint (a fine-tune with a fresh optimiser
    and schedule, e.g. at a larger input size: the networks are fully convolutional).
    ``member`` trains ensemble member ``member`` (seed ``SEED + recipe.seed + member``, run directory
    ``member_dir``). ``RADVIEW_TRAIN_THREADS`` sets torch's thread count (default 2; 1 when
    two runs share the machine).
    """
    torch.set_num_threads(int(os.environ.get("RADVIEW_TRAIN_THREADS", "2")))
    run = run_dir or member_dir(RUNS / recipe.model_id, member)
    run.mkdir(parents=True, exist_ok=True)
    log = get_logger(recipe.model_id, run / "train.log")
    (run / "eval.json").unlink(missing_ok=True)  # evaluation belongs to the finished run
    seed = SEED + recipe.seed + member
    seed_everything(seed)
    n_epochs = epochs or recipe.epochs
    tr = split_arrays(recipe, "train", limit)
    va = split_arrays(recipe, "val", limit)
    ext = external_arrays(recipe, limit)
    model = recipe.build()
    if init is not None and not resume:
        model.load_state_dict(torch.load(init, weights_only=False)["model"])
        log.info("initialised from %s", init)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    per_epoch = min(len(tr.images), recipe.epoch_samples or len(tr.images))
    steps_per_epoch = max(1, per_epoch // recipe.batch)
    total = n_epochs * steps_per_epoch if max_steps is None else max_steps
    warm = max(1, min(200, total // 15))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema), use_buffers=True)
           if recipe.ema else None)
    rng = np.random.default_rng(seed)
    start_epoch, step, best = 0, 0, -1.0
    last = run / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        if ema is not None and "ema" in ck:
            ema.load_state_dict(ck["ema"])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        start_epoch, step, best = ck["epoch"] + 1, ck["step"], ck["best"]
        log.info("resumed from epoch %d (step %d, best %.4f)", ck["epoch"], step, best)
    k = len(recipe.labels)
    is_seg = recipe.task == "segmentation"
    cw = None if is_seg else _class_weights(tr.labels, k, 1.0 if k == 2 else 0.5)
    if not is_seg and k > 2:  # sample rare classes more often: class mass ~ sqrt(count)
        pw = np.bincount(tr.labels, minlength=k).astype(np.float64) ** -0.5
        sample_p = pw[tr.labels] / pw[tr.labels].sum()
        cw = torch.ones(k)
    else:
        sample_p = None
    log.info("train %s (member %d, seed %d): %d train / %d val images, %d params, %d epochs x %d "
             "steps, %d px, lr %.2e", recipe.model_id, member, seed, len(tr.images), len(va.images),
             sum(p.numel() for p in model.parameters()), n_epochs, steps_per_epoch,
             recipe.spec.height, recipe.lr)
    size = recipe.spec.height
    for epoch in range(start_epoch, n_epochs):
        model.train()
        t0, losses = time.time(), []
        order = (rng.choice(len(tr.images), per_epoch, p=sample_p) if sample_p is not None
                 else rng.permutation(len(tr.images))[:per_epoch])
        for b in range(steps_per_epoch):
            if max_steps is not None and step >= max_steps:
                break
            idx = order[b * recipe.batch:(b + 1) * recipe.batch]
            views, masks = [], []
            for i in idx:
                v, m = augment(tr.images[i], size, rng, recipe.aug,
                               tr.masks[i] if is_seg else None)
                views.append(v)
                masks.append(m)
            x = to_tensor(np.stack(views), recipe)
            if is_seg:
                out = model(x)[:, 0]
                loss = seg_loss(out, torch.from_numpy(np.stack(masks)))
            else:
                y = torch.from_numpy(tr.labels[idx])
                if recipe.outlier_exposure:
                    n_out = max(2, len(idx) // 4)
                    ood = outliers.batch(n_out, size, rng, tr.images[idx[:4]])
                    x = torch.cat([x, to_tensor(ood, recipe)])
                logits, _ = model(x)
                loss = F.cross_entropy(logits[:len(idx)], y, weight=cw,
                                       label_smoothing=recipe.label_smoothing)
                if recipe.outlier_exposure:
                    lo = logits[len(idx):]
                    # Outlier exposure (Hendrycks et al. 2019): push outliers to uniform.
                    loss = loss + 0.5 * (-(lo.log_softmax(1)).mean(1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            losses.append(loss.item())
            if b % 50 == 0:
                log.info("epoch %d step %d/%d loss %.4f lr %.2e", epoch, b, steps_per_epoch,
                         np.mean(losses[-50:]), sched.get_last_lr()[0])
        kept = model if ema is None else ema.module  # the weights that are validated and kept
        if ext is None:
            score = val_score(recipe, predict(kept, recipe, va.images), va)
        else:  # choose the checkpoint on the external selection set instead (the own
            # validation split is scored once, in evaluate.py: it costs 3x the time here)
            judged = FlipAveraged(kept) if recipe.tta_hflip else kept
            score = val_score(recipe, predict(judged, recipe, ext.images, batch=16), ext)
            log.info("epoch %d: external score %.4f", epoch, score)
        # A tie keeps the later checkpoint: a saturated score (balanced accuracy 1.0 on the
        # gate's validation split) then keeps the weights at the end of the schedule.
        improved = score >= best
        best = max(best, score)
        ck = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
              "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "epoch": epoch,
              "step": step, "best": best, "score": score, "recipe": recipe.model_id}
        if ema is not None:
            ck["ema"] = ema.state_dict()
        torch.save(ck, last)
        if improved:
            torch.save({"model": kept.state_dict(), "epoch": epoch, "score": score}, run / "best.pt")
        log.info("epoch %d done in %.0fs: train loss %.4f, val score %.4f%s", epoch,
                 time.time() - t0, float(np.mean(losses)) if losses else float("nan"), score,
                 " (best)" if improved else "")
        if max_steps is not None and step >= max_steps:
            break
    return run


def load_trained(recipe: Recipe, run_dir: Path | None = None) -> torch.nn.Module:
    """The best validation checkpoint of a finished run, in eval mode.

    With ``recipe.tta_hflip`` each network is wrapped in :class:`training.nets.FlipAveraged`;
    with ``recipe.members > 1`` the members' best checkpoints (``member_dir``) are combined in
    :class:`training.nets.Ensemble`. What is evaluated, calibrated and exported is that
    combined classifier.
    """
    run = run_dir or RUNS / recipe.model_id
    if recipe.tta_hflip and (recipe.task != "classification" or recipe.aug.hflip <= 0):
        raise ValueError(f"{recipe.model_id}: flip averaging needs a classifier trained with flips")
    if recipe.members > 1 and recipe.task != "classification":
        raise ValueError(f"{recipe.model_id}: ensembles are for GAP + linear classifiers")
    nets: list[torch.nn.Module] = []
    for i in range(recipe.members):
        net = recipe.build(pretrained=False)
        net.load_state_dict(torch.load(member_dir(run, i) / "best.pt", weights_only=False)["model"])
        nets.append(FlipAveraged(net) if recipe.tta_hflip else net)
    model = nets[0] if len(nets) == 1 else Ensemble(nets)
    return model.eval()

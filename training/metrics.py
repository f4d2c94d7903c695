"""Metrics in numpy: ROC AUC, ROC curve, ECE, confusion matrix, Dice."""

from __future__ import annotations

import numpy as np


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds (descending score)."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(yy)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / max(1, yy.sum())]
    fpr = np.r_[0.0, fps / max(1, (~yy).sum())]
    return fpr, tpr, np.r_[np.inf, s[distinct]]


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half), via ranks."""
    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_s = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (np.asarray(y), np.asarray(pred)), 1)
    return cm


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    cm = confusion(y, pred, k)
    rec = [cm[i, i] / cm[i].sum() for i in range(k) if cm[i].sum() > 0]
    return float(np.mean(rec))


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence (equal-width bins)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) per confidence bin, for the reliability diagram."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        out.append((float(conf[sel].mean()) if sel.any() else (lo + hi) / 2,
                    float(correct[sel].mean()) if sel.any() else float("nan"), int(sel.sum())))
    return out


def dice(pred: np.ndarray, mask: np.ndarray) -> float:
    """Dice of a boolean prediction against a V7 mask (255 lung, 127 ignored, 0 background)."""
    valid = mask != 127
    gt = (mask == 255) & valid
    p = np.asarray(pred, bool) & valid
    denom = p.sum() + gt.sum()
    return 1.0 if denom == 0 else float(2 * (p & gt).sum() / denom)

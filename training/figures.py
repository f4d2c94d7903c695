"""Model-card figures drawn with OpenCV (no matplotlib): confusion matrix, ROC, reliability."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

W = 480
FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK, GREY, BLUE, RED = (0, 0, 0), (170, 170, 170), (180, 90, 20), (40, 40, 200)


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[np.ndarray, callable]:
    img = np.full((W, W, 3), 255, np.uint8)
    x0, y0, x1, y1 = 70, 40, W - 20, W - 60
    cv2.putText(img, title, (x0, 28), FONT, 0.55, BLACK, 1, cv2.LINE_AA)
    for t in np.linspace(0, 1, 6):
        px, py = int(x0 + t * (x1 - x0)), int(y1 - t * (y1 - y0))
        cv2.line(img, (px, y0), (px, y1), (235, 235, 235), 1)
        cv2.line(img, (x0, py), (x1, py), (235, 235, 235), 1)
        cv2.putText(img, f"{t:.1f}", (px - 12, y1 + 18), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
        cv2.putText(img, f"{t:.1f}", (x0 - 32, py + 4), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y0), (x1, y1), BLACK, 1)
    cv2.putText(img, xlabel, (x0 + 100, W - 20), FONT, 0.5, BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, ylabel, (4, y0 - 8), FONT, 0.45, BLACK, 1, cv2.LINE_AA)

    def to_px(x: float, y: float) -> tuple[int, int]:
        return int(round(x0 + x * (x1 - x0))), int(round(y1 - y * (y1 - y0)))

    return img, to_px


def roc_figure(fpr: list[float], tpr: list[float], auc: float, path: Path, title: str) -> None:
    img, to_px = _axes(f"{title}  ROC AUC {auc:.4f}", "false-positive rate", "true-positive rate")
    cv2.line(img, to_px(0, 0), to_px(1, 1), GREY, 1, cv2.LINE_AA)
    pts = np.array([to_px(x, y) for x, y in zip(fpr, tpr)], np.int32)
    cv2.polylines(img, [pts], False, BLUE, 2, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def reliability_figure(before: list, after: list, ece_b: float, ece_a: float, path: Path,
                       title: str) -> None:
    img, to_px = _axes(f"{title}  ECE {ece_b:.3f} -> {ece_a:.3f}", "confidence", "accuracy")
    cv2.line(img, to_px(0, 0), to_px(1, 1), GREY, 1, cv2.LINE_AA)
    for bins, colour, dx in ((before, RED, -0.012), (after, BLUE, 0.012)):
        pts = []
        for i, (conf, acc, n) in enumerate(bins):
            if n == 0 or acc != acc:
                continue
            lo, hi = i / len(bins), (i + 1) / len(bins)
            cx = (lo + hi) / 2 + dx
            cv2.rectangle(img, to_px(cx - 0.01, 0), to_px(cx + 0.01, acc), colour, -1)
            pts.append(to_px(conf, acc))
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, np.int32)], False, colour, 1, cv2.LINE_AA)
    cv2.putText(img, "red: raw   blue: temperature-scaled", (80, 62), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def confusion_figure(cm: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    cmv = np.asarray(cm, np.float64)
    k = len(labels)
    cell = min(90, (W - 140) // k)
    img = np.full((150 + cell * k, 150 + cell * k, 3), 255, np.uint8)
    cv2.putText(img, title, (10, 24), FONT, 0.55, BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, "rows: true, columns: predicted", (10, 46), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
    ox, oy = 110, 90
    rows = cmv.sum(1, keepdims=True).clip(min=1)
    for i in range(k):
        cv2.putText(img, labels[i][:8], (4, oy + i * cell + cell // 2 + 5), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
        cv2.putText(img, labels[i][:8], (ox + i * cell + 4, oy - 8), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
        for j in range(k):
            frac = cmv[i, j] / rows[i, 0]
            shade = int(255 - 200 * frac)
            p0 = (ox + j * cell, oy + i * cell)
            cv2.rectangle(img, p0, (p0[0] + cell, p0[1] + cell), (255, shade, shade), -1)
            cv2.rectangle(img, p0, (p0[0] + cell, p0[1] + cell), GREY, 1)
            colour = (255, 255, 255) if frac > 0.6 else BLACK
            cv2.putText(img, str(int(cmv[i, j])), (p0[0] + 8, p0[1] + cell // 2 + 5), FONT, 0.5,
                        colour, 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def dice_figure(per_source: dict, path: Path, title: str) -> None:
    img, to_px = _axes(title, "source", "mean Dice")
    for i, (src, d) in enumerate(sorted(per_source.items())):
        cx = (i + 1) / (len(per_source) + 1)
        cv2.rectangle(img, to_px(cx - 0.1, 0), to_px(cx + 0.1, d["dice_mean"]), BLUE, -1)
        cv2.putText(img, f"{src} {d['dice_mean']:.3f}", to_px(cx - 0.12, d["dice_mean"] + 0.03),
                    FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)

"""Synthetic out-of-distribution images for outlier exposure of the body-region gate.

Only synthetic textures are used for training (noise, blank frames, gradients, stripes,
checkerboards, shapes, 1/f noise, and radiographs cut into shuffled tiles). Natural
photographs (scikit-image's samples) are kept for the test.
"""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("uniform", "gauss_blur", "blank", "gradient", "stripes", "checker", "shapes", "pink",
         "tiles", "scene", "scene", "text", "cells")


def _pink(rng: np.random.Generator, size: int) -> np.ndarray:
    f = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
    f[0, 0] = 1.0
    spec = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / f ** rng.uniform(0.5, 1.1)
    img = np.real(np.fft.ifft2(spec))
    return (img - img.min()) / (np.ptp(img) + 1e-9)


def synth(kind: str, size: int, rng: np.random.Generator, radiograph: np.ndarray | None = None) -> np.ndarray:
    """One uint8 ``size`` x ``size`` outlier image of the given kind."""
    if kind == "uniform":
        x = rng.random((size, size))
    elif kind == "gauss_blur":
        x = cv2.GaussianBlur(rng.normal(0.5, 0.2, (size, size)).astype(np.float32), (0, 0),
                             rng.uniform(0.5, 8))
        x = (x - x.min()) / (np.ptp(x) + 1e-9)
    elif kind == "blank":
        x = np.full((size, size), rng.random()) + rng.normal(0, 0.01, (size, size))
    elif kind == "gradient":
        yy, xx = np.mgrid[0:size, 0:size] / size
        th = rng.uniform(0, np.pi)
        x = np.cos(th) * xx + np.sin(th) * yy
        if rng.random() < 0.5:
            x = np.hypot(xx - rng.random(), yy - rng.random())
        x = (x - x.min()) / (np.ptp(x) + 1e-9)
    elif kind == "stripes":
        yy, xx = np.mgrid[0:size, 0:size]
        th, per = rng.uniform(0, np.pi), rng.uniform(3, 40)
        x = 0.5 + 0.5 * np.sin((np.cos(th) * xx + np.sin(th) * yy) * 2 * np.pi / per)
    elif kind == "checker":
        n = int(rng.integers(2, 16))
        yy, xx = np.mgrid[0:size, 0:size] * n // size
        x = ((yy + xx) % 2).astype(np.float64) * rng.uniform(0.3, 1) + rng.uniform(0, 0.3)
    elif kind == "shapes":
        img = np.full((size, size), rng.integers(0, 256), np.uint8)
        for _ in range(int(rng.integers(3, 25))):
            c = int(rng.integers(0, 256))
            p = rng.integers(0, size, 4)
            if rng.random() < 0.4:
                cv2.circle(img, (int(p[0]), int(p[1])), int(rng.integers(3, size // 2)), c, -1)
            elif rng.random() < 0.6:
                cv2.rectangle(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), c, -1)
            else:
                cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), c, int(rng.integers(1, 6)))
        x = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 2.0)).astype(np.float64) / 255
    elif kind == "pink":
        x = _pink(rng, size)
    elif kind == "scene":  # photo-like: smooth background, textured objects with hard edges
        x = 0.6 * synth("gradient", size, rng) / 255.0 + 0.4 * _pink(rng, size)
        for _ in range(int(rng.integers(1, 6))):
            obj = np.zeros((size, size), np.uint8)
            p = rng.integers(0, size, 2)
            ax = (int(rng.integers(4, size // 2)), int(rng.integers(4, size // 2)))
            cv2.ellipse(obj, (int(p[0]), int(p[1])), ax, float(rng.uniform(0, 180)), 0, 360, 255, -1)
            if rng.random() < 0.5:
                cv2.rectangle(obj, tuple(int(v) for v in rng.integers(0, size, 2)),
                              tuple(int(v) for v in rng.integers(0, size, 2)), 255, -1)
            tex = synth(str(rng.choice(["pink", "stripes", "gauss_blur", "blank"])), size, rng) / 255.0
            x = np.where(obj > 0, tex * rng.uniform(0.3, 1.0) + rng.uniform(0, 0.5), x)
    elif kind == "text":
        img = np.full((size, size), int(rng.integers(150, 256)), np.uint8)
        for _ in range(int(rng.integers(3, 12))):
            txt = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 10))))
            org = (int(rng.integers(-10, size - 10)), int(rng.integers(8, size)))
            cv2.putText(img, txt, org, int(rng.integers(0, 8)), float(rng.uniform(0.3, 1.2)),
                        int(rng.integers(0, 100)), int(rng.integers(1, 3)), cv2.LINE_AA)
        x = img.astype(np.float64) / 255
    elif kind == "cells":  # micrograph-like blobs
        img = np.full((size, size), int(rng.integers(120, 256)), np.uint8)
        for _ in range(int(rng.integers(20, 120))):
            c = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.circle(img, c, int(rng.integers(2, 9)), int(rng.integers(0, 180)), -1)
        x = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.5)).astype(np.float64) / 255
        x = np.clip(x + 0.1 * _pink(rng, size), 0, 1)
    elif kind == "tiles":
        src = radiograph if radiograph is not None else (_pink(rng, size) * 255).astype(np.uint8)
        src = cv2.resize(src, (size, size))
        n = int(rng.choice([4, 8, 16]))
        t = size // n
        tiles = [src[i * t:(i + 1) * t, j * t:(j + 1) * t] for i in range(n) for j in range(n)]
        order = rng.permutation(len(tiles))
        rows = [np.hstack([tiles[order[i * n + j]] for j in range(n)]) for i in range(n)]
        x = cv2.resize(np.vstack(rows), (size, size)).astype(np.float64) / 255
    else:
        raise ValueError(kind)
    if rng.random() < 0.3:
        x = 1 - x
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def batch(n: int, size: int, rng: np.random.Generator, radiographs: np.ndarray | None = None) -> np.ndarray:
    """``n`` outliers of random kinds; ``radiographs`` feeds the shuffled-tile kind."""
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        rad = None
        if radiographs is not None and len(radiographs):
            rad = radiographs[int(rng.integers(len(radiographs)))]
        out[i] = synth(kind, size, rng, rad)
    return out

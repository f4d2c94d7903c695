"""Per-sample augmentation on cached uint8 images (OpenCV/numpy, seeded generator).

The output is a uint8 *model view* at the network size, which then goes through the same
:func:`viewer.core.preprocess.normalise` as at inference. Geometry: random scale, aspect ratio,
rotation, shift and flip (covers both squashed 224-px copies and landscape originals).
Appearance: gamma, contrast, CLAHE on/off, down-and-up resampling (source resolution), blur,
noise. Masks follow the geometry with nearest-neighbour sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugConfig:
    scale: tuple[float, float] = (0.85, 1.15)
    aspect: tuple[float, float] = (0.8, 1.25)
    rotate_deg: float = 10.0
    shift: float = 0.06
    hflip: float = 0.5
    gamma: tuple[float, float] = (0.7, 1.45)
    contrast: tuple[float, float] = (0.8, 1.2)
    clahe_p: float = 0.15
    resample_p: float = 0.25
    resample: tuple[float, float] = (0.45, 0.9)
    blur_p: float = 0.1
    noise_p: float = 0.15
    invert_p: float = 0.0


def _affine(rng: np.random.Generator, src: int, dst: int, cfg: AugConfig) -> np.ndarray:
    s = rng.uniform(*cfg.scale) * dst / src
    a = np.exp(rng.uniform(np.log(cfg.aspect[0]), np.log(cfg.aspect[1])))
    sx, sy = s * np.sqrt(a), s / np.sqrt(a)
    th = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    c, si = np.cos(th), np.sin(th)
    lin = np.array([[c * sx, -si * sy], [si * sx, c * sy]])
    if rng.random() < cfg.hflip:
        lin = lin @ np.array([[-1.0, 0.0], [0.0, 1.0]])
    centre_src = np.array([src / 2.0, src / 2.0])
    shift = rng.uniform(-cfg.shift, cfg.shift, 2) * dst
    t = np.array([dst / 2.0, dst / 2.0]) + shift - lin @ centre_src
    return np.hstack([lin, t[:, None]]).astype(np.float64)


def augment(img: np.ndarray, size: int, rng: np.random.Generator, cfg: AugConfig,
            mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """One augmented ``size`` x ``size`` uint8 view (and mask) from a cached image."""
    m = _affine(rng, img.shape[0], size, cfg)
    out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mout = None
    if mask is not None:
        mout = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if rng.random() < cfg.resample_p:
        f = rng.uniform(*cfg.resample)
        small = max(16, int(round(size * f)))
        out = cv2.resize(cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA),
                         (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.clahe_p:
        clip = rng.uniform(1.5, 3.0)
        out = cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8)).apply(out)
    x = out.astype(np.float32) / 255.0
    x = np.power(x, rng.uniform(*cfg.gamma))
    x = (x - 0.5) * rng.uniform(*cfg.contrast) + 0.5 + rng.uniform(-0.05, 0.05)
    if rng.random() < cfg.blur_p:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.2))
    if rng.random() < cfg.noise_p:
        x = x + rng.normal(0, rng.uniform(0.005, 0.03), x.shape).astype(np.float32)
    if rng.random() < cfg.invert_p:
        x = 1.0 - x
    out = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out, mout


def centre_view(img: np.ndarray, size: int) -> np.ndarray:
    """Evaluation view: the whole cached image stretched to ``size`` (as model_view does)."""
    if img.shape[0] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)

"""Per-sample augmentation on cached uint8 images (OpenCV/numpy, seeded generator).

The output is a uint8 *model view* at the network size, which then goes through the same
:func:`viewer.core.preprocess.normalise` as at inference. Geometry: random scale, aspect ratio,
rotation, shift and flip (covers both squashed 224-px copies and landscape originals).
Appearance: gamma, contrast, CLAHE on/off, down-and-up resampling (source resolution), blur,
noise. Masks follow the geometry with nearest-neighbour sampling.

``clinical_p`` adds :func:`clinical_look`: what a processed clinical DICOM film looks like once
the viewer has applied its VOI window, which the 8-bit JPEG copies of the public sets do not
show (multiscale dynamic-range compression, edge enhancement, other windows and VOI shapes,
a LUT applied to MONOCHROME1 data, collimator shutters, burned-in side markers).
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
    clinical_p: float = 0.0  # probability of clinical_look (after geometry, before gamma)
    # Probability of a film hung wrong: turned by 90/180/270 degrees or upside down (image and
    # mask alike; the 16-bit DX chest of shared/data/dicom is stored upside down and inverted).
    orient_p: float = 0.0


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
    if rng.random() < cfg.orient_p:
        k, flip = int(rng.integers(0, 4)), bool(rng.random() < 0.5)
        if k == 0 and not flip:
            k = 2
        out = _orient(out, k, flip)
        mout = None if mout is None else _orient(mout, k, flip)
    if rng.random() < cfg.resample_p:
        f = rng.uniform(*cfg.resample)
        small = max(16, int(round(size * f)))
        out = cv2.resize(cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA),
                         (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.clahe_p:
        clip = rng.uniform(1.5, 3.0)
        out = cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8)).apply(out)
    x = out.astype(np.float32) / 255.0
    if rng.random() < cfg.clinical_p:
        x = clinical_look(x, rng)
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


def _orient(img: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = np.rot90(img, k)
    return np.ascontiguousarray(out[::-1] if flip else out)


_MARKERS = ("R", "L", "PA", "AP", "LAT", "SUPINE", "ERECT", "1", "2")


def clinical_look(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A float32 [0, 1] view as a processed clinical film looks after the VOI window.

    The 8-bit value is taken as the detector's log signal (dithered: stored data have 10-16
    bits, not 256 levels); then, each at random: multiscale processing (the large-scale
    background partly subtracted, which darkens lungs and flattens the mediastinum, as on the
    16-bit DX chest of ``shared/data/dicom``), unsharp-mask edge enhancement, a VOI window of
    another centre and width (linear, or the SIGMOID VOI LUT function), a LUT shaped in the
    MONOCHROME1 (inverted) domain, a collimator shutter (black or white bands, slightly
    rotated) and a burned-in side marker.
    """
    size = x.shape[0]
    raw = x + rng.normal(0.0, 0.5 / 255.0, x.shape).astype(np.float32)
    if rng.random() < 0.6:  # dynamic-range compression (MUSICA-like)
        low = cv2.GaussianBlur(raw, (0, 0), rng.uniform(0.04, 0.2) * size)
        raw = raw - rng.uniform(0.3, 0.85) * (low - float(low.mean()))
    if rng.random() < 0.5:  # edge enhancement
        fine = cv2.GaussianBlur(raw, (0, 0), rng.uniform(0.5, 3.0) * size / 256.0)
        raw = raw + rng.uniform(0.3, 1.5) * (raw - fine)
    lo, hi = np.percentile(raw, [rng.uniform(0.0, 5.0), rng.uniform(95.0, 100.0)])
    span = max(float(hi - lo), 1e-3)
    width = span * rng.uniform(0.7, 1.3)
    centre = (lo + hi) / 2.0 + rng.uniform(-0.15, 0.15) * span
    if rng.random() < 0.3:  # VOI LUT Function SIGMOID (PS3.3 C.11.2.1.3.1)
        y = 1.0 / (1.0 + np.exp(-4.0 * (raw - centre) / width))
    else:
        y = np.clip((raw - centre) / width + 0.5, 0.0, 1.0)
    if rng.random() < 0.3:  # a LUT curve applied to inverted (MONOCHROME1) data
        y = 1.0 - np.power(1.0 - y, rng.uniform(0.6, 1.6))
    y = y.astype(np.float32)
    if rng.random() < 0.5:  # collimator shutter
        y = _shutter(y, rng)
    if rng.random() < 0.4:  # burned-in marker
        img = np.ascontiguousarray(y)
        text = str(rng.choice(_MARKERS))
        org = (int(rng.integers(2, size * 3 // 4)), int(rng.integers(size // 10, size - 2)))
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.2, 0.6) * size / 128,
                    float(rng.uniform(0.85, 1.0)), int(rng.integers(1, 3)), cv2.LINE_AA)
        y = img
    return y


def _shutter(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bands of a collimator shutter on 1-4 sides, slightly rotated, black or white."""
    size = y.shape[0]
    keep = np.zeros_like(y, np.uint8)
    m = rng.uniform(0.0, 0.15, 4) * size * (rng.random(4) < 0.7)
    rect = ((size / 2 + (m[2] - m[3]) / 2, size / 2 + (m[0] - m[1]) / 2),
            (size - m[2] - m[3], size - m[0] - m[1]), float(rng.uniform(-4, 4)))
    cv2.fillPoly(keep, [np.round(cv2.boxPoints(rect)).astype(np.int32)], 1)
    value = 1.0 if rng.random() < 0.5 else float(rng.uniform(0.0, 0.1))
    return np.where(keep > 0, y, np.float32(value)).astype(np.float32)


def centre_view(img: np.ndarray, size: int) -> np.ndarray:
    """Evaluation view: the whole cached image stretched to ``size`` (as model_view does)."""
    if img.shape[0] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)

"""Postprocessors, looked up in an explicit dict keyed by the manifest's output kind.

Each takes the raw output array, the manifest and the image shape ``(rows, cols)`` and returns
the processed value stored under that kind in :class:`viewer.inference.runner.ModelOutputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from viewer.core.preprocess import resize_to_image
from viewer.inference.manifest import ModelContractError, ModelManifest, channel_index

__all__ = [
    "Postprocessor",
    "POSTPROCESSORS",
    "softmax",
    "calibrated_probabilities",
    "energy_score",
    "segmentation_mask",
    "segmentation_masks",
    "sigmoid",
    "multilabel_probabilities",
]

Postprocessor = Callable[[np.ndarray, ModelManifest, tuple[int, int]], np.ndarray]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def calibrated_probabilities(
    logits: np.ndarray, manifest: ModelManifest, image_shape: tuple[int, int]
) -> np.ndarray:
    """``softmax(logits / T)`` with the manifest's calibration temperature, shape (n_classes,)."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if z.size != len(manifest.labels):
        raise ValueError(f"{manifest.id}: {z.size} logits for {len(manifest.labels)} labels")
    return softmax(z / manifest.temperature)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (float64)."""
    x = np.asarray(z, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def multilabel_probabilities(
    logits: np.ndarray, manifest: ModelManifest, image_shape: tuple[int, int]
) -> np.ndarray:
    """``sigmoid(logits / T)``, one independent probability per declared finding (n,)."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if z.size != len(manifest.findings):
        raise ModelContractError(f"findings: the output has {z.size} logits for "
                                 f"{len(manifest.findings)} declared findings")
    return sigmoid(z / manifest.temperature)


def energy_score(logits: np.ndarray) -> float:
    """Energy ``E = -logsumexp(raw logits)`` (Liu et al. 2020); higher means less familiar."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    m = float(z.max())
    return -(m + float(np.log(np.exp(z - m).sum())))


def _foreground(z: np.ndarray, threshold: float, image_shape: tuple[int, int]) -> np.ndarray:
    # sigmoid(z) > t  <=>  z > logit(t): no exp over the whole map.
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    full = resize_to_image(np.ascontiguousarray(z, dtype=np.float32), image_shape)
    return np.asarray(np.greater(full, np.float32(np.log(t / (1.0 - t)))).view(np.uint8))


def segmentation_masks(
    mask_logits: np.ndarray, manifest: ModelManifest, image_shape: tuple[int, int]
) -> np.ndarray:
    """uint8 {0, 1} masks at image resolution, one per declared segment ``(S, rows, cols)``:
    each segment's channel resized bilinearly, then thresholded at its own threshold.

    This is how the models' Dice is measured (``training/evaluate.py``): thresholding at model
    resolution and enlarging the label map (nearest) gives staircase borders and measured 0.001
    lower Dice on the lungs validation split.
    """
    z = np.asarray(mask_logits, dtype=np.float32)
    if z.ndim == 4:
        z = z[0]
    if z.ndim == 2:
        z = z[None]
    if z.ndim != 3:
        raise ModelContractError(f"segmentation output: expected N x C x H x W, got shape {z.shape}")
    masks = [
        _foreground(z[channel_index(seg, f"segments[{i}]", z.shape[0])], seg.threshold, image_shape)
        for i, seg in enumerate(manifest.segments)
    ]
    return np.stack(masks) if masks else np.zeros((0, *image_shape), np.uint8)


def segmentation_mask(
    mask_logits: np.ndarray, manifest: ModelManifest, image_shape: tuple[int, int]
) -> np.ndarray:
    """The first declared segment's mask ``(rows, cols)`` (see :func:`segmentation_masks`)."""
    return np.asarray(segmentation_masks(mask_logits, manifest, image_shape)[0])


def _keep(raw: np.ndarray, manifest: ModelManifest, image_shape: tuple[int, int]) -> np.ndarray:
    """Activations are kept as they are (one image: (C, h, w)) for Grad-CAM++."""
    a = np.asarray(raw, dtype=np.float32)
    return a[0] if a.ndim == 4 else a


def applicability_score(value: np.ndarray, manifest: ModelManifest, shape: tuple[int, int]) -> np.ndarray:
    """The first image's applicability score as a (1,) float64 array (NaN stays NaN: the
    service treats a score it cannot compare as outside the model's data)."""
    return np.asarray(value, dtype=np.float64).reshape(-1)[:1]


POSTPROCESSORS: Mapping[str, Postprocessor] = {
    "applicability": applicability_score,
    "logits": calibrated_probabilities,
    "multilabel_logits": multilabel_probabilities,
    "segmentation_logits": segmentation_masks,
    "activations": _keep,
}

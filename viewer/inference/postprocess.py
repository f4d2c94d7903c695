"""Postprocessors, looked up in an explicit dict keyed by the manifest's output kind.

Each takes the raw output array, the manifest and the image shape ``(rows, cols)`` and returns
the processed value stored under that kind in :class:`viewer.inference.runner.ModelOutputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from viewer.core.preprocess import resize_to_image
from viewer.inference.manifest import ModelManifest

__all__ = [
    "Postprocessor",
    "POSTPROCESSORS",
    "softmax",
    "calibrated_probabilities",
    "energy_score",
    "segmentation_mask",
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


def energy_score(logits: np.ndarray) -> float:
    """Energy ``E = -logsumexp(raw logits)`` (Liu et al. 2020); higher means less familiar."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    m = float(z.max())
    return -(m + float(np.log(np.exp(z - m).sum())))


def segmentation_mask(
    mask_logits: np.ndarray, manifest: ModelManifest, image_shape: tuple[int, int]
) -> np.ndarray:
    """uint8 {0, 1} mask at image resolution: logits resized bilinearly, then thresholded.

    This is how the models' Dice is measured (``training/evaluate.py``): thresholding at model
    resolution and enlarging the label map (nearest) gives staircase borders and measured 0.001
    lower Dice on the lungs validation split.
    """
    z = np.asarray(mask_logits, dtype=np.float32)
    z = z.reshape(z.shape[-2], z.shape[-1])
    # sigmoid(z) > t  <=>  z > logit(t): no exp over the whole map.
    t = min(max(0.5 if manifest.threshold is None else manifest.threshold, 1e-6), 1 - 1e-6)
    full = resize_to_image(z, image_shape)
    return np.asarray(np.greater(full, np.float32(np.log(t / (1.0 - t)))).view(np.uint8))


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
    "segmentation_logits": segmentation_mask,
    "activations": _keep,
}

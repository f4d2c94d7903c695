"""Grad-CAM++ (and plain Grad-CAM) from exported activations, in numpy, without autograd.

Every classifier exports the activations ``A`` (C, h, w) that its head global-average-pools,
and its manifest carries the linear head's weight ``W`` (n_classes, C): ``logit_c = W_c .
mean_hw(A) + b_c``. The gradient of the raw logit (the ``grad-cam`` package's
``ClassifierOutputTarget``) with respect to ``A_k`` is therefore the constant ``g_ck = W_ck /
(h w)`` at every position, and Grad-CAM++ (Chattopadhay et al. 2018, eq. 19) becomes

    alpha_ck = g^2 / (2 g^2 + S_k g^3 + eps),   S_k = sum_hw A_k
    w_ck     = sum_hw ReLU(g_ck) alpha_ck = h w ReLU(g_ck) alpha_ck
    map_c    = ReLU(sum_k w_ck A_k)

With ``eps = 0`` this reduces to the closed form of docs/MODELS.md, ``w_k = ReLU(W_ck) / (2 +
p_k W_ck)`` up to a constant (``p_k = mean_hw A_k``). We keep the package's ``eps = 1e-6``
by default because real gradients are 1e-4..5e-3, so the eps visibly changes the map, and users
compare against that package. Normalisation is the package's ``(cam - min) / (1e-7 + max)``,
before and after the bilinear resize (:func:`cam_to_image`).
"""

from __future__ import annotations

import cv2
import numpy as np

from viewer.core.preprocess import resize_to_image

__all__ = ["GRADCAM_EPS", "gradcam_plusplus", "gradcam", "normalise_cam", "cam_to_image"]

GRADCAM_EPS = 1e-6


def _check(activations: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(activations, dtype=np.float32)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError("pass one image's activations at a time")
        a = a[0]
    w = np.asarray(weight, dtype=np.float32)
    if a.ndim != 3 or w.ndim != 2 or w.shape[1] != a.shape[0]:
        raise ValueError(f"activations {a.shape} and head weight {w.shape} do not match")
    return a, w


def gradcam_plusplus(
    activations: np.ndarray,
    weight: np.ndarray,
    classes: int | list[int] | None = None,
    *,
    eps: float = GRADCAM_EPS,
) -> np.ndarray:
    """Raw (un-normalised) Grad-CAM++ maps at activation resolution.

    Parameters
    ----------
    activations
        ``(C, h, w)`` or ``(1, C, h, w)`` float activations fed to the global average pool.
    weight
        Linear head weight ``(n_classes, C)``.
    classes
        One class index (returns ``(h, w)``), a list (returns ``(len, h, w)``) or ``None`` for
        every class.
    eps
        Denominator epsilon (the ``grad-cam`` package's 1e-6).
    """
    a, w = _check(activations, weight)
    single = isinstance(classes, (int, np.integer))
    idx = _class_indices(classes, w.shape[0])
    c, h, wd = a.shape
    g = w[idx] / np.float32(h * wd)  # (k, C) constant gradient per channel
    s = a.reshape(c, -1).sum(axis=1)  # (C,)
    g2 = g * g
    denom = 2.0 * g2 + s[None, :] * g2 * g + np.float32(eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(g != 0, g2 / denom, 0.0).astype(np.float32)
    weights = np.maximum(g, 0.0) * alpha * np.float32(h * wd)  # sum over h*w equal terms
    cams = np.maximum(weights @ a.reshape(c, -1), 0.0).reshape(len(idx), h, wd)
    return np.asarray(cams[0] if single else cams)


def gradcam(
    activations: np.ndarray, weight: np.ndarray, classes: int | list[int] | None = None
) -> np.ndarray:
    """Plain Grad-CAM: channel weights are the mean gradient ``W_ck / (h w)``."""
    a, w = _check(activations, weight)
    single = isinstance(classes, (int, np.integer))
    idx = _class_indices(classes, w.shape[0])
    c, h, wd = a.shape
    g = w[idx] / np.float32(h * wd)
    cams = np.maximum(g @ a.reshape(c, -1), 0.0).reshape(len(idx), h, wd)
    return np.asarray(cams[0] if single else cams)


def _class_indices(classes: int | list[int] | None, n: int) -> list[int]:
    if classes is None:
        return list(range(n))
    if isinstance(classes, (int, np.integer)):
        return [int(classes)]
    return [int(c) for c in classes]


def normalise_cam(cam: np.ndarray) -> np.ndarray:
    """The ``grad-cam`` package's normalisation: ``(cam - min) / (1e-7 + max)`` (float32)."""
    # A map with NaN/inf (a model fed garbage) must not turn the whole heatmap into NaN.
    x = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    x = x - x.min()
    return np.asarray(x / (np.float32(1e-7) + x.max()), dtype=np.float32)


def cam_to_image(
    cam: np.ndarray, image_shape: tuple[int, int], input_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Normalise an activation-resolution map, resize it bilinearly and normalise again, as the
    ``grad-cam`` package does (its per-layer scaling, then its aggregation). The second pass
    matters: bilinear upsampling does not reach the source's extremes.

    Parameters
    ----------
    cam
        Raw map at activation resolution (from :func:`gradcam_plusplus`).
    image_shape
        ``(rows, cols)`` of the returned heatmap.
    input_shape
        The network input size. When given, the map is built exactly as the package builds it,
        at the input size (the grid the model saw), and then back-projected onto the image with
        :func:`viewer.core.preprocess.resize_to_image` (bilinear keeps it in [0, 1]). This is
        cheaper than normalising a 2500 x 2000 map. Without it, the two passes run at the image
        size directly.

    Returns
    -------
    numpy.ndarray
        float32 heatmap in [0, 1] at ``image_shape``.
    """
    first = tuple(input_shape) if input_shape is not None else tuple(image_shape)
    out = resize_to_image(normalise_cam(cam), first)  # type: ignore[arg-type]
    # Second pass with one C loop each: min/max, then (x - lo) / (1e-7 + hi - lo) as x * a + b,
    # then clamp the rounding residue to [0, 1].
    lo, hi = cv2.minMaxLoc(out)[:2]
    scale = 1.0 / (1e-7 + (hi - lo))
    out = cv2.addWeighted(out, scale, out, 0.0, -lo * scale)
    cv2.threshold(out, 0.0, 0.0, cv2.THRESH_TOZERO, dst=out)
    np.minimum(out, 1.0, out=out)
    if first != tuple(image_shape):
        out = resize_to_image(out, image_shape)
    return out

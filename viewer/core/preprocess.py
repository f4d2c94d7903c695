"""Model-input preprocessing shared by inference and training.

The one path from a *display image* to a network input. The display image is the 8-bit
greyscale picture a reader sees: stored values after the modality LUT, the VOI window and the
MONOCHROME1 inversion (bone bright), or a PNG/JPEG converted to greyscale. Training
(``training/``) and the viewer (``viewer/inference``) both call :func:`prepare_input`, so a DICOM
file and the equivalent JPEG reach a model identically, and :func:`model_view` shows the user
"what the model saw".

Resizing *stretches* to the network's square size (no padding): the public 224-px chest sets are
already squashed, and training jitters the aspect ratio so both kinds of input are covered.

This module uses numpy and OpenCV (headless, no Qt): resizing and CLAHE by hand in numpy would
be slow and are what OpenCV is for. This is the one documented exception to "core is numpy and
stdlib only".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

import cv2
import numpy as np

__all__ = [
    "COLOUR_MIN_CHROMA",
    "colour_fraction",
    "InputSpec",
    "to_gray_u8",
    "model_view",
    "prepare_input",
    "resize_to_image",
]


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its input, as written in its manifest's ``input`` block.

    Attributes
    ----------
    height, width
        Network input size in pixels.
    channels
        1 (greyscale) or 3 (the grey image repeated).
    mean, std
        Normalisation applied to ``x / 255``.
    clahe
        Apply CLAHE (clip limit ``clahe_clip``, 8x8 tiles) to the resized image first.
    """

    height: int = 224
    width: int = 224
    channels: int = 1
    mean: float = 0.5
    std: float = 0.25
    clahe: bool = False
    clahe_clip: float = 2.0

    @classmethod
    def from_manifest(cls, block: Mapping[str, Any]) -> InputSpec:
        """Build from a manifest ``input`` block (unknown keys are ignored)."""
        size = block.get("size", [224, 224])
        return cls(
            height=int(size[0]),
            width=int(size[1]),
            channels=int(block.get("channels", 1)),
            mean=float(block.get("mean", 0.5)),
            std=float(block.get("std", 0.25)),
            clahe=bool(block.get("clahe", False)),
            clahe_clip=float(block.get("clahe_clip", 2.0)),
        )

    def to_manifest(self) -> dict[str, Any]:
        """The manifest ``input`` block for this spec."""
        return {
            "size": [self.height, self.width],
            "channels": self.channels,
            "mean": self.mean,
            "std": self.std,
            "clahe": self.clahe,
            "clahe_clip": self.clahe_clip,
            "resize": "stretch",
            "source": "display image: 8-bit grey after modality LUT, VOI window, MONOCHROME1 inversion",
        }


def to_gray_u8(image: np.ndarray) -> np.ndarray:
    """Convert an 8-bit image (grey, RGB or RGBA, row-major) to 2-D uint8 grey.

    Colour uses ITU-R 601 luma weights (0.299, 0.587, 0.114), the same as PIL's ``L`` mode,
    rounded to nearest. A non-uint8 array is min-max scaled to 0..255 first.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr = np.clip((arr - lo) * scale + 0.5, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return np.ascontiguousarray(arr)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[:, :, :3].astype(np.uint32)
        grey = (rgb[:, :, 0] * 299 + rgb[:, :, 1] * 587 + rgb[:, :, 2] * 114 + 500) // 1000
        return grey.astype(np.uint8)
    raise ValueError(f"expected a 2-D grey or RGB(A) image, got shape {arr.shape}")


COLOUR_MIN_CHROMA = 24  # max - min over R, G, B (8-bit) from which a pixel counts as coloured


def colour_fraction(image: np.ndarray, min_chroma: int = COLOUR_MIN_CHROMA,
                    max_samples: int = 1 << 18) -> float:
    """Share of pixels whose channels differ by at least ``min_chroma`` (0.0 for grey images).

    Radiographs are greyscale; an RGB radiograph (secondary capture, a figure with a coloured
    arrow) is grey almost everywhere, while a colour photograph or a stained micrograph is not.
    Large images are sampled on a regular grid of at most ``max_samples`` pixels.
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] < 3:
        return 0.0
    step = max(1, int(np.ceil(np.sqrt(arr.shape[0] * arr.shape[1] / max_samples))))
    rgb = arr[::step, ::step, :3].astype(np.float32)
    if rgb.size == 0:
        return 0.0
    if arr.dtype != np.uint8:  # put other ranges on the 8-bit scale of ``min_chroma``
        lo, hi = float(rgb.min()), float(rgb.max())
        rgb = (rgb - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    return float(np.mean(chroma >= min_chroma))


def model_view(display_u8: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The uint8 image the network sees (resized, optionally CLAHE), before normalisation.

    Parameters
    ----------
    display_u8
        2-D uint8 display image (bone bright), any size.
    spec
        The model's input spec.
    """
    grey = to_gray_u8(display_u8)
    h, w = grey.shape
    if (h, w) != (spec.height, spec.width):
        # INTER_AREA is the correct anti-aliased filter for shrinking; enlarging uses linear.
        shrinking = h >= spec.height and w >= spec.width
        interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        grey = cv2.resize(grey, (spec.width, spec.height), interpolation=interp)
    if spec.clahe:
        clahe = cv2.createCLAHE(clipLimit=spec.clahe_clip, tileGridSize=(8, 8))
        grey = clahe.apply(grey)
    return grey


def normalise(view_u8: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Turn a model-view uint8 image (H, W) or batch (N, H, W) into float32 NCHW input."""
    x = view_u8.astype(np.float32) * (1.0 / 255.0)
    x = (x - spec.mean) / spec.std
    if x.ndim == 2:
        x = x[None]
    x = x[:, None, :, :]
    if spec.channels != 1:
        x = np.repeat(x, spec.channels, axis=1)
    return np.ascontiguousarray(x, dtype=np.float32)


def prepare_input(display_u8: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Display image -> float32 network input of shape (1, C, H, W)."""
    return normalise(model_view(display_u8, spec), spec)


def resize_to_image(
    model_map: np.ndarray, image_shape: tuple[int, int], *, nearest: bool = False
) -> np.ndarray:
    """Back-project a map at model resolution onto the image grid (inverse of the stretch).

    Parameters
    ----------
    model_map
        2-D array at model (or activation) resolution: a heatmap (float) or label mask (uint8).
    image_shape
        ``(rows, cols)`` of the displayed image.
    nearest
        Nearest-neighbour (for label masks); otherwise bilinear.
    """
    rows, cols = int(image_shape[0]), int(image_shape[1])
    src = np.ascontiguousarray(model_map)
    if src.dtype == np.float64:
        src = src.astype(np.float32)
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(src, (cols, rows), interpolation=interp)

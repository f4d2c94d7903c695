"""Self-test, model part: every bundled model runs on a real image, and Grad-CAM++ works.

Uses the project's own inference layer (model registry with checksum verification, shared
sessions with the CUDA-or-CPU provider choice, the shared preprocessing and the numpy
Grad-CAM++), so a frozen build that lost a piece of it fails here.
"""

from __future__ import annotations

from viewer.core.messages import exception_words

import time
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np

from viewer.selftest.dicom_checks import DecodedImage
from viewer.selftest.report import Report

__all__ = ["check_runtime", "check_models"]


def check_runtime(report: Report) -> None:
    """onnxruntime version, the providers it offers and the one the viewer will use."""
    import onnxruntime as ort

    from viewer.inference.sessions import cuda_status

    report.add("env", "onnxruntime", "info", f"{ort.__version__} ({ort.get_device()})")
    report.add("env", "providers available", "info", ", ".join(ort.get_available_providers()))
    can_cuda, why = cuda_status()
    chosen = "CUDAExecutionProvider (will be tried)" if can_cuda else "CPUExecutionProvider"
    report.add("env", "provider", "info", chosen + (f" - {why}" if why else ""))


def _pick_image(images: Sequence[DecodedImage], region: str = "CHEST") -> DecodedImage:
    for image in images:
        if image.body_part == region and image.display.ndim == 2:
            return image
    return images[0]


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64).reshape(-1) / max(float(temperature), 1e-6)
    z = np.exp(z - z.max())
    return np.asarray(z / z.sum())


def check_models(
    report: Report,
    images: Sequence[DecodedImage],
    threads: int = 2,
    extra_folders: Sequence[Path] = (),
) -> dict[str, Any]:
    """Run each available model once on a real image; Grad-CAM++ for each classifier.

    Returns ``{"image": DecodedImage, "heatmap": array | None, "mask": array | None}`` for the
    screenshot.
    """
    from viewer.core.preprocess import prepare_input, resize_to_image
    from viewer.inference.gradcam import cam_to_image, gradcam_plusplus
    from viewer.inference.registry import ModelRegistry, bundled_models_dir
    from viewer.inference.sessions import SessionPool

    shown: dict[str, Any] = {"image": _pick_image(images) if images else None, "heatmap": None, "mask": None}
    folder = bundled_models_dir()
    registry = ModelRegistry([folder, *extra_folders], verify_checksum=True)
    for entry in registry.unavailable():
        if (entry.reason or "").startswith("shadowed"):  # an earlier folder's model wins: fine
            report.add("model", entry.id, "info", f"{entry.manifest_path}: {entry.reason}")
        else:
            report.add("model", entry.id, "fail", f"unusable manifest: {entry.reason}")
    manifests = registry.available()
    bundled = sum(1 for m in manifests if m.onnx_path.parent == folder)
    report.add("model", "bundled models", "info", f"{bundled} in {folder}")
    if not manifests:
        report.add("model", "models", "fail", "no models found")
        return shown
    if not images:
        report.add("model", "input", "fail", "no decoded image to run the models on")
        return shown
    image = shown["image"]
    pool = SessionPool(threads)
    for manifest in manifests:
        t0 = time.perf_counter()
        try:
            info = pool.get(manifest.onnx_path)
            x = prepare_input(image.display, manifest.input_spec)
            names = list(manifest.outputs)
            values = dict(zip(names, info.session.run(names, {manifest.input_name: x})))
        except Exception as exc:
            report.add("model", manifest.id, "fail", exception_words(exc)[:300])
            continue
        dt = time.perf_counter() - t0
        bad = [n for n, v in values.items() if not np.all(np.isfinite(v))]
        if bad:
            report.add("model", manifest.id, "fail", f"non-finite values in {bad}", dt)
            continue
        provider = info.provider + (f" ({info.message})" if info.message else "")
        if manifest.task == "segmentation":
            logits = values[manifest.output_of_kind("segmentation_logits") or names[0]]
            prob = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float32)[0, 0]))
            mask = resize_to_image((prob >= manifest.threshold).astype(np.uint8), image.display.shape[:2], nearest=True)
            shown["mask"] = shown["mask"] if shown["mask"] is not None else mask
            detail = f"{image.name}: lung fraction {float(mask.mean()):.2f}; {provider}"
        else:
            logits = values[manifest.output_of_kind("logits") or names[0]]
            probs = _softmax(logits, manifest.temperature)
            top = int(np.argmax(probs))
            detail = f"{image.name}: {manifest.labels[top]} {probs[top]:.2f}; {provider}"
        report.add("model", f"{manifest.id} {manifest.version}", "ok", detail, dt)
        if manifest.gradcam_output and manifest.gradcam_weight:
            t1 = time.perf_counter()
            try:
                act = values[manifest.gradcam_output]
                target = manifest.positive_index if manifest.positive_index is not None else top
                cam = gradcam_plusplus(act, np.asarray(manifest.gradcam_weight), target)
                heat = cam_to_image(cam, image.display.shape[:2])
            except Exception as exc:
                report.add("gradcam", manifest.id, "fail", exception_words(exc)[:300])
                continue
            problem = ""
            if heat.shape != image.display.shape[:2] or not np.all(np.isfinite(heat)):
                problem = f"heatmap {heat.shape} not finite or not at image size"
            elif heat.min() < 0 or heat.max() > 1 or float(heat.max() - heat.min()) < 1e-3:
                problem = f"heatmap range [{heat.min():.3f}, {heat.max():.3f}]"
            status = "fail" if problem else "ok"
            label = manifest.labels[target]
            report.add("gradcam", manifest.id, status, problem or f"Grad-CAM++ for {label!r}", time.perf_counter() - t1)
            # show a finding's map rather than the body-region gate's
            if not problem and (shown["heatmap"] is None or not manifest.gate):
                if shown.get("heatmap_from_finding") is not True:
                    shown["heatmap"] = heat
                    shown["heatmap_from_finding"] = not manifest.gate
    return shown

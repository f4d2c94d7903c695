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


def check_models(
    report: Report,
    images: Sequence[DecodedImage],
    threads: int = 2,
    extra_folders: Sequence[Path] = (),
) -> dict[str, Any]:
    """Run every available model once on a real image through the analysis service the window
    and ``radview analyze`` use (one inference path: preprocessing, calibration, thresholds,
    masks at image resolution and Grad-CAM++ as they ship), forced so that each model runs
    whatever the gate says.

    Returns ``{"image": DecodedImage, "heatmap": array | None, "mask": array | None}`` for the
    screenshot.
    """
    from viewer.inference.registry import ModelRegistry, bundled_models_dir
    from viewer.inference.sessions import SessionPool
    from viewer.services.analysis import AnalysisService
    from viewer.services.analysis_types import OK, AnalysisInput

    shown: dict[str, Any] = {"image": _pick_image(images) if images else None, "heatmap": None, "mask": None}
    folder = bundled_models_dir()
    registry = ModelRegistry([folder, *extra_folders], verify_checksum=True)
    for entry in registry.unavailable():
        if (entry.reason or "").startswith("shadowed"):  # an earlier folder's model wins: fine
            report.add("model", entry.id, "info", f"{entry.manifest_path}: {entry.reason}")
        else:
            report.add("model", entry.id, "fail", f"unusable manifest: {entry.reason}")
    manifests = {m.id: m for m in registry.available()}
    bundled = sum(1 for m in manifests.values() if m.onnx_path.parent == folder)
    report.add("model", "bundled models", "info", f"{bundled} in {folder}")
    if not manifests:
        report.add("model", "models", "fail", "no models found")
        return shown
    if not images:
        report.add("model", "input", "fail", "no decoded image to run the models on")
        return shown
    image = shown["image"]
    service = AnalysisService(registry, SessionPool(threads))
    display = image.display if image.display.ndim == 2 else image.display.mean(axis=2).astype("uint8")
    t0 = time.perf_counter()
    try:
        result = service.analyse(AnalysisInput(image_id=image.name, source=image.name,
                                               display=display), force=True)
    except Exception as exc:
        report.add("model", "analysis", "fail", exception_words(exc)[:300], time.perf_counter() - t0)
        return shown
    for res in result.results:
        manifest = manifests.get(res.model_id)
        dt = sum(res.timings_ms.values()) / 1e3 if res.timings_ms else 0.0
        if res.status != OK:
            report.add("model", f"{res.model_id} {res.model_version}", "fail",
                       f"{image.name}: {res.status}: {res.reason}"[:300], dt)
            continue
        provider = res.provider or "?"
        if res.task == "segmentation":
            masks = res.overlays_of("mask")
            if not masks or any(o.array.shape != display.shape[:2] for o in masks):
                report.add("model", f"{res.model_id} {res.model_version}", "fail",
                           "no mask at image resolution", dt)
                continue
            shown["mask"] = shown["mask"] if shown["mask"] is not None else masks[0].array
            fractions = ", ".join(f"{o.label} fraction {float((o.array > 0).mean()):.2f}"
                                  for o in masks)
            detail = f"{image.name}: {fractions}; {provider}"
        else:
            probs = list(res.probabilities.values())
            if not probs or not all(np.isfinite(p) for p in probs):
                report.add("model", f"{res.model_id} {res.model_version}", "fail",
                           "non-finite probabilities", dt)
                continue
            detail = f"{image.name}: {res.label} {(res.confidence or max(probs)):.2f}; {provider}"
        report.add("model", f"{res.model_id} {res.model_version}", "ok", detail, dt)
        if manifest is None or manifest.gate or not manifest.gradcam_weight or res.task != "classification":
            continue
        heat = res.heatmap
        problem = ""
        if heat is None:
            problem = "no heatmap"
        elif heat.shape != display.shape[:2] or not np.all(np.isfinite(heat)):
            problem = f"heatmap {heat.shape} not finite or not at image size"
        elif heat.min() < 0 or heat.max() > 1 or float(heat.max() - heat.min()) < 1e-3:
            problem = f"heatmap range [{heat.min():.3f}, {heat.max():.3f}]"
        report.add("gradcam", res.model_id, "fail" if problem else "ok",
                   problem or f"Grad-CAM++ for {res.heatmap_label!r}",
                   (res.timings_ms or {}).get("gradcam", 0.0) / 1e3)
        if not problem and shown["heatmap"] is None:
            shown["heatmap"] = heat
    return shown

"""Exports built from the manifests' declarations (Qt-free; the window and the CLI share them).

- :func:`segment_specs`: one DICOM SEG segment per declared segment that has codes, with the
  manifest's codes (never a made-up code: a segment without codes is left out, and said so);
- :func:`mask_file_name` / :func:`heatmap_file_name`: ``<stem>_<model>[_<segment>].png`` and
  ``<stem>_<model>[_<finding>].png``;
- :func:`heatmap_picture`: the heatmap blended over the image as the window shows it, with the
  research notice under it (one function for the window's exports and ``--heatmaps``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from viewer import RESEARCH_NOTICE
from viewer.core.overlay import heatmap_view as _blend_heatmap
from viewer.dicom.export import SegmentCode, SegmentSpec
from viewer.inference.manifest import Code, ModelManifest
from viewer.services.analysis_types import OK, AnalysisResult, ModelResult

__all__ = ["segment_specs", "mask_file_name", "heatmap_file_name", "heatmap_picture",
           "safe_name_part"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name_part(text: str) -> str:
    """A model id, segment or finding label usable in a file name (``a b/c`` -> ``a-b-c``)."""
    return _UNSAFE.sub("-", text).strip("-.") or "x"


def mask_file_name(stem: str, res: ModelResult, label: str) -> str:
    """``<stem>_<model>.png`` for a one-segment model, ``<stem>_<model>_<segment>.png`` else."""
    several = len(res.overlays_of("mask")) > 1
    tail = f"_{safe_name_part(label)}" if several else ""
    return f"{stem}_{safe_name_part(res.model_id)}{tail}.png"


def heatmap_file_name(stem: str, res: ModelResult, label: str) -> str:
    """``<stem>_<model>.png`` (exclusive classes: the reported class's map) or
    ``<stem>_<model>_<finding>.png`` (a multi-label model's finding)."""
    tail = f"_{safe_name_part(label)}" if res.multilabel else ""
    return f"{stem}_{safe_name_part(res.model_id)}{tail}.png"


def heatmap_picture(display: np.ndarray, heatmap: np.ndarray, colormap: str = "inferno",
                    opacity: float = 0.5) -> np.ndarray:
    """RGB: the heatmap blended over ``display`` as the window draws it, notice strip under it."""
    from viewer.services.export import burn_notice

    return burn_notice(_blend_heatmap(display, heatmap, colormap, opacity), RESEARCH_NOTICE)


def _code(code: Code) -> SegmentCode:
    return SegmentCode(code.scheme, code.value, code.meaning)


def segment_specs(result: AnalysisResult, manifests: Mapping[str, ModelManifest],
                  models: Sequence[str] | None = None) -> tuple[list[SegmentSpec], list[str]]:
    """The DICOM SEG segments of ``result``: one per declared segment with codes, in model then
    declaration order, and the notes on segments left out (no codes, model unavailable).

    ``models`` restricts the segmenters (default: every segmenter that ran)."""
    specs: list[SegmentSpec] = []
    notes: list[str] = []
    for res in result.results:
        if res.task != "segmentation" or res.status != OK or (models and res.model_id not in models):
            continue
        m = manifests.get(res.model_id)
        if m is None:
            notes.append(f"{res.model_id}: its manifest is not loaded; its masks are not exported")
            continue
        for overlay in res.overlays_of("mask"):
            seg = m.segment(overlay.label)
            if seg is None or seg.category is None or seg.type is None:
                notes.append(f"{res.model_id}: segment {overlay.label!r} has no codes in its "
                             "manifest (category and type): not exported as DICOM SEG")
                continue
            specs.append(SegmentSpec(label=seg.label, mask=np.asarray(overlay.array) > 0,
                                     category=_code(seg.category), type=_code(seg.type),
                                     algorithm_name=res.model_id,
                                     algorithm_version=res.model_version))
    return specs, notes

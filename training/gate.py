"""Body-region gate: OOD rule (energy threshold + calibrated confidence floor) and its checks.

The rule (also written into the manifest): the answer is "unknown / not a radiograph" when
``energy = -logsumexp(logits) > ood.threshold`` or when the calibrated top-class probability
``max softmax(logits / T) < ood.confidence_floor``. The energy threshold keeps 99 % of the
validation radiographs; natural photographs (scikit-image samples), noise and blank frames are
test-only outliers and real DICOM files are reported one by one.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viewer.core.preprocess import colour_fraction, model_view, to_gray_u8

from .calibration import energy, softmax
from .common import DATA
from .metrics import balanced_accuracy, confusion, ece
from .recipes import Recipe

UNKNOWN = "unknown"
# Radiographs are greyscale: an image with more than this share of clearly coloured pixels
# (viewer.core.preprocess.colour_fraction) is "not a radiograph" before the network is asked.
# Set from first principles (a secondary capture with coloured arrows or labels is a few
# percent), not fitted; added in response to two colour images (skimage rocket and
# immunohistochemistry) that the v1.0.0 network accepted, so those two no longer test the
# network itself.
MAX_COLOUR_FRACTION = 0.2
SKIMAGE_SAMPLES = ("astronaut", "camera", "coffee", "chelsea", "cat", "rocket", "horse", "moon",
                   "page", "text", "brick", "grass", "gravel", "clock", "coins", "hubble_deep_field",
                   "immunohistochemistry", "retina", "colorwheel", "logo", "motorcycle_left",
                   "checkerboard")


# Classes whose own energy threshold keeps more of their validation images than the global
# rule (OOD_KEEP of all radiographs): chest, the one region with models behind it. A chest sent
# to "unknown" is an analysis silently not run (the global rule sent 1.8 % of test chests
# there, against the chest recall >= 99.5 %), while a non-chest called chest still
# meets each chest model's own applicability check. Never stricter than the global threshold.
CLASS_KEEP = {"chest": 0.995}


def class_thresholds(logits: np.ndarray, y: np.ndarray, labels: tuple[str, ...],
                     global_threshold: float) -> dict[str, float]:
    """Per-class energy thresholds (``CLASS_KEEP`` of that class's validation images)."""
    e = energy(logits)
    out: dict[str, float] = {}
    for name, keep in CLASS_KEEP.items():
        sel = np.asarray(y) == (labels.index(name) if name in labels else -1)
        if sel.any():
            t = round(float(np.quantile(e[sel], keep)), 4)
            if t > global_threshold:
                out[name] = t
    return out


def decide(logits: np.ndarray, temperature: float, ood_threshold: float, floor: float,
           labels: tuple[str, ...], colour: np.ndarray | None = None,
           per_class: dict[str, float] | None = None) -> list[str]:
    """Gate verdicts per row: a label, or ``"unknown"`` (``colour``: colour fraction per row;
    ``per_class``: the energy threshold of a top class that has its own)."""
    p = softmax(logits, temperature)
    e = energy(logits)
    col = np.zeros(len(p)) if colour is None else np.asarray(colour, float)
    out = []
    for row, en, c in zip(p, e, col):
        top = labels[int(row.argmax())]
        limit = (per_class or {}).get(top, ood_threshold)
        unknown = c > MAX_COLOUR_FRACTION or en > limit or row.max() < floor
        out.append(UNKNOWN if unknown else top)
    return out


def natural_images(colours: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """scikit-image sample images (grey display images) plus noise and blank frames.

    ``colours``, when given, receives each image's colour fraction (before the grey conversion).
    """
    import skimage.data as skd

    out: dict[str, np.ndarray] = {}
    for name in SKIMAGE_SAMPLES:
        try:
            raw = np.asarray(getattr(skd, name)())
        except Exception:
            continue
        out[f"skimage.{name}"] = to_gray_u8(raw)
        if colours is not None:
            colours[f"skimage.{name}"] = colour_fraction(raw)
    rng = np.random.default_rng(12345)
    out["uniform_noise"] = rng.integers(0, 256, (512, 512), dtype=np.uint8)
    out["gaussian_noise"] = np.clip(rng.normal(128, 40, (512, 512)), 0, 255).astype(np.uint8)
    out["blank_black"] = np.zeros((512, 512), np.uint8)
    out["blank_white"] = np.full((512, 512), 255, np.uint8)
    out["blank_grey"] = np.full((512, 512), 128, np.uint8)
    return out


def viewer_dicom_displays(data: Path = DATA) -> dict[str, np.ndarray | str]:
    """The 8-bit display image the app feeds the models, for every DICOM file in
    ``dicom/`` (outside ``broken/``): ``scan_paths`` + ``input_from_record`` (default window,
    MONOCHROME1 inverted), exactly the viewer's pipeline; a string when the file fails."""
    from viewer.services.analysis_inputs import input_from_record
    from viewer.services.library import scan_paths

    out: dict[str, np.ndarray | str] = {}
    for path in dicom_files(data):
        try:
            recs = scan_paths([str(path)], workers=1).index.records()
            if not recs:
                out[path.name] = "not indexed by the viewer"
                continue
            out[path.name] = to_gray_u8(np.asarray(input_from_record(recs[0]).display))
        except Exception as exc:  # the viewer's LoadError carries a user message
            text = str(exc).strip().splitlines()
            out[path.name] = "unreadable: " + (text[-1].strip()[:120] if text else type(exc).__name__)
    return out


# What the real DICOM files show (dicom/index.csv's BodyPartExamined; the picture where the
# header names none) and which gate verdicts are right for it: a chest or hand as such; a hip,
# a lower leg (EXTREMITY) or a dog's leg "other" or "unknown", never a region whose models run.
PICTURE = {"JPEG2KLossless_1s_1f_u_16_16.dcm": "CHEST", "jpeg-baseline.dcm": "CANINE LEG"}
RIGHT = {"CHEST": frozenset({"chest"}), "HAND": frozenset({"hand"}), "KNEE": frozenset({"knee"})}
NOT_A_GATED_REGION = frozenset({"other", UNKNOWN})


def dicom_expectations(data: Path = DATA) -> dict[str, tuple[str, frozenset[str]]]:
    """File name -> (what it shows, the verdicts that are right) for ``dicom/*.dcm``."""
    import csv

    shows = dict(PICTURE)
    index = data / "dicom" / "index.csv"
    if index.exists():
        with open(index, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("body_part") and "/" not in row["file"]:
                    shows.setdefault(row["file"], row["body_part"].upper())
    return {p.name: (shows.get(p.name, "?"), RIGHT.get(shows.get(p.name, ""), NOT_A_GATED_REGION))
            for p in dicom_files(data)}


def dicom_files(data: Path = DATA) -> list[Path]:
    return sorted(p for p in (data / "dicom").glob("*.dcm"))


@torch.no_grad()
def _logits(model: torch.nn.Module, recipe: Recipe, images: list[np.ndarray]) -> np.ndarray:
    from viewer.core.preprocess import normalise

    views = np.stack([model_view(im, recipe.spec) for im in images])
    return model(torch.from_numpy(normalise(views, recipe.spec)))[0].numpy()


def gate_eval(recipe: Recipe, model: torch.nn.Module, lv: np.ndarray, yv: np.ndarray,
              lt: np.ndarray, yt: np.ndarray, temperature: float, test: list[dict[str, Any]],
              pt: np.ndarray, reports: bool = True) -> dict[str, Any]:
    from .evaluate import CONFIDENCE_FLOOR, OOD_KEEP

    labels = recipe.labels
    k = len(labels)
    thr = float(np.quantile(energy(lv), OOD_KEEP))
    per = class_thresholds(lv, yv, labels, round(thr, 4))
    floor = CONFIDENCE_FLOOR
    pred = pt.argmax(1)
    verdict_t = decide(lt, temperature, thr, floor, labels, per_class=per)
    verdict_v = decide(lv, temperature, thr, floor, labels, per_class=per)
    per_class = {labels[c]: {"n": int((yt == c).sum()), "accuracy": float((pred[yt == c] == c).mean()),
                             "rejected_as_unknown": float(np.mean([verdict_t[i] == UNKNOWN for i in np.nonzero(yt == c)[0]]))}
                 for c in range(k) if (yt == c).any()}
    per_source: dict[str, dict[str, float]] = {}
    by_src: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(test):
        by_src[f"{r['label']}/{r['source']}"].append(i)
    for s, idx in sorted(by_src.items()):
        per_source[s] = {"n": len(idx), "accuracy": float((pred[idx] == yt[idx]).mean()),
                         "gate_accuracy": float(np.mean([verdict_t[i] == labels[yt[i]] for i in idx]))}
    colours: dict[str, float] = {}
    nat = natural_images(colours) if reports else {"blank_black": np.zeros((64, 64), np.uint8)}
    ln = _logits(model, recipe, list(nat.values()))
    col = np.array([colours.get(n, 0.0) for n in nat])
    vn = decide(ln, temperature, thr, floor, labels, col, per)
    vn_net = decide(ln, temperature, thr, floor, labels, per_class=per)
    pn = softmax(ln, temperature)
    ood_report = {name: {"verdict": v, "network": vnet, "colour": round(float(c), 3),
                         "energy": round(float(e), 3), "top": labels[int(p.argmax())],
                         "confidence": round(float(p.max()), 3)}
                  for name, v, vnet, c, e, p in zip(nat, vn, vn_net, col, energy(ln), pn)}
    dicoms: dict[str, dict[str, Any]] = {}
    shown = dicom_expectations() if reports else {}
    for name, img in (viewer_dicom_displays() if reports else {}).items():
        if isinstance(img, str):
            dicoms[name] = {"verdict": img}
            continue
        lg = _logits(model, recipe, [img])
        p = softmax(lg, temperature)[0]
        verdict = decide(lg, temperature, thr, floor, labels, per_class=per)[0]
        what, right = shown.get(name, ("?", frozenset()))
        dicoms[name] = {"verdict": verdict, "top": labels[int(p.argmax())],
                        "confidence": round(float(p.max()), 3),
                        "energy": round(float(energy(lg)[0]), 3), "shows": what,
                        "right": verdict in right}
    cm = confusion(yt, pred, k)
    return {
        "threshold": None,
        "ood": {"score": "energy", "definition": "-logsumexp(logits), raw logits; unknown if > threshold",
                "threshold": round(thr, 4), "confidence_floor": floor,
                "max_colour_fraction": MAX_COLOUR_FRACTION,
                **({"class_thresholds": per} if per else {}),
                "fitted_on": f"validation: keeps {OOD_KEEP:.0%} of validation radiographs" + "".join(
                    f"; {c}: its own threshold keeps {CLASS_KEEP[c]:.1%} of the validation {c} images"
                    for c in per)},
        "val": {"accuracy": float((lv.argmax(1) == yv).mean()),
                "balanced_accuracy": balanced_accuracy(yv, lv.argmax(1), k),
                "rejected_as_unknown": float(np.mean([v == UNKNOWN for v in verdict_v]))},
        "test": {"accuracy": float((pred == yt).mean()), "balanced_accuracy": balanced_accuracy(yt, pred, k),
                 "gate_accuracy": float(np.mean([verdict_t[i] == labels[yt[i]] for i in range(len(yt))])),
                 "rejected_as_unknown": float(np.mean([v == UNKNOWN for v in verdict_t])),
                 "confusion": cm.tolist(), "per_class": per_class, "per_source": per_source,
                 "ece_after": ece(pt, yt)},
        "ood_test": {"rejected": int(sum(v == UNKNOWN for v in vn)), "n": len(vn),
                     "rejected_by_network": int(sum(v == UNKNOWN for v in vn_net)), "items": ood_report},
        "dicom": dicoms,
        "dicom_right": {"right": sum(bool(v.get("right")) for v in dicoms.values()),
                        "readable": sum("top" in v for v in dicoms.values())},
    }


def refit_ood(recipe: Recipe, out_dir: Path | None = None) -> Path:
    """Re-evaluate the committed gate through onnxruntime and rewrite its OOD rule, metrics and
    card (``python -m training refit-ood body_region``): for a change of the rule alone, without
    the checkpoint. The graph is untouched; the temperature refitted on the same validation
    logits must equal the manifest's (a check that these are the committed model's outputs)."""
    import json
    from dataclasses import replace

    from viewer.core.preprocess import InputSpec

    from .card import write_card
    from .common import MODELS, RUNS
    from .data import file_digest
    from .evaluate import evaluate_classifier
    from .export import OOD_KEYS
    from .graft import OrtClassifier

    out_dir = out_dir or MODELS
    mpath = out_dir / f"{recipe.model_id}.json"
    manifest: dict[str, Any] = json.loads(mpath.read_text())
    onnx_path = out_dir / manifest["file"]
    if not manifest.get("gate") or file_digest(onnx_path) != manifest["sha256"]:
        raise RuntimeError(f"{onnx_path}: not a gate, or it does not match its manifest")
    recipe = replace(recipe, spec=InputSpec.from_manifest(manifest["input"]))
    ev = evaluate_classifier(recipe, OrtClassifier(onnx_path), run=RUNS / f"{recipe.model_id}_ood")
    if abs(ev["calibration"]["temperature"] - manifest["calibration"]["temperature"]) > 1e-3:
        raise RuntimeError("the refitted temperature differs from the manifest's: not the committed outputs")
    manifest["ood"] = {k: ev["ood"][k] for k in OOD_KEYS if k in ev["ood"]}
    manifest["metrics"]["gate_accuracy"] = round(ev["test"]["gate_accuracy"], 4)
    manifest["version"] = recipe.version
    mpath.write_text(json.dumps(manifest, indent=1) + "\n")
    write_card(recipe, manifest, ev, out_dir)
    return mpath

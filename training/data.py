"""Reading the shared data sets and caching them as resized uint8 arrays.

Each record is a dict with at least ``path`` (relative to the data root), ``label`` and
``group_key`` (patient or study, may be empty). Images are read, converted to the display grey
image with :func:`viewer.core.preprocess.to_gray_u8` and stretched to the cache size with the
same interpolation rule as :func:`viewer.core.preprocess.model_view`.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from viewer.core.preprocess import InputSpec, model_view, to_gray_u8

from .common import CACHE, DATA

Record = dict[str, Any]


def read_image(path: Path) -> np.ndarray:
    """Read a JPEG/PNG as the 2-D uint8 display image (RGB -> 601 luma like PIL ``L``)."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise OSError(f"cannot read image {path}")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return to_gray_u8(arr)


def read_mask(path: Path) -> np.ndarray:
    """Read a V7 mask PNG (0 background, 255 lung, 127 ignore) as 2-D uint8."""
    arr = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if arr is None:
        raise OSError(f"cannot read mask {path}")
    return arr


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as fh:
        return list(csv.DictReader(fh))


def _norm(rel: str, folder: str) -> str:
    """Path relative to the data root (resolving ``../`` references between sets)."""
    return str(Path(folder, rel)).replace("\\", "/") if not rel.startswith("../") else \
        str(Path(folder) / rel).replace("\\", "/").split("/../")[-1]


def records(dataset: str, data: Path = DATA) -> list[Record]:
    """Records of one data set: ``pneumonia``, ``covid``, ``lungs`` or ``bodypart``."""
    out: list[Record] = []
    if dataset == "pneumonia":
        for r in _rows(data / "pneumonia" / "labels.csv"):
            out.append({"path": f"pneumonia/{r['path']}", "label": r["label"],
                        "group_key": f"kermany:{r['patient']}", "source": f"kermany_{r['variant']}"})
    elif dataset == "covid":
        for r in _rows(data / "covid" / "labels.csv"):
            out.append({"path": f"covid/{r['path']}", "label": r["label"], "group_key": "",
                        "source": "covid19_radiography_db"})
    elif dataset == "lungs":
        for r in _rows(data / "lungs" / "pairs.csv"):
            key = f"kermany:{r['patient']}" if r["source"] == "kermany" else f"ieee:{r['patient']}"
            out.append({"path": _norm(r["image"], "lungs"), "mask": _norm(r["mask"], "lungs"),
                        "label": "lung", "group_key": key, "source": r["source"]})
    elif dataset == "bodypart":
        pneu = {x["path"]: x["group_key"] for x in records("pneumonia", data)}
        lung = {x["path"]: x["group_key"] for x in records("lungs", data)}
        for r in _rows(data / "bodypart" / "labels.csv"):
            path = _norm(r["path"], "bodypart")
            key = pneu.get(path) or lung.get(path) or _bodypart_key(path, r["source"])
            out.append({"path": path, "label": r["label"], "group_key": key, "source": r["source"]})
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    return out


def external_records(dataset: str, data: Path = DATA) -> list[Record]:
    """The external selection set of a data set, if it has one (never trained on).

    ``pneumonia``: ``pneumonia/external_val/`` (half of the official Kermany test split). It
    chooses recipe, checkpoint, temperature and operating threshold; it is reported, never
    trained on.
    """
    if dataset != "pneumonia":
        return []
    return [{"path": f"pneumonia/external_val/{r['path']}", "label": r["label"],
             "group_key": f"kermany_test:{r['patient']}", "source": f"kermany_test_{r['variant']}"}
            for r in _rows(data / "pneumonia" / "external_val" / "labels.csv")]


def _bodypart_key(path: str, source: str) -> str:
    """Patient key from a body-part file name where the name gives one."""
    stem = Path(path).stem
    if source == "kneeoa_oai":  # 9001695L / 9001695R: one OAI participant
        return f"oai:{stem.rstrip('LR')}"
    if source == "roboflow_spine_region":  # <name>_jpg.rf.<hash>: strip the export suffix
        base = stem.split("_jpg.rf.")[0]
        return f"rf:{base.replace('_2ndbatch', '')}"
    if source == "rsna_boneage":
        return f"boneage:{stem}"
    return ""


def cache_file(dataset: str, size: int) -> Path:
    return CACHE / f"{dataset}_{size}.npz"


def build_cache(dataset: str, size: int, data: Path = DATA, limit: int | None = None,
                out: Path | None = None, paths: set[str] | None = None) -> Path:
    """Decode and stretch every image of ``dataset`` once to ``size`` x ``size`` uint8.

    Masks (lungs) are resized with nearest neighbour so the 127 "ignore" value survives.
    ``paths`` (or ``limit``) restricts the cache to a subset, for smoke tests.
    """
    recs = records(dataset, data)
    if paths is not None:
        recs = [r for r in recs if r["path"] in paths]
    if limit is not None:
        recs = recs[:limit]
    spec = InputSpec(height=size, width=size)
    imgs = np.zeros((len(recs), size, size), np.uint8)
    masks = np.zeros((len(recs), size, size), np.uint8) if dataset == "lungs" else None
    for i, rec in enumerate(recs):
        imgs[i] = model_view(read_image(data / rec["path"]), spec)
        if masks is not None:
            m = read_mask(data / rec["mask"])
            masks[i] = cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST)
    target = out or cache_file(dataset, size)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, np.ndarray] = {"images": imgs, "paths": np.array([r["path"] for r in recs])}
    if masks is not None:
        payload["masks"] = masks
    np.savez(target, **payload)
    return target


def load_cache(dataset: str, size: int, data: Path = DATA) -> dict[str, np.ndarray]:
    """Load (building on first use) the uint8 cache of ``dataset`` at ``size``."""
    path = cache_file(dataset, size)
    if not path.exists():
        build_cache(dataset, size, data)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def thumbs32(images: np.ndarray) -> np.ndarray:
    """32x32 standardised thumbnails, flattened, for near-duplicate correlation."""
    t = np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA) for im in images])
    t = t.reshape(len(t), -1).astype(np.float32)
    t -= t.mean(1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-6
    return t


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

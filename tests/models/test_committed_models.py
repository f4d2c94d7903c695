"""Checks on the committed models: manifest contract, checksum, shapes, Grad-CAM head, and
known predictions on real images from each model's own *test* split.

The images are read from ``../shared/data`` (never copied into the repo); the tests skip when
that folder or a model is absent. Inputs go through the viewer's preprocessing
(:func:`viewer.core.preprocess.prepare_input`), outputs through onnxruntime.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from viewer.core.preprocess import InputSpec, prepare_input, resize_to_image, to_gray_u8

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
SPLITS = REPO / "training" / "splits"
DATA = (REPO / ".." / "shared" / "data").resolve()
IDS = ("body_region", "pneumonia", "covid", "lungs")
DATASET = {"body_region": "bodypart", "pneumonia": "pneumonia", "covid": "covid", "lungs": "lungs"}

# (model, image path relative to shared/data, expected label), all from the model's test split.
KNOWN = [
    ("body_region", "bodypart/hand/12631.jpg", "hand"),
    ("body_region", "bodypart/knee/9085162L.jpg", "knee"),
    ("pneumonia", "pneumonia/images224/NORMAL/IM-0505-0001-0002.jpeg", "normal"),
    ("pneumonia", "pneumonia/images224/PNEUMONIA/person1411_bacteria_3599.jpeg", "pneumonia"),
    ("covid", "covid/COVID/COVID-775.jpg", "covid"),
    ("covid", "covid/Normal/Normal-6349.jpg", "normal"),
]
LUNG_CASES = ["pneumonia/originals/NORMAL/IM-0269-0001.jpeg", "lungs/images/ieee8023/a361d7b7.jpg"]


def _manifest(model_id: str) -> dict:
    path = MODELS / f"{model_id}.json"
    if not path.exists():
        pytest.skip(f"model {model_id} not committed")
    return json.loads(path.read_text())


def _session(m: dict):
    return ort.InferenceSession(str(MODELS / m["file"]), providers=["CPUExecutionProvider"])


def _display(rel: str) -> np.ndarray:
    path = DATA / rel
    if not path.exists():
        pytest.skip("shared data folder ../shared/data is not available")
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return to_gray_u8(arr)


def _split_of(model_id: str, rel: str) -> str:
    with open(SPLITS / f"{DATASET[model_id]}.csv", newline="") as fh:
        return {r["path"]: r["split"] for r in csv.DictReader(fh)}.get(rel, "")


@pytest.mark.parametrize("model_id", IDS)
def test_manifest_contract_and_checksum(model_id: str) -> None:
    m = _manifest(model_id)
    onnx_path = MODELS / m["file"]
    assert m["schema"] == 2 and m["id"] == model_id
    assert hashlib.sha256(onnx_path.read_bytes()).hexdigest() == m["sha256"]
    assert onnx_path.stat().st_size <= 25 * 1024 * 1024
    model = onnx.load(str(onnx_path))
    assert m["opset"] >= 17
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == m["opset"]
    assert "Research use, not for diagnosis" in m["intended_use"]
    assert m["training_data"] and all(d["licence"] for d in m["training_data"])
    assert (MODELS / f"{model_id}.md").exists()
    spec = InputSpec.from_manifest(m["input"])
    assert spec.to_manifest()["size"] == m["input"]["size"]
    names = [o.name for o in _session(m).get_outputs()]
    assert names == [o["name"] for o in m["outputs"]]
    if m["task"] == "classification":
        assert m["calibration"]["method"] == "temperature" and m["calibration"]["temperature"] > 0
        assert 0.0 < m["threshold"] < 1.0
        assert len(m["gradcam"]["weight"]) == len(m["labels"])
        if not m.get("gate"):  # declared: the share of its heatmap inside the lung field
            assert m["measurements"] == [{"kind": "heatmap_share", "role": "lung_field"}]
    else:
        assert m["labels"] == ["background", "lung"] and m["threshold"] == 0.5
        assert m["segments"] == [{"label": "lung", "channel": 1, "role": "lung_field",
                                  "category": ["SCT", "123037004", "Anatomical Structure"],
                                  "type": ["SCT", "39607008", "Lung"]}]
    if model_id == "body_region":
        assert m["gate"] is True and m["ood"]["score"] == "energy"
        assert m["labels"] == ["chest", "knee", "hand", "spine", "other"]


@pytest.mark.parametrize("model_id", ("body_region", "pneumonia", "covid"))
def test_logits_are_gap_linear_of_activations(model_id: str) -> None:
    """The Grad-CAM contract: logits = W @ mean_hw(activations) + b, with W from the manifest."""
    m = _manifest(model_id)
    h, w = m["input"]["size"]
    x = np.random.default_rng(0).normal(size=(2, 1, h, w)).astype(np.float32)
    logits, act = _session(m).run(["logits", "activations"], {"input": x})
    assert logits.shape == (2, len(m["labels"])) and act.ndim == 4 and act.shape[0] == 2
    weight = np.asarray(m["gradcam"]["weight"], np.float64)
    bias = np.asarray(m["gradcam"]["bias"], np.float64)
    assert (act >= 0).all()  # post-activation (ReLU) tensor
    np.testing.assert_allclose(act.mean(axis=(2, 3)) @ weight.T + bias, logits, atol=2e-4)
    if "ensemble" in m:  # members' activations side by side, one block of channels each
        n = m["ensemble"]["members"]
        assert n >= 2 and act.shape[1] % n == 0
        blocks = np.split(act.mean(axis=(2, 3)), n, axis=1)
        assert not np.allclose(blocks[0], blocks[1], atol=1e-4)  # different networks


@pytest.mark.parametrize("model_id", ("body_region", "pneumonia", "covid"))
def test_declared_flip_averaging_is_in_the_graph(model_id: str) -> None:
    """A manifest that says the graph averages the image and its mirror gives mirror-invariant
    logits and mirrored activations; the others do not claim it."""
    m = _manifest(model_id)
    h, w = m["input"]["size"]
    x = np.random.default_rng(1).normal(size=(1, 1, h, w)).astype(np.float32)
    sess = _session(m)
    logits, act = sess.run(["logits", "activations"], {"input": x})
    logits_m, act_m = sess.run(["logits", "activations"], {"input": np.ascontiguousarray(x[..., ::-1])})
    if m.get("test_time_augmentation"):
        np.testing.assert_allclose(logits_m, logits, atol=1e-4)
        np.testing.assert_allclose(act_m[..., ::-1], act, atol=1e-4)
    else:
        assert not np.allclose(logits_m, logits, atol=1e-4)


def _classify(m: dict, display: np.ndarray) -> str:
    logits = _session(m).run(["logits"], {"input": prepare_input(display, InputSpec.from_manifest(m["input"]))})[0][0]
    z = logits / m["calibration"]["temperature"]
    p = np.exp(z - z.max())
    p /= p.sum()
    if "positive_label" in m:
        pos = m["labels"].index(m["positive_label"])
        return m["positive_label"] if p[pos] >= m["threshold"] else m["labels"][1 - pos]
    return m["labels"][int(p.argmax())]


@pytest.mark.parametrize(("model_id", "rel", "expected"), KNOWN)
def test_known_predictions_on_test_images(model_id: str, rel: str, expected: str) -> None:
    m = _manifest(model_id)
    assert _split_of(model_id, rel) == "test"
    assert _classify(m, _display(rel)) == expected


@pytest.mark.parametrize("rel", LUNG_CASES)
def test_lung_dice_on_test_images(rel: str) -> None:
    m = _manifest("lungs")
    assert _split_of("lungs", rel) == "test"
    with open(DATA / "lungs" / "pairs.csv", newline="") as fh:
        mask_rel = {os.path.normpath(f"lungs/{r['image']}"): r["mask"] for r in csv.DictReader(fh)}[rel]
    img = _display(rel)
    mask = cv2.imread(str(DATA / "lungs" / mask_rel), cv2.IMREAD_GRAYSCALE)
    logit = _session(m).run(None, {"input": prepare_input(img, InputSpec.from_manifest(m["input"]))})[0][0, 0]
    pred = resize_to_image(logit, img.shape) > 0.0
    valid = mask != 127
    gt = (mask == 255) & valid
    pred &= valid
    assert 2 * (pred & gt).sum() / (pred.sum() + gt.sum()) > 0.9


# (model, image relative to shared/data, refused by the applicability check?): an image of the
# model's own test split is inside its data; the other population's images are pinned examples
# from its test split that the check refuses (see the manifests' rates: neither model refuses
# every film of the other population), not a typical case.
APPLICABILITY = [
    ("pneumonia", "pneumonia/images224/NORMAL/IM-0505-0001-0002.jpeg", False),
    ("pneumonia", "covid/Normal/Normal-1537.jpg", True),
    ("covid", "covid/COVID/COVID-775.jpg", False),
    ("covid", "pneumonia/images224/PNEUMONIA/person319_bacteria_1476.jpeg", True),
]


def _applicability(m: dict, display: np.ndarray) -> float:
    x = prepare_input(display, InputSpec.from_manifest(m["input"]))
    return float(_session(m).run([m["applicability"]["output"]], {"input": x})[0][0])


@pytest.mark.parametrize(("model_id", "rel", "refused"), APPLICABILITY)
def test_applicability_output_and_manifest(model_id: str, rel: str, refused: bool) -> None:
    """Disease classifiers carry the "outside this model's data" score as a third output."""
    m = _manifest(model_id)
    if "applicability" not in m:
        pytest.skip(f"{model_id} {m['version']} has no applicability output")
    a = m["applicability"]
    assert {"name": a["output"], "kind": "applicability"} in m["outputs"]
    assert a["threshold"] > 0 and (a.get("components", 0) >= 1 or len(a.get("layers", ())) >= 1)
    assert {"method", "fitted_on", "threshold_rule"} <= set(a)
    assert a["rates"]["validation_refused"] <= 0.03 and a["rates"]["test_refused"] <= 0.05
    x = np.zeros((2, 1, *m["input"]["size"]), np.float32)
    out = _session(m).run([a["output"]], {"input": x})[0]
    assert out.shape == (2,) and out.dtype == np.float32
    assert (_applicability(m, _display(rel)) > a["threshold"]) is refused


def test_population_term_is_what_the_manifest_declares() -> None:
    """covid's score is max(d / t_d, population term) with the manifest's t_d, and the term
    alone refuses the paediatric films of external_val (never fitted on: the official Kermany
    test images), a fixed pick of the first six of each label."""
    m = _manifest("covid")
    pop = m["applicability"].get("population")
    if pop is None:
        pytest.skip(f"covid {m['version']} has no population term")
    assert m["applicability"]["threshold"] == 1.0 and pop["other"] == "paediatric_kermany"
    model = onnx.load(str(MODELS / m["file"]))
    scale = next(onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name == "distance_scale")
    assert float(scale) == pytest.approx(1.0 / pop["distance_threshold"], rel=1e-3)
    for name in ("applicability_distance", "population_term"):
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with open(DATA / "pneumonia" / "external_val" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    picks = [r for lab in ("normal", "pneumonia") for r in [x for x in rows if x["label"] == lab][:6]]
    spec = InputSpec.from_manifest(m["input"])
    x = np.concatenate([prepare_input(_display(f"pneumonia/external_val/{r['path']}"), spec) for r in picks])
    s, d, p = sess.run(["applicability", "applicability_distance", "population_term"], {"input": x})
    np.testing.assert_allclose(s, np.maximum(d * scale, p), rtol=1e-6)
    assert (p > 1.0).all() and (s > 1.0).all()
    inside = prepare_input(_display("covid/COVID/COVID-775.jpg"), spec)
    assert sess.run(["population_term"], {"input": inside})[0][0] < 1.0

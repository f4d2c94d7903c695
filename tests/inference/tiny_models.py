"""Tiny torch models exported to ONNX with manifests, for tests and the benchmark fallback.

Three models mirror the real set (docs/MODELS.md): a body-region gate, a chest classifier
(``GAP + linear`` head exporting its activations) and a lung U-Net. The gate's head is fixed
so its answer is known in advance (``region``), which lets tests exercise the gating rules.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

GATE_LABELS = ["chest", "knee", "hand", "spine", "other"]
INPUT = {"name": "input", "size": [64, 64], "channels": 1, "mean": 0.5, "std": 0.25,
         "clahe": False, "clahe_clip": 2.0, "resize": "stretch"}


class TinyClassifier(nn.Module):
    """conv-ReLU stack -> activations (C, 8, 8) -> GAP -> linear; returns (logits, activations)."""

    def __init__(self, n_classes: int, channels: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(8, channels, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 2, 1), nn.ReLU(),
        )
        self.head = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act = self.features(x)
        return self.head(act.mean(dim=(2, 3))), act


class TinyUNet(nn.Module):
    """One down/up level; 1 logit channel at input resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1), nn.ReLU())
        self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, 1, 1), nn.ReLU())
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = nn.Conv2d(24, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        return self.dec(torch.cat([e, self.up(self.down(e))], dim=1))


def export_onnx(model: nn.Module, path: Path, output_names: list[str], size: int = 64) -> None:
    """Export with the legacy (TorchScript) exporter: fast and dependency-free."""
    model.eval()
    x = torch.randn(1, 1, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter warns
        torch.onnx.export(model, (x,), str(path), input_names=["input"],
                          output_names=output_names, opset_version=17, dynamo=False)


def write_manifest(folder: Path, model_id: str, body: dict) -> Path:
    onnx_path = folder / f"{model_id}.onnx"
    manifest = {"schema": 1, "id": model_id, "version": "0.0.1-test", "name": f"tiny {model_id}",
                "file": onnx_path.name,
                "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(), "opset": 17,
                "input": dict(INPUT), "bands": {"green": 0.9, "orange": 0.7},
                "intended_use": "Research use, not for diagnosis. Test model.", **body}
    path = folder / f"{model_id}.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


def make_classifier(folder: Path, model_id: str = "pneumonia", seed: int = 0,
                    temperature: float = 1.5, threshold: float = 0.5) -> TinyClassifier:
    torch.manual_seed(seed)
    model = TinyClassifier(2)
    export_onnx(model, folder / f"{model_id}.onnx", ["logits", "activations"])
    write_manifest(folder, model_id, {
        "task": "classification", "labels": ["normal", "pneumonia"],
        "positive_label": "pneumonia",
        "outputs": [{"name": "logits", "kind": "logits"},
                    {"name": "activations", "kind": "activations"}],
        "calibration": {"method": "temperature", "temperature": temperature},
        "threshold": threshold,
        "gradcam": {"activations_output": "activations", "head": "gap_linear",
                    "weight": model.head.weight.detach().tolist()},
        "applies_to": {"body_region": ["chest"]},
        "schema": 2, "measurements": [{"kind": "heatmap_share", "role": "lung_field"}],
    })
    return model


class WithApplicability(nn.Module):
    """A classifier plus an ``applicability`` output: here the mean of the normalised input,
    so a test controls it through the image's brightness (real models use a Mahalanobis
    distance of their pooled activations)."""

    def __init__(self, net: TinyClassifier) -> None:
        super().__init__()
        self.net = net
        self.head = net.head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, act = self.net(x)
        return logits, act, x.mean(dim=(1, 2, 3))


def make_applicable_classifier(folder: Path, model_id: str = "pneumonia",
                               threshold: float = 0.0) -> TinyClassifier:
    """A chest classifier whose own check refuses images brighter than mid-grey
    (normalised mean > ``threshold``)."""
    torch.manual_seed(3)
    net = TinyClassifier(2)
    export_onnx(WithApplicability(net), folder / f"{model_id}.onnx",
                ["logits", "activations", "applicability"])
    write_manifest(folder, model_id, {
        "task": "classification", "labels": ["normal", "pneumonia"],
        "positive_label": "pneumonia",
        "outputs": [{"name": "logits", "kind": "logits"},
                    {"name": "activations", "kind": "activations"},
                    {"name": "applicability", "kind": "applicability"}],
        "calibration": {"method": "temperature", "temperature": 1.0}, "threshold": 0.5,
        "gradcam": {"activations_output": "activations", "head": "gap_linear",
                    "weight": net.head.weight.detach().tolist()},
        "applies_to": {"body_region": ["chest"]},
        "applicability": {"output": "applicability", "threshold": threshold,
                          "method": "mean brightness (test)", "rates": {"validation_refused": 0.03}},
    })
    return net


def make_gate(folder: Path, region: str | None = "chest") -> None:
    """A gate that always answers ``region`` confidently, or (``None``) an unsure uniform one."""
    torch.manual_seed(1)
    model = TinyClassifier(len(GATE_LABELS))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        if region is not None:
            model.head.bias[GATE_LABELS.index(region)] = 8.0
    export_onnx(model, folder / "body_region.onnx", ["logits", "activations"])
    write_manifest(folder, "body_region", {
        "task": "classification", "gate": True, "labels": GATE_LABELS,
        "outputs": [{"name": "logits", "kind": "logits"},
                    {"name": "activations", "kind": "activations"}],
        "calibration": {"method": "temperature", "temperature": 1.0}, "threshold": None,
        "ood": {"score": "energy", "threshold": -3.1, "confidence_floor": 0.6},
    })


def make_lungs(folder: Path) -> None:
    torch.manual_seed(2)
    model = TinyUNet()
    with torch.no_grad():  # a mask that follows brightness: lungs are dark, so invert
        model.dec.bias.fill_(0.0)
    export_onnx(model, folder / "lungs.onnx", ["mask_logits"])
    write_manifest(folder, "lungs", {
        "schema": 2, "task": "segmentation", "labels": ["background", "lung"], "threshold": 0.5,
        "outputs": [{"name": "mask_logits", "kind": "segmentation_logits"}],
        "segments": [{"label": "lung", "channel": 1, "role": "lung_field",
                      "category": ["SCT", "123037004", "Anatomical Structure"],
                      "type": ["SCT", "39607008", "Lung"]}],
        "measurements": [{"kind": "area_fraction", "segment": "lung"}],
        "applies_to": {"body_region": ["chest"]},
    })


def make_model_set(folder: Path, region: str | None = "chest") -> Path:
    """Gate + chest classifier + lungs in ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    make_gate(folder, region)
    make_classifier(folder)
    make_lungs(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with a chest-answering gate, a classifier and a lung model."""
    return make_model_set(tmp_path_factory.mktemp("models") / "chest")


@pytest.fixture(scope="session")
def tiny_models_knee(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same set, with a gate that answers "knee" (chest models are out of scope)."""
    return make_model_set(tmp_path_factory.mktemp("models") / "knee", region="knee")


@pytest.fixture(scope="session")
def tiny_models_unsure(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same set, with a gate below its confidence floor ("unknown / not a radiograph")."""
    return make_model_set(tmp_path_factory.mktemp("models") / "unsure", region=None)


FINDINGS_14 = ["atelectasis", "cardiomegaly", "consolidation", "edema", "effusion", "emphysema",
               "fibrosis", "hernia", "infiltration", "mass", "nodule", "pleural thickening",
               "pneumonia", "pneumothorax"]


def make_multilabel(folder: Path, model_id: str = "chest14", positives: int = 4) -> dict:
    """A 14-finding multi-label chest classifier (independent sigmoids) with activations and a
    GAP + linear head (Grad-CAM++ works per finding). The head's biases make the first
    ``positives`` findings clearly positive and the rest clearly negative whatever the image;
    thresholds and bands differ per finding. Returns the manifest."""
    torch.manual_seed(5)
    model = TinyClassifier(len(FINDINGS_14))
    with torch.no_grad():
        model.head.weight.mul_(0.05)
        for i in range(len(FINDINGS_14)):
            model.head.bias[i] = 6.0 if i < positives else -6.0
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(model, folder / f"{model_id}.onnx", ["logits", "activations"])
    findings = []
    for i, label in enumerate(FINDINGS_14):
        item: dict = {"label": label, "threshold": round(0.3 + 0.03 * i, 2)}
        if i % 3 == 0:  # stricter bands for some: the same confidence reads lower
            item["bands"] = {"green": 0.999, "orange": 0.99}
        if label == "pneumothorax":
            item["codes"] = {"category": ["SCT", "49755003", "Morphologically Altered Structure"],
                             "type": ["SCT", "36118008", "Pneumothorax"]}
        findings.append(item)
    path = write_manifest(folder, model_id, {
        "schema": 2, "task": "classification",
        "outputs": [{"name": "logits", "kind": "multilabel_logits"},
                    {"name": "activations", "kind": "activations"}],
        "findings": findings,
        "calibration": {"method": "temperature", "temperature": 1.0},
        "gradcam": {"activations_output": "activations", "head": "gap_linear",
                    "weight": model.head.weight.detach().tolist()},
        "applies_to": {"body_region": ["chest"]},
        "measurements": [{"kind": "heatmap_share", "role": "lung_field"}],
    })
    return json.loads(path.read_text())

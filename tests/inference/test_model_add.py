"""``radview models add`` logic: graph inspection, Grad-CAM++ wiring and the manifest it writes.

Models are plain PyTorch networks exported to ONNX in a temporary folder, as a researcher would
export them; the Grad-CAM++ of the wired model is compared with the ``grad-cam`` package's map on
the original torch module (autograd), so the wiring is checked against an independent reference.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from tests.inference.gradcam_reference import load_grad_cam
from viewer.inference.gradcam import cam_to_image, gradcam_plusplus
from viewer.inference.manifest import load_manifest
from viewer.inference.model_add import (
    AddOptions, ModelAddError, add_model, find_gap_linear_head, load_onnx, parse_codes,
    parse_roles, user_models_dir,
)

SIZE = 64
LUNG = {"category": ["SCT", "123037004", "Anatomical Structure"], "type": ["SCT", "39607008", "Lung"]}


class GapNet(nn.Module):
    """conv-ReLU stack -> AdaptiveAvgPool2d(1) -> flatten -> Linear: the usual classifier head."""

    def __init__(self, n: int = 3, cin: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(cin, 8, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class FlatNet(nn.Module):
    """Flatten of the whole feature map + Linear: no global average pool, no Grad-CAM++."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, 4, 1), nn.ReLU())
        self.fc = nn.Linear(4 * 16 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


class SoftmaxNet(GapNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(super().forward(x), dim=1)


class SegNet(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def export(model: nn.Module, path: Path, *, cin: int = 1, dynamo: bool = False,
           dynamic_size: bool = False) -> Path:
    model.eval()
    axes = {"input": {0: "n", 2: "h", 3: "w"}} if dynamic_size else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, cin, SIZE, SIZE),), str(path), input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=dynamo,
                          dynamic_axes=axes)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def gapnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[GapNet, Path]:
    torch.manual_seed(5)
    model = GapNet()
    return model, export(model, tmp_path_factory.mktemp("src") / "gapnet.onnx")


def _opts(source: Path, folder: Path, labels: str = "normal,covid,other", **kw: object) -> AddOptions:
    return AddOptions(source=source, task=str(kw.pop("task", "classification")),
                      labels=tuple(labels.split(",")), folder=folder, **kw)  # type: ignore[arg-type]


def _structured_input(channels: int = 1) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    x = np.sin(6 * xx) * np.cos(4 * yy) + 0.3 * np.random.default_rng(3).standard_normal((SIZE, SIZE))
    return np.repeat(x.astype(np.float32)[None, None], channels, axis=1)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
def test_head_found_in_both_exporters(tmp_path: Path, dynamo: bool) -> None:
    """GlobalAveragePool+Flatten+Gemm (legacy exporter) and ReduceMean+Reshape+Gemm (dynamo)."""
    torch.manual_seed(1)
    model = GapNet()
    path = export(model, tmp_path / "m.onnx", dynamo=dynamo)
    head = find_gap_linear_head(load_onnx(path), "logits")
    np.testing.assert_allclose(head.weight, model.fc.weight.detach().numpy(), rtol=0, atol=1e-7)
    np.testing.assert_allclose(head.bias, model.fc.bias.detach().numpy(), rtol=0, atol=1e-7)
    assert head.path[0] == ("ReduceMean" if dynamo else "GlobalAveragePool")
    assert head.path[-1] == "Gemm"
    report = add_model(_opts(path, tmp_path / "user", model_id="m"))
    assert report.gradcam


def test_wired_gradcam_equals_package_and_source_untouched(gapnet: tuple[GapNet, Path],
                                                           tmp_path: Path) -> None:
    model, source = gapnet
    before = digest(source)
    report = add_model(_opts(source, tmp_path / "user", model_id="mine"))
    assert digest(source) == before  # the user's file is never modified
    assert [o.name for o in onnx.load(str(source)).graph.output] == ["logits"]
    assert report.gradcam and "GlobalAveragePool -> Flatten -> Gemm" in report.gradcam_note
    m = json.loads(report.manifest_path.read_text())
    assert m["schema"] == 2 and m["id"] == "mine" and m["sha256"] == digest(report.onnx_path)
    assert m["added_with"]["original_sha256"] == before
    assert {o["kind"] for o in m["outputs"]} == {"logits", "activations"}
    np.testing.assert_allclose(m["gradcam"]["weight"], model.fc.weight.detach().numpy(), atol=1e-6)
    entry = load_manifest(report.manifest_path)
    assert entry.available, entry.reason
    # The copy's activations + the manifest's head give the grad-cam package's Grad-CAM++ map
    # computed by autograd on the torch model (independent reference), for every class.
    x = _structured_input()
    sess = ort.InferenceSession(str(report.onnx_path), providers=["CPUExecutionProvider"])
    logits, acts = sess.run(["logits", m["gradcam"]["activations_output"]], {"input": x})
    with torch.no_grad():
        torch_acts = model.features(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(acts, torch_acts, atol=1e-5)
    try:
        gc = load_grad_cam()
    except ImportError as exc:
        pytest.skip(f"grad-cam package unavailable: {exc}")
    weight = np.asarray(m["gradcam"]["weight"], np.float32)
    for cls in range(3):
        ours = cam_to_image(gradcam_plusplus(acts[0], weight, cls), (SIZE, SIZE))
        with gc.GradCAMPlusPlus(model=model, target_layers=[model.features[-1]]) as cam:
            ref = cam(input_tensor=torch.from_numpy(x), targets=[gc.ClassifierOutputTarget(cls)])[0]
        assert ref.max() > 0.5
        np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_activations_already_an_output_need_no_copy_change(tmp_path: Path) -> None:
    class Both(GapNet):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
            a = self.features(x)
            return self.fc(torch.flatten(self.pool(a), 1)), a

    src = tmp_path / "both.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Both().eval(), (torch.randn(1, 1, SIZE, SIZE),), str(src),
                          input_names=["input"], output_names=["logits", "feats"], opset_version=17,
                          dynamo=False)
    report = add_model(_opts(src, tmp_path / "user", "a,b,c", logits_output="logits"))
    assert report.gradcam and report.manifest["gradcam"]["activations_output"] == "feats"
    assert digest(report.onnx_path) == digest(src)  # copied as is
    assert report.manifest["added_with"]["graph_changes"] == []


def test_flatten_head_is_added_without_gradcam_and_says_why(tmp_path: Path) -> None:
    src = export(FlatNet(), tmp_path / "flat.onnx")
    report = add_model(_opts(src, tmp_path / "user", "a,b"))
    assert not report.gradcam
    assert "not a linear function of a global average pool" in report.gradcam_note
    assert "found Flatten after Relu" in report.gradcam_note
    assert "gradcam" not in report.manifest
    assert [o["kind"] for o in report.manifest["outputs"]] == ["logits"]
    assert digest(report.onnx_path) == digest(src)  # nothing to add: an exact copy
    assert load_manifest(report.manifest_path).available


def test_softmax_after_head_is_named(tmp_path: Path) -> None:
    src = export(SoftmaxNet(), tmp_path / "soft.onnx")
    report = add_model(_opts(src, tmp_path / "user"))
    assert not report.gradcam
    assert "found Softmax after Gemm" in report.gradcam_note


def test_wrong_label_count_is_precise_and_writes_nothing(gapnet: tuple[GapNet, Path],
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "user"
    with pytest.raises(ModelAddError) as err:
        add_model(_opts(gapnet[1], folder, "normal,covid"))
    msg = str(err.value)
    assert msg.startswith("--labels:") and "3 classes" in msg and "2 labels" in msg
    assert not folder.exists() or not any(folder.iterdir())


def test_existing_id_refused_without_force(gapnet: tuple[GapNet, Path], tmp_path: Path) -> None:
    folder = tmp_path / "user"
    add_model(_opts(gapnet[1], folder, model_id="dup"))
    first = (folder / "dup.json").read_text()
    with pytest.raises(ModelAddError, match="already in .*--force"):
        add_model(_opts(gapnet[1], folder, "a,b,c", model_id="dup"))
    assert (folder / "dup.json").read_text() == first
    add_model(_opts(gapnet[1], folder, "a,b,c", model_id="dup", force=True))
    assert json.loads((folder / "dup.json").read_text())["labels"] == ["a", "b", "c"]
    assert sorted(p.name for p in folder.iterdir()) == ["dup.json", "dup.onnx"]  # no staging left


def test_source_inside_the_folder_is_not_overwritten(gapnet: tuple[GapNet, Path], tmp_path: Path) -> None:
    folder = tmp_path / "user"
    folder.mkdir()
    src = folder / "inplace.onnx"
    src.write_bytes(gapnet[1].read_bytes())
    before = digest(src)
    report = add_model(_opts(src, folder))
    assert digest(src) == before and report.onnx_path.name == "inplace.radview.onnx"
    assert load_manifest(report.manifest_path).available


def test_dynamic_input_needs_input_size(tmp_path: Path) -> None:
    src = export(GapNet(), tmp_path / "dyn.onnx", dynamic_size=True)
    with pytest.raises(ModelAddError, match=r"dynamic size: give --input-size H W"):
        add_model(_opts(src, tmp_path / "user"))
    report = add_model(_opts(src, tmp_path / "user", input_size=(96, 80)))
    assert report.manifest["input"]["size"] == [96, 80]
    manifest = load_manifest(report.manifest_path).manifest
    assert manifest is not None and (manifest.input_spec.height, manifest.input_spec.width) == (96, 80)


def test_fixed_input_size_conflict(gapnet: tuple[GapNet, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelAddError, match="fixed at 64 x 64"):
        add_model(_opts(gapnet[1], tmp_path / "user", input_size=(128, 128)))


def test_multilabel_14_findings_three_channels(tmp_path: Path) -> None:
    torch.manual_seed(2)
    src = export(GapNet(n=14, cin=3), tmp_path / "cxr14.onnx", cin=3)
    labels = ",".join(f"finding{i}" for i in range(14))
    codes = {"finding3": {"category": ["SCT", "49755003", "Morphologically Altered Structure"],
                          "type": ["SCT", "36118008", "Pneumothorax"]}}
    report = add_model(_opts(src, tmp_path / "user", labels, task="multilabel", threshold=0.3,
                             codes=codes))
    m = report.manifest
    assert m["input"]["channels"] == 3 and len(m["findings"]) == 14
    assert [f["threshold"] for f in m["findings"]] == [0.3] * 14
    assert m["findings"][3]["codes"] == codes["finding3"]
    assert m["outputs"][0]["kind"] == "multilabel_logits" and report.gradcam
    entry = load_manifest(report.manifest_path)
    assert entry.available, entry.reason
    assert entry.manifest is not None and entry.manifest.multilabel
    assert len(entry.manifest.findings) == 14 and entry.manifest.input_spec.channels == 3


def test_segmenter_one_channel_with_role_and_codes(tmp_path: Path) -> None:
    src = export(SegNet(1), tmp_path / "ptx.onnx")
    report = add_model(_opts(src, tmp_path / "user", "lung", task="segmentation",
                             roles=parse_roles(["lung_field"]), codes={"lung": LUNG}))
    m = report.manifest
    assert m["labels"] == ["background", "lung"]
    assert m["segments"] == [{"label": "lung", "channel": 1, "role": "lung_field", **LUNG}]
    assert m["measurements"] == [{"kind": "area_fraction", "segment": "lung"}]
    entry = load_manifest(report.manifest_path)
    assert entry.available and entry.manifest is not None
    assert entry.manifest.segments[0].coded and entry.manifest.segments[0].role == "lung_field"


def test_segmenter_channels_must_match_labels(tmp_path: Path) -> None:
    src = export(SegNet(3), tmp_path / "three.onnx")
    with pytest.raises(ModelAddError, match="has 3 channels, got 2 labels"):
        add_model(_opts(src, tmp_path / "user", "left,right", task="segmentation"))
    report = add_model(_opts(src, tmp_path / "user", "background,left,right", task="segmentation",
                             roles=parse_roles(["left=anatomy,right=anatomy"])))
    assert [(s["label"], s["channel"], s["role"]) for s in report.manifest["segments"]] == [
        ("left", 1, "anatomy"), ("right", 2, "anatomy")]


@pytest.mark.parametrize("bad, match", [
    ({"task": "segmentation", "roles": {"*": "liver"}}, r"--role liver: expected one of"),
    ({"task": "multilabel", "codes": {"nope": LUNG}}, r"--codes: 'nope' is not one of --labels"),
    ({"task": "multilabel", "codes": {"covid": {"category": ["SCT", "1"], "type": LUNG["type"]}}},
     r"--codes covid.category: expected \[scheme, value, meaning\]"),
    ({"codes": {"covid": LUNG}}, r"--codes: only for the findings of --task multilabel"),
    ({"threshold": 0.4}, r"--threshold needs --positive"),
    ({"positive": "flu"}, r"--positive 'flu' is not one of --labels"),
    ({"model_id": "../evil"}, r"--id: '../evil' is not a usable model id"),
    ({"model_id": "covid"}, r"--id covid: a bundled model has this id"),
    ({"applies_to": ("thorax",)}, r"--applies-to thorax: not a body region of the gate model \(it knows chest"),
])
def test_bad_options_are_named(gapnet: tuple[GapNet, Path], tmp_path: Path, bad: dict[str, object],
                               match: str) -> None:
    with pytest.raises(ModelAddError, match=match):
        add_model(_opts(gapnet[1], tmp_path / "user", **bad))


def test_binary_threshold_defaults_to_second_label(tmp_path: Path) -> None:
    src = export(GapNet(n=2), tmp_path / "bin.onnx")
    report = add_model(_opts(src, tmp_path / "user", "normal,effusion", threshold=0.35))
    assert report.manifest["positive_label"] == "effusion" and report.manifest["threshold"] == 0.35
    assert any("P(effusion)" in n for n in report.notes)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelAddError, match="x.onnx is not a valid ONNX model"):
        add_model(_opts(bad, tmp_path / "user"))


def test_codes_parsing_and_user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "codes.json"
    f.write_text(json.dumps({"lung": LUNG}))
    assert parse_codes(str(f)) == {"lung": LUNG} == parse_codes(json.dumps({"lung": LUNG}))
    with pytest.raises(ModelAddError, match="not valid JSON"):
        parse_codes("{lung")
    monkeypatch.setenv("RADVIEW_MODELS_DIR", str(tmp_path / "mine"))
    assert user_models_dir() == tmp_path / "mine"
    monkeypatch.delenv("RADVIEW_MODELS_DIR")
    assert user_models_dir().parts[-2:] == ("radview", "models")


def _hand_graph(tmp_path: Path, tail: str) -> tuple[Path, np.ndarray, np.ndarray]:
    """conv -> relu -> pool -> ... -> MatMul (+ Add) written with onnx.helper (opset 13)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    conv_w = rng.normal(0, 0.5, (6, 1, 3, 3)).astype(np.float32)
    w = rng.normal(0, 1, (6, 4)).astype(np.float32)  # MatMul weight (C, n)
    b = rng.normal(0, 1, (1, 4)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "cw"], ["c"], pads=[1, 1, 1, 1], strides=[4, 4]),
             helper.make_node("Relu", ["c"], ["r"])]
    inits = [numpy_helper.from_array(conv_w, "cw"), numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(b, "b")]
    if tail == "gap_squeeze_matmul_add":
        inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "sq_axes"))
        nodes += [helper.make_node("GlobalAveragePool", ["r"], ["p"]),
                  helper.make_node("Squeeze", ["p", "sq_axes"], ["f"]),
                  helper.make_node("MatMul", ["f", "w"], ["mm"]),
                  helper.make_node("Add", ["b", "mm"], ["logits"])]
    else:  # ReduceMean with an axes attribute (opset 13), no bias
        nodes += [helper.make_node("ReduceMean", ["r"], ["f"], axes=[2, 3], keepdims=0),
                  helper.make_node("MatMul", ["f", "w"], ["logits"])]
        b = np.zeros_like(b)
    graph = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [1, 1, SIZE, SIZE])], [helper.make_tensor_value_info(
            "logits", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / f"{tail}.onnx"
    onnx.save(model, str(path))
    return path, w.T, b.reshape(-1)


@pytest.mark.parametrize("tail", ["gap_squeeze_matmul_add", "reducemean_matmul"])
def test_matmul_heads_written_by_hand(tmp_path: Path, tail: str) -> None:
    path, weight, bias = _hand_graph(tmp_path, tail)
    head = find_gap_linear_head(load_onnx(path), "logits")
    np.testing.assert_array_equal(head.weight, weight)
    np.testing.assert_array_equal(head.bias, bias)
    report = add_model(_opts(path, tmp_path / "user", "a,b,c,d"))
    assert report.gradcam, report.gradcam_note
    assert load_manifest(report.manifest_path).available

"""A model added with ``radview models add`` (written to the user models folder) is one of the
window's models too, not only the CLI's: listed, run, shown in the results panel with its
Grad-CAM++ map. Real widgets, a real PyTorch classifier exported to ONNX, real onnxruntime."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests import dicom_factory
from tests.conftest import window_factory
from viewer.inference.model_add import AddOptions, add_model
from viewer.ui.model_info import ModelsDialog

MODEL_ID = "my_effusion"


class GapNet(nn.Module):
    """conv-ReLU stack -> global average pool -> Linear: a plain classifier as researchers export."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                                      nn.ReLU())
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def _add_user_model(scratch: Path) -> Path:
    """What ``radview models add mine.onnx --task classification --labels normal,effusion``
    does, into the user models folder ($RADVIEW_MODELS_DIR)."""
    from viewer.inference.model_add import user_models_dir

    torch.manual_seed(3)
    source = scratch / "mine.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(GapNet().eval(), (torch.randn(1, 1, 64, 64),), str(source),
                          input_names=["input"], output_names=["logits"], opset_version=17,
                          dynamo=False)
    report = add_model(AddOptions(source=source, task="classification",
                                  labels=("normal", "effusion"), folder=user_models_dir(),
                                  model_id=MODEL_ID, positive="effusion"))
    assert report.gradcam and report.manifest_path.parent == user_models_dir()
    return report.manifest_path


@pytest.fixture
def installed_window(qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Factory: a window built as the app builds it (``install_ai``: no folder given)."""
    from viewer.ui.ai_features import install_ai

    monkeypatch.setenv("RADVIEW_MODELS_DIR", str(tmp_path / "user-models"))
    factory = window_factory(qtbot, tmp_path / "s.ini", tmp_path / "thumbs", (1200, 800), ai=False)
    make = next(factory)
    yield lambda: make(lambda w: install_ai(w, (), tmp_path / "hist" / "h.sqlite"))
    next(factory, None)


def test_a_model_added_with_models_add_is_in_the_window(qtbot: Any, installed_window: Any,
                                                        tmp_path: Path) -> None:
    manifest = _add_user_model(tmp_path)
    window = installed_window()
    ai = window.ai
    assert manifest.parent in ai.registry.folders
    ids = [m.id for m in ai.registry.available()]
    assert MODEL_ID in ids, [(e.id, e.reason) for e in ai.registry.unavailable()]
    dialog = ai.show_models()
    items = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    assert any(t.startswith(MODEL_ID) and "(available)" in t for t in items), items
    assert isinstance(dialog, ModelsDialog)
    dialog.close()
    # ...and it runs on an image like the bundled ones, with its own row and heatmap
    rng = np.random.default_rng(0)
    study = tmp_path / "study"
    dicom_factory.write_dicom(study / "img.dcm", rng.integers(600, 3000, (96, 112)).astype(np.uint16),
                              bits_stored=12, BodyPartExamined="CHEST", ViewPosition="PA")
    with qtbot.waitSignal(window.sig_image_displayed, timeout=30000):
        window.open_paths([str(study)])
    with qtbot.waitSignal(ai.controller.sig_result_ready, timeout=60000) as blocker:
        ai.analyse_current(True)  # forced: the bundled chest models may call it out of scope
    res = blocker.args[1].result(MODEL_ID)
    assert res is not None and res.status == "ok", res
    assert set(res.probabilities) == {"normal", "effusion"} and res.heatmap is not None
    tree = ai.panel.tree
    rows = [tree.topLevelItem(i).data(0, 256) for i in range(tree.topLevelItemCount())]
    assert MODEL_ID in rows


def test_without_the_user_model_the_window_does_not_list_it(qtbot: Any, installed_window: Any) -> None:
    window = installed_window()
    assert MODEL_ID not in [m.id for m in window.ai.registry.available()]
    assert window.ai.registry.available()  # the bundled models are still there

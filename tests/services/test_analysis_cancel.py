"""Cancelling an analysis stops the onnxruntime run in flight (RunOptions.terminate)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from tests.inference.tiny_models import export_onnx, write_manifest
from viewer.inference.registry import ModelRegistry
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_types import AnalysisInput
from viewer.services.tasks import CancelToken, Cancelled

SIZE = 320


class SlowNet(nn.Module):
    """Wide full-resolution convolutions: about a second per run on two cores."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, 48, 3, 1, 1), nn.ReLU()]
        for _ in range(6):
            layers += [nn.Conv2d(48, 48, 3, 1, 1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(48, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act = self.features(x)
        return self.head(act.mean(dim=(2, 3))), act


@pytest.fixture(scope="module")
def slow_service(tmp_path_factory: pytest.TempPathFactory) -> AnalysisService:
    folder = tmp_path_factory.mktemp("slow")
    torch.manual_seed(0)
    net = SlowNet()
    export_onnx(net, folder / "slow.onnx", ["logits", "activations"], size=SIZE)
    manifest = write_manifest(folder, "slow", {
        "task": "classification", "labels": ["a", "b"],
        "outputs": [{"name": "logits", "kind": "logits"},
                    {"name": "activations", "kind": "activations"}],
        "gradcam": {"weight": net.head.weight.detach().tolist()}})
    import json

    raw = json.loads(manifest.read_text())
    raw["input"]["size"] = [SIZE, SIZE]
    manifest.write_text(json.dumps(raw))
    return AnalysisService(ModelRegistry([folder]), SessionPool(2))


@pytest.mark.slow
def test_cancel_terminates_the_run_in_flight(slow_service: AnalysisService) -> None:
    inp = AnalysisInput(np.full((SIZE, SIZE), 128, np.uint8), "x")
    t0 = time.perf_counter()
    assert slow_service.analyse(inp).result("slow").status == "ok"
    full = time.perf_counter() - t0
    token = CancelToken()
    outcome: list[object] = []

    def work() -> None:
        try:
            outcome.append(slow_service.analyse(inp, cancel=token))
        except Cancelled as exc:
            outcome.append(exc)

    thread = threading.Thread(target=work)
    t0 = time.perf_counter()
    thread.start()
    time.sleep(min(0.1, full / 5))
    token.cancel()
    thread.join(timeout=30)
    took = time.perf_counter() - t0
    assert isinstance(outcome[0], Cancelled)
    assert took < max(0.6 * full, 0.3), (took, full)

"""Latency of the committed ONNX models vs a DenseNet-201 of the same input size (onnxruntime, CPU).

Run: ``.venv/bin/python bench/model_latency.py [--runs 20]``. Prints one line per model: the
median single-image latency, DenseNet-201's median at the same input size (the two run
alternately, so load changes on a shared machine hit both), and the median per-pair ratio.
DenseNet-201 (Huang et al. 2017; growth 32, blocks 6-12-48-32) is written here in plain torch
with random weights and exported the same way as our models (ONNX opset 17, TorchScript
exporter) into a temporary folder; it is never committed. Sessions use
``intra_op_num_threads=2`` and ``session.intra_op.allow_spinning=0``. Goals: every classifier
<= 1/4 of DenseNet-201's time; the U-Net at 256 px < 120 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


def densenet201(in_ch: int = 1, n_classes: int = 2):
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self, cin: int, growth: int = 32, bn_size: int = 4) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, bn_size * growth, 1, bias=False),
                nn.BatchNorm2d(bn_size * growth), nn.ReLU(inplace=True),
                nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, self.body(x)], 1)

    layers: list[nn.Module] = [nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    c = 64
    for i, n in enumerate((6, 12, 48, 32)):
        for _ in range(n):
            layers.append(Layer(c))
            c += 32
        if i < 3:
            layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c // 2, 1, bias=False),
                       nn.AvgPool2d(2, 2)]
            c //= 2
    layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(c, n_classes)]
    return nn.Sequential(*layers).eval()


def session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def paired_ms(ours, dense, shape: tuple[int, ...], runs: int) -> tuple[float, float, float]:
    """Median latency of ``ours`` and ``dense`` and the median of their per-pair ratio.

    The two sessions run alternately on the same input, so a change of load on a shared machine
    (other jobs, CPU steal) hits both sides of each ratio alike.
    """
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    feeds = [{s.get_inputs()[0].name: x} for s in (ours, dense)]
    for _ in range(3):
        ours.run(None, feeds[0])
        dense.run(None, feeds[1])
    t_ours, t_dense = [], []
    for _ in range(runs):
        for sess, feed, out in ((ours, feeds[0], t_ours), (dense, feeds[1], t_dense)):
            t = time.perf_counter()
            sess.run(None, feed)
            out.append((time.perf_counter() - t) * 1000)
    ratio = statistics.median(a / b for a, b in zip(t_ours, t_dense))
    return statistics.median(t_ours), statistics.median(t_dense), ratio


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        dense_paths: dict[tuple[int, int, int], Path] = {}
        for manifest_path in sorted(MODELS.glob("*.json")):
            m = json.loads(manifest_path.read_text())
            h, w = m["input"]["size"]
            c = int(m["input"].get("channels", 1))
            shape = (1, c, h, w)
            if (c, h, w) not in dense_paths:
                dpath = Path(tmp) / f"densenet201_{h}x{w}.onnx"
                with warnings.catch_warnings():  # TorchScript exporter deprecation notice
                    warnings.simplefilter("ignore", DeprecationWarning)
                    torch.onnx.export(densenet201(c), (torch.zeros(shape),), str(dpath),
                                      input_names=["input"], output_names=["logits"],
                                      opset_version=17, dynamo=False)
                dense_paths[(c, h, w)] = dpath
            ours, dense, ratio = paired_ms(session(manifest_path.parent / m["file"]),
                                           session(dense_paths[(c, h, w)]), shape, args.runs)
            goal = "< 120 ms" if m["task"] == "segmentation" else "<= 0.25 x DenseNet-201"
            ok = ours < 120 if m["task"] == "segmentation" else ratio <= 0.25
            results.append((m["id"], h, w, ours, dense, ok))
            print(f"{m['id']:12s} {h}x{w}: {ours:7.2f} ms   DenseNet-201 {dense:8.2f} ms   "
                  f"ratio {ratio:5.3f}   goal {goal}: {'met' if ok else 'NOT met'}", flush=True)
    return 0 if all(r[-1] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

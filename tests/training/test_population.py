"""The learnt population term of the applicability check (training/population.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from training.population import combined, fit_logistic, graft_onnx, thresholds  # noqa: E402


def _two_populations(n: int = 600, d: int = 12, shift: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    inside = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d) + 10.0  # unscaled, off-centre
    outside = rng.normal(size=(n // 2, d)) * rng.uniform(0.5, 3.0, d) + 10.0
    outside[:, :3] += shift * inside[:, :3].std(0)  # differs in three directions only
    return inside, outside


def test_logistic_term_separates_populations_on_raw_features() -> None:
    inside, outside = _two_populations()
    w, b = fit_logistic(inside, outside)
    z_in, z_out = inside @ w + b, outside @ w + b
    assert (z_in < 0).mean() > 0.85 and (z_out > 0).mean() > 0.85
    ws = np.abs(w * inside.std(0))  # per standard deviation of each (unscaled) feature
    assert ws[:3].min() > 3 * ws[3:].max()  # the weight sits on the differing features
    # Unlearnable: the same population on both sides gives a near-flat term.
    w0, _ = fit_logistic(inside[:300], inside[300:])
    assert np.abs(w0 * inside.std(0)).max() < ws[:3].min() / 3


def test_thresholds_share_the_stated_refusal_budget() -> None:
    rng = np.random.default_rng(1)
    dist, z = rng.gamma(4.0, 0.5, 2000), rng.normal(size=2000)
    t_d, z_t = thresholds(dist, z, keep=0.975, pop_refuse=0.01)
    assert (z > z_t).mean() == pytest.approx(0.01, abs=1e-3)
    refused = combined(dist, z, t_d, z_t) > 1.0
    assert refused.mean() == pytest.approx(0.025, abs=1e-3)
    assert t_d > np.quantile(dist, 0.975)  # the distance gave up part of its budget
    # Either term past its threshold refuses; the score is 1 exactly at each threshold.
    assert combined(np.array([t_d]), np.array([z_t - 5]), t_d, z_t)[0] == pytest.approx(1.0)
    assert combined(np.array([0.0]), np.array([z_t + 0.5]), t_d, z_t)[0] == pytest.approx(1.5)


def _tiny_checked_graph(path: Path) -> None:
    """A classifier shaped like the exported Lite0 ones: ``logits``, ``activations`` and an
    ``applicability`` distance computed from a tap through ``Sub(tap, mu_b10)``."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Relu", ["input"], ["activations"]),
        helper.make_node("ReduceMean", ["input"], ["tap"], axes=[2, 3], keepdims=0),
        helper.make_node("Sub", ["tap", "mu_b10"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axes1"], ["applicability"], keepdims=0),
        helper.make_node("MatMul", ["tap", "head_w"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "mu_b10"),
             numpy_helper.from_array(np.array([1], np.int64), "axes1"),
             numpy_helper.from_array(rng.normal(size=(3, 2)).astype(np.float32), "head_w")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2]),
         helper.make_tensor_value_info("activations", TensorProto.FLOAT, ["batch", 3, 4, 4]),
         helper.make_tensor_value_info("applicability", TensorProto.FLOAT, ["batch"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_graft_rewrites_only_the_score(tmp_path: Path) -> None:
    src, dst = tmp_path / "m.onnx", tmp_path / "grafted.onnx"
    _tiny_checked_graph(src)
    w, b, t_d, z_t = np.array([0.5, -1.0, 2.0]), 0.3, 2.5, 0.7
    graft_onnx(src, dst, "b10", w, b, t_d, z_t)
    x = np.random.default_rng(3).normal(size=(5, 3, 4, 4)).astype(np.float32)
    old = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    new = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_array_equal(old[0], new[0])
    np.testing.assert_array_equal(old[1], new[1])
    tap = x.mean(axis=(2, 3)).astype(np.float64)
    np.testing.assert_allclose(new[2], combined(old[2], tap @ w + b, t_d, z_t), rtol=1e-5, atol=1e-5)
    assert not np.allclose(new[2], old[2])
    with pytest.raises(ValueError, match="already"):
        graft_onnx(dst, tmp_path / "twice.onnx", "b10", w, b, t_d, z_t)
    with pytest.raises(ValueError, match="no v2 applicability tap"):
        graft_onnx(src, tmp_path / "other.onnx", "b14", w, b, t_d, z_t)

"""Grad-CAM++ from exported activations against the ``grad-cam`` package on the same model."""

from __future__ import annotations


import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from tests.inference.gradcam_reference import load_grad_cam
from tests.inference.tiny_models import TinyClassifier, export_onnx
from viewer.core.preprocess import resize_to_image
from viewer.inference.gradcam import cam_to_image, gradcam, gradcam_plusplus, normalise_cam

SIZE = 64


class _LogitsOnly(nn.Module):
    """The package wants a model that returns the logits tensor only."""

    def __init__(self, inner: TinyClassifier) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(7)
    model = TinyClassifier(3, channels=24).eval()
    path = tmp_path_factory.mktemp("gc") / "clf.onnx"
    export_onnx(model, path, ["logits", "activations"], size=SIZE)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    # A smooth image with structure so the map is not flat.
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    x = (np.sin(6 * xx) * np.cos(4 * yy) + 0.3 * rng.standard_normal((SIZE, SIZE)))
    x = x.astype(np.float32)[None, None]
    logits, acts = sess.run(["logits", "activations"], {"input": x})
    weight = model.head.weight.detach().numpy()
    return model, x, logits[0], acts[0], weight


def _package_map(model: TinyClassifier, x: np.ndarray, cls: int, method: str) -> np.ndarray:
    try:
        gc = load_grad_cam()
    except ImportError as exc:
        pytest.skip(f"grad-cam package unavailable: {exc}")
    wrapped = _LogitsOnly(model).eval()
    cam_cls = gc.GradCAMPlusPlus if method == "++" else gc.GradCAM
    with cam_cls(model=wrapped, target_layers=[model.features[-1]]) as cam:
        out = cam(input_tensor=torch.from_numpy(x), targets=[gc.ClassifierOutputTarget(cls)])
    return out[0]


def test_activations_reproduce_logits(setup) -> None:
    """The head weight in the manifest and the exported activations give the logits back."""
    model, _, logits, acts, weight = setup
    pooled = acts.reshape(acts.shape[0], -1).mean(axis=1)
    bias = model.head.bias.detach().numpy()
    np.testing.assert_allclose(weight @ pooled + bias, logits, atol=1e-5)


@pytest.mark.parametrize("cls", [0, 1, 2])
def test_matches_grad_cam_package(setup, cls: int) -> None:
    model, x, _, acts, weight = setup
    ours = cam_to_image(gradcam_plusplus(acts, weight, cls), (SIZE, SIZE))
    ref = _package_map(model, x, cls, "++")
    assert ref.shape == ours.shape == (SIZE, SIZE)
    assert ref.max() > 0.5  # a real, non-degenerate map
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_plain_grad_cam_matches_package_and_differs_from_plus_plus(setup) -> None:
    model, x, _, acts, weight = setup
    plain = cam_to_image(gradcam(acts, weight, 1), (SIZE, SIZE))
    np.testing.assert_allclose(plain, _package_map(model, x, 1, "plain"), atol=1e-4)
    plus = cam_to_image(gradcam_plusplus(acts, weight, 1), (SIZE, SIZE))
    assert np.abs(plus - plain).max() > 0.05


def test_eps_matters_and_closed_form_without_eps(setup) -> None:
    """With eps=0 the weights are ReLU(W_ck) / (2 + p_k W_ck) up to a constant (docs/MODELS.md)."""
    _, _, _, acts, weight = setup
    c, h, w = acts.shape
    p = acts.reshape(c, -1).mean(axis=1)
    wk = np.maximum(weight[1], 0) / (2 + p * weight[1])
    closed = normalise_cam(np.maximum(np.tensordot(wk, acts, axes=1), 0))
    no_eps = normalise_cam(gradcam_plusplus(acts, weight, 1, eps=0.0))
    np.testing.assert_allclose(no_eps, closed, atol=1e-5)


def test_all_classes_at_once_and_image_resize(setup) -> None:
    _, _, _, acts, weight = setup
    every = gradcam_plusplus(acts, weight)
    assert every.shape == (3, *acts.shape[1:])
    for k in range(3):
        np.testing.assert_allclose(every[k], gradcam_plusplus(acts, weight, k), rtol=1e-6)
    heat = cam_to_image(every[0], (100, 130))
    assert heat.shape == (100, 130) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0 and heat.max() > 0.9
    # Built at the input size then back-projected: the package's map, resized.
    via_input = cam_to_image(every[0], (100, 130), (SIZE, SIZE))
    np.testing.assert_allclose(via_input, resize_to_image(cam_to_image(every[0], (SIZE, SIZE)),
                                                          (100, 130)), atol=1e-6)
    assert np.abs(via_input - heat).max() < 0.05  # both are faithful pictures of one map


def test_shape_mismatch_raises(setup) -> None:
    _, _, _, acts, weight = setup
    with pytest.raises(ValueError):
        gradcam_plusplus(acts[:5], weight, 0)

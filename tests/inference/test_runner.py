"""Sessions, providers, pre/postprocessing and cancellation with real onnxruntime."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.inference.tiny_models import tiny_models_dir  # noqa: F401
from viewer.core.preprocess import prepare_input
from viewer.inference.postprocess import POSTPROCESSORS, energy_score, softmax
from viewer.inference.registry import ModelRegistry
from viewer.inference.runner import RunTerminated, run_model
from viewer.inference.sessions import SessionPool, cuda_status, session_options


@pytest.fixture(scope="module")
def registry(tiny_models_dir: Path) -> ModelRegistry:
    return ModelRegistry([tiny_models_dir])


def _image(rows: int = 90, cols: int = 120) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols]
    return ((np.sin(xx / 9.0) + np.cos(yy / 7.0) + 2) * 60).astype(np.uint8)


def test_session_options_are_explicit() -> None:
    opts = session_options(3)
    assert opts.intra_op_num_threads == 3 and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_pool_shares_one_session_per_model_and_reports_provider(registry: ModelRegistry) -> None:
    pool = SessionPool(1)
    m = registry.get("pneumonia")
    a, b = pool.get(m.onnx_path), pool.get(m.onnx_path)
    assert a is b
    assert a.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert a.session.get_providers()[0] == a.provider
    can_try, why = cuda_status()
    if a.provider == "CPUExecutionProvider" and "CUDAExecutionProvider" in ort.get_available_providers():
        assert a.message  # the user is told why the GPU is not used
    assert pool.providers() == {m.onnx_path.name: a.provider}
    assert isinstance(can_try, bool) and (why is None or isinstance(why, str))


def test_classifier_outputs_calibrated_probabilities(registry: ModelRegistry) -> None:
    m = registry.get("pneumonia")
    sess = SessionPool(1).get(m.onnx_path).session
    img = _image()
    out = run_model(sess, m, img)
    raw_logits = sess.run(["logits"], {"input": prepare_input(img, m.input_spec)})[0][0]
    np.testing.assert_allclose(out.probabilities, softmax(raw_logits / 1.5), rtol=1e-6)
    assert out.energy == pytest.approx(energy_score(raw_logits))
    assert out.activations.shape == (16, 8, 8)
    assert out.view.shape == (64, 64) and out.view.dtype == np.uint8
    assert set(out.timings_ms) == {"preprocess", "run", "postprocess"}


def test_segmentation_mask_at_image_resolution(registry: ModelRegistry) -> None:
    m = registry.get("lungs")
    sess = SessionPool(1).get(m.onnx_path).session
    img = _image(100, 150)
    out = run_model(sess, m, img)
    assert out.mask.shape == (100, 150) and out.mask.dtype == np.uint8
    assert set(np.unique(out.mask)) <= {0, 1}
    logits = sess.run(["mask_logits"], {"input": prepare_input(img, m.input_spec)})[0]
    expected = POSTPROCESSORS["segmentation_logits"](logits, m, (100, 150))[0]
    np.testing.assert_array_equal(out.mask, expected)
    # As in the training evaluation: logits resized bilinearly to the image, then the sigmoid
    # thresholded (not a model-resolution mask enlarged with staircase borders).
    import cv2

    full = cv2.resize(logits[0, 0].astype(np.float32), (150, 100), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out.mask, (1 / (1 + np.exp(-full.astype(np.float64))) > 0.5))
    staircase = cv2.resize((logits[0, 0] > 0).astype(np.uint8), (150, 100), interpolation=cv2.INTER_NEAREST)
    assert not np.array_equal(out.mask, staircase) or out.mask.all() or not out.mask.any()


def test_rgb_input_is_converted_to_grey(registry: ModelRegistry) -> None:
    m = registry.get("pneumonia")
    sess = SessionPool(1).get(m.onnx_path).session
    grey = _image()
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    np.testing.assert_allclose(run_model(sess, m, rgb).probabilities,
                               run_model(sess, m, grey).probabilities)


def test_terminate_flag_cancels_a_run(registry: ModelRegistry) -> None:
    m = registry.get("pneumonia")
    sess = SessionPool(1).get(m.onnx_path).session
    ro = ort.RunOptions()
    ro.terminate = True
    with pytest.raises(RunTerminated):
        run_model(sess, m, _image(), ro)


def test_sessions_are_usable_from_several_threads(registry: ModelRegistry) -> None:
    m = registry.get("pneumonia")
    sess = SessionPool(1).get(m.onnx_path).session
    img = _image()
    expected = run_model(sess, m, img).probabilities
    results: list[np.ndarray] = []

    def work() -> None:
        for _ in range(5):
            results.append(run_model(sess, m, img).probabilities)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 15
    for r in results:
        np.testing.assert_allclose(r, expected)

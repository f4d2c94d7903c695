"""Analysis service with real onnxruntime on tiny generated models."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.inference.tiny_models import (  # noqa: F401
    tiny_models_dir, tiny_models_knee, tiny_models_unsure,
)
from viewer.core.overlay import heatmap_mass_inside
from viewer.inference.gradcam import cam_to_image
from viewer.inference.registry import ModelRegistry
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_types import AnalysisInput, confidence_band
from viewer.services.tasks import CancelToken, Cancelled


def _input(seed: int = 0, rows: int = 120, cols: int = 160, **kw: object) -> AnalysisInput:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = (np.sin(xx / (5.0 + seed)) + np.cos(yy / 7.0) + 2) * 50 + rng.integers(0, 40, (rows, cols))
    return AnalysisInput(display=img.astype(np.uint8), image_id=f"img-{seed}",
                         source=f"/data/img{seed}.png", **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def service(tiny_models_dir: Path) -> AnalysisService:
    return AnalysisService(ModelRegistry([tiny_models_dir]), SessionPool(1))


def test_chest_image_runs_everything(service: AnalysisService) -> None:
    res = service.analyse(_input(body_part_examined="CHEST", view_position="PA"))
    assert [r.model_id for r in res.results] == ["body_region", "pneumonia", "lungs"]
    assert res.gate is not None and res.gate.region == "chest" and not res.gate.is_unknown
    assert (res.gate.body_part_examined, res.gate.view_position) == ("CHEST", "PA")
    clf = res.result("pneumonia")
    assert clf.status == "ok" and not clf.forced
    assert sum(clf.probabilities.values()) == pytest.approx(1.0)
    assert clf.label == ("pneumonia" if clf.probabilities["pneumonia"] >= 0.5 else "normal")
    assert clf.confidence == pytest.approx(clf.probabilities[clf.label])
    assert clf.band == confidence_band(clf.confidence, {"green": 0.9, "orange": 0.7})
    assert clf.threshold == 0.5 and clf.model_version == "0.0.1-test"
    assert clf.heatmap.shape == (120, 160) and clf.heatmap.dtype == np.float32
    assert clf.heatmap_label == "pneumonia"
    assert clf.model_view.shape == (64, 64)
    assert {"preprocess", "run", "postprocess", "gradcam"} <= set(clf.timings_ms)
    lungs = res.result("lungs")
    assert lungs.mask.shape == (120, 160)
    assert clf.heatmap_in_lung == pytest.approx(heatmap_mass_inside(clf.heatmap, lungs.mask))
    assert res.timings_ms["total"] > 0


def test_heatmap_is_grad_cam_plus_plus_of_the_positive_class(service: AnalysisService) -> None:
    inp = _input(3)
    res = service.analyse(inp)
    clf = res.result("pneumonia")
    m = service.registry.get("pneumonia")
    # Same map from the stored raw cams, and another class on request.
    np.testing.assert_allclose(clf.heatmap, cam_to_image(clf.cams[1], (120, 160), (64, 64)))
    # The map at the model input grid is the package's, back-projected bilinearly.
    assert clf.heatmap.min() >= 0.0 and clf.heatmap.max() <= 1.0 and clf.heatmap.max() > 0.9
    other = service.heatmap_for(clf, "normal", (60, 80))
    assert other.shape == (60, 80)
    assert clf.cams.shape[0] == len(m.labels)


def test_label_follows_the_threshold(tiny_models_dir: Path, tmp_path: Path) -> None:
    from tests.inference.tiny_models import make_gate, make_classifier

    folder = tmp_path / "t"
    folder.mkdir()
    make_gate(folder)
    make_classifier(folder, threshold=0.01)  # everything is "pneumonia"
    res = AnalysisService(ModelRegistry([folder])).analyse(_input())
    clf = res.result("pneumonia")
    assert clf.label == "pneumonia" and clf.threshold == 0.01


def test_knee_gate_puts_chest_models_out_of_scope(tiny_models_knee: Path) -> None:
    svc = AnalysisService(ModelRegistry([tiny_models_knee]))
    res = svc.analyse(_input())
    assert res.gate.region == "knee"
    for model_id in ("pneumonia", "lungs"):
        r = res.result(model_id)
        assert r.status == "out_of_scope"
        assert r.reason.startswith("not analysed: outside the model's intended input")
        assert r.probabilities == {} and r.mask is None and r.heatmap is None


def test_force_runs_anyway_and_marks_forced(tiny_models_knee: Path) -> None:
    svc = AnalysisService(ModelRegistry([tiny_models_knee]))
    res = svc.analyse(_input(), force={"pneumonia"})
    assert res.result("pneumonia").status == "ok" and res.result("pneumonia").forced
    assert res.result("lungs").status == "out_of_scope"
    res = svc.analyse(_input(), force=True)
    assert all(r.forced for r in res.results if r.model_id != "body_region")
    assert not res.result("body_region").forced


def test_unsure_gate_means_unknown_and_out_of_scope(tiny_models_unsure: Path) -> None:
    res = AnalysisService(ModelRegistry([tiny_models_unsure])).analyse(_input())
    assert res.gate.region == "unknown" and res.gate.is_unknown
    assert "energy" in res.gate.unknown_reason or "confidence" in res.gate.unknown_reason
    assert res.result("pneumonia").status == "out_of_scope"
    gate_row = res.result("body_region")
    assert gate_row.label == "unknown" and gate_row.band is None and gate_row.confidence is None
    assert gate_row.reason == res.gate.unknown_reason and len(gate_row.probabilities) == 5


def test_model_selection_and_no_gate_message(tiny_models_dir: Path, tmp_path: Path) -> None:
    svc = AnalysisService(ModelRegistry([tiny_models_dir]))
    res = svc.analyse(_input(), models={"lungs"})
    assert [r.model_id for r in res.results] == ["body_region", "lungs"]
    assert [r.model_id for r in svc.analyse(_input(), models={"body_region"}).results] == [
        "body_region"]
    folder = tmp_path / "nogate"
    folder.mkdir()
    for f in tiny_models_dir.iterdir():
        if not f.name.startswith("body_region"):
            (folder / f.name).write_bytes(f.read_bytes())
    res = AnalysisService(ModelRegistry([folder])).analyse(_input())
    assert res.gate is None and res.result("pneumonia").status == "ok"
    assert any("no body-region model" in m for m in res.messages)


def test_a_failing_model_is_an_error_not_a_crash(tiny_models_dir: Path, tmp_path: Path) -> None:
    import json

    folder = tmp_path / "bad"
    folder.mkdir()
    for f in tiny_models_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    raw = json.loads((folder / "lungs.json").read_text())
    raw["input"]["name"] = "wrong_input_name"
    (folder / "lungs.json").write_text(json.dumps(raw))
    res = AnalysisService(ModelRegistry([folder])).analyse(_input())
    assert res.result("lungs").status == "error" and "wrong_input_name" in res.result("lungs").reason
    assert res.result("pneumonia").status == "ok" and res.result("pneumonia").heatmap_in_lung is None


def test_cancelled_before_start_raises(service: AnalysisService) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        service.analyse(_input(), cancel=token)


def test_batch_streams_results_with_bounded_in_flight(service: AnalysisService) -> None:
    items = list(range(12))
    live = 0
    peak = 0
    lock = threading.Lock()

    def load(i: int) -> AnalysisInput:
        nonlocal live, peak
        with lock:
            live += 1
            peak = max(peak, live)
        return _input(i % 3)

    seen: list[int] = []
    progress: list[tuple[int, int]] = []

    def on_result(item: int, value: object) -> None:
        nonlocal live
        with lock:
            live -= 1
        assert not isinstance(value, BaseException)
        assert value.result("pneumonia").heatmap is None  # arrays dropped
        seen.append(item)

    with ThreadPoolExecutor(2) as pool:
        summary = service.analyse_batch(items, load, pool, on_result,
                                        progress=lambda d, t: progress.append((d, t)),
                                        in_flight=3, keep_arrays=False)
    assert seen == items and summary.done == 12 and summary.errors == 0
    assert not summary.cancelled
    assert peak <= 4  # in_flight plus the one being handed over
    assert progress[-1] == (12, 12)


def test_batch_reports_load_errors_per_item(service: AnalysisService) -> None:
    def load(i: int) -> AnalysisInput:
        if i == 1:
            raise OSError("unreadable")
        return _input(i)

    outcomes: dict[int, object] = {}
    with ThreadPoolExecutor(2) as pool:
        summary = service.analyse_batch([0, 1, 2], load, pool, outcomes.__setitem__)
    assert isinstance(outcomes[1], OSError) and summary.errors == 1
    assert outcomes[0].result("pneumonia").status == "ok"


def test_batch_cancel_stops_promptly(service: AnalysisService) -> None:
    token = CancelToken()
    seen: list[int] = []

    def on_result(item: int, value: object) -> None:
        seen.append(item)
        if len(seen) == 2:
            token.cancel()

    with ThreadPoolExecutor(2) as pool:
        t0 = time.perf_counter()
        summary = service.analyse_batch(list(range(200)), lambda i: _input(i % 3), pool,
                                        on_result, cancel=token, in_flight=2)
    assert summary.cancelled and summary.done < 10
    assert time.perf_counter() - t0 < 5


def test_no_threads_left_behind(service: AnalysisService) -> None:
    before = threading.active_count()
    token = CancelToken()
    t0 = time.perf_counter()
    service.analyse(_input(), cancel=token)
    with_token = time.perf_counter() - t0
    assert threading.active_count() == before
    with ThreadPoolExecutor(2) as pool:
        list(service.iter_batch([0, 1, 2], lambda i: _input(i), pool, cancel=token))
    assert threading.active_count() == before
    assert with_token < 5.0
    with pytest.raises(TypeError):
        with ThreadPoolExecutor(1) as pool:
            list(service.iter_batch([0], lambda i: _input(i), pool, colour="blue"))

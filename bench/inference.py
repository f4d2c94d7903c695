"""Inference benchmark: one radiograph end to end, Grad-CAM++ against the grad-cam package, and a
batch of N images with bounded memory.

Run: ``.venv/bin/python bench/inference.py [--n 1000] [--runs 30] [--workers 2] [--threads 1]``.

Goals (2-core CPU): one chest radiograph from file to all results (gate + chest classifier +
lungs + Grad-CAM++) < 250 ms; Grad-CAM++ < 30 ms and >= 10x faster than the ``grad-cam``
package on the same model; a batch >= 6 images/s end to end (scan, decode, display pipeline,
all models, CSV) with bounded memory (peak RSS printed).

Uses the committed models in ``models/`` when the gate, a chest classifier and the lung model
are there; otherwise says so and uses stand-ins generated into a temporary folder: the training
architectures (``training.nets``, random weights) at the training input sizes, or, if those are
not importable, the tiny test models. The batch images are copies of real JPEGs from
``../shared/data`` in a temporary folder (deleted afterwards), cycled to N files.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = (REPO / ".." / "shared" / "data").resolve()

from viewer.inference.registry import ModelRegistry  # noqa: E402
from viewer.inference.sessions import SessionPool  # noqa: E402
from viewer.services.analysis import AnalysisService  # noqa: E402
from viewer.services.analysis_inputs import input_from_record  # noqa: E402
from viewer.services.export import CsvResultWriter  # noqa: E402
from viewer.services.library import scan_paths  # noqa: E402


def _median_ms(samples: list[float]) -> str:
    s = sorted(samples)
    return f"median {statistics.median(s) * 1e3:7.1f} ms  p90 {s[int(0.9 * (len(s) - 1))] * 1e3:7.1f} ms"


# ---- models --------------------------------------------------------------------------------
def _write_manifest(folder: Path, model_id: str, size: int, body: dict) -> None:
    onnx = folder / f"{model_id}.onnx"
    manifest = {"schema": 1, "id": model_id, "version": "bench-standin", "name": model_id,
                "file": onnx.name, "sha256": hashlib.sha256(onnx.read_bytes()).hexdigest(),
                "input": {"name": "input", "size": [size, size], "channels": 1, "mean": 0.5,
                          "std": 0.25}, **body}
    (folder / f"{model_id}.json").write_text(json.dumps(manifest))


def _recipe_nets():
    """(gate, classifier, lungs) recipes of the training code, or None if not importable."""
    try:
        from training.recipes import get
        return get("body_region"), get("pneumonia"), get("lungs")
    except Exception:
        return None


def _export(model, path: Path, size: int, outs: list[str]) -> None:
    import warnings

    import torch

    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, size, size),), str(path),
                          input_names=["input"], output_names=outs, opset_version=17,
                          dynamo=False)


def make_standins(folder: Path) -> str:
    """Generate gate + chest classifier + lungs with the training architectures."""
    import torch

    recipes = _recipe_nets()
    if recipes is None:
        from tests.inference.tiny_models import make_model_set

        make_model_set(folder)
        return "tiny test models (training.recipes not importable)"
    torch.manual_seed(0)
    cls_outs = [{"name": "logits", "kind": "logits"}, {"name": "activations", "kind": "activations"}]
    gate_r, cls_r, seg_r = recipes
    for r in (gate_r, cls_r):
        net = r.build()
        _export(net, folder / f"{r.model_id}.onnx", r.spec.height, ["logits", "activations"])
        body = {"task": "classification", "labels": list(r.labels), "outputs": cls_outs,
                "calibration": {"temperature": 1.3},
                "gradcam": {"weight": net.head.weight.detach().tolist()}}
        if r is gate_r:
            body.update(gate=True, threshold=None,
                        ood={"score": "energy", "threshold": -3.1, "confidence_floor": 0.6})
        else:
            body.update(positive_label=r.positive, threshold=0.5,
                        applies_to={"body_region": ["chest"]})
        _write_manifest(folder, r.model_id, r.spec.height, body)
    _export(seg_r.build(), folder / "lungs.onnx", seg_r.spec.height, ["mask_logits"])
    _write_manifest(folder, "lungs", seg_r.spec.height, {
        "task": "segmentation", "labels": ["background", "lung"], "threshold": 0.5,
        "outputs": [{"name": "mask_logits", "kind": "segmentation_logits"}],
        "applies_to": {"body_region": ["chest"]}})
    return (f"stand-ins with the training architectures and random weights: "
            f"{gate_r.model_id}/{cls_r.model_id} {cls_r.spec.height} px, lungs {seg_r.spec.height} px")


def pick_registry(tmp: Path) -> tuple[ModelRegistry, str]:
    committed = ModelRegistry([REPO / "models"])
    have_gate = committed.gate() is not None
    have_cls = any(m.task == "classification" and not m.gate and m.gradcam_weight
                   for m in committed.available())
    have_seg = any(m.task == "segmentation" for m in committed.available())
    if have_gate and have_cls and have_seg:
        ids = ", ".join(f"{m.id} {m.version}" for m in committed.available())
        return committed, f"committed models: {ids}"
    folder = tmp / "standin-models"
    folder.mkdir()
    what = make_standins(folder)
    return ModelRegistry([folder]), f"models/ has no complete set yet -> {what}"


# ---- 1. single image -----------------------------------------------------------------------
def bench_single(service: AnalysisService, path: Path, runs: int) -> None:
    times: list[float] = []
    stages: dict[str, list[float]] = {}
    for i in range(runs + 3):
        t0 = time.perf_counter()
        record = scan_paths([str(path)], workers=1).index.records()[0]
        t1 = time.perf_counter()
        inp = input_from_record(record)
        t2 = time.perf_counter()
        res = service.analyse(inp, force=True)
        t3 = time.perf_counter()
        if i >= 3:  # warm-up excluded
            times.append(t3 - t0)
            stages.setdefault("scan header", []).append(t1 - t0)
            stages.setdefault("decode + display", []).append(t2 - t1)
            for r in res.results:
                for k, v in r.timings_ms.items():
                    stages.setdefault(f"{r.model_id}.{k}", []).append(v / 1e3)
    ran = ", ".join(f"{r.model_id}={r.status}" for r in res.results)
    print(f"  {path.name} ({inp.display.shape[1]}x{inp.display.shape[0]}): {_median_ms(times)}"
          f"   [{ran}; forced where out of scope]")
    for name, vals in stages.items():
        print(f"      {name:28s} {statistics.median(vals) * 1e3:7.2f} ms")


# ---- 2. Grad-CAM++ vs the package ----------------------------------------------------------
def _trained_classifier():
    """The committed chest classifier rebuilt in torch from its local training checkpoint
    (``training/runs/<id>/best.pt``, not committed) when its head matches the manifest, with a
    real chest radiograph as input; else None."""
    import torch

    from viewer.core.preprocess import prepare_input

    reg = ModelRegistry([REPO / "models"])
    for m in reg.available():
        ckpt = REPO / "training" / "runs" / m.id / "best.pt"
        if m.gate or m.task != "classification" or m.gradcam_weight is None or not ckpt.is_file():
            continue
        try:
            from training.recipes import get
            net = get(m.id).build()
            net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["model"])
        except Exception:
            continue
        if not np.allclose(net.head.weight.detach().numpy(), np.asarray(m.gradcam_weight), atol=1e-6):
            continue
        img = DATA / "pneumonia" / "originals" / "PNEUMONIA"
        first = next(iter(sorted(img.glob("*.jpeg"))), None)
        if first is None:
            continue
        import cv2
        x = prepare_input(cv2.imread(str(first), cv2.IMREAD_GRAYSCALE), m.input_spec)
        return (net.eval(), m.input_spec.height,
                f"trained {m.id!r} {m.version} (local checkpoint) on {first.name}", x)
    return None


def bench_gradcam(runs: int, image_shape: tuple[int, int]) -> None:
    import onnxruntime as ort
    import torch

    from tests.inference.gradcam_reference import load_grad_cam
    from viewer.inference.gradcam import cam_to_image, gradcam_plusplus
    from viewer.inference.sessions import session_options

    recipes = _recipe_nets()
    real = _trained_classifier()
    x = None
    if real is not None:
        net, size, label, x = real
    elif recipes is not None:
        r = recipes[1]
        net, size = r.build().eval(), r.spec.height
        label = f"training architecture of {r.model_id!r} ({type(net).__name__}) at {size} px, random weights"
    else:
        from tests.inference.tiny_models import TinyClassifier
        net, size, label = TinyClassifier(2).eval(), 64, "tiny classifier at 64 px"
    torch.manual_seed(0)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        _export(net, path, size, ["logits", "activations"])
        sess = ort.InferenceSession(str(path), session_options(2), providers=["CPUExecutionProvider"])
    if x is None:
        x = np.random.default_rng(0).standard_normal((1, 1, size, size)).astype(np.float32)
    _, acts = sess.run(["logits", "activations"], {"input": x})
    weight = net.head.weight.detach().numpy()

    def ours(shape: tuple[int, int]) -> list[float]:
        out = []
        for i in range(runs + 3):
            t0 = time.perf_counter()
            cam_to_image(gradcam_plusplus(acts, weight, 1), shape, (size, size))
            if i >= 3:
                out.append(time.perf_counter() - t0)
        return out

    gc = load_grad_cam()

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.inner(t)[0]

    theirs: list[float] = []
    with gc.GradCAMPlusPlus(model=LogitsOnly(net).eval(), target_layers=[net.features]) as cam:
        xt = torch.from_numpy(x)
        for i in range(max(5, runs // 2) + 2):
            t0 = time.perf_counter()
            ref = cam(input_tensor=xt, targets=[gc.ClassifierOutputTarget(1)])[0]
            if i >= 2:
                theirs.append(time.perf_counter() - t0)
    same = cam_to_image(gradcam_plusplus(acts, weight, 1), (size, size))
    at_input, at_image = ours((size, size)), ours(image_shape)
    ratio = statistics.median(theirs) / statistics.median(at_input)
    print(f"  model: {label}; max |ours - package| = {np.abs(same - ref).max():.1e}")
    print(f"  grad-cam package GradCAMPlusPlus, map at {size}x{size} (autograd): {_median_ms(theirs)}")
    print(f"  viewer Grad-CAM++ (numpy), map at {size}x{size}:               {_median_ms(at_input)}"
          f"  -> {ratio:.0f}x faster")
    print(f"  viewer Grad-CAM++ (numpy), same map back-projected to a {image_shape[1]}x{image_shape[0]} image: "
          f"{_median_ms(at_image)}   (goal < 30 ms, >= 10x)")


# ---- 3. batch ------------------------------------------------------------------------------
def make_batch(folder: Path, n: int) -> None:
    pools = [sorted((DATA / "pneumonia" / "originals").rglob("*.jpeg")),
             sorted((DATA / "covid").rglob("*.jpg"))]
    sources = [p for p in itertools.chain.from_iterable(itertools.zip_longest(*pools)) if p]
    if not sources:
        raise SystemExit(f"no JPEGs found under {DATA}")
    for i, src in zip(range(n), itertools.cycle(sources)):
        shutil.copyfile(src, folder / f"img{i:05d}{src.suffix}")


class RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process()
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self.stop.wait(0.05)


def bench_batch(service: AnalysisService, n: int, workers: int, tmp: Path) -> None:
    folder = tmp / "batch"
    folder.mkdir()
    make_batch(folder, n)
    sampler = RssSampler()
    sampler.start()
    rss_start = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    records = scan_paths([str(folder)]).index.records()
    t_scan = time.perf_counter() - t0
    checkpoints: list[tuple[int, float]] = []
    statuses: dict[str, int] = {}

    def progress(done: int, total: int) -> None:
        if done in (total // 10, total // 2, total):
            checkpoints.append((done, psutil.Process().memory_info().rss / 2**20))

    with CsvResultWriter(tmp / "batch.csv") as out, ThreadPoolExecutor(workers) as pool:
        # force=True: every model runs on every image (the worst case; stand-in gates with
        # random weights would otherwise put most images out of scope).
        for _, value in service.iter_batch(records, input_from_record, pool, progress=progress,
                                           in_flight=2 * workers, keep_arrays=False, force=True):
            if isinstance(value, BaseException):
                statuses["load error"] = statuses.get("load error", 0) + 1
                continue
            out.write_result(value)
            for r in value.results:
                statuses[r.status] = statuses.get(r.status, 0) + 1
    elapsed = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    print(f"  {len(records)} images (copies of real JPEGs), {workers} worker(s): "
          f"{elapsed:.1f} s incl. scan {t_scan:.1f} s -> {len(records) / elapsed:.1f} images/s")
    print(f"  outcomes: {statuses}")
    print(f"  RSS: start {rss_start / 2**20:.0f} MiB, "
          + ", ".join(f"after {d} {m:.0f} MiB" for d, m in checkpoints)
          + f"; peak {sampler.peak / 2**20:.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="batch size (default 1000)")
    ap.add_argument("--runs", type=int, default=30, help="repetitions for latency figures")
    ap.add_argument("--workers", type=int, default=2, help="batch worker threads")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--skip-batch", action="store_true")
    args = ap.parse_args(argv)
    print(f"CPU: {psutil.cpu_count()} logical cores, load average {psutil.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="radview-bench-") as tmp_name:
        tmp = Path(tmp_name)
        registry, what = pick_registry(tmp)
        print(f"Models: {what}")
        single = AnalysisService(registry, SessionPool(2))
        print("\n1. One radiograph, file -> all results (2 intra-op threads; goal < 250 ms):")
        for path in (DATA / "pneumonia" / "originals" / "NORMAL" / "IM-0117-0001.jpeg",
                     DATA / "dicom" / "RG2_RLE.dcm"):
            if path.is_file():
                bench_single(single, path, args.runs)
        print("\n2. Grad-CAM++ vs the grad-cam package:")
        bench_gradcam(args.runs, (1760, 2140))
        if not args.skip_batch:
            print(f"\n3. Batch (goal >= 6 images/s, bounded memory; {args.threads} intra-op thread(s)):")
            batch = AnalysisService(registry, SessionPool(args.threads))
            bench_batch(batch, args.n, args.workers, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A second applicability term: "looks like the other population", learnt, inside the graph.

The v2 check (:mod:`training.applicability`) is a distance from the model's own training data.
For the covid model it refused only two thirds of children's films (issue 14: the goal is a
covid finding on at most 5 % of them): a child's chest is far from an adult's in some
directions and close in others, and a distance fitted on adults alone does not know which.
This module adds a term that does, by outlier exposure:

* on one tapped layer's features ``f`` (the v2 check's own layer: the per-channel mean and
  standard deviation of a Lite0 block, flip-averaged), a logistic regression separates the
  model's TRAINING split (inside, 0) from the other population's TRAINING and VALIDATION splits
  (outside, 1); L2-penalised, features standardised on the inside images (folded into ``w``);
  its logit is ``z = f . w + b``;
* ``z_t``: the ``1 - POP_REFUSE`` quantile of ``z`` on the model's own validation split (the
  term alone refuses ``POP_REFUSE`` of it);
* ``t_d``: the distance threshold, lowered so that the two together refuse ``1 - KEEP`` of the
  own validation split (the same stated acceptance as before);
* the score the graph outputs is ``s = max(d / t_d, 1 + z - z_t)``, ``d`` the v2 distance, and
  the manifest threshold is 1: refused when either term is past its threshold.

The other population's TEST split, ``external_records`` of it (for the covid model: the
official Kermany test images in ``pneumonia/external_val``), the own test split and every real
DICOM file are only measured. It is applied to an exported ONNX graph (:func:`graft`), so it
runs after ``python -m training export`` for recipes with ``population_check`` and, with
``python -m training population <model>``, on the committed model whose torch weights are gone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from .common import DATA, MODELS, RUNS, get_logger
from .recipes import Recipe

POP_REFUSE = 0.01  # share of the own validation split the population term refuses by itself
L2 = 1e-2  # penalty on the standardised weights (mean loss + L2 / 2 |w|^2)
FIT_PER_LABEL = 1000  # other-population training images per label (seeded draw)
FIT_SEED = 1  # the draw for fitting; the reported draw is evaluate._draw's seed 0 of its test split
REPORT_PER_LABEL = 400


def fit_logistic(inside: np.ndarray, outside: np.ndarray, l2: float = L2) -> tuple[np.ndarray, float]:
    """``(w, b)`` on the raw features: logit > 0 leans "outside". Classes weighted equally."""
    import torch

    xi, xo = np.asarray(inside, np.float64), np.asarray(outside, np.float64)
    mu, sd = xi.mean(0), xi.std(0) + 1e-6
    x = torch.from_numpy(np.concatenate([(xi - mu) / sd, (xo - mu) / sd]))
    y = torch.from_numpy(np.r_[np.zeros(len(xi)), np.ones(len(xo))])
    weight = torch.where(y > 0, len(xi) / max(1, len(xo)), 1.0).double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, weight=weight) \
            + l2 * (w * w).sum() / 2
        loss.backward()
        return loss

    opt.step(closure)
    ws = w.detach().numpy() / sd
    return ws, float(b.detach()) - float(mu @ ws)


def thresholds(dist_val: np.ndarray, z_val: np.ndarray, keep: float,
               pop_refuse: float = POP_REFUSE) -> tuple[float, float]:
    """``(t_d, z_t)``: the term alone refuses ``pop_refuse`` of validation, both ``1 - keep``."""
    z_t = float(np.quantile(z_val, 1.0 - pop_refuse))
    allowed = int(np.floor((1.0 - keep) * len(dist_val)))
    rest = np.sort(np.asarray(dist_val, np.float64)[z_val <= z_t])[::-1]
    if not len(rest):
        return 1.0, z_t
    spare = max(0, allowed - int((z_val > z_t).sum()))
    return max(float(rest[min(spare, len(rest) - 1)]), 1e-6), z_t


def combined(dist: np.ndarray, z: np.ndarray, t_d: float, z_t: float) -> np.ndarray:
    """The grafted score ``max(d / t_d, 1 + z - z_t)`` (refused above 1)."""
    return np.maximum(np.asarray(dist, np.float64) / t_d, 1.0 + np.asarray(z, np.float64) - z_t)


def _tap_of(graph: Any, layer: str) -> str:
    """The tensor the v2 check scores for ``layer`` (the input of ``Sub(., mu_<layer>)``)."""
    for node in graph.node:
        if node.op_type == "Sub" and len(node.input) == 2 and node.input[1] == f"mu_{layer}":
            return str(node.input[0])
    raise ValueError(f"no v2 applicability tap for layer {layer!r} in the graph")


def tapped_session(onnx_path: Path, layer: str) -> tuple[Any, list[str]]:
    """An onnxruntime session over the graph with the layer's features exposed as an output."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(str(onnx_path))
    tap = _tap_of(model.graph, layer)
    model.graph.output.append(helper.make_tensor_value_info(tap, TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess, ["logits", "applicability", tap]


def graft_onnx(src: Path, dst: Path, layer: str, w: np.ndarray, b: float, t_d: float, z_t: float) -> None:
    """Rewrite ``applicability`` as ``max(d / t_d, 1 + f.w + b - z_t)``; nothing else changes."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    if any(i.name == "population_w" for i in g.initializer):
        raise ValueError(f"{src} already has the population term")
    tap = _tap_of(g, layer)
    producer = [n for n in g.node if "applicability" in n.output]
    if len(producer) != 1:
        raise ValueError(f"{src}: no single node computes 'applicability'")
    out = list(producer[0].output)
    out[out.index("applicability")] = "applicability_distance"
    del producer[0].output[:]
    producer[0].output.extend(out)
    g.initializer.extend([
        numpy_helper.from_array(np.asarray(w, np.float32), "population_w"),
        numpy_helper.from_array(np.asarray(b - z_t + 1.0, np.float32), "population_offset"),
        numpy_helper.from_array(np.asarray(1.0 / t_d, np.float32), "distance_scale")])
    g.node.extend([
        helper.make_node("MatMul", [tap, "population_w"], ["population_fw"]),
        helper.make_node("Add", ["population_fw", "population_offset"], ["population_term"]),
        helper.make_node("Mul", ["applicability_distance", "distance_scale"], ["distance_term"]),
        helper.make_node("Max", ["distance_term", "population_term"], ["applicability"]),
    ])
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def _outputs(sess: Any, names: list[str], recipe: Recipe, images: Any
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, v2 distance and layer features of display images (the viewer's preprocessing)."""
    from .evaluate import image_batches

    got: list[list[np.ndarray]] = [[], [], []]
    for x in image_batches(images, recipe.spec):
        for acc, v in zip(got, sess.run(names, {"input": x.astype(np.float32)})):
            acc.append(v)
    if not got[0]:
        raise ValueError("no images")
    lg, dist, feats = (np.concatenate(a) for a in got)
    return lg, dist.astype(np.float64), feats.astype(np.float64)


def _population_records(recipe: Recipe, limit: int | None
                        ) -> tuple[str, str, dict[str, list[dict[str, Any]]]]:
    """(other population's name, its data set, the record sets the term is fitted and measured on)."""
    from .data import external_records
    from .evaluate import OTHER_POPULATION, draw_records, split_records

    name, dataset = OTHER_POPULATION[recipe.model_id]
    sets = {s: split_records(recipe, s, limit) for s in ("train", "val", "test")}
    sets["other_fit"] = draw_records(dataset, ("train", "val"), FIT_PER_LABEL, limit, FIT_SEED)
    sets["other_report"] = draw_records(dataset, ("test",), REPORT_PER_LABEL, limit)
    ext = external_records(dataset)
    if ext:
        sets["other_external"] = ext[:limit] if limit else ext
    return name, dataset, sets


def fit_and_measure(recipe: Recipe, onnx_path: Path, temperature: float, threshold: float,
                    layer: str, limit: int | None = None, reports: bool = True,
                    data: Path = DATA) -> dict[str, Any]:
    """Fit the term on ``onnx_path``'s features, set both thresholds, measure every rate."""
    from .applicability import KEEP
    from .calibration import softmax
    from .data import read_image

    sess, names = tapped_session(onnx_path, layer)
    name, dataset, sets = _population_records(recipe, limit)
    out = {k: _outputs(sess, names, recipe, (read_image(data / r["path"]) for r in recs))
           for k, recs in sets.items()}
    w, b = fit_logistic(out["train"][2], out["other_fit"][2])
    z = {k: v[2] @ w + b for k, v in out.items()}
    t_d, z_t = thresholds(out["val"][1], z["val"], KEEP)
    pos = recipe.labels.index(str(recipe.positive))

    def verdicts(key: str) -> tuple[np.ndarray, np.ndarray]:
        lg, dist, _ = out[key]
        refused = combined(dist, z[key], t_d, z_t) > 1.0
        return refused, softmax(lg, temperature)[:, pos] >= threshold

    rates: dict[str, float] = {}
    for key, label in (("val", "validation_refused"), ("test", "test_refused")):
        rates[label] = float(verdicts(key)[0].mean())
    other: dict[str, Any] = {"name": name, "by_label": {}}
    for key, tag in (("other_report", name), ("other_external", f"{name}_external_val")):
        if key not in out:
            continue
        refused, finding = verdicts(key)
        rates[f"{tag}_refused"] = float(refused.mean())
        rates[f"{tag}_reported_{recipe.positive}"] = float((~refused & finding).mean())
        rates[f"{tag}_reported_{recipe.positive}_without_check"] = float(finding.mean())
        rates[f"{tag}_refused_by_the_distance_term"] = float((out[key][1] > t_d).mean())
        rates[f"{tag}_refused_by_the_population_term"] = float((z[key] > z_t).mean())
        if key == "other_report":
            labs = np.array([r["label"] for r in sets[key]])
            for lab in sorted(set(labs)):
                sel = labs == lab
                other["by_label"][lab] = {
                    "n": int(sel.sum()), "refused": float(refused[sel].mean()),
                    f"reported_{recipe.positive}": float((~refused & finding)[sel].mean()),
                    f"reported_{recipe.positive}_without_check": float(finding[sel].mean())}
    other["data"] = (f"shared/data/{dataset}: {len(sets['other_report'])} images of its test "
                     f"split (up to {REPORT_PER_LABEL} per label, seeded random draw)")
    dicom: dict[str, Any] = {}
    if reports:
        from .gate import viewer_dicom_displays

        for fname, img in viewer_dicom_displays(data).items():
            if isinstance(img, str):
                dicom[fname] = {"verdict": img}
                continue
            lg, dist, f = _outputs(sess, names, recipe, [img])
            sc = float(combined(dist, f @ w + b, t_d, z_t)[0])
            pp = float(softmax(lg, temperature)[0, pos])
            dicom[fname] = {"verdict": ("refused: outside this model's data" if sc > 1.0 else
                                        recipe.positive if pp >= threshold else recipe.labels[1 - pos]),
                            "p_positive": round(pp, 4), "applicability": round(sc, 3)}
        shown = [v for v in dicom.values() if "p_positive" in v]
        rates[f"dicom_reported_{recipe.positive}"] = float(
            np.mean([v["verdict"] == recipe.positive for v in shown])) if shown else 0.0
    return {"w": w, "b": b, "t_d": t_d, "z_t": z_t, "layer": layer, "rates": rates,
            "other_population": other, "dicom": dicom,
            "n": {k: len(v) for k, v in sets.items()}, "other_name": name}


def describe(recipe: Recipe, fit: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``applicability`` block for the grafted score (threshold 1)."""
    from .applicability import KEEP

    layer, name, n = fit["layer"], fit["other_name"], fit["n"]
    method = (f"s = max(d / t_d, 1 + z - z_t) with t_d = {fit['t_d']:.4f}, z_t = {fit['z_t']:.4f}. d: the "
              f"distance from the training data ({old['method'].removeprefix('s = ').split('; refused when')[0]}). "
              f"z = f . w + b: a logistic regression on the same features f of layer {layer} "
              f"separating the training split ({n['train']} images) from {n['other_fit']} images of the "
              f"other population's ({name}) training and validation splits (L2 {L2} on standardised "
              "features, classes weighted equally); refused when s > 1, i.e. when either term is past "
              "its threshold")
    rule = (f"1 on the normalised score; z_t is the {100 * (1 - POP_REFUSE):g}th percentile of z on the "
            f"own validation split ({n['val']} images), and the distance's threshold is lowered so that "
            f"both terms together refuse {100 * (1 - KEEP):g} % of it")
    return {"output": "applicability", "threshold": 1.0, "method": method, "layers": [layer],
            **{k: old[k] for k in ("shrinkage",) if k in old},
            "fitted_on": (f"{old.get('fitted_on', 'training split')} for the distance; the training "
                          f"split against the other population ({name}) for the population term "
                          "(outlier exposure)"),
            "threshold_rule": rule,
            "population": {"other": name, "layer": layer, "z_threshold": round(fit["z_t"], 4),
                           "distance_threshold": round(fit["t_d"], 4), "l2": L2,
                           "other_images": n["other_fit"]},
            "rates": {k: round(v, 4) for k, v in fit["rates"].items()}}


def _card_section(recipe: Recipe, block: dict[str, Any], fit: dict[str, Any]) -> list[str]:
    from .card import _applicability_lines

    a = {**block, "layers_rule": "the distance's layer, as before",
         "other_population": fit["other_population"], "dicom": fit["dicom"]}
    return _applicability_lines(recipe, a)


def graft(recipe: Recipe, out_dir: Path = MODELS, limit: int | None = None, reports: bool = True,
          version: str | None = None, run_dir: Path | None = None) -> Path:
    """Fit the population term on ``out_dir/<id>.onnx`` and graft it; manifest and card follow.

    ``version``: the manifest's new version (the committed model's update); ``None`` keeps it
    (right after ``export``, whose recipe version already counts this step).
    """
    import onnxruntime as ort

    from .data import file_digest

    log = get_logger(recipe.model_id, (run_dir or RUNS / f"{recipe.model_id}_population") / "train.log")
    mpath = out_dir / f"{recipe.model_id}.json"
    manifest: dict[str, Any] = json.loads(mpath.read_text())
    onnx_path = out_dir / manifest["file"]
    if file_digest(onnx_path) != manifest["sha256"]:
        raise RuntimeError(f"{onnx_path} does not match its manifest")
    old = manifest["applicability"]
    if "population" in old:
        raise RuntimeError(f"{recipe.model_id} {manifest['version']} already has the population term")
    layer = str(old["layers"][-1])
    fit = fit_and_measure(recipe, onnx_path, float(manifest["calibration"]["temperature"]),
                          float(manifest["threshold"]), layer, limit, reports)
    tmp = onnx_path.with_suffix(".population.onnx")
    graft_onnx(onnx_path, tmp, layer, fit["w"], fit["b"], fit["t_d"], fit["z_t"])
    # Logits and activations unchanged; the new score is the numpy formula of the old outputs.
    x = np.random.default_rng(0).normal(size=(3, 1, *manifest["input"]["size"])).astype(np.float32)
    sess, names = tapped_session(onnx_path, layer)
    before = sess.run(names + ["activations"], {"input": x})
    after = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]).run(
        ["logits", "activations", "applicability"], {"input": x})
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[3], after[1])
    ref = combined(before[1], before[2].astype(np.float64) @ fit["w"] + fit["b"], fit["t_d"], fit["z_t"])
    np.testing.assert_allclose(after[2], ref, rtol=1e-4, atol=1e-4)
    tmp.replace(onnx_path)
    block = describe(recipe, fit, old)
    manifest["applicability"] = block
    manifest["sha256"] = file_digest(onnx_path)
    if version:
        manifest["version"] = version
    mpath.write_text(json.dumps(manifest, indent=1) + "\n")
    card = out_dir / f"{recipe.model_id}.md"
    if card.exists():
        from .card import LIMITATIONS, restamp

        text = card.read_text()
        section = "\n".join(_card_section(recipe, block, fit))
        text = re.sub(r"### Applicability check \(outside this model's data\)\n.*?(?=\n### |\n## )",
                      lambda _: section, text, count=1, flags=re.S)
        text = restamp(text, manifest)
        text = text.split("\n## Limitations\n")[0] + "\n## Limitations\n\n" + "\n".join(
            [*LIMITATIONS[recipe.model_id], "- Research use, not for diagnosis.", ""])
        if recipe.history:
            text = re.sub(r"^History: .*$", lambda _: f"History: {recipe.history}.", text, count=1, flags=re.M)
        card.write_text(text)
    log.info("population term grafted onto %s (%s): %s", onnx_path, manifest["version"],
             json.dumps(block["rates"]))
    return onnx_path

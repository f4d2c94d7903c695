"""Unit tests for the training helpers: metrics, calibration, grouping, splits, augmentation."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from training.augment import AugConfig, augment, clinical_look
from training.calibration import energy, fit_temperature, softmax
from training.metrics import dice, ece, roc_auc, roc_curve
from training.splits import assign, group_ids

SPLITS = Path(__file__).resolve().parents[2] / "training" / "splits"


def test_roc_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    s = np.round(rng.random(200) + 0.5 * y, 2)  # with ties
    pos, neg = s[y], s[~y]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert roc_auc(y, s) == pytest.approx(pairwise)
    fpr, tpr, _ = roc_curve(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(pairwise)


def test_dice_ignores_127() -> None:
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 255
    mask[3, :] = 127
    pred = np.zeros((4, 4), bool)
    pred[:2] = True
    pred[3, :] = True  # predictions inside the ignore band do not count
    assert dice(pred, mask) == 1.0
    assert dice(np.zeros((4, 4), bool), mask) == 0.0


def test_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2.0, (4000, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    t = fit_temperature(true_logits * 2.5, y)  # over-confident by a factor 2.5
    assert t == pytest.approx(2.5, rel=0.1)
    assert ece(softmax(true_logits * 2.5, t), y) < ece(softmax(true_logits * 2.5), y)


def test_energy_is_minus_logsumexp() -> None:
    logits = np.array([[1.0, 2.0, 3.0]])
    assert energy(logits)[0] == pytest.approx(-np.log(np.exp(logits).sum()))


def test_near_duplicates_and_patients_share_a_group_and_split() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(size=(40, 1024)).astype(np.float32)
    thumbs = np.vstack([base, base[:5] + 0.01 * rng.normal(size=(5, 1024)).astype(np.float32)])
    thumbs -= thumbs.mean(1, keepdims=True)
    thumbs /= np.linalg.norm(thumbs, axis=1, keepdims=True)
    recs = [{"label": "a" if i % 2 else "b", "group_key": "p1" if i in (10, 20) else ""} for i in range(45)]
    groups = group_ids(recs, thumbs)
    assert all(groups[i] == groups[40 + i] for i in range(5))
    assert groups[10] == groups[20] and groups[10] != groups[11]
    splits = assign(recs, groups)
    assert all(splits[i] == splits[40 + i] for i in range(5)) and splits[10] == splits[20]
    assert {"train", "val", "test"} == set(splits)


@pytest.mark.parametrize("dataset", ["bodypart", "pneumonia", "covid", "lungs"])
def test_committed_split_never_straddles_a_group(dataset: str) -> None:
    path = SPLITS / f"{dataset}.csv"
    if not path.exists():
        pytest.skip("split not generated")
    by_group: dict[str, set[str]] = defaultdict(set)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        by_group[r["group"]].add(r["split"])
    assert all(len(s) == 1 for s in by_group.values())
    share = sum(r["split"] == "test" for r in rows) / len(rows)
    assert 0.12 < share < 0.18


def test_augment_keeps_mask_labels_and_size() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (144, 144), dtype=np.uint8)
    mask = np.zeros((144, 144), np.uint8)
    mask[40:100, 30:70] = 255
    mask[50:60, 40:50] = 127
    out, m = augment(img, 128, rng, AugConfig(), mask)
    assert out.shape == (128, 128) and out.dtype == np.uint8
    assert set(np.unique(m)) <= {0, 127, 255}


def _film(size: int = 160) -> np.ndarray:
    """A smooth synthetic 'film': bright body, darker lungs, a spine, in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    x = 0.8 - 0.5 * (np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.02)
                     + np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.02))
    x[:, int(0.48 * size):int(0.52 * size)] = 0.95
    return x.astype(np.float32)


def test_clinical_look_is_seeded_bounded_and_changes_the_film() -> None:
    x = _film()
    outs = [clinical_look(x, np.random.default_rng(s)) for s in range(40)]
    again = clinical_look(x, np.random.default_rng(7))
    np.testing.assert_array_equal(again, outs[7])
    for y in outs:
        assert y.shape == x.shape and y.dtype == np.float32
        assert np.isfinite(y).all() and y.min() >= 0.0 and y.max() <= 1.0
    diffs = [float(np.abs(y - x).mean()) for y in outs]
    assert min(diffs) > 1e-3 and len({round(d, 4) for d in diffs}) > 30  # varied, never a copy
    # Some draws compress the dynamic range: the lungs/body contrast of the film shrinks.
    contrast = [float(y[60:100, 40:56].mean() - y[60:100, 100:120].mean()) for y in outs]
    base = float(x[60:100, 40:56].mean() - x[60:100, 100:120].mean())
    assert min(abs(c) for c in contrast) < 0.8 * abs(base)


def test_clinical_look_shutters_are_constant_bands() -> None:
    x = _film()
    banded = 0
    for s in range(60):
        y = clinical_look(x, np.random.default_rng(s))
        # The film's own edges carry dither noise; only a shutter band is constant.
        if any(np.ptp(edge) == 0.0 for edge in (y[:3], y[-3:], y[:, :3], y[:, -3:])):
            banded += 1
    assert 10 <= banded <= 50  # shutters on about half of the draws


def test_orientation_moves_image_and_mask_together() -> None:
    still = AugConfig(scale=(1.0, 1.0), aspect=(1.0, 1.0), rotate_deg=0.0, shift=0.0, hflip=0.0,
                      gamma=(1.0, 1.0), contrast=(1.0, 1.0), clahe_p=0.0, resample_p=0.0,
                      blur_p=0.0, noise_p=0.0, orient_p=1.0)
    mask = np.zeros((128, 128), np.uint8)
    mask[10:40, 10:100] = 255  # an asymmetric L: every turn or flip moves it
    mask[10:110, 10:30] = 255
    rng = np.random.default_rng(11)
    seen = set()
    for _ in range(80):
        out, m = augment(mask.copy(), 128, rng, still, mask.copy())
        assert m is not None
        np.testing.assert_array_equal(out > 127, m == 255)
        assert not np.array_equal(m, mask)  # never the film as it was hung
        seen.add(m.tobytes())
    assert len(seen) == 7  # 3 turns, a vertical flip and its 3 turns


def test_augment_with_the_clinical_look_stays_uint8() -> None:
    rng = np.random.default_rng(5)
    img = (_film(176) * 255).astype(np.uint8)
    outs = [augment(img, 160, rng, AugConfig(clinical_p=1.0))[0] for _ in range(10)]
    assert all(o.shape == (160, 160) and o.dtype == np.uint8 for o in outs)
    assert len({o.tobytes() for o in outs}) == 10


def test_pneumonia_224_and_original_copies_of_a_study_share_a_split() -> None:
    path = SPLITS / "pneumonia.csv"
    if not path.exists():
        pytest.skip("split not generated")
    by_stem: dict[str, set[str]] = defaultdict(set)
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            by_stem[Path(r["path"]).name].add(r["split"])
    assert all(len(s) == 1 for s in by_stem.values())


def test_flip_averaged_classifier_is_the_mean_of_both_views_and_keeps_the_gap_head() -> None:
    import torch

    from training.nets import FlipAveraged, SmallResNet

    torch.manual_seed(0)
    net = SmallResNet(2, 1, (8, 16, 24, 32)).eval()
    wrapped = FlipAveraged(net).eval()
    x = torch.randn(3, 1, 64, 48)
    with torch.no_grad():
        logits, act = wrapped(x)
        a, _ = net(x)
        b, _ = net(torch.flip(x, dims=(3,)))
        flipped, _ = wrapped(torch.flip(x, dims=(3,)))
    torch.testing.assert_close(logits, 0.5 * (a + b), atol=1e-5, rtol=1e-5)
    # The manifest's closed form (logits = W mean_hw(A) + b) holds for the exported A.
    torch.testing.assert_close(logits, act.mean(dim=(2, 3)) @ net.head.weight.T + net.head.bias,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flipped, logits, atol=1e-5, rtol=1e-5)  # mirror-invariant
    assert not torch.allclose(a, b, atol=1e-3)  # the plain network is not


def test_ensemble_is_the_mean_of_its_members_and_keeps_the_gap_head() -> None:
    import torch

    from training.nets import Ensemble, FlipAveraged, SmallResNet

    torch.manual_seed(0)
    first = FlipAveraged(SmallResNet(2, 1, (8, 16, 24, 32))).eval()
    second = SmallResNet(2, 1, (8, 16, 24, 40)).eval()  # members may differ in width
    ens = Ensemble([first, second]).eval()
    x = torch.randn(3, 1, 64, 48)
    with torch.no_grad():
        logits, act = ens(x)
        a, act_a = first(x)
        b, act_b = second(x)
    assert act.shape == (3, 32 + 40, 4, 3) and ens.n_channels == 72
    torch.testing.assert_close(logits, 0.5 * (a + b), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(act, torch.cat([act_a, act_b], 1))
    # The manifest's closed form (logits = W mean_hw(A) + b) holds for the exported A.
    torch.testing.assert_close(logits, act.mean(dim=(2, 3)) @ ens.head.weight.T + ens.head.bias,
                               atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a, b, atol=1e-3)  # the members really differ
    with pytest.raises(ValueError):
        Ensemble([])


def test_grey_stem_fold_matches_imagenet_normalised_rgb() -> None:
    import torch

    from training.nets import IMAGENET_MEAN, IMAGENET_STD, LITE_GREY_MEAN, LITE_GREY_STD, fold_grey_stem

    torch.manual_seed(0)
    w = torch.randn(8, 3, 3, 3)
    g = torch.rand(2, 1, 16, 16)
    m = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    ref = torch.nn.functional.conv2d((g.repeat(1, 3, 1, 1) - m) / s, w)  # no padding: exact
    w1, const = fold_grey_stem(w)
    got = torch.nn.functional.conv2d((g - LITE_GREY_MEAN) / LITE_GREY_STD, w1) + const.view(1, -1, 1, 1)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_lite_net_keeps_the_gap_head_and_flip_averaging() -> None:
    import torch

    pytest.importorskip("efficientnet_lite_pytorch")
    from training.nets import FlipAveraged, LiteNet

    torch.manual_seed(0)
    net = LiteNet(2, image_size=64, pretrained=False).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logits, act = net(x)
        flogits, fact = FlipAveraged(net).eval()(x)
    assert act.shape == (2, net.n_channels, 2, 2) and float(act.min()) >= 0.0  # post-ReLU6
    torch.testing.assert_close(logits, act.mean(dim=(2, 3)) @ net.head.weight.T + net.head.bias)
    torch.testing.assert_close(flogits, fact.mean(dim=(2, 3)) @ net.head.weight.T + net.head.bias)


def test_applicability_score_in_the_graph_matches_numpy() -> None:
    import torch

    from training import applicability as ap
    from training.nets import SmallResNet

    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    net = SmallResNet(2, 1, (8, 16, 24, 32)).eval()
    train = rng.normal(size=(300, 32)) * np.linspace(3, 0.1, 32)
    stats = ap.fit(train, 8)
    assert stats["V"].shape == (32, 8) and np.all(np.diff(stats["lam"]) <= 1e-6)
    assert ap.score(train, stats).mean() == pytest.approx(1.0, rel=0.05)  # whitened: ~1 per component
    wrapped = ap.WithApplicability(net, stats).eval()
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        logits, act, s = wrapped(x)
        ref_logits, ref_act = net(x)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(act, ref_act)
    np.testing.assert_allclose(s.numpy(), ap.score(act.mean(dim=(2, 3)).numpy(), stats), rtol=1e-4)
    far = ap.score(train[:5] + 20.0, stats)
    assert (far > ap.score(train[:5], stats)).all()


def test_layered_applicability_keeps_the_logits_and_matches_numpy() -> None:
    import torch

    from training import applicability as ap
    from training.nets import FlipAveraged, LiteNet

    torch.manual_seed(0)
    net = FlipAveraged(LiteNet(2, image_size=64, pretrained=False)).eval()
    tapped = ap.Tapped(net).eval()
    x = torch.randn(6, 1, 64, 64)
    with torch.no_grad():
        ref_logits, ref_act = net(x)
        logits, act, taps = tapped(x)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(act, ref_act)
    assert set(taps) == set(ap.LAYERS) and taps["b10"].shape == (6, 2 * 112)
    rng = np.random.default_rng(1)
    feats = {k: v.numpy() + rng.normal(scale=0.1, size=(40,) + v.shape[1:]).mean(0) for k, v in taps.items()}
    train = {k: np.concatenate([v + rng.normal(scale=0.05, size=v.shape) for _ in range(20)]) for k, v in feats.items()}
    stats = ap.fit_layers(train, train)
    for name in ap.LAYERS:  # normalised by the validation median
        assert np.median(ap.layer_score(train[name], stats, name)) == pytest.approx(1.0, rel=1e-6)
    layers = ("b10", "head")
    wrapped = ap.WithLayeredApplicability(net, stats, layers).eval()
    with torch.no_grad():
        w_logits, w_act, s = wrapped(x)
    torch.testing.assert_close(w_logits, ref_logits)
    np.testing.assert_allclose(s.numpy(), ap.score_layers({k: v.numpy() for k, v in taps.items()}, stats, layers),
                               rtol=1e-3)
    shifted = {k: v + 5.0 * v.std(0) for k, v in train.items()}
    assert ap.score_layers(shifted, stats, layers).mean() > 10 * ap.score_layers(train, stats, layers).mean()


def test_gate_class_threshold_only_loosens_its_own_class() -> None:
    from training.gate import UNKNOWN, class_thresholds, decide

    labels = ("chest", "knee", "hand", "spine", "other")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 200)
    logits = rng.normal(size=(1000, 5))
    logits[np.arange(1000), y] += 6.0
    logits[y == 0] -= 1.5  # chests less certain: higher energy than the rest
    e = energy(logits)
    glob = float(np.quantile(e, 0.99))
    per = class_thresholds(logits, y, labels, glob)
    assert set(per) == {"chest"} and per["chest"] > glob
    assert (e[y == 0] > per["chest"]).mean() <= 0.005 + 1e-9
    without, with_ = decide(logits, 1.0, glob, 0.0, labels), decide(logits, 1.0, glob, 0.0, labels, per_class=per)
    chest_kept = [np.mean([v[i] == "chest" for i in np.nonzero(y == 0)[0]]) for v in (without, with_)]
    assert chest_kept[1] > chest_kept[0]
    others = np.nonzero(y != 0)[0]
    assert [with_[i] for i in others] == [without[i] for i in others]  # other classes unchanged
    # Never stricter: a class already inside the global rule gets no entry of its own.
    assert class_thresholds(logits, y, labels, glob + 100.0) == {}
    assert decide(logits[:1] * 0, 1.0, glob, 0.0, labels, per_class=per) == [UNKNOWN]

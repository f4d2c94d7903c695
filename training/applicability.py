"""Applicability check ("outside this model's data"): Mahalanobis scores inside the graph.

Two forms. The first (v1, :class:`WithApplicability`, still used by ``training/graft.py``) scores
the pooled final activations in a PCA subspace. The second (v2, :class:`WithLayeredApplicability`,
the committed Lite0 models) scores channel statistics of several depths of the network, because
the fine-tuned final features are trained to ignore what makes a child's film unlike an adult's
(issue 14: the v1 check refused 6 % of paediatric films for the covid model; see
training/runs/PROGRESS.md and the model cards for the measured rates).

v1:

For a classifier ending ``activations -> GAP -> linear``, let ``f`` be the pooled activations
(``mean_hw(activations)``, the GAP output of the exported classifier). On the TRAINING split we
fit the mean ``mu``, the top-``k`` principal directions ``V`` (C x k) and their variances
``lambda``. The score of an image is

    s = mean_i (z_i ** 2 / lambda_i),   z = (f - mu) @ V

(a Mahalanobis distance in the top-k principal subspace, divided by k; about 1 on training
data, larger = farther from it). :class:`WithApplicability` computes it inside the exported
graph as a third output ``applicability`` of shape (batch,), so the viewer only compares it
with the manifest's ``applicability.threshold``. The threshold is a high percentile of the
scores of the model's own validation split (the stated acceptance rate); the refusal rates on
the own test split and on other populations are measured, never fitted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .nets import lite0_encode

COMPONENTS = 48
KEEP = 0.975  # share of the own validation split that the threshold accepts
FILE = "applicability.npz"


def fit(pooled: np.ndarray, k: int = COMPONENTS) -> dict[str, np.ndarray]:
    """Mean, top-k principal directions and their variances of pooled training activations."""
    x = np.asarray(pooled, np.float64)
    mu = x.mean(0)
    xc = x - mu
    cov = xc.T @ xc / max(1, len(x) - 1)
    lam, vec = np.linalg.eigh(cov)
    order = np.argsort(lam)[::-1][:k]
    lam = np.maximum(lam[order], 1e-12)
    return {"mu": mu.astype(np.float32), "V": vec[:, order].astype(np.float32),
            "lam": lam.astype(np.float32)}


def score(pooled: np.ndarray, stats: dict[str, np.ndarray]) -> np.ndarray:
    """The applicability score (mean of z_i^2 / lambda_i) of pooled activations, in numpy."""
    z = (np.asarray(pooled, np.float64) - stats["mu"]) @ stats["V"].astype(np.float64)
    return (z ** 2 / stats["lam"].astype(np.float64)).mean(1)


def save(path: Path, stats: dict[str, np.ndarray], threshold: float, info: dict[str, Any]) -> None:
    import json

    np.savez(path, mu=stats["mu"], V=stats["V"], lam=stats["lam"], threshold=np.float64(threshold),
             info=np.array(json.dumps(info)))


def load(path: Path) -> tuple[dict[str, np.ndarray], float, dict[str, Any]]:
    import json

    with np.load(path) as z:
        stats = {k: z[k] for k in ("mu", "V", "lam")}
        return stats, float(z["threshold"]), json.loads(str(z["info"]))


class WithApplicability(nn.Module):
    """``(logits, activations, applicability)`` of a GAP + linear classifier.

    The statistics are registered buffers; the score uses the pooled activations exactly as
    the classifier's head does, so nothing else in the graph changes.
    """

    def __init__(self, classifier: nn.Module, stats: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.classifier = classifier
        self.head = classifier.head
        self.n_channels = classifier.n_channels
        self.register_buffer("mu", torch.from_numpy(np.asarray(stats["mu"], np.float32)))
        self.register_buffer("V", torch.from_numpy(np.asarray(stats["V"], np.float32)))
        self.register_buffer("inv_lam", torch.from_numpy(1.0 / np.asarray(stats["lam"], np.float32)))

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.activations(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        act = self.classifier.activations(x)
        pooled = act.mean(dim=(2, 3))
        z = (pooled - self.mu) @ self.V
        s = (z * z * self.inv_lam).mean(dim=1)
        return self.head(pooled), act, s


# ---------------------------------------------------------------------------------------------
# v2: channel statistics of several depths ("layers"), one Gaussian per layer.
#
# For a Lite0 classifier the layers are the outputs of blocks 4, 7, 10 and 14 (the ends of
# stages 3-6: 40, 80, 112, 192 channels), each summarised by its per-channel mean and standard
# deviation over the image (2C numbers), and ``head``, the pooled final activations (1280). For
# flip-averaged models the two views' statistics are averaged. Per layer l, on the TRAINING
# split: mean mu_l and a shrunk covariance S_l = (1 - a) C_l + a tr(C_l)/d I (a = SHRINK); the
# layer's score is the Mahalanobis distance / d, divided by its median on the own validation
# split (so layers are comparable); the image's score is the mean over the chosen layers. The
# chosen set is the one of LAYER_SETS that refuses most of a tuning draw of the other population
# at the validation-percentile threshold (as the v1 rule chose k); rates are reported on a
# disjoint draw.

TAP_BLOCKS = (4, 7, 10, 14)
LAYERS = tuple(f"b{i}" for i in TAP_BLOCKS) + ("head",)
LAYER_SETS: tuple[tuple[str, ...], ...] = (
    ("head",), ("b10",), ("b14",), ("b10", "b14"), ("b7", "b10", "b14"), ("b10", "head"),
    ("b10", "b14", "head"), ("b4", "b7", "b10", "b14"), ("b4", "b7", "b10", "b14", "head"))
SHRINK = 0.1
FILE_V2 = "applicability_v2.npz"


def _lite(model: nn.Module) -> tuple[nn.Module, bool]:
    """The LiteNet inside ``model`` and whether it is flip-averaged."""
    from .nets import FlipAveraged, LiteNet

    if isinstance(model, FlipAveraged) and isinstance(model.net, LiteNet):
        return model.net, True
    if isinstance(model, LiteNet):
        return model, False
    raise TypeError(f"layered applicability needs a Lite0 classifier, got {type(model).__name__}")


def _stats(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(2, 3))
    var = (x * x).mean(dim=(2, 3)) - mean * mean
    return torch.cat([mean, torch.sqrt(torch.clamp(var, min=0.0))], 1)


class Tapped(nn.Module):
    """``(logits, activations, layer features)`` of a (flip-averaged) Lite0 classifier; the
    logits and activations equal the classifier's own (eval mode)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.net, self.flip = _lite(classifier)
        self.head = classifier.head
        self.n_channels = classifier.n_channels

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        net = self.net
        n = x.shape[0]
        if self.flip:
            x = torch.cat([x, torch.flip(x, dims=(3,))], 0)
        h, kept = lite0_encode(net, x, TAP_BLOCKS)
        taps = {f"b{i}": _stats(t) for i, t in kept.items()}
        if net.head_conv:
            h = net.conv_head(h)
        act = net.act(net.bn1(h))
        if self.flip:
            act = 0.5 * (act[:n] + torch.flip(act[n:], dims=(3,)))
            taps = {k: 0.5 * (v[:n] + v[n:]) for k, v in taps.items()}
        taps["head"] = act.mean(dim=(2, 3))
        return act, taps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        act, taps = self.features(x)
        return self.head(taps["head"]), act, taps


def fit_layers(feats: dict[str, np.ndarray], val: dict[str, np.ndarray],
               layers: tuple[str, ...] = LAYERS, shrink: float = SHRINK) -> dict[str, np.ndarray]:
    """Per-layer mean, shrunk precision and validation median (keys ``<layer>.mu|P|med``)."""
    out: dict[str, np.ndarray] = {}
    for name in layers:
        x = np.asarray(feats[name], np.float64)
        mu = x.mean(0)
        xc = x - mu
        cov = xc.T @ xc / max(1, len(x) - 1)
        d = float(np.trace(cov)) / len(cov)
        prec = np.linalg.inv((1 - shrink) * cov + shrink * d * np.eye(len(cov)))
        out[f"{name}.mu"], out[f"{name}.P"] = mu, prec
        out[f"{name}.med"] = np.array(1.0)
        out[f"{name}.med"] = np.array(np.median(layer_score(val[name], out, name)))
    return out


def layer_score(x: np.ndarray, stats: dict[str, np.ndarray], name: str) -> np.ndarray:
    xc = np.asarray(x, np.float64) - stats[f"{name}.mu"]
    d2 = np.einsum("ij,jk,ik->i", xc, stats[f"{name}.P"], xc) / xc.shape[1]
    return d2 / float(stats[f"{name}.med"])


def score_layers(feats: dict[str, np.ndarray], stats: dict[str, np.ndarray],
                 layers: tuple[str, ...]) -> np.ndarray:
    """The v2 applicability score: the mean of the chosen layers' normalised scores."""
    return np.mean([layer_score(feats[name], stats, name) for name in layers], axis=0)


def save_layers(path: Path, stats: dict[str, np.ndarray], layers: tuple[str, ...], threshold: float,
                info: dict[str, Any]) -> None:
    import json

    keep = {k: np.asarray(v, np.float32) for k, v in stats.items() if k.split(".")[0] in layers}
    np.savez(path, **keep, layers=np.array(",".join(layers)), threshold=np.float64(threshold),
             info=np.array(json.dumps(info)))


def load_layers(path: Path) -> tuple[dict[str, np.ndarray], tuple[str, ...], float, dict[str, Any]]:
    import json

    with np.load(path) as z:
        layers = tuple(str(z["layers"]).split(","))
        stats = {k: z[k] for k in z.files if "." in k}
        return stats, layers, float(z["threshold"]), json.loads(str(z["info"]))


class WithLayeredApplicability(nn.Module):
    """``(logits, activations, applicability)`` with the v2 score computed inside the graph."""

    def __init__(self, classifier: nn.Module, stats: dict[str, np.ndarray], layers: tuple[str, ...]) -> None:
        super().__init__()
        self.tapped = Tapped(classifier)
        self.head = classifier.head
        self.n_channels = classifier.n_channels
        self.layers = tuple(layers)
        for name in self.layers:
            self.register_buffer(f"mu_{name}", torch.from_numpy(np.asarray(stats[f"{name}.mu"], np.float32)))
            scale = 1.0 / (float(stats[f"{name}.med"]) * len(stats[f"{name}.mu"]) * len(self.layers))
            self.register_buffer(f"P_{name}", torch.from_numpy(
                (np.asarray(stats[f"{name}.P"], np.float64) * scale).astype(np.float32)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        act, taps = self.tapped.features(x)
        s = torch.zeros(x.shape[0], dtype=x.dtype)
        for name in self.layers:
            xc = taps[name] - getattr(self, f"mu_{name}")
            s = s + ((xc @ getattr(self, f"P_{name}")) * xc).sum(dim=1)
        return self.head(taps["head"]), act, s

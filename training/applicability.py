"""Applicability check ("outside this model's data"): a PCA Mahalanobis score inside the graph.

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

"""Temperature scaling fitted on validation logits (minimum negative log-likelihood)."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0)).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T > 0 minimising the NLL of ``softmax(logits / T)`` (log-grid, then refine)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 300))
    losses = [nll(logits, y, t) for t in grid]
    best = int(np.argmin(losses))
    lo, hi = grid[max(0, best - 1)], grid[min(len(grid) - 1, best + 1)]
    fine = np.linspace(lo, hi, 200)
    return float(fine[int(np.argmin([nll(logits, y, t) for t in fine]))])


def energy(logits: np.ndarray) -> np.ndarray:
    """Energy score ``-logsumexp(logits)`` on raw logits: higher = more out-of-distribution."""
    m = logits.max(1)
    return -(m + np.log(np.exp(logits - m[:, None]).sum(1)))

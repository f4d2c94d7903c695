"""Paths, seeding and logging shared by the training modules."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RADVIEW_DATA", REPO / ".." / "shared" / "data")).resolve()
CACHE = REPO / "training" / "cache"
RUNS = REPO / "training" / "runs"
SPLITS = REPO / "training" / "splits"
MODELS = REPO / "models"

SEED = 0


def seed_everything(seed: int = SEED) -> None:
    """Seed python, numpy and torch (CPU, deterministic algorithms where cheap)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds legacy global-state users (torch data loaders)
    torch.manual_seed(seed)


def get_logger(name: str, logfile: Path | None = None) -> logging.Logger:
    """Logger writing to stderr and, optionally, to ``logfile`` (appended)."""
    log = logging.getLogger(f"training.{name}")
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in log.handlers):
        sh = logging.StreamHandler()
        sh.setFormatter(fmt)
        log.addHandler(sh)
    if logfile is not None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        target = str(logfile.resolve())
        if not any(isinstance(h, logging.FileHandler) and h.baseFilename == target
                   for h in log.handlers):
            fh = logging.FileHandler(target)
            fh.setFormatter(fmt)
            log.addHandler(fh)
    return log

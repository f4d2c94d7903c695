"""Fixtures for the training tests: the shared data folder (skip when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "pneumonia" / "labels.csv").exists():
        pytest.skip("shared data folder ../shared/data is not available")
    return DATA.resolve()

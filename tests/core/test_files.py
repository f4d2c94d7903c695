"""Atomic writes: temporary .part files, and clean-up of those a killed writer left behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from viewer.core.files import atomic_write, remove_stale_parts


def _part(folder: Path, name: str, age_s: float) -> Path:
    p = folder / name
    p.write_bytes(b"partial")
    t = time.time() - age_s
    os.utime(p, (t, t))
    return p


def test_next_write_removes_only_stale_parts_of_the_same_destination(tmp_path: Path) -> None:
    stale = _part(tmp_path, ".results.csv.abc123.part", 3600)
    fresh = _part(tmp_path, ".results.csv.def456.part", 5)  # a writer that may still run
    other = _part(tmp_path, ".other.csv.abc123.part", 3600)  # another destination
    user = _part(tmp_path, "results.csv.part", 3600)  # not our naming: never touched
    dest = atomic_write(tmp_path / "results.csv", lambda fh: fh.write(b"a,b\n"), RuntimeError)
    assert dest.read_bytes() == b"a,b\n"
    assert not stale.exists()
    assert fresh.exists() and other.exists() and user.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".other.csv.abc123.part", ".results.csv.def456.part", "results.csv", "results.csv.part"])


def test_glob_characters_in_the_name_are_literal(tmp_path: Path) -> None:
    keep = _part(tmp_path, ".a1.png.x.part", 3600)
    gone = _part(tmp_path, ".a[1].png.x.part", 3600)
    assert remove_stale_parts(tmp_path / "a[1].png") == 1
    assert keep.exists() and not gone.exists()


def test_failed_write_leaves_no_part(tmp_path: Path) -> None:
    def boom(fh: object) -> None:
        raise ValueError("disk on fire")

    with pytest.raises(ValueError):
        atomic_write(tmp_path / "x.json", boom, RuntimeError)
    assert list(tmp_path.iterdir()) == []

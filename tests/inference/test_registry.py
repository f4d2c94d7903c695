"""Model discovery from manifests: usable models, and unusable ones listed with a reason."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.inference.tiny_models import make_classifier, tiny_models_dir  # noqa: F401
from viewer.inference.manifest import load_manifest
from viewer.inference.registry import ModelRegistry, bundled_models_dir


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_discovers_the_three_models(tiny_models_dir: Path) -> None:
    reg = ModelRegistry([tiny_models_dir])
    assert sorted(m.id for m in reg.available()) == ["body_region", "lungs", "pneumonia"]
    assert reg.gate() is not None and reg.gate().id == "body_region"
    clf = reg.get("pneumonia")
    assert clf is not None
    assert clf.temperature == 1.5 and clf.positive_index == 1
    assert clf.input_spec.height == 64 and clf.gradcam_weight is not None
    assert dict(clf.applies_to) == {"body_region": ("chest",)}
    assert reg.unavailable() == ()


def test_broken_models_are_listed_with_reasons(tiny_models_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_models_dir, tmp_path / "m")
    (folder / "lungs.onnx").unlink()  # file missing
    with open(folder / "pneumonia.onnx", "ab") as fh:  # checksum wrong
        fh.write(b"\0")
    (folder / "garbage.json").write_text("{not json")
    raw = json.loads((folder / "body_region.json").read_text())
    raw["outputs"] = [{"name": "x", "kind": "mystery"}]
    (folder / "body_region.json").write_text(json.dumps(raw))
    reg = ModelRegistry([folder])
    assert reg.available() == ()
    reasons = {e.id: e.reason for e in reg.unavailable()}
    assert "missing" in reasons["lungs"]
    assert "checksum" in reasons["pneumonia"]
    assert "manifest" in reasons["garbage"]
    assert "mystery" in reasons["body_region"]
    assert reg.about("lungs") == {"id": "lungs", "available": False, "reason": reasons["lungs"]}


def test_first_folder_wins_and_later_duplicates_are_shadowed(tiny_models_dir: Path,
                                                             tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    make_classifier(user, "pneumonia", seed=5)
    reg = ModelRegistry([user, tiny_models_dir])
    assert reg.get("pneumonia").onnx_path.parent == user.resolve()
    shadowed = [e for e in reg.unavailable() if e.id == "pneumonia"]
    assert len(shadowed) == 1 and "shadowed" in (shadowed[0].reason or "")


def test_about_exposes_the_full_manifest(tiny_models_dir: Path) -> None:
    about = ModelRegistry([tiny_models_dir]).about("pneumonia")
    assert about is not None and about["available"] is True
    assert about["intended_use"].startswith("Research use")
    assert about["calibration"]["temperature"] == 1.5


def test_checksum_can_be_skipped(tiny_models_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_models_dir, tmp_path / "m")
    with open(folder / "pneumonia.onnx", "ab") as fh:
        fh.write(b"\0")
    assert not load_manifest(folder / "pneumonia.json").available
    assert load_manifest(folder / "pneumonia.json", verify_checksum=False).available


def test_bundled_folder_inside_a_frozen_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert bundled_models_dir() == Path(__file__).resolve().parents[2] / "models"
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert bundled_models_dir() == tmp_path / "models"


def test_missing_folders_are_ignored(tmp_path: Path) -> None:
    reg = ModelRegistry([tmp_path / "nope"])
    assert reg.entries == () and reg.gate() is None


def test_default_puts_user_folders_before_the_bundled_one(tmp_path: Path) -> None:
    reg = ModelRegistry.default([tmp_path])
    assert reg.folders == (tmp_path, bundled_models_dir())

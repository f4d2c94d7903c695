"""The packaging inputs in build/ and the path rules a frozen build relies on (fast, no build)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"


def _load_hook(name: str):
    """Execute one of our PyInstaller hooks as a module (hooks are plain Python at build time)."""
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), BUILD / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_icon_has_every_windows_size() -> None:
    Image = pytest.importorskip("PIL.Image")
    with Image.open(BUILD / "radview.ico") as ico:
        sizes = set(ico.info["sizes"])
    assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= sizes
    with Image.open(BUILD / "radview.png") as png:
        assert png.size == (256, 256) and png.mode == "RGBA"
        # drawn, not blank: many distinct colours and transparent corners
        assert len(png.getcolors(maxcolors=1 << 20) or []) > 100
        assert png.getpixel((0, 0))[3] == 0


def test_version_info_template_renders_to_a_windows_version_resource(tmp_path: Path) -> None:
    versioninfo = pytest.importorskip("PyInstaller.utils.win32.versioninfo")
    from viewer import __version__

    parts = [int(x) for x in re.findall(r"\d+", __version__)[:4]] + [0, 0, 0, 0]
    text = (BUILD / "version_info.txt.in").read_text(encoding="utf-8")
    rendered = (text.replace("@VERSION_TUPLE@", ", ".join(map(str, parts[:4])))
                .replace("@VERSION@", __version__).replace("@NAME@", "radview")
                .replace("@DESCRIPTION@", "radview test"))
    assert "@" not in rendered.split("\n", 2)[2]
    path = tmp_path / "version_info.txt"
    path.write_text(rendered, encoding="utf-8")
    info = versioninfo.load_version_info_from_text_file(str(path))
    assert f"filevers=({', '.join(map(str, parts[:4]))})" in str(info)
    assert f"StringStruct('ProductVersion', '{__version__}')" in str(info)


def test_pylibjpeg_hook_keeps_plugin_metadata_and_never_the_gpl_decoder() -> None:
    pytest.importorskip("PyInstaller")
    hook = _load_hook("hook-pylibjpeg")
    dests = {dest for _src, dest in hook.datas}
    assert any(d.startswith("pylibjpeg_openjpeg-") and d.endswith(".dist-info") for d in dests)
    assert "openjpeg" in hook.hiddenimports
    assert "libjpeg" not in hook.hiddenimports
    assert not any("libjpeg" in d.replace("pylibjpeg", "") for d in dests)


def test_gdcm_hook_keeps_metadata_and_leaves_tools_and_xml_out(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("PyInstaller")
    pytest.importorskip("gdcm")
    monkeypatch.delenv("RADVIEW_GDCM_XML", raising=False)
    hook = _load_hook("hook-gdcm")
    assert "_gdcm.gdcmswig" in hook.hiddenimports
    assert any(d.startswith("python_gdcm-") for _src, d in hook.datas)
    assert not any(Path(src).suffix == ".xml" or Path(src).name.startswith("gdcmconv") for src, _ in hook.datas)
    monkeypatch.setenv("RADVIEW_GDCM_XML", "1")
    with_xml = _load_hook("hook-gdcm")
    names = {Path(src).name for src, dest in with_xml.datas if dest.replace("\\", "/") == "_gdcm/XML"}
    assert "Part3.xml" in names


def test_runtime_paths_from_source_agree_with_the_model_registry() -> None:
    from viewer.inference.registry import bundled_models_dir
    from viewer.runtime_paths import bundle_root, is_frozen, models_dir, resources_dir

    assert not is_frozen()
    assert bundle_root() == REPO
    assert models_dir() == REPO / "models" == bundled_models_dir()
    assert resources_dir() == REPO / "resources"


def test_runtime_paths_when_frozen_point_into_the_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from viewer.inference.registry import bundled_models_dir
    from viewer.runtime_paths import bundle_root, executable_dir, is_frozen, models_dir

    internal = tmp_path / "radview" / "_internal"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(internal), raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "radview" / "radview-cli"))
    assert is_frozen()
    assert bundle_root() == internal
    assert models_dir() == internal / "models" == bundled_models_dir()
    assert executable_dir() == tmp_path / "radview"


def test_spec_excludes_what_must_never_ship() -> None:
    """The spec's exclude list (the bundle test checks the built result as well)."""
    text = (REPO / "viewer.spec").read_text(encoding="utf-8")
    block = text[text.index("excludes = ["): text.index("]", text.index("excludes = ["))]
    for name in ("PyQt5", "PyQt6", "PySide2", "torch", "torchvision", "tensorboard", "matplotlib",
                 "IPython", "tkinter", "training", "tests", "libjpeg"):
        assert f'"{name}"' in block, name
    assert "--workpath" in (REPO / "Makefile").read_text(encoding="utf-8")

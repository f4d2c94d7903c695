"""The frozen program itself: build it from viewer.spec (unless a fresh one exists) and run it.

Packaging breaks at run time, not at build time, so these tests run the bundle's own executables
from a folder outside the checkout: ``--version``, the full ``--self-test`` on the real DICOM
files, and ``analyze`` on a real radiograph; and they check what is (not) inside the bundle.
The build takes a few minutes on 2 cores; it is skipped when ``dist/<name>/`` is newer than every
input (viewer/, models/, resources/, build/, viewer.spec).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
EXE_SUFFIX = ".exe" if sys.platform == "win32" else ""
FORBIDDEN_TOP = ("PyQt5", "PyQt6", "PySide2", "torch", "torchvision", "tensorboard", "matplotlib",
                 "IPython", "tkinter", "training", "tests", "libjpeg", "scipy", "skimage", "onnx",
                 "pytorch_grad_cam", "ttach")
FORBIDDEN_DIST_INFO = ("pylibjpeg_libjpeg", "torch", "PyQt5", "PyQt6", "PySide2", "opencv_python-",
                       "matplotlib", "tensorboard")


def _flavour() -> str:
    try:
        metadata.distribution("onnxruntime-gpu")
        return "gpu"
    except metadata.PackageNotFoundError:
        return "cpu"


def _inputs_mtime() -> float:
    newest = (REPO / "viewer.spec").stat().st_mtime
    for folder in ("viewer", "models", "resources", "build"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                newest = max(newest, path.stat().st_mtime)
    return newest


def _internal(bundle: Path) -> Path:
    return bundle / "_internal"


@pytest.fixture(scope="module")
def bundle() -> Path:
    """``dist/radview`` (GPU flavour) or ``dist/radview-cpu``, built here when stale."""
    pytest.importorskip("PyInstaller")
    name = "radview" if _flavour() == "gpu" else "radview-cpu"
    out = REPO / "dist" / name
    cli = out / f"radview-cli{EXE_SUFFIX}"
    if not cli.is_file() or cli.stat().st_mtime < _inputs_mtime():
        cmd = [sys.executable, "-m", "PyInstaller", "viewer.spec", "--noconfirm", "--distpath", "dist",
               "--workpath", str(Path(".pyi-work") / _flavour()), "--log-level", "WARN"]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert cli.is_file()
    return out


def _run(bundle: Path, *args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run radview-cli from a folder outside the checkout, without the venv's Python paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return subprocess.run([str(bundle / f"radview-cli{EXE_SUFFIX}"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _repo_models() -> list[str]:
    return sorted(p.stem for p in (REPO / "models").glob("*.json"))


@pytest.fixture(scope="module")
def extra_models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``--models DIR`` arguments with tiny test models, only while models/ ships none."""
    if _repo_models():
        return []
    pytest.importorskip("torch")
    from tests.inference.tiny_models import make_model_set

    return [str(make_model_set(tmp_path_factory.mktemp("bundle-models") / "tiny"))]


def test_bundle_has_what_it_needs_and_nothing_it_must_not(bundle: Path) -> None:
    internal = _internal(bundle)
    names = {p.name for p in internal.iterdir()}
    assert (bundle / f"radview{EXE_SUFFIX}").is_file()
    for forbidden in FORBIDDEN_TOP:
        assert forbidden not in names, f"{forbidden} must not be bundled"
    dist_infos = [n for n in names if n.endswith(".dist-info")]
    for forbidden in FORBIDDEN_DIST_INFO:
        assert not any(n.startswith(forbidden) for n in dist_infos), forbidden
    assert not (internal / "cv2" / "qt").exists(), "opencv Qt plugins must not be bundled"
    assert not list(internal.rglob("tests")), "test folders must not be bundled"
    # codec plugins, their entry-point metadata, GDCM's dictionaries
    for needed in ("pydicom", "_gdcm", "PySide6", "onnxruntime", "cv2"):
        assert needed in names, needed
    for prefix in ("pylibjpeg-", "pylibjpeg_openjpeg-", "pyjpegls-", "pydicom-", "python_gdcm-"):
        assert any(n.startswith(prefix) for n in dist_infos), prefix
    assert list((internal / "_gdcm").glob("_gdcmswig*")), "GDCM's SWIG module missing"
    assert not list((internal / "_gdcm").glob("gdcmconv*")), "GDCM tools must not be bundled"
    assert list(internal.glob("_openjpeg*")) and list(internal.glob("_CharLS*"))
    # PySide6/Qt/plugins on Linux, PySide6/plugins on Windows
    assert list((internal / "PySide6").rglob("*qoffscreen*")), "offscreen Qt platform plugin missing"
    capi = internal / "onnxruntime" / "capi"
    assert list(capi.glob("*onnxruntime*")), "onnxruntime libraries missing"
    assert not list(internal.glob("libcudart*")) and not list(internal.glob("libcudnn*"))
    for model_id in _repo_models():
        assert (internal / "models" / f"{model_id}.json").is_file(), model_id
        manifest = json.loads((REPO / "models" / f"{model_id}.json").read_text())
        assert (internal / "models" / manifest["file"]).is_file(), manifest["file"]


def test_both_executables_print_the_version(bundle: Path, tmp_path: Path) -> None:
    from viewer import __version__

    done = _run(bundle, "--version", cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"radview {__version__}", done.stderr
    if sys.platform != "win32":  # windowed exe prints nothing to a pipe on Windows by design
        gui = subprocess.run([str(bundle / "radview"), "--version"], capture_output=True, text=True, timeout=120)
        assert gui.stdout.strip() == f"radview {__version__}"


def test_self_test_on_the_real_dicom_files(bundle: Path, shared_dicom: Path, tmp_path: Path,
                                           extra_models: list[str]) -> None:
    out = tmp_path / "selftest"
    args = ["--self-test", str(shared_dicom), "--out", str(out)]
    for folder in extra_models:
        args += ["--models", folder]
    done = _run(bundle, *args, cwd=tmp_path)
    report = json.loads((out / "report.json").read_text())
    items = report["items"]
    fails = [i for i in items if i["status"] == "fail"]
    assert done.returncode == 0 and report["result"] == "pass", (fails, done.stdout[-4000:], done.stderr[-2000:])
    assert "RESULT: PASS" in done.stdout
    env = {i["name"]: i["detail"] for i in items if i["section"] == "env"}
    assert "frozen bundle" in env["radview"] and str(bundle.resolve()) in env["radview"]
    assert "ExecutionProvider" in env["provider"]
    decoded = [i for i in items if i["section"] == "dicom" and i["status"] == "ok"]
    assert len(decoded) >= 17
    gpl = [i for i in items if i["status"] == "expected" and i["section"] == "dicom"]
    assert [i["name"].split(" [")[0] for i in gpl] == ["RG2_JPLY_fixed.dcm"]
    assert "GPL" in gpl[0]["detail"]
    assert sum(1 for i in items if i["section"] == "broken") == len(list((shared_dicom / "broken").glob("*.dcm")))
    ran = {i["name"].split()[0] for i in items if i["section"] == "model" and i["status"] == "ok"}
    assert set(_repo_models()) <= ran and ran
    assert any(i["section"] == "gradcam" and i["status"] == "ok" for i in items)
    assert (out / "selftest-screenshot.png").stat().st_size > 10_000


def test_self_test_without_a_folder_encodes_and_decodes_its_own_files(bundle: Path, tmp_path: Path,
                                                                        extra_models: list[str]) -> None:
    out = tmp_path / "selftest"
    args = ["--self-test", "--no-gui", "--out", str(out)]
    for folder in extra_models:
        args += ["--models", folder]
    done = _run(bundle, *args, cwd=tmp_path)
    report = json.loads((out / "report.json").read_text())
    assert done.returncode == 0 and report["result"] == "pass", done.stdout[-3000:]
    names = {i["name"].split(" [")[0] for i in report["items"] if i["section"] == "dicom" and i["status"] == "ok"}
    assert {"selftest-rle.dcm", "selftest-jpegls.dcm", "selftest-j2k.dcm"} <= names


def test_analyze_from_the_bundle(bundle: Path, shared_dicom: Path, tmp_path: Path,
                                 extra_models: list[str]) -> None:
    out = tmp_path / "results.json"
    args = ["analyze", str(shared_dicom / "966_fixed.dcm"), "--out", str(out), "--quiet"]
    for folder in extra_models:
        args += ["--models-dir", folder]
    done = _run(bundle, *args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = json.loads(out.read_text())
    rows = rows["results"] if isinstance(rows, dict) and "results" in rows else rows
    assert rows and all(r["status"] in ("ok", "out_of_scope", "outside_data") for r in rows), rows
    assert {r["model_id"] for r in rows} >= set(_repo_models())

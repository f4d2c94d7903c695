"""Shared fixtures: the real data folder (read in place, never copied) and DICOM generators."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

import numpy as np
import pytest

from tests import dicom_factory

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _support_log_in_a_scratch_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Entry points start the support log; in tests it goes to a scratch folder, never to the
    user's data folder (tests/robustness/test_privacy.py reads it back)."""
    import os

    folder = tmp_path_factory.mktemp("support-log")
    os.environ["RADVIEW_LOG_DIR"] = str(folder)
    return folder


@pytest.fixture(autouse=True, scope="session")
def _user_models_in_a_scratch_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user models folder (`radview models add`, searched by analyze and the window) is an
    empty scratch folder in tests: a developer's own models must never change a test's result."""
    import os

    folder = tmp_path_factory.mktemp("user-models")
    os.environ["RADVIEW_MODELS_DIR"] = str(folder)
    return folder


def shared_data_dir() -> Path:
    """``<repo>/../shared/data`` resolved (may not exist)."""
    return (REPO_ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-radiograph folder; skips the test when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data folder not found at {path}")
    return path


@pytest.fixture(scope="session")
def shared_dicom(shared_data: Path) -> Path:
    """``shared/data/dicom`` (skips when absent)."""
    path = shared_data / "dicom"
    if not path.is_dir():
        pytest.skip(f"shared DICOM folder not found at {path}")
    return path


@pytest.fixture
def make_dicom(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_dicom(name, pixels, **attributes) -> Path`` in ``tmp_path``."""

    def _make(name: str, pixels: np.ndarray, **kwargs: object) -> Path:
        return dicom_factory.write_dicom(tmp_path / name, pixels, **kwargs)  # type: ignore[arg-type]

    return _make


@pytest.fixture
def small_study(tmp_path: Path) -> Path:
    """A folder with 2 patients, 3 series, 5 images, an SR and a text file."""
    root = tmp_path / "study"
    rng = np.random.default_rng(0)
    study_a, series_a1, series_a2 = "1.2.3.1", "1.2.3.1.1", "1.2.3.1.2"
    for i in range(2):
        dicom_factory.write_dicom(root / "a" / f"a1_{i}.dcm", rng.integers(0, 4096, (32, 24), dtype=np.uint16),
                                  bits_stored=12, PatientName="Alpha^A", PatientID="A1",
                                  StudyInstanceUID=study_a, SeriesInstanceUID=series_a1,
                                  InstanceNumber=2 - i)
    dicom_factory.write_dicom(root / "a" / "a2_0", rng.integers(0, 255, (16, 16), dtype=np.uint8),
                              PatientName="Alpha^A", PatientID="A1", StudyInstanceUID=study_a,
                              SeriesInstanceUID=series_a2, SeriesNumber=2)
    for i in range(2):
        dicom_factory.write_dicom(root / "b" / "deep" / f"b_{i}.dcm",
                                  rng.integers(-500, 500, (20, 20), dtype=np.int16),
                                  PatientName="Beta^B", PatientID="B2", StudyInstanceUID="1.2.3.2",
                                  SeriesInstanceUID="1.2.3.2.1", InstanceNumber=i + 1)
    dicom_factory.write_sr(root / "b" / "report.dcm")
    (root / "notes.txt").write_text("not an image")
    return root


def window_factory(qtbot, settings_path: Path, cache_dir: Path, size: tuple[int, int], **build):
    """Generator behind the window fixtures: yields ``make(setup=None)`` which builds, shows and
    returns a MainWindow (``setup(window)`` runs before it is shown); every window is closed and
    its executors joined afterwards."""
    from PySide6.QtCore import QSettings

    from viewer.app import build_window
    from viewer.ui.settings import AppSettings

    windows: list = []

    def _make(setup=None):
        settings = AppSettings(QSettings(str(settings_path), QSettings.Format.IniFormat))
        window = build_window(settings, cache_dir, io_workers=2, thumb_workers=1,
                              decode_processes=0, **build)
        if setup is not None:
            setup(window)
        qtbot.addWidget(window)
        window.resize(*size)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield _make
    for window in windows:
        window.close()  # saves the layout and joins the executors
        window.shutdown()


@pytest.fixture
def ai_window(qtbot, tmp_path: Path):
    """Factory: a window whose only models are those of ``folder`` (bundled ones hidden), with
    its settings, thumbnails and history in ``tmp_path``; closed and joined afterwards."""
    from viewer.inference.registry import ModelRegistry
    from viewer.ui.ai_features import AiFeatures

    def attach(folder: Path):
        def setup(window) -> None:
            window.ai = AiFeatures(window, ModelRegistry([folder]), tmp_path / "hist" / "h.sqlite")
        return setup

    factory = window_factory(qtbot, tmp_path / "s.ini", tmp_path / "thumbs", (1200, 800), ai=False)
    make = next(factory)
    yield lambda folder: make(attach(folder))
    next(factory, None)

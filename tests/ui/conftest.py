"""UI test fixtures: Qt warnings fail tests, no thread may outlive a test, and a main window
built with temporary settings and thumbnail cache."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import pytest

from tests.conftest import window_factory


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Qt messages of level WARNING and above fail the UI tests (pytest-qt's own mechanism)."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.qt_log_level_fail("WARNING"))
            # The offscreen platform plugin's own notice, not a problem of ours.
            item.add_marker(pytest.mark.qt_log_ignore("does not support propagateSizeHints"))


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves worker threads running (executors must be joined on close)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()
              and t.name.startswith("radview")]
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


@pytest.fixture
def settings_path(tmp_path: Path) -> Path:
    return tmp_path / "settings" / "radview.ini"


@pytest.fixture
def make_window(qtbot: Any, tmp_path: Path, settings_path: Path) -> Iterator[Any]:
    """Factory building a MainWindow with an INI settings file and a temporary cache."""
    yield from window_factory(qtbot, settings_path, tmp_path / "thumbs", (1100, 750))

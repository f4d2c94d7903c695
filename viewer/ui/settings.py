"""Persistent settings: recent folders, window geometry and dock layout, user presets.

A thin typed wrapper over QSettings. The application uses the platform's default location;
tests inject a QSettings on a temporary INI file.
"""

from __future__ import annotations

import _thread
import threading

from PySide6.QtCore import QByteArray, QSettings

from viewer.state.view_state import WindowPreset

MAX_RECENT = 10


class AppSettings:
    """Typed access to the viewer's QSettings."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self.qsettings = settings or QSettings("radview", "radview")
        value = self.qsettings.value("recent/paths", [])
        if isinstance(value, str):
            value = [value]
        self._recent = [str(v) for v in _as_list(value) if v]
        self._written: threading.Event | None = None
        self._write_lock = threading.Lock()

    # -- recent --------------------------------------------------------------------------
    # Written on every change (a crash must not lose them), but not on the GUI thread: a
    # QSettings sync rewrites the whole INI file, 8-20 ms at nice 10 on the loaded 2-core
    # machine and 20-75 ms seen in the GUI probe. A short-lived thread writes through its own
    # QSettings on the same file (QSettings is reentrant: separate objects may be used from
    # different threads, even on the same file). ``_thread.start_new_thread`` because
    # ``Thread.start`` waits until the new thread runs (20+ ms seen on the loaded machine).
    def recent_paths(self) -> list[str]:
        return list(self._recent)

    def add_recent(self, path: str) -> list[str]:
        """Put ``path`` first in the recent list and persist the list in the background."""
        self._recent = ([path] + [p for p in self._recent if p != path])[:MAX_RECENT]
        self._persist_recent()
        return list(self._recent)

    def clear_recent(self) -> None:
        self._recent = []
        self._persist_recent()

    def _persist_recent(self) -> None:
        previous, done = self._written, threading.Event()
        self._written = done
        _thread.start_new_thread(self._write_recent, (list(self._recent), previous, done))

    def _write_recent(self, paths: list[str], previous: threading.Event | None,
                      done: threading.Event) -> None:
        try:
            if previous is not None:
                previous.wait()  # writes land in the order of the changes
            with self._write_lock:
                other = QSettings(self.qsettings.fileName(), self.qsettings.format())
                other.setValue("recent/paths", paths)
                other.sync()
        finally:
            done.set()

    def wait_written(self) -> None:
        """Wait for the background writes of the recent list (tests; :meth:`sync` does it too)."""
        done, self._written = self._written, None
        if done is not None:
            done.wait()

    # -- layout ---------------------------------------------------------------------------
    def save_layout(self, geometry: QByteArray, state: QByteArray) -> None:
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)

    def layout(self) -> tuple[QByteArray | None, QByteArray | None]:
        geometry = self.qsettings.value("window/geometry")
        state = self.qsettings.value("window/state")
        return (
            geometry if isinstance(geometry, QByteArray) else None,
            state if isinstance(state, QByteArray) else None,
        )

    # -- presets and options --------------------------------------------------------------
    def user_presets(self) -> list[WindowPreset]:
        value = self.qsettings.value("window_presets", [])
        if isinstance(value, str):
            value = [value]
        presets = [WindowPreset.from_text(str(v)) for v in _as_list(value)]
        return [p for p in presets if p is not None]

    def set_user_presets(self, presets: list[WindowPreset]) -> None:
        self.qsettings.setValue("window_presets", [p.to_text() for p in presets])

    def overlay_visible(self) -> bool:
        return str(self.qsettings.value("view/overlay_visible", "true")).lower() == "true"

    def set_overlay_visible(self, visible: bool) -> None:
        self.qsettings.setValue("view/overlay_visible", "true" if visible else "false")

    def sync(self) -> None:
        """Write everything (called when the window closes)."""
        self.wait_written()
        self.qsettings.setValue("recent/paths", list(self._recent))
        self.qsettings.sync()


def _as_list(value: object) -> list[object]:
    """QSettings gives a list, a single string, or nothing, depending on the backend."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value] if value else []

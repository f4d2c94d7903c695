"""Persistent settings: recent folders, window geometry and dock layout, user presets.

A thin typed wrapper over QSettings. The application uses the platform's default location;
tests inject a QSettings on a temporary INI file.
"""

from __future__ import annotations

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
        self._recent = [str(v) for v in (value or []) if v]

    # -- recent --------------------------------------------------------------------------
    # Kept in memory and written by sync(): a QSettings write on every open cost the GUI
    # thread 20-75 ms (the INI file is rewritten on the next event-loop turn).
    def recent_paths(self) -> list[str]:
        return list(self._recent)

    def add_recent(self, path: str) -> list[str]:
        self._recent = ([path] + [p for p in self._recent if p != path])[:MAX_RECENT]
        return list(self._recent)

    def clear_recent(self) -> None:
        self._recent = []

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
        presets = [WindowPreset.from_text(str(v)) for v in (value or [])]
        return [p for p in presets if p is not None]

    def set_user_presets(self, presets: list[WindowPreset]) -> None:
        self.qsettings.setValue("window_presets", [p.to_text() for p in presets])

    def overlay_visible(self) -> bool:
        return str(self.qsettings.value("view/overlay_visible", "true")).lower() == "true"

    def set_overlay_visible(self, visible: bool) -> None:
        self.qsettings.setValue("view/overlay_visible", "true" if visible else "false")

    def sync(self) -> None:
        """Write everything (called when the window closes)."""
        self.qsettings.setValue("recent/paths", list(self._recent))
        self.qsettings.sync()

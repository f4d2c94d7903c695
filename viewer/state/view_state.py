"""Observable view state of the canvas, Qt-free.

What the user has done to the current image (orientation, inversion, window) lives here as
immutable values so that the canvas, the window/level panel, the status bar and later the AI
panel all read one source of truth, and tests can drive it without widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from collections.abc import Callable

Listener = Callable[[str], None]


@dataclass(frozen=True)
class Orientation:
    """Display orientation: quarter turns clockwise, then horizontal/vertical flips."""

    quarter_turns: int = 0
    flip_h: bool = False
    flip_v: bool = False

    def rotated(self, quarters: int = 1) -> Orientation:
        """Rotate by ``quarters`` x 90 degrees clockwise (negative: anticlockwise)."""
        return replace(self, quarter_turns=(self.quarter_turns + quarters) % 4)

    def flipped_h(self) -> Orientation:
        return replace(self, flip_h=not self.flip_h)

    def flipped_v(self) -> Orientation:
        return replace(self, flip_v=not self.flip_v)


@dataclass(frozen=True)
class WindowLevel:
    """A window in modality units: (0028,1050) Window Center and (0028,1051) Window Width.

    ``explanation`` is (0028,1055) Window Center & Width Explanation for file windows, or a
    label such as "Auto" / a user preset name; ``origin`` is "file", "auto", "user" or "drag".
    """

    center: float
    width: float
    explanation: str = ""
    origin: str = "user"

    def __post_init__(self) -> None:
        if not self.width > 0:
            object.__setattr__(self, "width", 1.0)

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0

    def dragged(self, d_center: float, d_width: float) -> WindowLevel:
        """The window moved by a drag (width never below 1)."""
        return WindowLevel(
            self.center + d_center, max(1.0, self.width + d_width), "Manual", "drag"
        )


@dataclass(frozen=True)
class WindowPreset:
    """A named user window preset (persisted by the UI in its settings)."""

    name: str
    center: float
    width: float

    def to_text(self) -> str:
        return f"{self.name}|{self.center:g}|{self.width:g}"

    @classmethod
    def from_text(cls, text: str) -> WindowPreset | None:
        parts = text.rsplit("|", 2)
        if len(parts) != 3:
            return None
        try:
            center, width = float(parts[1]), float(parts[2])
        except ValueError:
            return None
        if not width > 0 or not parts[0].strip():
            return None
        return cls(parts[0].strip(), center, width)


class ViewState:
    """Mutable holder of the immutable view values with change notification.

    Listeners get the name of the field that changed: "orientation", "invert", "window",
    "overlay_visible". A listener added by a widget must be removed when it is destroyed.
    """

    def __init__(self) -> None:
        self.orientation = Orientation()
        self.invert = False
        self.window: WindowLevel | None = None
        self.overlay_visible = True
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, name: str) -> None:
        for listener in list(self._listeners):
            listener(name)

    def touch(self, name: str) -> None:
        """Notify listeners that ``name`` was replaced without a setter (e.g. a new image)."""
        self._notify(name)

    def set_orientation(self, orientation: Orientation) -> None:
        if orientation != self.orientation:
            self.orientation = orientation
            self._notify("orientation")

    def set_invert(self, invert: bool) -> None:
        if invert != self.invert:
            self.invert = invert
            self._notify("invert")

    def set_window(self, window: WindowLevel | None) -> None:
        if window != self.window:
            self.window = window
            self._notify("window")

    def set_overlay_visible(self, visible: bool) -> None:
        if visible != self.overlay_visible:
            self.overlay_visible = visible
            self._notify("overlay_visible")

    def reset_view(self) -> None:
        """Back to the stored orientation and no user inversion (the window is kept)."""
        self.set_orientation(Orientation())
        self.set_invert(False)

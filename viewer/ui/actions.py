"""The window's actions with their keyboard shortcuts, declared in one table."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    shortcuts: tuple[str, ...] = ()
    checkable: bool = False
    tip: str = ""


SPECS: tuple[ActionSpec, ...] = (
    ActionSpec("open_files", "Open &Files...", ("Ctrl+O",), tip="DICOM, DICOMDIR, zip, PNG, JPEG"),
    ActionSpec("open_folder", "Open F&older...", ("Ctrl+Shift+O",)),
    ActionSpec("add_folder", "&Add Folder to the Library...", ("Ctrl+Shift+A",),
               tip="Scan another folder into what is open, instead of replacing it"),
    ActionSpec("cancel_scan", "&Cancel Scan", ("Ctrl+.",)),
    ActionSpec("quit", "&Quit", ("Ctrl+Q",)),
    ActionSpec("fit", "&Fit", ("F",)),
    ActionSpec("zoom_in", "Zoom &In", ("+", "=")),
    ActionSpec("zoom_out", "Zoom &Out", ("-",)),
    ActionSpec("rotate_cw", "Rotate 90\u00b0 &Clockwise", ("R",)),
    ActionSpec("rotate_ccw", "Rotate 90\u00b0 &Anticlockwise", ("Shift+R", "L")),
    ActionSpec("flip_h", "Flip &Horizontal", ("H",)),
    ActionSpec("flip_v", "Flip &Vertical", ("V",)),
    ActionSpec("invert", "&Invert", ("I",), checkable=True),
    ActionSpec("reset", "&Reset View", ("Home", "Ctrl+0")),
    ActionSpec("auto_window", "&Auto Window", ("A",)),
    ActionSpec("ruler", "&Distance (Ruler)", ("M",), checkable=True,
               tip="Measure a distance (mm): drag, or click both ends"),
    # The other measurement tools (viewer/ui/measure_items.py); checkable, one at a time.
    ActionSpec("measure_angle", "&Angle", ("N",), checkable=True,
               tip="Angle: drag along one arm, then click the end of the other (or 3 clicks, "
                   "the vertex second)"),
    ActionSpec("measure_cobb", "&Cobb Angle", ("C",), checkable=True,
               tip="Cobb angle: drag along each of the two endplates"),
    ActionSpec("measure_rect", "&Rectangle ROI", ("B",), checkable=True,
               tip="Rectangle ROI: mean, SD, min/max in modality units and area"),
    ActionSpec("measure_ellipse", "&Ellipse ROI", ("E",), checkable=True,
               tip="Ellipse ROI: mean, SD, min/max in modality units and area"),
    ActionSpec("measure_arrow", "Arro&w", ("P",), checkable=True,
               tip="Arrow: drag from the tail to the point shown"),
    ActionSpec("measure_text", "&Text", ("T",), checkable=True, tip="Text annotation: click"),
    ActionSpec("measure_calibrate", "Calibrate by a &Known Length", ("K",), checkable=True,
               tip="For images without a pixel spacing: draw over an object of known length"),
    ActionSpec("delete_measurement", "&Delete Measurement", ("Del",)),
    ActionSpec("clear_measurements", "C&lear All Measurements", ("Ctrl+Del",),
               tip="Every measurement on the image on screen"),
    ActionSpec("cancel_drawing", "Cancel Drawing", ("Esc",),
               tip="Cancel a drawing in progress, else deselect, else put the tool down"),
    ActionSpec("export_measurements", "Export &Measurements...",
               tip="The measurements on the image on screen as CSV or JSON"),
    ActionSpec("overlay", "Patient &Overlay", ("O",), checkable=True),
    ActionSpec("next_image", "&Next Image", ("PgDown", "Right")),
    ActionSpec("previous_image", "&Previous Image", ("PgUp", "Left")),
    ActionSpec("next_frame", "Next Fra&me", (".", "Ctrl+Down"), tip="Multi-frame images"),
    ActionSpec("previous_frame", "Previous Fr&ame", (",", "Ctrl+Up"), tip="Multi-frame images"),
    ActionSpec("open_log_folder", "Open &Log Folder", tip="The support log: versions, timings and "
               "errors, without patient data (send it with a problem report)"),
    ActionSpec("full_screen", "&Full Screen", ("F11",), checkable=True),
    ActionSpec("hide_panels", "Hide All &Panels", ("Ctrl+Shift+H",), checkable=True,
               tip="Only the image (again to bring the panels back)"),
    # Viewports side by side (viewer/ui/viewports.py).
    ActionSpec("layout_1x1", "One Viewport (1\u00d71)", ("Ctrl+1",), checkable=True),
    ActionSpec("layout_1x2", "Two Viewports (1\u00d72)", ("Ctrl+2",), checkable=True,
               tip="Two images side by side; a click on one makes it the active viewport"),
    ActionSpec("layout_2x2", "Four Viewports (2\u00d72)", ("Ctrl+4",), checkable=True),
    ActionSpec("next_viewport", "Next Viewport", ("Ctrl+Tab",),
               tip="Make the next viewport the active one (selections load into it)"),
    ActionSpec("compare_next", "Compare in Next Viewport (no AI overlays)", ("Ctrl+Shift+D",),
               tip="The active image, as shown, in the next viewport without the AI overlays"),
    ActionSpec("link_zoom", "Link Zoom/Pan", ("Ctrl+Shift+Z",), checkable=True,
               tip="Zoom and pan every viewport together (same relative view)"),
    ActionSpec("link_window", "Link Window", ("Ctrl+Shift+W",), checkable=True,
               tip="Window/level every viewport together (same values when in the same units)"),
    ActionSpec("shortcuts", "&Keyboard Shortcuts", ("F1",)),
    ActionSpec("about", "&About radview"),
) + tuple(
    # Keys 1-9: the window/level presets in the panel's order (the file's windows first, then
    # the automatic window, then the user's presets).
    ActionSpec(f"preset_{i}", f"Window Preset &{i}", (str(i),), tip=f"Window/level preset {i}")
    for i in range(1, 10)
)


def build_actions(parent: QWidget, handlers: dict[str, Callable[..., object]]) -> dict[str, QAction]:
    """Create the actions of :data:`SPECS`, connected to ``handlers[name]`` and added to
    ``parent`` so their shortcuts work wherever the focus is in the window."""
    actions: dict[str, QAction] = {}
    for spec in SPECS:
        action = QAction(spec.text, parent)
        action.setObjectName(f"action_{spec.name}")
        action.setShortcuts([QKeySequence(s) for s in spec.shortcuts])
        action.setCheckable(spec.checkable)
        if spec.tip or spec.shortcuts:
            keys = ", ".join(spec.shortcuts)
            action.setToolTip(f"{spec.tip} ({keys})" if spec.tip else f"{spec.text.replace('&', '')} ({keys})")
        handler = handlers.get(spec.name)
        if handler is not None:
            (action.toggled if spec.checkable else action.triggered).connect(handler)
        parent.addAction(action)
        actions[spec.name] = action
    return actions

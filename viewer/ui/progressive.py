"""Progressive display in the window: a provisional stand-in first, then the full image.

The image controller delivers a reduced-resolution decode of a new JPEG 2000 / JPEG Baseline
image as ``sig_preview_ready`` (:mod:`viewer.ui.image_controller`,
:mod:`viewer.state.provisional`); :func:`show_preview` puts it into the viewport the load goes
to, at fit, marked provisional (the canvas's corner text says "loading full resolution…", the
pixel readout waits, the measurements and the ruler wait), and :func:`swap_in_full` replaces it
with the full image keeping zoom, pan, orientation, inversion and any window the user chose
meanwhile (an untouched window becomes the full image's default). For the panels a stand-in is
no image yet: the window emits ``sig_image_cleared(record, LOADING_TEXT)``, so the AI panel
says so and Analyse (Ctrl+R) has nothing to run on until ``sig_image_displayed`` brings the
full image. A late stand-in or full image of an image the user has left is dropped by the
controller; a failed full decode clears the viewport as any failure does. One load runs at a
time, so a stand-in left in another viewport when a new load starts (the user moved on to
another viewport before its full image came) will never be completed: that viewport is
cleared with :data:`INTERRUPTED_TEXT`, never left standing as if it were the image.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

from viewer.state.display_plan import PreparedImage, voi_to_window
from viewer.ui.image_controller import overlay_text
from viewer.ui.viewports import Viewport, ViewportGrid

__all__ = ["INTERRUPTED_TEXT", "LOADING_TEXT", "drop_orphans", "install_progressive", "show_preview",
           "swap_in_full"]

LOADING_TEXT = "Full resolution still loading\u2026"
INTERRUPTED_TEXT = ("The full-resolution image was not loaded: another image was selected "
                    "meanwhile. Select this image again to show it.")


def install_progressive(window: Any, load_fn: Callable[..., Any]) -> None:
    """Give ``window.images`` its preview decoder and viewport size, and show its stand-ins.

    The decoder is the decode pool's ``load_preview`` when ``load_fn`` is the ``load_image`` of a
    pool with worker processes (the composition root passes that); any other loader, or a pool
    decoding on threads (the tests' windows), gets no previews."""
    images = window.images
    pool = getattr(load_fn, "__self__", None)
    # Without decode processes a preview would finish together with the full decode (GIL).
    if int(getattr(pool, "workers", 0) or 0) > 0:
        images.preview_fn = getattr(pool, "load_preview", None)

    def view_size() -> tuple[float, float]:
        view = window.viewports.load_target().canvas.view
        ratio = float(view.devicePixelRatioF())
        return view.width() * ratio, view.height() * ratio

    images.preview_view = view_size
    images.sig_preview_ready.connect(lambda record, prepared: show_preview(window, record, prepared))
    images.sig_load_started.connect(lambda _record: drop_orphans(window.viewports))


def drop_orphans(grid: ViewportGrid) -> None:
    """A new load starts (into the active viewport): clear the stand-ins elsewhere, whose full
    images will not come."""
    for vp in grid.viewports:
        if vp is not grid.active and vp.canvas.provisional:
            grid.clear_viewport(vp, INTERRUPTED_TEXT)


def show_preview(window: Any, record: Any, prepared: PreparedImage) -> None:
    """Show the stand-in of ``record`` in the viewport its load goes to (at fit, the file's or
    the stand-in's default window); in the active one the panels follow."""
    grid: ViewportGrid = window.viewports
    vp = grid.load_target()
    if vp not in grid.visible_viewports():
        return
    active = vp is grid.active
    if active:  # a new image opens unrotated and not inverted, as the full path does
        vp.state.reset_view()
        window.action_map["invert"].setChecked(False)
    rg = prepared.radiograph
    with grid.quiet():
        vp.canvas.set_image(prepared, voi_to_window(prepared.voi), prepared.voi,
                            overlay_text(record, rg), fit=True, provisional=True)
    grid.image_shown(vp, record)
    if active:
        window.status.set_frames(rg.frame_index, rg.frame_count)
        window.status.show_probe(None)
        window.window_panel.set_image(prepared)
        window.sig_image_cleared.emit(record, LOADING_TEXT)
    window.sig_preview_displayed.emit(record)


def swap_in_full(grid: ViewportGrid, vp: Viewport, record: Any, prepared: PreparedImage) -> None:
    """Replace ``vp``'s stand-in with the full image: same geometry, so zoom and pan stay;
    the user's window stays if they touched it, else the full image's default replaces the
    stand-in's (they differ only when it is a histogram-based auto window)."""
    canvas = vp.canvas
    if canvas.window_touched():
        window, voi = vp.state.window, canvas.voi
    else:
        voi = prepared.voi
        window = voi_to_window(voi)
    with grid.quiet():
        canvas.set_image(prepared, window, voi, overlay_text(record, prepared.radiograph), fit=False)

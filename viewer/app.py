"""Composition root: arguments, logging, executors, services and the main window.

``radview [PATH...]`` opens the viewer (optionally on paths). ``radview --demo [DIR]`` opens
the demo folder (default ``../shared/data/dicom``); with no display it runs headless
(``QT_QPA_PLATFORM=offscreen``), writes ``demo-screenshot.png`` and ``demo-summary.json`` to
``--out`` (default ``./out``) and exits. ``--screenshot PATH`` grabs the window after the
first image is shown and exits (README screenshots under Xvfb).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any
from collections.abc import Sequence

from viewer import RESEARCH_NOTICE, __version__

log = logging.getLogger("radview")
GUI_SWITCH_INTERVAL_S = 0.001

# The demo studies sit beside a checkout (../shared/data/dicom); a frozen bundle looks beside the
# current folder instead, since its own files live in _internal/.
DEFAULT_DEMO = (Path.cwd() if getattr(sys, "frozen", False) else Path(__file__).resolve().parents[1]) \
    / ".." / "shared" / "data" / "dicom"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="radview", description=f"Radiograph viewer. {RESEARCH_NOTICE}"
    )
    parser.add_argument("paths", nargs="*", help="folders, files, DICOMDIR, zip, PNG/JPEG")
    parser.add_argument("--demo", nargs="?", const=str(DEFAULT_DEMO), default=None,
                        metavar="DIR", help="open the demo folder (headless without a display)")
    parser.add_argument("--out", default="out", help="output folder of the headless demo")
    parser.add_argument("--screenshot", default=None, metavar="PATH",
                        help="save a grab of the window after the first image, then exit")
    parser.add_argument("--cache-dir", default=None, help="thumbnail cache folder")
    parser.add_argument("--settings", default=None, help="settings INI file (default: per user)")
    parser.add_argument("--hide-overlay", action="store_true", help="hide the patient overlay")
    parser.add_argument("--hide-names", action="store_true",
                        help="show patients as 'Patient 1, 2, ...' in the browser (screenshots)")
    parser.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                        help="extra folder of model manifests (before the bundled models)")
    parser.add_argument("--no-ai", action="store_true", help="start without the AI features")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(list(argv))


XCB_LIBRARIES = {"xcb-cursor": "libxcb-cursor0", "xcb-icccm": "libxcb-icccm4",
                 "xcb-keysyms": "libxcb-keysyms1"}


def missing_xcb_libraries() -> list[str]:
    """Debian/Ubuntu packages Qt's xcb platform needs and this Linux machine lacks (a plain
    install has none of them; Qt then aborts with "could not load the Qt platform plugin").
    Empty elsewhere, on Wayland or the offscreen platform."""
    if not sys.platform.startswith("linux") or not os.environ.get("DISPLAY"):
        return []
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if platform and platform != "xcb":
        return []
    from ctypes.util import find_library

    return [pkg for lib, pkg in XCB_LIBRARIES.items() if find_library(lib) is None]


def has_display() -> bool:
    """Whether Qt can open windows a person can see: a display server, or a platform chosen
    explicitly. The windowless platforms (offscreen, minimal) count as no display, so
    ``--demo`` under them runs headless instead of waiting for a user who cannot see it."""
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if platform in ("offscreen", "minimal"):
        return False
    return any(os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")) \
        or sys.platform in ("win32", "darwin")


def build_window(settings: Any = None, cache_dir: Path | None = None, io_workers: int = 3,
                 thumb_workers: int = 2, decode_processes: int = 2, *, ai: bool = True,
                 model_dirs: Sequence[Path] = (), history_path: Path | None = None) -> Any:
    """Create the main window with its executors and services (requires a QApplication).

    ``decode_processes`` worker processes decode compressed pixel data (0: decode on threads,
    as the tests do to start fast). ``ai``: add the analysis features with the models of
    ``model_dirs`` and the bundled ones; the history database is ``history_path`` (default:
    ``history.sqlite`` in the user data folder, QStandardPaths AppDataLocation, opened on first
    use)."""
    import pyqtgraph as pg
    from PySide6.QtCore import QStandardPaths, QTimer

    from viewer.dicom.load import read_header
    from viewer.services.decode_pool import DecodePool
    from viewer.services.library import ImageCache, scan_paths
    from viewer.services.thumbnails import ThumbnailStore
    from viewer.ui.main_window import MainWindow
    from viewer.ui.settings import AppSettings
    from viewer.ui.task_bridge import TaskBridge

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
    # The GUI thread competes for the GIL with the scan and thumbnail threads; a thread that
    # wants it waits up to one switch interval. 1 ms instead of 5 ms: GUI probe p99 gap while
    # scanning 10,000 files 9-14 ms (was 16-24), while thumbnails filled 24-46 ms (was 31-78).
    sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)
    if cache_dir is None:
        base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.CacheLocation)
        cache_dir = Path(base or Path.home() / ".cache" / "radview") / "thumbnails"
    store = ThumbnailStore(cache_dir, size=128)
    pool = DecodePool(decode_processes)
    # Start the decode workers once the window has painted: spawning them earlier competed with
    # the GUI's own start-up for the two cores (5.7 s vs 3.2 s to first paint, measured).
    # A decode requested before then starts the pool on demand.
    QTimer.singleShot(1500, pool.warm_up_in_background)
    window = MainWindow(
        io_bridge=TaskBridge(max_workers=io_workers),
        thumb_bridge=TaskBridge(max_workers=thumb_workers),
        scan_fn=scan_paths,
        load_fn=pool.load_image,
        thumb_fn=partial(pool.make_thumbnail, store),
        header_fn=read_header,
        image_cache=ImageCache(max_bytes=512 * 1024**2),
        settings=settings if settings is not None else AppSettings(),
    )
    window.add_shutdown_hook(pool.shutdown)
    if ai:
        from viewer.ui.ai_features import install_ai

        if history_path is None:
            data = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
            history_path = Path(data or Path.home() / ".local" / "share" / "radview") / "history.sqlite"
        install_ai(window, model_dirs, history_path)
    freeze_startup_heap(window)
    return window


def freeze_startup_heap(window: Any) -> None:
    """Keep the objects made at start-up (modules, Qt wrappers, the window: ~170,000) out of
    Python's cyclic garbage collection until ``window`` shuts down.

    A full (generation 2) collection walks every tracked object while holding the GIL; whichever
    thread triggers it (usually a scan or thumbnail worker, which allocate the most) blocks the
    GUI thread for the whole walk: 100-130 ms here with the start-up heap, the longest GUI stall
    while scanning 10,000 files (measured with gc.callbacks against the gap probe). Frozen
    objects are still freed by reference counting; only cycles among them wait for
    :func:`gc.unfreeze` at shutdown, which hands them back to the collector.
    """
    gc.freeze()
    window.add_shutdown_hook(gc.unfreeze)


def main(argv: Sequence[str]) -> int:
    """GUI entry point; returns the process exit code."""
    args = parse_args(argv)
    if args.demo is not None and not Path(args.demo).is_dir():
        print(f"radview: demo folder not found: {args.demo} (give one: radview --demo DIR)",
              file=sys.stderr)
        return 2
    from viewer.services.support_log import setup_support_log

    setup_support_log("gui", verbose=args.verbose)
    headless = (args.demo is not None or args.screenshot) and not has_display()
    if headless:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    else:
        missing = missing_xcb_libraries()
        if missing:
            print("radview: the window needs system libraries this machine lacks: "
                  f"{' '.join(missing)}\n  install them with: sudo apt-get install {' '.join(missing)}"
                  "\n  (or run headless: QT_QPA_PLATFORM=offscreen radview --demo DIR)",
                  file=sys.stderr)
            return 2
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from viewer.ui.settings import AppSettings

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "radview"])
    app.setApplicationName("radview")
    app.setApplicationVersion(__version__)
    _set_icon(app)
    settings_file = args.settings
    if settings_file is None and (headless or args.screenshot):
        # Artefacts must not depend on (or change) this user's layout and recent files.
        scratch = tempfile.TemporaryDirectory(prefix="radview-demo-settings-")
        settings_file = str(Path(scratch.name) / "radview.ini")
    settings = AppSettings(QSettings(settings_file, QSettings.Format.IniFormat)) \
        if settings_file else AppSettings()
    _quiet_pydicom(args.verbose)
    window = build_window(settings, Path(args.cache_dir) if args.cache_dir else None,
                          ai=not args.no_ai, model_dirs=[Path(d) for d in args.models_dir])
    if args.hide_overlay:
        window.action_map["overlay"].setChecked(False)
    # Headless demos and screenshots are artefacts that get shared: no identifiers in them.
    window.browser.hide_names = bool(args.hide_names or args.screenshot or headless)
    if headless or args.screenshot or os.environ.get("RADVIEW_STARTUP_PROBE"):
        window.resize(1600, 1000)  # artefacts and the start-up bench: the same size everywhere
    # otherwise the size saved at the last close, or the default fitted to the screen
    window.show()
    try:
        if os.environ.get("RADVIEW_STARTUP_PROBE"):
            return _startup_probe(app, window)
        if args.demo is not None and headless:
            return _run_headless_demo(window, args)
        if args.screenshot:
            from viewer.ui.demo import take_screenshot

            paths = args.paths or ([args.demo] if args.demo else [])
            ok = take_screenshot(window, paths, Path(args.screenshot))
            print(f"screenshot: {args.screenshot}")
            return 0 if ok else 1
        paths = list(args.paths) + ([args.demo] if args.demo else [])
        if paths:
            window.open_paths(paths)
        quit_after = float(os.environ.get("RADVIEW_QUIT_AFTER_S", "0") or 0)
        if quit_after > 0:  # soak tests and benchmarks: a window that closes itself
            from PySide6.QtCore import QTimer

            QTimer.singleShot(int(quit_after * 1000), app.quit)
        return int(app.exec())
    finally:
        window.shutdown()
        window.close()


def _startup_probe(app: Any, window: Any) -> int:
    """``RADVIEW_STARTUP_PROBE=1``: print the wall-clock time of the main window's first paint,
    then quit (bench/package.py measures cold start from the process launch to that line)."""
    import time

    from PySide6.QtCore import QEvent, QObject, QTimer

    class _FirstPaint(QObject):
        seen = False

        def eventFilter(self, obj: Any, event: Any) -> bool:
            if event.type() == QEvent.Type.Paint and not self.seen:
                self.seen = True
                stamp = time.time()
                QTimer.singleShot(0, lambda: (print(f"startup-probe: painted {stamp:.3f}", flush=True),
                                              app.quit()))
            return False

    probe = _FirstPaint(window)
    window.installEventFilter(probe)
    QTimer.singleShot(20000, app.quit)  # never hang a benchmark
    app.exec()
    return 0 if probe.seen else 1


def _quiet_pydicom(verbose: bool) -> None:
    """pydicom logs a traceback per failed decoder plugin and a warning per odd file; the load
    report says it better. Import it first: importing pydicom resets its logger's level."""
    import pydicom  # noqa: F401  # radview: allow - logging set-up only, no pydicom use

    if not verbose:
        logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def _set_icon(app: Any) -> None:
    """Window icon from resources/radview.svg (rendered by Qt's SVG image plugin)."""
    from PySide6.QtGui import QIcon

    from viewer.runtime_paths import resources_dir

    icon_path = resources_dir() / "radview.svg"
    if icon_path.exists():
        app.setWindowIcon(QIcon(str(icon_path)))


def _run_headless_demo(window: Any, args: argparse.Namespace) -> int:
    from viewer.ui.demo import run_demo

    folder = Path(args.demo).resolve()
    if not folder.exists():
        print(f"demo folder not found: {folder}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    summary = run_demo(window, str(folder), out, hide_overlay=True)
    print(f"radview demo (headless): {summary['files_scanned']} files, {summary['images']} images, "
          f"{len(summary['problems'])} problems")
    print(f"screenshot: {summary['screenshot']}")
    print(f"summary:    {out / 'demo-summary.json'}")
    return 0

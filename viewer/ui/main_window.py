"""The main window: assembles the docks, menus and controllers and delegates to them.

Layout: canvas in the centre; browser and thumbnails on the left; window/level and DICOM header
on the right (the right dock area is also where the AI results panel goes:
:meth:`MainWindow.add_side_panel`; with the AI features the header shares a tabbed dock with the
overlay, model-input and history panels); the load report at the bottom. Form-like panels sit in
scroll areas, so the window's minimum size stays that of a laptop screen.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import (
    QDockWidget, QFileDialog, QFrame, QLabel, QMainWindow, QMenu, QScrollArea, QWidget,
)

from viewer import RESEARCH_NOTICE, __version__
from viewer.state.display_plan import PreparedImage, voi_to_window
from viewer.state.view_state import ViewState
from viewer.ui.actions import build_actions
from viewer.ui.browser import BrowserTree
from viewer.ui.canvas import ImageCanvas
from viewer.ui.header_dock import HeaderView
from viewer.ui.image_controller import ImageController, overlay_text
from viewer.ui.library_controller import LibraryController
from viewer.ui.load_report import LoadReport
from viewer.ui.measurements_dock import install_measurements
from viewer.ui.progressive import install_progressive, swap_in_full
from viewer.ui.settings import AppSettings
from viewer.ui.status_bar import StatusPanel
from viewer.ui.task_bridge import TaskBridge, TaskFailure
from viewer.ui.thumbnails import ThumbnailGrid
from viewer.ui.viewports import Viewport, ViewportGrid, install_viewports
from viewer.ui.window_panel import WindowPanel

OPEN_FILTER = "Images and archives (*.dcm *.dicom DICOMDIR *.zip *.png *.jpg *.jpeg *.ima);;All files (*)"


class ProblemRow:
    """A load-report row for a listed image that failed to decode (``found_by``: "thumbnail"
    or "display"), with the error's reason, advice and transfer syntax."""

    def __init__(self, record: Any, failure: TaskFailure, found_by: str) -> None:
        self.path, self.member = record.path, record.member
        self.reason, self.advice = failure.message, failure.advice
        self.transfer_syntax = failure.transfer_syntax or getattr(record, "transfer_syntax_uid", "")
        self.found_by = found_by


PREFETCH_DELAY_MS = 250  # after an image is shown, before its neighbours are decoded


class MainWindow(QMainWindow):
    """The viewer window. Built by :func:`viewer.app.build_window` with its services."""

    sig_image_displayed = Signal(object, object)  # record, PreparedImage
    # Nothing is on screen any more (the record that could not be shown, or None; why): every
    # view of "the current image" (AI panel, overlays, window, readouts) clears with it.
    sig_image_cleared = Signal(object, str)
    # record: its provisional stand-in is on screen, the full image follows (ui/progressive.py)
    sig_preview_displayed = Signal(object)

    def __init__(
        self,
        io_bridge: TaskBridge,
        thumb_bridge: TaskBridge,
        scan_fn: Callable[..., Any],
        load_fn: Callable[[Any], Any],
        thumb_fn: Callable[[Any], Any],
        header_fn: Callable[[Any], Any] | None,
        image_cache: Any,
        settings: AppSettings,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("radviewMain")
        self.setWindowTitle(f"radview {__version__} - {RESEARCH_NOTICE}")
        self.setAcceptDrops(True)
        self.bridges = (io_bridge, thumb_bridge)
        self.settings = settings
        self.last_display_ms = 0.0
        self._shutdown_hooks: list[Callable[[], object]] = []

        # One to four canvases side by side (viewer/ui/viewports.py); ``canvas`` and
        # ``view_state`` are the active viewport's.
        self.viewports = ViewportGrid(self._new_view_state)
        self.setCentralWidget(self.viewports)
        self.browser = BrowserTree()
        self.grid = ThumbnailGrid(thumb_bridge, thumb_fn)
        self.window_panel = WindowPanel(self.view_state)
        self.header_view = HeaderView()
        self.load_report = LoadReport()
        self.status = StatusPanel()
        self.setStatusBar(self.status)
        notice = QLabel(RESEARCH_NOTICE)
        notice.setObjectName("statusNotice")
        self.status.addPermanentWidget(notice)

        self.docks: dict[str, QDockWidget] = {}
        left, right, bottom = (Qt.DockWidgetArea.LeftDockWidgetArea,
                               Qt.DockWidgetArea.RightDockWidgetArea,
                               Qt.DockWidgetArea.BottomDockWidgetArea)
        self._dock("browser", "Browser", self.browser, left)
        self._dock("thumbnails", "Thumbnails", self.grid, left)
        self._dock("window", "Window / Level", self.window_panel, right, scroll=True)
        self._dock("header", "DICOM Header", self.header_view, right)
        self._dock("report", "Load Report", self.load_report, bottom)
        self.docks["report"].hide()

        self.library = LibraryController(io_bridge, scan_fn, self)
        self.images = ImageController(io_bridge, load_fn, header_fn, image_cache, self)
        install_progressive(self, load_fn)
        self.action_map = build_actions(self, self._handlers())
        self._build_menus()
        self.measurements_dock = install_measurements(self)
        install_viewports(self)
        self._connect()
        self.window_panel.set_user_presets(settings.user_presets())
        self.action_map["overlay"].setChecked(settings.overlay_visible())
        self.view_state.set_overlay_visible(settings.overlay_visible())
        self.canvas.overlay_label.setVisible(settings.overlay_visible())
        self.resize(self.default_size())
        geometry, state = settings.layout()
        self._saved_state = state
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.restore_saved_layout()
        # The first window says what to do (issue 16); the first image shown replaces it.
        QTimer.singleShot(0, self._show_first_hint)

    # -- the active viewport ---------------------------------------------------------------
    @property
    def canvas(self) -> ImageCanvas:
        """The active viewport's canvas (the only one in a 1 x 1 layout)."""
        return self.viewports.active.canvas

    @property
    def view_state(self) -> ViewState:
        """The active viewport's view state."""
        return self.viewports.active.state

    @property
    def _shown_record(self) -> Any:
        return self.viewports.active.record

    @_shown_record.setter
    def _shown_record(self, record: Any) -> None:
        self.viewports.active.record = record

    def _new_view_state(self) -> ViewState:
        state = ViewState()
        state.overlay_visible = self.settings.overlay_visible()
        return state

    def _on_viewport_added(self, vp: Viewport) -> None:
        """Every viewport's canvas reports to the status bar; its measurements share the
        first one's store and wiring."""
        vp.canvas.sig_pixel_hovered.connect(self.status.show_probe)
        vp.canvas.sig_ruler_measured.connect(self.status.show_measurement)
        if vp.index > 0:
            from viewer.ui.measurements_dock import wire_layer

            wire_layer(self, vp.canvas.measurements)

    def _show_first_hint(self) -> None:
        if self.canvas.radiograph is None and not self.library.records and not self.canvas.message_label.text():
            self.canvas.show_message("Open a folder or drop files here\n(File > Open Folder, "
                                     "Ctrl+Shift+O; DICOM, DICOMDIR, zip, PNG, JPEG)", error=False)

    # -- assembly --------------------------------------------------------------------------
    def _dock(self, name: str, title: str, widget: QWidget, area: Qt.DockWidgetArea,
              scroll: bool = False) -> QDockWidget:
        """A dock for ``widget``; ``scroll`` puts a form-like panel in a scroll area, so its
        minimum height does not add up with the other docks' into a window taller than the
        screen (the panels stacked in the right area need about 1,200 px otherwise)."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{name}")
        if scroll:
            area_widget = QScrollArea()
            area_widget.setObjectName(f"scroll_{name}")
            area_widget.setWidgetResizable(True)
            area_widget.setFrameShape(QFrame.Shape.NoFrame)
            area_widget.setWidget(widget)
            # Only the height scrolls: the panel keeps the width its controls need.
            area_widget.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            area_widget.setMinimumWidth(widget.minimumSizeHint().width()
                                        + area_widget.verticalScrollBar().sizeHint().width())
            dock.setWidget(area_widget)
        else:
            dock.setWidget(widget)
        self.addDockWidget(area, dock)
        # Shown again from the View menu: also bring it to the front of its tab group.
        dock.toggleViewAction().triggered.connect(lambda checked, d=dock: checked and d.raise_())
        self.docks[name] = dock
        return dock

    @staticmethod
    def default_size() -> QSize:
        """1400x900, or 90 % of the screen's available area where that is smaller."""
        screen = QGuiApplication.primaryScreen()
        if screen is None:
            return QSize(1400, 900)
        avail = screen.availableGeometry()
        return QSize(min(1400, int(avail.width() * 0.9)), min(900, int(avail.height() * 0.9)))

    def restore_saved_layout(self) -> bool:
        """Re-apply the dock layout saved at the last close; False when there is none. Called
        at construction and again by extensions once they have added their docks
        (``add_side_panel``): Qt restores only the docks that exist when the state is applied."""
        if self._saved_state is None:
            return False
        return bool(self.restoreState(self._saved_state))

    def add_side_panel(self, name: str, title: str, widget: QWidget) -> QDockWidget:
        """Extension point: add a panel (e.g. AI results) to the right dock area (scrollable)."""
        dock = self._dock(name, title, widget, Qt.DockWidgetArea.RightDockWidgetArea, scroll=True)
        self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def _handlers(self) -> dict[str, Callable[..., object]]:
        # The active viewport's canvas and state at the time of the action (they change).
        def c() -> ImageCanvas:
            return self.canvas

        def s() -> ViewState:
            return self.view_state

        return {
            "open_files": self._on_open_files_triggered,
            "open_folder": self._on_open_folder_triggered,
            "add_folder": self._on_add_folder_triggered,
            "cancel_scan": self.library.cancel,
            "quit": self.close,
            "fit": lambda: c().fit(),
            "zoom_in": lambda: c().zoom(1.25),
            "zoom_out": lambda: c().zoom(0.8),
            "rotate_cw": lambda: s().set_orientation(s().orientation.rotated(1)),
            "rotate_ccw": lambda: s().set_orientation(s().orientation.rotated(-1)),
            "flip_h": lambda: s().set_orientation(s().orientation.flipped_h()),
            "flip_v": lambda: s().set_orientation(s().orientation.flipped_v()),
            "invert": lambda on: s().set_invert(on),
            "reset": self.reset_view,
            "auto_window": self.window_panel.choose_auto,
            "ruler": lambda on: c().set_ruler_active(on),
            "overlay": self._on_overlay_toggled,
            "next_image": lambda: self.step_image(1),
            "previous_image": lambda: self.step_image(-1),
            "next_frame": lambda: self.step_frame(1),
            "previous_frame": lambda: self.step_frame(-1),
            "open_log_folder": self._on_open_log_folder_triggered,
            "shortcuts": self._on_shortcuts_triggered,
            "full_screen": self._on_full_screen_toggled,
            "hide_panels": self._on_hide_panels_toggled,
            "about": self._on_about_triggered,
            **{f"preset_{i}": self._preset_handler(i - 1) for i in range(1, 10)},
        }

    def _preset_handler(self, index: int) -> Callable[[], object]:
        # No parameters: QAction.triggered would pass ``checked`` into a defaulted one.
        return lambda: self.window_panel.choose_preset(index)

    def _build_menus(self) -> None:
        a = self.action_map
        file_menu = self.menuBar().addMenu("&File")
        for name in ("open_files", "open_folder", "add_folder"):
            file_menu.addAction(a[name])
        self.recent_menu = QMenu("Open &Recent", self)
        file_menu.addMenu(self.recent_menu)
        file_menu.addSeparator()
        file_menu.addAction(a["cancel_scan"])
        file_menu.addAction(a["quit"])
        image_menu = self.menuBar().addMenu("&Image")
        for name in ("fit", "zoom_in", "zoom_out", "rotate_cw", "rotate_ccw", "flip_h", "flip_v",
                     "invert", "reset", "auto_window", "next_image", "previous_image",
                     "next_frame", "previous_frame"):
            image_menu.addAction(a[name])
        preset_menu = image_menu.addMenu("Window &Presets")
        for i in range(1, 10):
            preset_menu.addAction(a[f"preset_{i}"])
        self.view_menu = self.menuBar().addMenu("&View")
        self.view_menu.addAction(a["overlay"])
        self.view_menu.addAction(a["full_screen"])
        self.view_menu.addAction(a["hide_panels"])
        for dock in self.docks.values():
            self.view_menu.addAction(dock.toggleViewAction())
        self.help_menu = self.menuBar().addMenu("&Help")
        for name in ("shortcuts", "open_log_folder", "about"):
            self.help_menu.addAction(a[name])
        self._fill_recent_menu()

    def _on_full_screen_toggled(self, on: bool) -> None:
        if on:
            self.showFullScreen()
        else:
            self.showNormal()

    def _on_hide_panels_toggled(self, hide: bool) -> None:
        """One key for the image alone: every dock and toolbar hidden, and the same ones shown
        again (a dock the user had closed stays closed)."""
        from PySide6.QtWidgets import QDockWidget, QToolBar

        if hide:
            self._hidden_by_key = [w for w in self.findChildren(QDockWidget) + self.findChildren(QToolBar)
                                   if w.isVisible()]
            for w in self._hidden_by_key:
                w.hide()
        else:
            for w in getattr(self, "_hidden_by_key", []):
                w.show()
            self._hidden_by_key = []

    def shortcuts_text(self) -> str:
        """Every action with a keyboard shortcut, from the one table that defines them."""
        from viewer.ui.actions import SPECS

        lines = [f"{', '.join(s.shortcuts):<16} {s.text.replace('&', '')}" for s in SPECS if s.shortcuts]
        lines.append(f"{'Right-drag':<16} window/level (Ctrl+left-drag too)")
        lines.append(f"{'Left-drag':<16} with a Measure tool: draw; on a selected measurement's "
                     "handle: move that point (double-click a text to edit it)")
        return "\n".join(lines)

    def about_text(self) -> str:
        """Version, intended use and the licences of what the program bundles."""
        return (f"radview {__version__}\n\n{RESEARCH_NOTICE}\n"
                "Intended use: research on projection radiographs (viewing, and running AI models "
                "on the same machine, offline). Not for diagnosis or any clinical decision.\n\n"
                "Bundled components and licences: Qt for Python (PySide6, LGPL-3.0), pyqtgraph "
                "(MIT), pydicom (MIT), highdicom (MIT), python-gdcm (BSD), pylibjpeg, "
                "pylibjpeg-openjpeg and pylibjpeg-rle (MIT), pyjpegls / CharLS (MIT/BSD), "
                "OpenCV (Apache-2.0), onnxruntime (MIT), numpy (BSD), Pillow (MIT-CMU), psutil "
                "(BSD). The models are ours (see Analysis > About the models for their data and "
                "licences). pylibjpeg-libjpeg (GPL-3.0) is not bundled.\n\n"
                "No data leaves this computer: the program opens no network connection.")

    def _on_shortcuts_triggered(self) -> None:
        self._info_box("Keyboard shortcuts", self.shortcuts_text(), "shortcutsBox")

    def _on_about_triggered(self) -> None:
        self._info_box("About radview", self.about_text(), "aboutBox")

    def _info_box(self, title: str, text: str, name: str) -> None:
        from PySide6.QtWidgets import QMessageBox

        box = QMessageBox(QMessageBox.Icon.Information, title, text, QMessageBox.StandardButton.Ok, self)
        box.setObjectName(name)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # non-blocking

    def _on_open_log_folder_triggered(self) -> None:
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        from viewer.services.support_log import default_log_dir

        folder = default_log_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
        self.statusBar().showMessage(f"Support log folder: {folder}", 10000)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _connect(self) -> None:
        lib, img = self.library, self.images
        self.status.sig_cancel_requested.connect(lib.cancel)
        lib.sig_scan_started.connect(self._on_library_scan_started)
        lib.sig_scan_progressed.connect(self.status.set_progress)
        lib.sig_scan_finished.connect(self._on_library_scan_finished)
        lib.sig_scan_failed.connect(self._on_library_scan_failed)
        lib.sig_tree_changed.connect(self.browser.set_tree)
        lib.sig_problems_found.connect(self.load_report.add_problems)
        self.browser.sig_records_selected.connect(self._on_browser_records_selected)
        self.grid.sig_record_activated.connect(img.show)
        self.grid.sig_thumbnail_failed.connect(self._on_grid_thumbnail_failed)
        img.sig_image_ready.connect(self._on_images_image_ready)
        img.sig_decode_failed.connect(self._on_images_decode_failed)
        img.sig_image_failed.connect(self._on_images_image_failed)
        img.sig_header_ready.connect(self._on_images_header_ready)
        img.sig_load_started.connect(self.viewports.note_load)
        self.window_panel.sig_voi_chosen.connect(lambda voi: self.canvas.use_voi(voi))
        self.window_panel.sig_presets_changed.connect(self.settings.set_user_presets)
        for vp in self.viewports.viewports:
            self._on_viewport_added(vp)
        self.viewports.sig_viewport_added.connect(self._on_viewport_added)
        self.status.sig_frame_chosen.connect(self.show_frame)
        self.load_report.sig_count_changed.connect(self._on_report_count_changed)
        header_dock = self.docks["header"]
        header_dock.visibilityChanged.connect(self._on_header_visibility_changed)

    # -- opening ---------------------------------------------------------------------------
    def add_paths(self, paths: list[str]) -> None:
        """Scan ``paths`` into the open library (the image on screen, the report and the
        selection stay)."""
        if not paths:
            return
        self.library.open_paths(paths, replace=False)
        for path in paths:
            self.settings.add_recent(path)
        self._fill_recent_menu()

    def _on_add_folder_triggered(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add folder to the library")
        if folder:
            self.add_paths([folder])

    def open_paths(self, paths: list[str]) -> None:
        """Open files/folders (menus, command line, drops, recent list)."""
        if not paths:
            return
        self.load_report.clear()
        self.grid.set_records([])
        self.images.clear()
        self.viewports.clear_all()
        self.status.set_frames(0, 1)
        self.window_panel.set_image(None)
        self.library.open_paths(paths)
        for path in paths:
            self.settings.add_recent(path)
        self._fill_recent_menu()

    def _on_open_files_triggered(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open files", "", OPEN_FILTER)
        self.open_paths(files)

    def _on_open_folder_triggered(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder")
        if folder:
            self.open_paths([folder])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent_paths():
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_paths([p]))
        self.recent_menu.setEnabled(bool(self.settings.recent_paths()))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # -- slots -----------------------------------------------------------------------------
    def _on_library_scan_started(self, paths: list[str]) -> None:
        self.status.set_busy(True, f"Scanning {len(paths)} location(s)...")

    def _on_library_scan_finished(self, result: Any) -> None:
        self.status.set_busy(False)
        lib = self.library
        scan = self.load_report.scan_count
        self.status.show_text(
            f"{lib.files_seen} files, {len(lib.records)} images, "
            f"{scan} problem{'s' if scan != 1 else ''} found by the scan"
            + (" (see Load Report)" if scan else "")
        )
        if self.canvas.prepared is None and self.images.current_pending is None:
            # Next event-loop turn: the browser was just rebuilt; keep each turn short.
            QTimer.singleShot(0, self.browser.select_first_study)

    def _on_library_scan_failed(self, message: str) -> None:
        self.status.set_busy(False)
        self.status.show_text(message)

    def _on_browser_records_selected(self, records: list[Any]) -> None:
        self.grid.set_records(records)
        shown = self._shown_record
        # A selection that does not contain the image on screen shows its first image: the
        # canvas must never keep another patient's image beside this selection's thumbnails.
        if records and (self.canvas.radiograph is None or len(records) == 1
                        or not any(r is shown or getattr(r, "key", None) == getattr(shown, "key", 0)
                                   for r in records)):
            QTimer.singleShot(0, lambda: self.grid.select_row(0))  # its own event-loop turn

    def _on_grid_thumbnail_failed(self, record: Any, failure: TaskFailure) -> None:
        self.load_report.add_problems([ProblemRow(record, failure, "thumbnail")])

    def _on_images_image_ready(self, record: Any, prepared: PreparedImage, ms: float) -> None:
        target = self.viewports.take_load_target()
        # Its provisional stand-in is up: the full image replaces it in place (same view).
        provisional = target.canvas.provisional and target.record is record
        if target is not self.viewports.active:
            # Loaded for a viewport that is no longer the active one: shown there only (the
            # panels describe the active viewport); dropped when that viewport was closed.
            if target in self.viewports.visible_viewports() and provisional:
                swap_in_full(self.viewports, target, record, prepared)
            elif target in self.viewports.visible_viewports():
                self.viewports.show_image(target, record, prepared, overlay_text(record, prepared.radiograph))
            self._current_is_active()
            return
        shown = self.canvas.radiograph
        rg = prepared.radiograph
        # Another frame of the image on screen keeps the zoom, orientation and window.
        same = shown is not None and self._shown_record is record and shown.frame_count > 1
        self._shown_record = record
        if provisional:
            swap_in_full(self.viewports, target, record, prepared)
        elif same and self.view_state.window is not None:
            with self.viewports.quiet():  # a new image is not a change for linked viewports
                self.canvas.set_image(prepared, self.view_state.window, None,
                                      overlay_text(record, rg), fit=False)
        else:
            self.view_state.reset_view()
            self.action_map["invert"].setChecked(False)
            with self.viewports.quiet():
                self.canvas.set_image(
                    prepared, voi_to_window(prepared.voi), prepared.voi, overlay_text(record, rg),
                )
        self.viewports.image_shown(self.viewports.active, record)
        self.status.set_frames(rg.frame_index, rg.frame_count)
        self.status.show_probe(None)  # the last image's pixel readout is not this image's
        self.window_panel.set_image(prepared)
        self.last_display_ms = ms
        self.sig_image_displayed.emit(record, prepared)
        # Decode the neighbours once this image is up (not during it): next/previous then
        # come from the cache.
        QTimer.singleShot(PREFETCH_DELAY_MS, lambda: self._prefetch_neighbours(record))

    def _current_is_active(self) -> None:
        """The image controller's current record (frames, header) is the active viewport's."""
        rg = self.canvas.radiograph
        self.images.current = self._shown_record
        self.images.frame = rg.frame_index if rg is not None else 0

    def _prefetch_neighbours(self, record: Any) -> None:
        if record is not self._shown_record or self.images.current_pending is not None:
            return  # moved on meanwhile
        records = list(self.grid.thumb_model.records)
        row = next((i for i, r in enumerate(records) if r is record), -1)
        if row >= 0:
            self.images.prefetch([records[i] for i in (row + 1, row - 1) if 0 <= i < len(records)])

    def _on_images_decode_failed(self, record: Any, failure: TaskFailure) -> None:
        self.load_report.add_problems([ProblemRow(record, failure, "display")])

    def _on_images_image_failed(self, record: Any, message: str) -> None:
        target = self.viewports.take_load_target()
        if target is not self.viewports.active:  # only that viewport empties
            if target in self.viewports.visible_viewports():
                self.viewports.clear_viewport(target, f"Cannot display this image: {message}")
            self._current_is_active()
            return
        self.clear_display(record, f"Cannot display this image: {message}")

    def clear_display(self, record: Any, text: str) -> None:
        """Clear everything that shows "the current image" together: canvas (with ``text`` on
        it), window/level and histogram, frame box, pixel readout, and (through
        ``sig_image_cleared``) the AI panel and overlays."""
        self.viewports.clear_viewport(self.viewports.active, text)
        self.window_panel.set_image(None)
        self.status.set_frames(0, 1)
        self.status.show_text(text)
        self.sig_image_cleared.emit(record, text)

    def _on_images_header_ready(self, record: Any, nodes: Any, message: str) -> None:
        self.header_view.set_header(nodes, message)

    def _on_header_visibility_changed(self, visible: bool) -> None:
        self.images.header_wanted = visible
        if visible:
            self.images.load_header(self.images.current)

    def _on_report_count_changed(self, count: int) -> None:
        dock = self.docks["report"]
        dock.setWindowTitle(f"Load Report ({count})" if count else "Load Report")
        if count and dock.isHidden():
            dock.show()
            # a strip, not half the window: the image and the side panels keep the height
            height = max(120, min(220, self.height() // 5))
            self.resizeDocks([dock], [height], Qt.Orientation.Vertical)
        elif not count and not dock.isHidden() and not dock.isFloating():
            # "No problems" does not need the image's height (issue 16: 200 px at 1366x768);
            # it comes back with the first problem, or from View > Load Report.
            dock.hide()

    def _on_overlay_toggled(self, visible: bool) -> None:
        self.view_state.set_overlay_visible(visible)
        self.settings.set_overlay_visible(visible)

    # -- commands --------------------------------------------------------------------------
    def show_frame(self, index: int) -> None:
        """Show frame ``index`` (0-based) of the current multi-frame image."""
        record = self.images.current
        if record is None:
            return
        shown = self.canvas.radiograph
        count = max(int(getattr(record, "frames", 1) or 1), shown.frame_count if shown else 1)
        index = min(max(int(index), 0), count - 1)
        if count > 1 and index != self.images.frame:
            self.images.show(record, index)

    def step_frame(self, step: int) -> None:
        """Next (+1) or previous (-1) frame of a multi-frame image (stops at the ends)."""
        self.show_frame(self.images.frame + step)

    def step_image(self, step: int) -> None:
        """Next (+1) or previous (-1) image in the thumbnail grid."""
        row = self.grid.currentIndex().row()
        self.grid.select_row(max(0, row + step) if row >= 0 else 0)

    def reset_view(self) -> None:
        self.view_state.reset_view()
        self.action_map["invert"].setChecked(False)
        self.canvas.fit()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.settings.save_layout(self.saveGeometry(), self.saveState())
        self.settings.sync()
        self.shutdown()
        super().closeEvent(event)

    def add_shutdown_hook(self, hook: Callable[[], object]) -> None:
        """Run ``hook`` after the executors stop (e.g. join a decode process pool)."""
        self._shutdown_hooks.append(hook)

    def shutdown(self) -> None:
        """Cancel and join all background work (idempotent)."""
        self.library.cancel()
        for bridge in self.bridges:
            bridge.shutdown()
        hooks, self._shutdown_hooks = self._shutdown_hooks, []
        for hook in hooks:
            hook()

"""The small typed interface between the AI features and the main window.

``viewer.ui.ai_features`` reaches the window only through :class:`AiWindow` (never
``window: Any``): the members listed here are all it uses. ``MainWindow`` provides them;
mypy checks that where ``install_ai`` is called (``viewer.app.build_window``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import Qt, SignalInstance
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMenu, QMenuBar, QToolBar, QWidget

if TYPE_CHECKING:
    from viewer.ui.browser import BrowserTree
    from viewer.ui.canvas import ImageCanvas
    from viewer.ui.image_controller import ImageController
    from viewer.ui.library_controller import LibraryController
    from viewer.ui.settings import AppSettings
    from viewer.ui.status_bar import StatusPanel
    from viewer.ui.thumbnails import ThumbnailGrid

__all__ = ["AiWindow"]


class AiWindow(Protocol):
    """What the AI features use of the main window (:class:`viewer.ui.main_window.MainWindow`
    provides it; mypy checks that where :func:`install_ai` is called): its display signals,
    the active canvas, the docks and their extension points, the thumbnail grid, browser,
    status bar, settings, library and image controllers, and a few QMainWindow methods."""

    @property
    def sig_image_displayed(self) -> SignalInstance: ...  # (record, PreparedImage)
    @property
    def sig_image_cleared(self) -> SignalInstance: ...  # (record, why)
    @property
    def canvas(self) -> ImageCanvas: ...
    @property
    def docks(self) -> dict[str, QDockWidget]: ...
    @property
    def grid(self) -> ThumbnailGrid: ...
    @property
    def browser(self) -> BrowserTree: ...
    @property
    def status(self) -> StatusPanel: ...
    @property
    def settings(self) -> AppSettings: ...
    @property
    def library(self) -> LibraryController: ...
    @property
    def images(self) -> ImageController: ...
    @property
    def help_menu(self) -> QMenu: ...
    def add_side_panel(self, name: str, title: str, widget: QWidget, /) -> QDockWidget: ...
    def restore_saved_layout(self) -> bool: ...
    def open_paths(self, paths: list[str], /) -> None: ...
    def add_shutdown_hook(self, hook: Callable[[], object], /) -> None: ...
    # QMainWindow / QWidget
    def window(self) -> QWidget: ...
    def width(self) -> int: ...
    def menuBar(self) -> QMenuBar: ...
    def addAction(self, action: QAction, /) -> None: ...
    def addToolBar(self, title: str, /) -> QToolBar: ...
    def tabifyDockWidget(self, first: QDockWidget, second: QDockWidget, /) -> None: ...
    def resizeDocks(self, docks: Sequence[QDockWidget], sizes: Sequence[int],
                    orientation: Qt.Orientation, /) -> None: ...

"""Wires the AI features into the main window (docks, menu, toolbar, badges, exports).

:func:`install_ai` is called by :func:`viewer.app.build_window`; everything here uses the main
window's extension points (``add_side_panel``, the canvas layers, thumbnail badges,
``sig_image_displayed``) and its status bar for visible notifications, through the typed
:class:`~viewer.ui.ai_window.AiWindow` interface. What to show, in which order, and what to
export are decided by the Qt-free :mod:`viewer.services.ai_session` and
:mod:`viewer.services.ai_exports`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QHBoxLayout, QLabel, QMenu, QMessageBox, QVBoxLayout, QWidget,
)

from viewer.dicom.scan import split_source
from viewer.inference.registry import ModelRegistry
from viewer.services import ai_exports
from viewer.services.ai_session import (
    ERROR_BADGE, badge, filter_choices, label_choice, model_folders,
)
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_types import AnalysisResult, Overlay
from viewer.ui import export_actions as ex
from viewer.ui.ai_window import AiWindow
from viewer.ui.analysis_controller import AnalysisController
from viewer.ui.history_dock import HistoryPanel
from viewer.ui.model_info import ModelsDialog
from viewer.ui.model_input_view import ModelInputView
from viewer.ui.overlay_panel import OverlayPanel
from viewer.ui.results_panel import ResultsPanel

AUTO_KEY = "ai/auto_analyse"
DEID_KEY = "export/deidentify"
SORT_ORDERS = ("Folder order", "Most suspicious first")


class AiFeatures(QObject):
    """The AI part of the window: analysis on demand / automatic, panels, badges, exports.

    Widgets, menus and dialogs only: the results per image, calls, badges, grid order and
    exports are the Qt-free :class:`~viewer.services.ai_session.AiSession` (``session``) and
    :mod:`viewer.services.ai_exports`; the window is reached through :class:`AiWindow`."""

    def __init__(self, window: AiWindow, registry: ModelRegistry, history_path: Path | None,
                 batch_workers: int = 1) -> None:
        super().__init__(window.window())
        self.window = window
        self.registry = registry
        self._cli_dirs: list[Path] = []
        self.service = AnalysisService(registry)
        self.controller = AnalysisController(self.service, history_path, batch_workers, self)
        self.session = self.controller.session
        self.panel = ResultsPanel()
        self.overlays = OverlayPanel(window.canvas, self.service.heatmap_for)
        self.model_input = ModelInputView()
        self.history = HistoryPanel(lambda: self.controller.history)
        self.current_prepared: Any = None
        self.all_records: list[Any] = []
        self.last_message = ""
        self.notifications: list[str] = []
        self._seen_messages: set[str] = set()
        self._pending_reopen: tuple[str, list[Overlay], Any] | None = None
        docks = [window.add_side_panel("ai_results", "AI Results", self.panel),
                 window.add_side_panel("ai_overlays", "Overlays", self.overlays),
                 window.add_side_panel("ai_input", "Model Input", self.model_input),
                 window.add_side_panel("ai_history", "History", self.history)]
        # Overlays, model input, history, the DICOM header and the measurements list share one
        # tabbed dock under the results, so the right column is Window/Level, AI Results and
        # that group (the results table keeps its height).
        grouped = [window.docks[name] for name in ("header", "measurements") if name in window.docks]
        for dock in docks[2:] + grouped:
            window.tabifyDockWidget(docks[1], dock)
        docks[1].raise_()
        self._docks = docks
        if not window.restore_saved_layout():  # the user's arrangement wins over the defaults
            # Sized once the window has its real size (set after construction, before show).
            QTimer.singleShot(0, self._default_dock_sizes)
        self.history_dock = docks[3]
        self._history_stale = True
        docks[3].visibilityChanged.connect(self._on_history_dock_visibility_changed)
        self._wrap_grid()
        self._build_actions()
        self._connect()
        unavailable = registry.unavailable()
        if unavailable:
            self.notify(f"{len(unavailable)} model(s) unavailable: " + "; ".join(
                f"{e.id}: {e.reason}" for e in unavailable) + " (Analysis > Models...)", box=False)

    # -- assembly --------------------------------------------------------------------------
    def _default_dock_sizes(self) -> None:
        """First-run layout: the image gets the room, the side columns their useful sizes
        (a third and a quarter of the window at most)."""
        window, docks = self.window, self._docks
        # [290, 330, 220] showed the whole histogram at 1000 px but added ~18 ms to the worst
        # GUI-thread gap at the end of a 20,000-file scan (bench.stress --gui, A/B 25-28 vs
        # 44-46 ms): keep these.
        window.resizeDocks([window.docks["window"], docks[0], docks[1]], [260, 330, 300],
                           Qt.Orientation.Vertical)
        width = window.width()
        window.resizeDocks([window.docks["browser"], window.docks["window"]],
                           [min(300, width // 4), min(460, width // 3)], Qt.Orientation.Horizontal)

    def _wrap_grid(self) -> None:
        """Put a sort / filter bar above the thumbnail grid (same dock)."""
        w = self.window
        bar = QWidget()
        row = QHBoxLayout(bar)
        row.setContentsMargins(2, 2, 2, 2)
        self.sort_combo = QComboBox()
        self.sort_combo.setObjectName("thumbSort")
        self.sort_combo.addItems(list(SORT_ORDERS))
        self.filter_combo = QComboBox()
        self.filter_combo.setObjectName("thumbFilter")
        for text, value in filter_choices():
            self.filter_combo.addItem(text, value)
        for combo in (self.sort_combo, self.filter_combo):
            # New labels must not change the size hint (a window relayout per batch result).
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)
        row.addWidget(QLabel("Sort"))
        row.addWidget(self.sort_combo, 1)
        row.addWidget(QLabel("Filter"))
        row.addWidget(self.filter_combo, 1)
        container = QWidget()
        col = QVBoxLayout(container)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(bar)
        col.addWidget(w.grid, 1)
        w.docks["thumbnails"].setWidget(container)
        self.sort_combo.currentIndexChanged.connect(self.apply_grid_order)
        self.filter_combo.currentIndexChanged.connect(self.apply_grid_order)

    def _build_actions(self) -> None:
        w = self.window
        specs = (
            ("analyse", "&Analyse Image", ("Ctrl+R", "F5"), lambda: self.analyse_current(False)),
            ("analyse_forced", "Run Anyway (&Forced)", ("Ctrl+Shift+R",),
             lambda: self.analyse_current(True)),
            ("analyse_all", "Analyse All &Shown Images", ("Ctrl+Shift+F5",), self.analyse_shown),
            ("cancel_analysis", "&Cancel Analysis", ("Ctrl+Shift+.",), self.controller.cancel),
            ("auto_analyse", "A&utomatic Analysis", (), None),
            ("models", "&Models...", (), self.show_models),
            ("models_dir", "Choose User Models &Folder...", (), self._on_models_dir_triggered),
        )
        self.action_map: dict[str, QAction] = {}
        # Analysis goes before Help, where menu bars keep Help.
        menu = QMenu("&Analysis", w.window())
        w.menuBar().insertMenu(w.help_menu.menuAction(), menu)
        for name, text, keys, slot in specs:
            action = QAction(text, w.window())
            action.setObjectName(f"action_{name}")
            action.setShortcuts([QKeySequence(k) for k in keys])
            if slot is not None:
                action.triggered.connect(lambda _=False, s=slot: s())
            w.addAction(action)
            menu.addAction(action)
            self.action_map[name] = action
        auto = self.action_map["auto_analyse"]
        auto.setCheckable(True)
        auto.setChecked(str(w.settings.qsettings.value(AUTO_KEY, "false")).lower() == "true")
        auto.toggled.connect(self._on_auto_toggled)
        toolbar = w.addToolBar("AI")
        toolbar.setObjectName("toolbar_ai")
        for name in ("analyse", "analyse_forced", "cancel_analysis"):
            toolbar.addAction(self.action_map[name])
        file_menu = w.menuBar().actions()[0].menu()
        assert isinstance(file_menu, QMenu)
        export_menu = file_menu.addMenu("&Export")
        for kind, text in (("results_image", "Results of This Image (CSV/JSON)..."),
                           ("results_selection", "Results of the Selection (CSV/JSON)..."),
                           ("results_folder", "Results of All Open Images (CSV/JSON)..."),
                           ("png", "View as Seen (PNG)..."),
                           ("seg", "Masks (DICOM Segmentation)..."),
                           ("sc", "Heatmap View (DICOM Secondary Capture)...")):
            action = export_menu.addAction(text)
            action.setObjectName(f"action_export_{kind}")
            action.triggered.connect(lambda _=False, k=kind: self.export_dialog(k))
        export_menu.addSeparator()
        deid = export_menu.addAction("De-identify Exports (DICOM basic profile)")
        deid.setObjectName("action_export_deidentify")
        deid.setCheckable(True)
        deid.setChecked(str(w.settings.qsettings.value(DEID_KEY, "false")).lower() == "true")
        deid.toggled.connect(lambda on: w.settings.qsettings.setValue(DEID_KEY, bool(on)))
        self.action_map["export_deidentify"] = deid

    def _connect(self) -> None:
        w, c = self.window, self.controller
        w.sig_image_displayed.connect(self._on_window_image_displayed)
        w.sig_image_cleared.connect(self._on_window_image_cleared)
        w.browser.sig_records_selected.connect(self._on_browser_records_selected)
        self.panel.sig_analyse_requested.connect(self.analyse_current)
        c.sig_result_ready.connect(self._on_controller_result_ready)
        c.sig_batch_result_ready.connect(self._on_controller_batch_result_ready)
        c.sig_analysis_failed.connect(self._on_controller_analysis_failed)
        c.sig_batch_progressed.connect(w.status.set_progress)
        c.sig_batch_finished.connect(self._on_controller_batch_finished)
        c.sig_history_changed.connect(self._on_controller_history_changed)
        c.sig_message_posted.connect(self._on_controller_message_posted)
        w.status.sig_cancel_requested.connect(c.cancel)
        self.history.sig_entry_opened.connect(self._on_history_entry_opened)
        w.add_shutdown_hook(c.shutdown)

    # -- notifications ---------------------------------------------------------------------
    def notify(self, text: str, box: bool = False) -> None:
        """Show ``text`` in the status bar (and in a non-blocking message box)."""
        self.last_message = text
        self.notifications.append(text)
        self.window.status.show_text(text)
        if box:
            msg = QMessageBox(QMessageBox.Icon.Warning, "radview", text,
                              QMessageBox.StandardButton.Ok, self.window.window())
            msg.setObjectName("aiMessage")
            msg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            msg.open()

    def _on_controller_message_posted(self, text: str) -> None:
        self.history.show_message(text)
        self.notify(text, box=True)

    # -- analysis --------------------------------------------------------------------------
    @property
    def current_record(self) -> Any:
        """The record on screen (``None`` when none): the session's."""
        return self.session.current_record

    def analyse_current(self, force: bool = False) -> int:
        """Analyse the image on screen (``force``: run out-of-scope models, marked forced)."""
        if self.current_record is None or self.current_prepared is None:
            loading = bool(getattr(self.window.canvas, "provisional", False))
            self.notify("The full-resolution image is still loading: analyse it when it is shown."
                        if loading else "No image to analyse.")
            return 0
        self.panel.show_pending("Analysing" + (" (forced)..." if force else "..."))
        return self.controller.analyse(self.current_record, self.current_prepared.radiograph,
                                       force=force)

    def analyse_shown(self) -> int:
        """Analyse every image of the thumbnail grid (the selected folder / study / series)."""
        records = list(self.all_records or self.window.grid.thumb_model.records)
        if not records:
            self.notify("No images to analyse.")
            return 0
        self.window.status.set_busy(True, f"Analysing {len(records)} image(s)...")
        return self.controller.analyse_batch(records)

    def _on_auto_toggled(self, on: bool) -> None:
        self.window.settings.qsettings.setValue(AUTO_KEY, "true" if on else "false")
        if on:
            self.analyse_shown()

    def _on_window_image_displayed(self, record: Any, prepared: Any) -> None:
        self.current_prepared = prepared
        self.controller.set_current(record)
        self.overlays.clear()
        self.model_input.set_result(None)
        known = self.session.results.get(record.key)
        if known is not None:
            self.panel.set_result(known, self._manifests())
        else:
            self.panel.clear("Not analysed yet: Analysis > Analyse Image (Ctrl+R / F5).")
        reopen = self._pending_reopen
        if reopen is not None and reopen[0] == record.source:
            self._pending_reopen = None
            entry = reopen[2]
            self.overlays.set_overlays(reopen[1])
            caution = entry.caution
            self.panel.show_pending(f"Reopened from history: {entry.model_id} "
                                    f"{entry.label} ({entry.status})"
                                    + (f"\n\u26a0 Caution: {caution}" if caution else ""))
        elif self.action_map["auto_analyse"].isChecked():
            self.analyse_current(False)

    def _on_window_image_cleared(self, record: Any, text: str) -> None:
        """No image on screen: no result, overlay or model input of a previous image may stay
        (and Analyse has nothing to run on)."""
        self.current_prepared = None
        self.controller.set_current(None)
        self.overlays.clear()
        self.model_input.set_result(None)
        self.panel.clear(f"No image on screen. {text}")

    def _on_browser_records_selected(self, records: list[Any]) -> None:
        self.all_records = list(records)
        if self.sort_combo.currentIndex() or self.filter_combo.currentData() is not None:
            self.apply_grid_order()
        if self.action_map["auto_analyse"].isChecked() and records:
            todo = self.session.unanalysed(records)
            if todo and not self.controller.batch_running():
                self.window.status.set_busy(True, f"Analysing {len(todo)} image(s)...")
                self.controller.analyse_batch(todo)

    def _on_controller_result_ready(self, record: Any, result: AnalysisResult) -> None:
        self.panel.set_result(result, self._manifests())
        self.overlays.set_result(result)
        self.model_input.set_result(result)
        self._badge(record, result)
        for message in result.messages:
            if message not in self._seen_messages:  # e.g. the CUDA fallback: once per session
                self._seen_messages.add(message)
                self.notify(message)

    def _on_controller_batch_result_ready(self, record: Any, value: object) -> None:
        if isinstance(value, AnalysisResult):
            self._badge(record, value)
            if self.current_record is not None and record.key == self.current_record.key \
                    and self.controller.current_result is None:
                # The panel must say what the badge says (the batch keeps no overlays: the
                # image's own analysis, Ctrl+R, draws them).
                self.panel.set_result(value, self._manifests())
        else:
            b = ERROR_BADGE
            self.window.grid.thumb_model.set_badge(record.key, b.text, b.band, b.call)

    def _on_controller_batch_finished(self, done: int, errors: int, cancelled: bool) -> None:
        self.window.status.set_busy(False)
        state = "cancelled" if cancelled else "done"
        self.notify(f"Analysis {state}: {done} image(s), {errors} error(s)")
        if self.sort_combo.currentIndex() or self.filter_combo.currentData() is not None:
            self.apply_grid_order()

    def _on_controller_analysis_failed(self, record: Any, message: str) -> None:
        self.panel.show_pending(f"Analysis failed: {message}")
        self.notify(f"Analysis failed: {message}", box=True)

    def _badge(self, record: Any, result: AnalysisResult) -> None:
        b = badge(result)
        self.window.grid.thumb_model.set_badge(record.key, b.text, b.band, b.call)
        for text, value in map(label_choice, b.labels):
            if self.filter_combo.findData(value) < 0:
                self.filter_combo.addItem(text, value)

    def _manifests(self) -> dict[str, Any]:
        return {m.id: m for m in self.registry.available()}

    # -- grid order ------------------------------------------------------------------------
    def apply_grid_order(self, *_args: object) -> None:
        """Filter the grid's records by band / label and sort them by suspicion."""
        records = list(self.all_records or self.window.grid.thumb_model.records)
        self.all_records = records
        self.window.grid.set_records(self.session.order(
            records, self.filter_combo.currentData(), self.sort_combo.currentIndex() == 1))

    # -- models, history -------------------------------------------------------------------
    def show_models(self) -> ModelsDialog:
        dialog = ModelsDialog(self.registry, self.service.sessions, self.window.window())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def _on_history_dock_visibility_changed(self, visible: bool) -> None:
        if visible and self.controller.history is None:
            self.controller.open_history()  # on a worker; the dock refreshes when it is open
        elif visible and self._history_stale:
            self._history_stale = False
            self.history.refresh()

    def _on_controller_history_changed(self) -> None:
        """Refresh the History table now if it is on screen, else when it is shown (filling
        hundreds of rows at the end of a batch stalled the GUI thread ~70 ms for nothing)."""
        if self.history_dock.isVisible() and not self.history_dock.visibleRegion().isEmpty():
            self._history_stale = False
            self.history.refresh()
        else:
            self._history_stale = True

    def _on_models_dir_triggered(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window.window(), "User models folder")
        if folder:
            self.set_models_dir(Path(folder))

    def set_models_dir(self, folder: Path) -> None:
        """Remember ``folder`` (settings) and rediscover the models with it first (after any
        ``--models-dir``; before the ``radview models add`` folder and the bundled models)."""
        self.window.settings.qsettings.setValue("ai/models_dir", str(folder))
        self.registry = ModelRegistry.default(model_folders(self._cli_dirs, folder))
        self.service.registry = self.registry
        bad = self.registry.unavailable()
        self.notify(f"{len(self.registry.available())} model(s) available, {len(bad)} unavailable"
                    + ("".join(f"; {e.id}: {e.reason}" for e in bad)))

    def _on_history_entry_opened(self, entry: Any, overlays: list[Overlay]) -> None:
        record = next((r for r in self.window.library.records if r.source == entry.source), None)
        self._pending_reopen = (entry.source, list(overlays), entry)
        if record is not None:
            self.window.images.show(record)
        else:  # the file, or the zip holding it (a "!" may also be part of a folder's name)
            self.window.open_paths([split_source(entry.source)[0]])

    # -- exports ---------------------------------------------------------------------------
    def export_dialog(self, kind: str) -> Path | None:
        filters = {"png": "PNG (*.png)", "seg": "DICOM (*.dcm)", "sc": "DICOM (*.dcm)"}
        # A suggested name says what and when, never whose (no patient data in file names).
        import datetime as dt

        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        suffix = {"png": ".png", "seg": ".dcm", "sc": ".dcm"}.get(kind, ".csv")
        suggested = f"radview-{kind.replace('_', '-')}-{stamp}{suffix}"
        dest, _ = QFileDialog.getSaveFileName(self.window.window(), "Export", suggested,
                                              filters.get(kind, "CSV (*.csv);;JSON (*.json)"))
        return self.export_to(kind, Path(dest)) if dest else None

    def export_to(self, kind: str, dest: Path) -> Path | None:
        """Write export ``kind`` to ``dest``; a refusal or failure is shown, never raised."""
        w = self.window
        folders = ai_exports.study_folders(w.library.records, w.settings.recent_paths()[:1])
        deid = self.action_map["export_deidentify"].isChecked()
        try:
            if kind == "png":  # a grab of the widgets: the one export that needs Qt
                outcome = ai_exports.ExportOutcome(
                    ex.export_png(w.canvas, dest, folders, deidentify=deid), deid,
                    ai_exports.PNG_DEID_CAUTION if deid else None)
            else:
                grid = w.grid
                selected = [grid.thumb_model.records[i.row()]
                            for i in grid.selectionModel().selectedIndexes()]
                prepared = self.current_prepared
                outcome = ai_exports.export_current(
                    kind, dest, self.session, folders, deidentify=deid,
                    models=self.registry.available(), selected=selected,
                    opened=w.library.records,
                    radiograph=None if prepared is None else prepared.radiograph,
                    colormap=self.overlays.heat_colormap.currentText(),
                    shown=self.overlays.shown_heatmap())
        except Exception as exc:
            self.notify(f"Export failed: {getattr(exc, 'message', None) or exc}", box=True)
            return None
        self.notify(outcome.message(), box=outcome.caution is not None)
        return outcome.path


def install_ai(window: AiWindow, model_dirs: Sequence[Path] = (), history_path: Path | None = None,
               batch_workers: int = 1) -> AiFeatures:
    """Discover the models (``model_dirs``, the folder chosen in the settings, the user models
    folder ``radview models add`` writes to, then the bundled ones) and add the AI UI."""
    saved = window.settings.qsettings.value("ai/models_dir", "")
    folders = model_folders(model_dirs, str(saved) if saved else None)
    features = AiFeatures(window, ModelRegistry.default(folders), history_path, batch_workers)
    features._cli_dirs = [Path(d) for d in model_dirs]
    window.ai = features  # type: ignore[attr-defined]  # the window's extension slot
    return features

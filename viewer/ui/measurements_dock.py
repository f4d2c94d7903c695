"""The Measurements list (a dock) and the measurement tools' menu, toolbar and export.

One row per item of the image on screen (type and value); selecting a row highlights the item
on the canvas and the other way round. Delete (button or Del), Clear all, Edit text (or a
double-click on a text or calibration row) and Export (CSV/JSON of this image's measurements).
:func:`install_measurements` wires the tools' actions (declared in ``actions.SPECS``) to the
canvas, adds the Measure menu and toolbar, and keeps the store in the user data folder.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QStandardPaths, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import (
    QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)

from viewer.core.measure import export_rows
from viewer.services.export import ExportError, check_destination, safe_cell
from viewer.state.measurements import write_export
from viewer.ui.measure_items import MeasurementLayer

__all__ = ["TOOL_ACTIONS", "MeasurementsDock", "export_measurements_to", "install_measurements",
           "measurements_folder"]

# action name (actions.SPECS) -> measurement kind
TOOL_ACTIONS: dict[str, str] = {
    "ruler": "distance", "measure_angle": "angle", "measure_cobb": "cobb",
    "measure_rect": "rect", "measure_ellipse": "ellipse", "measure_arrow": "arrow",
    "measure_text": "text", "measure_calibrate": "calibration",
}

EMPTY_HINT = ("No measurements on this image: pick a tool in the Measure menu or toolbar (M "
              "distance, N angle, C Cobb, B/E rectangle/ellipse ROI, P arrow, T text, K calibrate).")


class MeasurementsDock(QWidget):
    """The list of the measurements on the image on screen."""

    sig_export_requested = Signal()

    def __init__(self, layer: MeasurementLayer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("measurementsPanel")
        self.layer = layer
        self.table = QTableWidget(0, 2)
        self.table.setObjectName("measurementsTable")
        self.table.setHorizontalHeaderLabels(["Type", "Value"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.empty = QLabel(EMPTY_HINT)
        self.empty.setWordWrap(True)
        self.empty.setObjectName("measurementsHint")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected measurement (Del)")
        self.clear_button = QPushButton("Clear all")
        self.edit_button = QPushButton("Edit text")
        self.edit_button.setToolTip("Edit a text annotation, or a calibration's known length")
        self.export_button = QPushButton("Export...")
        self.export_button.setToolTip("This image's measurements as CSV or JSON")
        buttons = QHBoxLayout()
        for b in (self.delete_button, self.edit_button, self.clear_button, self.export_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.empty)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self.delete_button.clicked.connect(lambda: self.layer.delete_selected())
        self.clear_button.clicked.connect(lambda: self.layer.clear_all())
        self.edit_button.clicked.connect(self._on_edit_button_clicked)
        self.export_button.clicked.connect(self.sig_export_requested)
        self.table.itemSelectionChanged.connect(self._on_table_selection_changed)
        self.table.cellDoubleClicked.connect(self._on_table_cell_double_clicked)
        layer.sig_changed.connect(self.refresh)
        layer.sig_selected.connect(self._on_layer_selected)
        self.refresh()

    def set_layer(self, layer: MeasurementLayer) -> None:
        """List ``layer``'s measurements instead (the active viewport changed)."""
        if layer is self.layer:
            return
        self.layer.sig_changed.disconnect(self.refresh)
        self.layer.sig_selected.disconnect(self._on_layer_selected)
        self.layer = layer
        layer.sig_changed.connect(self.refresh)
        layer.sig_selected.connect(self._on_layer_selected)
        self.refresh()

    def _ident_at(self, row: int) -> str:
        item = self.table.item(row, 0)
        return "" if item is None else str(item.data(Qt.ItemDataRole.UserRole))

    def idents(self) -> list[str]:
        return [self._ident_at(r) for r in range(self.table.rowCount())]

    def refresh(self) -> None:
        """Rebuild the rows from the layer (values change live while an item is edited)."""
        rows = self.layer.rows()
        self.table.blockSignals(True)
        if [r[0] for r in rows] != self.idents():
            self.table.setRowCount(len(rows))
        for i, (ident, kind, value) in enumerate(rows):
            for col, text in enumerate((kind, value)):
                item = self.table.item(i, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(i, col, item)
                item.setText(text)
                item.setToolTip(text)
                item.setData(Qt.ItemDataRole.UserRole, ident)
        self.table.blockSignals(False)
        self._on_layer_selected(self.layer.selected)
        has_image = self.layer.radiograph is not None
        self.empty.setVisible(not rows)
        self.empty.setText(EMPTY_HINT if has_image else "No image on screen.")
        for b in (self.clear_button, self.export_button):
            b.setEnabled(bool(rows))

    def _selected_ident(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self._ident_at(rows[0].row()) or None

    def _on_table_selection_changed(self) -> None:
        self.layer.select(self._selected_ident())

    def _on_layer_selected(self, ident: object) -> None:
        self.table.blockSignals(True)
        ids = self.idents()
        if ident in ids:
            self.table.selectRow(ids.index(str(ident)))
        else:
            self.table.clearSelection()
        self.table.blockSignals(False)
        kind = None if ident is None else self.layer.item(str(ident))
        self.delete_button.setEnabled(ident is not None)
        self.edit_button.setEnabled(kind is not None and kind.kind in ("text", "calibration"))

    def _on_edit_button_clicked(self) -> None:
        if self.layer.selected is not None:
            self.layer.edit_text(self.layer.selected)

    def _on_table_cell_double_clicked(self, row: int, _col: int) -> None:
        self.layer.edit_text(self._ident_at(row))


def measurements_folder(settings: Any) -> Path:
    """Where measurements persist: the user data folder (QStandardPaths AppDataLocation), or,
    for a portable INI settings file (as tests use), a folder beside it."""
    qs = getattr(settings, "qsettings", None)
    if isinstance(qs, QSettings) and qs.format() == QSettings.Format.IniFormat and qs.fileName():
        return Path(qs.fileName()).resolve().parent / "measurements"
    data = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(data or Path.home() / ".local" / "share" / "radview") / "measurements"


def export_measurements_to(layer: MeasurementLayer, dest: Path, folders: Iterable[Path]) -> Path:
    """Write the measurements of the image on screen to ``dest`` (CSV, or JSON by suffix);
    ``ExportError`` when there are none or ``dest`` lies in a study folder."""
    rg = layer.radiograph
    if rg is None or not layer.state.items:
        raise ExportError("no measurements on the image on screen")
    target = check_destination(Path(dest), tuple(folders))
    rows = export_rows(layer.key, layer.state, rg, rg.spacing_mm, rg.spacing_kind)
    clean = [{k: safe_cell(v) for k, v in row.items()} for row in rows]
    try:
        return write_export(clean, target)
    except OSError as exc:
        raise ExportError(f"could not write {target.name}: {exc.strerror or exc}") from exc


def install_measurements(window: Any) -> MeasurementsDock:
    """Wire the measurement tools into ``window`` (a MainWindow): actions, Measure menu and
    toolbar, the Measurements dock (tabbed with the DICOM header) and the store's folder."""
    a = window.action_map
    layer: MeasurementLayer = window.canvas.measurements
    layer.store.folder = measurements_folder(window.settings)
    group = QActionGroup(window)
    group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
    window.measure_tool_group = group
    window.measurement_store = layer.store  # one store for every viewport's layer
    for name, kind in TOOL_ACTIONS.items():
        action: QAction = a[name]
        group.addAction(action)
        if name != "ruler":  # the ruler's own handler (canvas.set_ruler_active) is connected
            # the active viewport's canvas when toggled (viewer/ui/viewports.py)
            action.toggled.connect(lambda on, k=kind: _on_tool_toggled(window.canvas, k, on))
    wire_layer(window, layer)
    a["delete_measurement"].triggered.connect(lambda: window.canvas.measurements.delete_selected())
    a["clear_measurements"].triggered.connect(lambda: window.canvas.measurements.clear_all())
    a["cancel_drawing"].triggered.connect(lambda: window.canvas.measurements.escape())
    a["export_measurements"].triggered.connect(lambda: export_measurements_dialog(window))

    menu = window.menuBar().addMenu("&Measure")
    menu.setObjectName("menu_measure")
    window.menuBar().insertMenu(window.view_menu.menuAction(), menu)
    toolbar = window.addToolBar("Measure")
    toolbar.setObjectName("toolbar_measure")
    for name in TOOL_ACTIONS:
        menu.addAction(a[name])
        toolbar.addAction(a[name])
    menu.addSeparator()
    for name in ("delete_measurement", "clear_measurements", "cancel_drawing",
                 "export_measurements"):
        menu.addAction(a[name])

    dock_widget = MeasurementsDock(layer)
    dock_widget.sig_export_requested.connect(lambda: export_measurements_dialog(window))
    dock = window._dock("measurements", "Measurements", dock_widget,
                        Qt.DockWidgetArea.RightDockWidgetArea)
    window.view_menu.addAction(dock.toggleViewAction())
    window.tabifyDockWidget(window.docks["header"], dock)
    window.docks["header"].raise_()
    return dock_widget


def wire_layer(window: Any, layer: MeasurementLayer) -> None:
    """Connect a canvas's measurement layer to the window (each viewport has one): the shared
    store, dialogs over the window, its messages in the status bar, Esc putting the tool down."""
    layer.store = window.measurement_store
    layer.dialog_parent = window
    group = window.measure_tool_group

    def tool_put_down(_kind: object) -> None:
        checked = group.checkedAction()
        if checked is not None:
            checked.setChecked(False)

    layer.sig_tool_changed.connect(tool_put_down)
    layer.sig_message.connect(window.status.show_text)
    layer.sig_measured.connect(window.status.show_measurement)


def _on_tool_toggled(canvas: Any, kind: str, on: bool) -> None:
    if on:
        canvas.set_tool(kind)
    elif canvas.measurements.tool == kind:
        canvas.set_tool(None)


def export_measurements_dialog(window: Any) -> Path | None:
    """Ask where, then export; a refusal or failure goes to the status bar and a message."""
    from viewer.ui.export_actions import study_folders

    layer: MeasurementLayer = window.canvas.measurements
    if not layer.state.items:
        window.status.show_text("No measurements on the image on screen to export.")
        return None
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    dest, _ = QFileDialog.getSaveFileName(window, "Export measurements",
                                          f"radview-measurements-{stamp}.csv",
                                          "CSV (*.csv);;JSON (*.json)")
    if not dest:
        return None
    folders = study_folders(window.library.records, window.settings.recent_paths()[:1])
    try:
        path = export_measurements_to(layer, Path(dest), folders)
    except ExportError as exc:
        from PySide6.QtWidgets import QMessageBox

        window.status.show_text(f"Measurements not exported: {exc}")
        QMessageBox.warning(window, "Export measurements", f"Not exported: {exc}")
        return None
    window.status.show_text(f"Measurements exported to {path.name}")
    return path

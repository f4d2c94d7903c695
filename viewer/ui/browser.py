"""Browser dock: Patient > Study > Series > Instance tree of the opened files.

Built from the :class:`~viewer.state.browse_tree.TreeNode` rows that the scan job derives from
the :class:`~viewer.services.library.StudyIndex` off the GUI thread; the widget only stores
records and never touches the files. Selecting a node emits the instance records under it (the
thumbnail grid shows them).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem, QWidget

from viewer.state.browse_tree import TreeNode, build_tree, image_records

COLUMNS = ("Name", "Date", "Modality", "Body part", "View", "Count")
RECORDS_ROLE = Qt.ItemDataRole.UserRole + 1
AUTOSIZE_LIMIT = 500
MAX_INSTANCE_ROWS = 1000


class BrowserTree(QTreeWidget):
    """The study tree. ``sig_records_selected`` carries the records under the chosen node."""

    sig_records_selected = Signal(object)  # a list; Signal(list) converted it element by element

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("browserTree")
        self.setColumnCount(len(COLUMNS))
        self.setHeaderLabels(COLUMNS)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setUniformRowHeights(True)
        self.itemSelectionChanged.connect(self._on_tree_selection_changed)
        self.itemExpanded.connect(self._on_tree_item_expanded)
        self.records: list[Any] = []
        self._node_records: list[list[Any]] = []
        self.hide_names = False

    def set_tree(self, tree: Sequence[TreeNode]) -> None:
        """Rebuild from a prebuilt :func:`~viewer.state.browse_tree.build_tree` (one item per
        patient, study and series; instances are added when a series is expanded)."""
        self.clear()
        self._node_records = []
        self.records = image_records(tree)
        for number, patient in enumerate(tree, start=1):
            p_item = self._item(None, patient, list(patient.records))
            if self.hide_names:  # screenshots and demos: no identifiers on screen
                p_item.setText(0, f"Patient {number}")
                p_item.setToolTip(0, "")
            for study in patient.children:
                s_item = self._item(p_item, study, list(study.records))
                for series in study.children:
                    se_item = self._item(s_item, series, list(series.records))
                    se_item.setChildIndicatorPolicy(
                        QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator
                    )
        self.expandToDepth(1)
        if len(self.records) <= AUTOSIZE_LIMIT:  # sizing scans every row: skip for big trees
            for col in range(len(COLUMNS)):
                self.resizeColumnToContents(col)

    def set_index(self, index: Any) -> None:
        """Rebuild from a StudyIndex (builds the tree here: prefer :meth:`set_tree`)."""
        self.set_tree(build_tree(index))

    def counts(self) -> tuple[int, int, int]:
        """(patients, studies, series) shown."""
        patients = self.topLevelItemCount()
        studies = series = 0
        for i in range(patients):
            p_item = self.topLevelItem(i)
            if p_item is None:
                continue
            studies += p_item.childCount()
            for j in range(p_item.childCount()):
                study = p_item.child(j)
                series += study.childCount() if study is not None else 0
        return patients, studies, series

    def _on_tree_item_expanded(self, item: QTreeWidgetItem) -> None:
        if item.data(1, RECORDS_ROLE) != "series" or item.childCount():
            return
        records = self.records_of(item)
        for rec in records[:MAX_INSTANCE_ROWS]:
            size = f"{rec.cols}x{rec.rows}" + (f" x{rec.frames}" if rec.frames > 1 else "")
            node = TreeNode("instance", rec.display_name, size, rec.modality, rec.body_part,
                            rec.view_position)
            self._item(item, node, [rec])
        if len(records) > MAX_INSTANCE_ROWS:
            more = QTreeWidgetItem([f"... {len(records) - MAX_INSTANCE_ROWS} more (see thumbnails)"])
            more.setData(0, RECORDS_ROLE, self._keep(records[MAX_INSTANCE_ROWS:]))
            item.addChild(more)

    def _item(self, parent: QTreeWidgetItem | None, node: Any, records: list[Any]) -> QTreeWidgetItem:
        texts = [node.name, node.date, node.modality, node.body_part, node.view,
                 str(len(records)) if node.level != "instance" else ""]
        item = QTreeWidgetItem(texts)
        item.setData(0, RECORDS_ROLE, self._keep(records))
        item.setData(1, RECORDS_ROLE, node.level)
        if node.tooltip:
            item.setToolTip(0, node.tooltip)
        if parent is None:
            self.addTopLevelItem(item)
        else:
            parent.addChild(item)
        return item

    def _keep(self, records: list[Any]) -> int:
        # Items hold an int: a Python list stored in a QVariant is converted element by
        # element, which costs ~100 ms for a 10,000-instance series.
        self._node_records.append(records)
        return len(self._node_records) - 1

    def records_of(self, item: QTreeWidgetItem) -> list[Any]:
        """The instance records under a tree item."""
        key = item.data(0, RECORDS_ROLE)
        return self._node_records[key] if isinstance(key, int) else []

    def select_first_study(self) -> None:
        """Select the first study (the grid then shows its images)."""
        top = self.topLevelItem(0)
        if top is not None:
            self.setCurrentItem(top.child(0) or top)

    def _on_tree_selection_changed(self) -> None:
        items = self.selectedItems()
        if items:
            records = self.records_of(items[0])
            self.sig_records_selected.emit(list(records))



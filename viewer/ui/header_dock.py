"""DICOM header viewer: a searchable tag tree (tag, keyword, VR, value), sequences nested."""

from __future__ import annotations

from typing import Any
from collections.abc import Iterable, Sequence

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QLineEdit, QTreeView, QVBoxLayout, QWidget

COLUMNS = ("Tag", "Keyword", "VR", "Value")


def node_fields(node: Any) -> tuple[str, str, str, str, Sequence[Any]]:
    """(tag, keyword, VR, value, children) of a header node, a tuple or an object with those
    attributes (as produced by ``viewer.dicom.load.read_header``)."""
    if isinstance(node, (tuple, list)):
        tag, keyword, vr, value = (str(v) for v in node[:4])
        children = node[4] if len(node) > 4 and node[4] else ()
        return tag, keyword, vr, value, children
    return (
        str(getattr(node, "tag", "")),
        str(getattr(node, "keyword", "")),
        str(getattr(node, "vr", "")),
        str(getattr(node, "value", "")),
        getattr(node, "children", ()) or (),
    )


class HeaderView(QWidget):
    """Tag tree with a filter box matching tag, keyword or value (case-insensitive); parents of
    matching elements stay visible."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(COLUMNS)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.search = QLineEdit()
        self.search.setObjectName("headerSearch")
        self.search.setPlaceholderText("Search tag, keyword or value (e.g. 0028 or Window)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._on_search_text_changed)
        self.tree = QTreeView()
        self.tree.setObjectName("headerTree")
        self.tree.setModel(self.proxy)
        self.tree.setUniformRowHeights(True)
        self.tree.setEditTriggers(QTreeView.EditTrigger.NoEditTriggers)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.search)
        layout.addWidget(self.tree)

    def set_header(self, nodes: Iterable[Any] | None, message: str = "") -> None:
        """Show a header tree (``None`` with a ``message`` when it could not be read)."""
        self.model.removeRows(0, self.model.rowCount())
        root = self.model.invisibleRootItem()
        if nodes is None:
            root.appendRow([QStandardItem(""), QStandardItem(message), QStandardItem(""),
                            QStandardItem("")])
            return
        self._append(root, nodes)
        self.tree.expandToDepth(0)
        for col in range(3):
            self.tree.resizeColumnToContents(col)

    def _append(self, parent: QStandardItem, nodes: Iterable[Any]) -> None:
        for node in nodes:
            tag, keyword, vr, value, children = node_fields(node)
            row = [QStandardItem(tag), QStandardItem(keyword), QStandardItem(vr),
                   QStandardItem(value[:500])]
            row[3].setToolTip(value[:2000])
            parent.appendRow(row)
            if children:
                self._append(row[0], children)

    def _on_search_text_changed(self, text: str) -> None:
        self.proxy.setFilterFixedString(text.strip())
        if text.strip():
            self.tree.expandAll()

    def visible_rows(self) -> int:
        """Number of top-level rows passing the filter (tests)."""
        return self.proxy.rowCount()

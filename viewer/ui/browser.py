"""Browser dock: Patient > Study > Series > Instance tree of the opened files.

Built from the :class:`~viewer.services.library.StudyIndex` that a background scan produces
(its nodes carry the display fields and counts); the tree only stores records, so it never touches the files itself. Selecting a node emits the
instance records under it (the thumbnail grid shows them).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem, QWidget

COLUMNS = ("Name", "Date", "Modality", "Body part", "View", "Count")
RECORDS_ROLE = Qt.ItemDataRole.UserRole + 1
AUTOSIZE_LIMIT = 500
MAX_INSTANCE_ROWS = 1000


def format_date(value: str) -> str:
    """DICOM DA ``YYYYMMDD`` -> ``YYYY-MM-DD`` (other text unchanged)."""
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


class BrowserTree(QTreeWidget):
    """The study tree. ``sig_records_selected`` carries the records under the chosen node."""

    sig_records_selected = Signal(list)

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

    def set_index(self, index: Any) -> None:
        """Rebuild the tree from a :class:`~viewer.services.library.StudyIndex`."""
        self.clear()
        self.records = []
        for patient in index.patients():
            p_records = index.instances_for(patient)
            self.records.extend(p_records)
            p_item = self._item(None, patient.label, "", "", "", "", p_records, "patient")
            p_item.setToolTip(0, _patient_tip(patient))
            for study in patient.sorted_studies():
                s_records = index.instances_for(study)
                s_item = self._item(
                    p_item, study.description or "Study", format_date(study.date),
                    _joined(r.modality for r in s_records), _joined(r.body_part for r in s_records),
                    _joined(r.view_position for r in s_records), s_records, "study",
                )
                for series in study.sorted_series():
                    se_records = series.sorted_instances()
                    se_item = self._item(
                        s_item, series.label, "", series.modality, series.body_part,
                        _joined(r.view_position for r in se_records), se_records, "series",
                    )
                    # Instances are added when the series is expanded (big series stay cheap).
                    se_item.setChildIndicatorPolicy(
                        QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator
                    )
        self.expandToDepth(1)
        if len(self.records) <= AUTOSIZE_LIMIT:  # sizing scans every row: skip for big trees
            for col in range(len(COLUMNS)):
                self.resizeColumnToContents(col)

    def _on_tree_item_expanded(self, item: QTreeWidgetItem) -> None:
        if item.data(1, RECORDS_ROLE) != "series" or item.childCount():
            return
        records = item.data(0, RECORDS_ROLE) or []
        for rec in records[:MAX_INSTANCE_ROWS]:
            size = f"{rec.cols}x{rec.rows}" + (f" x{rec.frames}" if rec.frames > 1 else "")
            child = self._item(item, rec.display_name, size, rec.modality, rec.body_part,
                               rec.view_position, [rec], "instance")
            child.setText(5, "")
        if len(records) > MAX_INSTANCE_ROWS:
            more = QTreeWidgetItem([f"... {len(records) - MAX_INSTANCE_ROWS} more (see thumbnails)"])
            more.setData(0, RECORDS_ROLE, records[MAX_INSTANCE_ROWS:])
            item.addChild(more)

    def counts(self) -> tuple[int, int, int]:
        """(patients, studies, series) shown."""
        patients = self.topLevelItemCount()
        studies = series = 0
        for i in range(patients):
            p_item = self.topLevelItem(i)
            studies += p_item.childCount()
            for j in range(p_item.childCount()):
                series += p_item.child(j).childCount()
        return patients, studies, series

    def _item(
        self, parent: QTreeWidgetItem | None, name: str, date: str, modality: str,
        body_part: str, view: str, records: list[Any], level: str,
    ) -> QTreeWidgetItem:
        item = QTreeWidgetItem([name, date, modality, body_part, view, str(len(records))])
        item.setData(0, RECORDS_ROLE, records)
        item.setData(1, RECORDS_ROLE, level)
        if parent is None:
            self.addTopLevelItem(item)
        else:
            parent.addChild(item)
        return item

    def select_first_study(self) -> None:
        """Select the first study (the grid then shows its images)."""
        top = self.topLevelItem(0)
        if top is not None:
            self.setCurrentItem(top.child(0) or top)

    def _on_tree_selection_changed(self) -> None:
        items = self.selectedItems()
        if items:
            records = items[0].data(0, RECORDS_ROLE) or []
            self.sig_records_selected.emit(_sorted_for_grid(records))


def _sorted_for_grid(records: Sequence[Any]) -> list[Any]:
    return list(records)  # already in display order (index.instances_for)


def _patient_tip(patient: Any) -> str:
    bits = [f"Birth date {format_date(patient.birth_date)}" if patient.birth_date else "",
            f"Sex {patient.sex}" if patient.sex else ""]
    return "  ".join(b for b in bits if b) or "Patient"


def _joined(values: Iterable[str]) -> str:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return ", ".join(seen)

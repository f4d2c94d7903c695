"""The browser's Patient > Study > Series view model, built off the GUI thread.

Sorting and summarising thousands of instance records costs tens of milliseconds, too long for
one turn of the GUI event loop, so the scan job also builds this tree of display rows; the
browser widget then only creates one item per node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable, Sequence


@dataclass(frozen=True)
class TreeNode:
    """One row of the browser: display texts, the instance records under it, its children.

    ``level`` is "patient", "study" or "series" (instances are added lazily by the widget).
    """

    level: str
    name: str
    date: str = ""
    modality: str = ""
    body_part: str = ""
    view: str = ""
    tooltip: str = ""
    records: tuple[Any, ...] = ()
    children: tuple[TreeNode, ...] = ()

    @property
    def count(self) -> int:
        return len(self.records)


def format_date(value: str) -> str:
    """DICOM DA ``YYYYMMDD`` -> ``YYYY-MM-DD`` (other text unchanged)."""
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def joined(values: Iterable[str]) -> str:
    """Distinct non-empty values in first-seen order, comma separated."""
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(value, None)
    return ", ".join(seen)


def build_tree(index: Any) -> tuple[TreeNode, ...]:
    """Tree of a :class:`~viewer.services.library.StudyIndex`: patients (by name), studies
    (newest first), series (by number), each with its instances in display order."""
    patients = []
    for patient in index.patients():
        studies = []
        for study in patient.sorted_studies():
            series_nodes = []
            for series in study.sorted_series():
                records = tuple(series.sorted_instances())
                series_nodes.append(TreeNode(
                    "series", series.label, "", series.modality, series.body_part,
                    joined(r.view_position for r in records), "", records))
            s_records = tuple(r for s in series_nodes for r in s.records)
            studies.append(TreeNode(
                "study", study.description or "Study", format_date(study.date),
                joined(s.modality for s in series_nodes), joined(s.body_part for s in series_nodes),
                joined(s.view for s in series_nodes), study.accession_number and
                f"Accession {study.accession_number}", s_records, tuple(series_nodes)))
        p_records = tuple(r for s in studies for r in s.records)
        tip = "  ".join(b for b in (
            f"Birth date {format_date(patient.birth_date)}" if patient.birth_date else "",
            f"Sex {patient.sex}" if patient.sex else "") if b)
        patients.append(TreeNode("patient", patient.label, tooltip=tip or "Patient",
                                 records=p_records, children=tuple(studies)))
    return tuple(patients)


def image_records(tree: Sequence[TreeNode]) -> list[Any]:
    """Every record of the tree in display order."""
    return [r for patient in tree for r in patient.records]

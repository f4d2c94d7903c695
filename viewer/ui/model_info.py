"""Models dialog and "About this model": every discovered manifest, usable or not.

A model whose file is missing, whose checksum or manifest is wrong, or that is shadowed by a
user model is listed as unavailable with the reason (never a crash). The about text shows the
manifest's intended use, training data, metrics, version, population, operating threshold,
confidence bands and calibration, and which onnxruntime provider runs (with the CUDA fallback
message when there is one).
"""

from __future__ import annotations

import html
import json
from typing import Any
from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QHBoxLayout, QListWidget, QListWidgetItem, QTextBrowser,
    QVBoxLayout, QWidget,
)

from viewer import RESEARCH_NOTICE

ABOUT_FIELDS: tuple[tuple[str, str], ...] = (
    ("version", "Version"), ("task", "Task"), ("intended_use", "Intended use"),
    ("population", "Population"), ("age_years", "Patient ages (years)"),
    ("study_date_from", "Study dates from"), ("labels", "Classes"), ("positive_label", "Positive class"),
    ("threshold", "Operating threshold"), ("threshold_rule", "Threshold rule"),
    ("bands", "Confidence bands"), ("calibration", "Calibration"), ("metrics", "Metrics"),
    ("training_data", "Training data"), ("applies_to", "Applies to"), ("ood", "Out-of-scope rule"),
    ("created", "Created"), ("sha256", "SHA-256"),
)


def _value_html(value: Any) -> str:
    if isinstance(value, Mapping):
        rows = "".join(f"<li><b>{html.escape(str(k))}</b>: {_value_html(v)}</li>"
                       for k, v in value.items())
        return f"<ul>{rows}</ul>"
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (Mapping, list, tuple)) for v in value):
            return html.escape(", ".join(str(v) for v in value))
        return "<ul>" + "".join(f"<li>{_value_html(v)}</li>" for v in value) + "</ul>"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(json.dumps(value) if value is None else str(value))


def _age_text(value: Any) -> str:
    """``[min, max]`` with open ends (null) in words: "18 and older", "up to 6", "1 to 6"."""
    try:
        low, high = value
    except (TypeError, ValueError):
        return _value_html(value)
    if high is None:
        return f"{low} and older"
    return f"up to {high}" if low is None else f"{low} to {high}"


def about_html(about: Mapping[str, Any] | None, providers: Mapping[str, str] | None = None,
               messages: Sequence[str] = ()) -> str:
    """HTML of a model's manifest (``ModelRegistry.about``) for the "About this model" view."""
    if about is None:
        return "<p>No such model.</p>"
    title = html.escape(str(about.get("name", about.get("id", "?"))))
    parts = [f"<h3>{title} ({html.escape(str(about.get('id', '')))})</h3>",
             f"<p><b>{html.escape(RESEARCH_NOTICE)}</b></p>"]
    if not about.get("available", False):
        parts.append(f"<p style='color:#b00'><b>Unavailable:</b> "
                     f"{html.escape(str(about.get('reason', 'unknown reason')))}</p>")
        return "".join(parts)
    parts.append("<table cellspacing='4'>")
    for key, name in ABOUT_FIELDS:
        if key in about and key != "gradcam":
            value = _age_text(about[key]) if key == "age_years" else _value_html(about[key])
            parts.append(f"<tr><td valign='top'><b>{name}</b></td><td>{value}</td></tr>")
    parts.append("</table>")
    if providers:
        provider = providers.get(str(about.get("file", "")), "") or ", ".join(sorted(set(providers.values())))
        parts.append(f"<p><b>onnxruntime provider:</b> {html.escape(provider)}</p>")
    else:
        parts.append("<p><b>onnxruntime provider:</b> not loaded yet (chosen on first use; "
                     "CUDA when available, else CPU)</p>")
    for message in messages:
        parts.append(f"<p style='color:#b36b00'>{html.escape(message)}</p>")
    return "".join(parts)


class ModelsDialog(QDialog):
    """List of discovered models (available and unavailable) with the selected one's manifest."""

    def __init__(self, registry: Any, sessions: Any = None, parent: QWidget | None = None,
                 select: str | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelsDialog")
        self.setWindowTitle("Models - About this model")
        self.registry = registry
        self.sessions = sessions
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.list = QListWidget()
        self.list.setObjectName("modelsList")
        self.text = QTextBrowser()
        self.text.setObjectName("modelAbout")
        row.addWidget(self.list, 1)
        row.addWidget(self.text, 3)
        layout.addLayout(row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        for entry in registry.entries:
            state = "available" if entry.available else f"unavailable: {entry.reason}"
            item = QListWidgetItem(f"{entry.id}  ({state})")
            item.setData(Qt.ItemDataRole.UserRole, entry.id)
            item.setToolTip(str(entry.manifest_path))
            self.list.addItem(item)
        folders = ", ".join(str(f) for f in registry.folders)
        self.list.setToolTip(f"Model folders searched: {folders}")
        self.list.currentItemChanged.connect(self._on_list_current_changed)
        ids = [e.id for e in registry.entries]
        if ids:
            self.list.setCurrentRow(ids.index(select) if select in ids else 0)
        self.resize(900, 600)

    def _on_list_current_changed(self, current: QListWidgetItem | None, _prev: object) -> None:
        if current is None:
            return
        row = self.list.row(current)
        entry = self.registry.entries[row]
        about = self.registry.about(entry.id) if entry.available else {
            "id": entry.id, "available": False, "reason": entry.reason}
        providers: dict[str, str] = {}
        messages: list[str] = []
        if self.sessions is not None:
            providers = {str(k).rsplit("/", 1)[-1]: v for k, v in self.sessions.providers().items()}
            messages = list(self.sessions.messages())
        self.text.setHtml(about_html(about, providers, messages))

"""Confidence panel: each model's classes and calibrated probabilities for the current image.

One row per classifier (its classes under it), one row per finding of a multi-label classifier
(its own probability, threshold, call and band), and each segmenter with its declared segments
and measurements; a classifier's declared heatmap share sits under it, naming the segmenter
whose masks it used.

Rows are coloured by the manifest's confidence bands (default green >= 90 %, orange 70-90 %,
red < 70 %) and always carry a text and a shape too, so colour is never the only cue. The band
edges, the operating threshold and the model version sit beside every score, the body-region
answer beside the (0018,0015) Body Part Examined and (0018,5101) View Position tags, and the
research notice is always visible.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QHBoxLayout, QHeaderView, QLabel, QPushButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout,
    QWidget,
)

from viewer import RESEARCH_NOTICE
# Calls, badges and "most suspicious first" are the Qt-free AI session's (re-exported here).
from viewer.services.ai_session import (
    BAND_SHAPES, badge_call, badge_text, call_of, finding_labels, present_segments, suspicion,
    top_finding,
)
from viewer.services.analysis_types import (
    ERROR, OK, OUT_OF_SCOPE, OUTSIDE_DATA, AnalysisResult, FindingResult, Measurement, ModelResult,
)

__all__ = ["BAND_STYLE", "CALL_STYLE", "ResultsPanel", "badge_call", "badge_text", "band_label",
           "band_text", "call_of", "call_text", "finding_labels", "finding_text",
           "present_segments", "suspicion", "top_finding"]

BAND_STYLE: dict[str, tuple[str, str, QColor]] = {
    # band -> (shape, words, background)
    "green": (BAND_SHAPES["green"], "high confidence", QColor(60, 140, 70)),
    "orange": (BAND_SHAPES["orange"], "medium confidence", QColor(200, 130, 30)),
    "red": (BAND_SHAPES["red"], "low confidence", QColor(180, 50, 50)),
}
# Colour encodes the call, never the confidence (issue 16): a finding is orange-red as in
# clinical tools, no finding a quiet slate, anything not a real call (forced, out of scope,
# outside the model's data) grey. Confidence is words and a shape, uncoloured.
CALL_STYLE: dict[str, QColor] = {
    "finding": QColor(178, 72, 28),
    "no finding": QColor(58, 78, 98),
    "forced": QColor(110, 110, 110),
}


LOW_IN_LUNG = 0.5  # heatmap share inside the lungs below which the panel warns


def finding_text(f: FindingResult, long: bool = False) -> str:
    """One finding of a multi-label model: ``"edema 83% >=50%"`` / ``"no edema 12% <50%"``."""
    if long:
        side = "at or above" if f.positive else "below"
        return (f"{f.label}: {'finding' if f.positive else 'no finding'}: P {100 * f.probability:.1f}% "
                f"is {side} its threshold {100 * f.threshold:.0f}%")
    if f.positive:
        return f"{f.label} {100 * f.probability:.0f}% >={100 * f.threshold:.0f}%"
    return f"no {f.label} {100 * f.probability:.0f}% <{100 * f.threshold:.0f}%"


def call_text(res: ModelResult, long: bool = False) -> str:
    """The call with the positive class's probability and the operating point: short for the
    table ("pneumonia 83% >=20%", "no pneumonia 12% <20%"), ``long`` for the row under it
    ("no pneumonia (normal): P(pneumonia) 12.0% is below the operating threshold 20%"), never
    "normal 50 %" beside a "pneumonia" label."""
    if res.findings:
        called = [f for f in res.findings if f.positive]
        if not called:
            top = max(res.findings, key=lambda f: f.probability)
            return f"no finding (highest: {top.label} {100 * top.probability:.0f}%)"
        more = f" (+{len(called) - 1} more)" if len(called) > 1 else ""
        top = max(called, key=lambda f: f.probability)
        return finding_text(top) + more
    p, t, pos = res.positive_probability, res.threshold, res.positive_label
    if pos is None or p is None or t is None:
        return f"{res.label} {100 * (res.confidence or 0):.1f}%"
    finding = res.label == pos
    if long:
        side = "at or above" if finding else "below"
        what = f"{pos}: finding" if finding else f"no {pos} ({res.label})"
        return f"{what}: P({pos}) {100 * p:.1f}% is {side} the operating threshold {100 * t:.0f}%"
    return f"{pos} {100 * p:.0f}% >={100 * t:.0f}%" if finding else f"no {pos} {100 * p:.0f}% <{100 * t:.0f}%"


STATUS_STYLE: dict[str, tuple[str, QColor]] = {
    OUT_OF_SCOPE: ("\u2298 not analysed", QColor(90, 90, 110)),
    OUTSIDE_DATA: ("\u2298 outside this model's data", QColor(90, 90, 110)),
    ERROR: ("\u26a0 error", QColor(150, 40, 40)),
}


def band_label(band: str | None) -> str:
    """Shape + words for a band, e.g. ``"● high confidence"``; "" for no or an unknown band."""
    if not band or band not in BAND_STYLE:
        return ""
    shape, words, _ = BAND_STYLE[band]
    return f"{shape} {words}"


def band_text(band: str | None, bands: Mapping[str, float] | None = None) -> str:
    """Shape + words + edges for a band, e.g. ``"● high confidence (>= 90 %)"``."""
    label = band_label(band)
    if not label:
        return ""
    b = dict(bands or {})
    green, orange = b.get("green", 0.9) * 100, b.get("orange", 0.7) * 100
    edge = {"green": f">= {green:.0f} %", "orange": f"{orange:.0f}-{green:.0f} %",
            "red": f"< {orange:.0f} %"}[str(band)]
    return f"{label} ({edge})"


class ResultsPanel(QWidget):
    """Shows one :class:`AnalysisResult`; asks for (forced) analyses through its signals."""

    sig_analyse_requested = Signal(bool)  # force ("Run anyway")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resultsPanel")
        layout = QVBoxLayout(self)
        self.notice = QLabel(f"\u26a0 {RESEARCH_NOTICE}")
        self.notice.setObjectName("resultsNotice")
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("font-weight: bold; color: #b36b00;")
        layout.addWidget(self.notice)
        buttons = QHBoxLayout()
        self.analyse_button = QPushButton("Analyse (Ctrl+R)")
        self.analyse_button.clicked.connect(lambda: self.sig_analyse_requested.emit(False))
        self.force_button = QPushButton("Run anyway (forced)")
        self.force_button.setToolTip("Run the chest models although the image is outside their "
                                     "intended input; results are marked as forced")
        self.force_button.clicked.connect(lambda: self.sig_analyse_requested.emit(True))
        self.force_button.setEnabled(False)
        buttons.addWidget(self.analyse_button)
        buttons.addWidget(self.force_button)
        layout.addLayout(buttons)
        self.state_label = QLabel("No analysis yet.")
        self.state_label.setObjectName("resultsState")
        self.state_label.setWordWrap(True)
        layout.addWidget(self.state_label)
        self.gate_label = QLabel("")
        self.gate_label.setObjectName("resultsGate")
        self.gate_label.setWordWrap(True)
        layout.addWidget(self.gate_label)
        self.tree = QTreeWidget()
        self.tree.setObjectName("resultsTree")
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Model / class", "Probability", "Band"])
        self.tree.setRootIsDecorated(True)
        self.tree.setMinimumHeight(120)
        # The verdict and band columns are sized to their contents and stay in view; the name
        # column takes what is left and elides (full text in the tooltip). Long notes span
        # the whole row, so they never widen a column off-screen.
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.tree, 1)
        self.caution_label = QLabel("")
        self.caution_label.setObjectName("resultsCaution")
        self.caution_label.setWordWrap(True)
        self.caution_label.setStyleSheet("color: #b36b00;")
        layout.addWidget(self.caution_label)
        self.provider_label = QLabel("")
        self.provider_label.setObjectName("resultsProvider")
        self.provider_label.setWordWrap(True)
        layout.addWidget(self.provider_label)
        self.messages_label = QLabel("")
        self.messages_label.setObjectName("resultsMessages")
        self.messages_label.setWordWrap(True)
        layout.addWidget(self.messages_label)
        self.result: AnalysisResult | None = None

    # -- content ---------------------------------------------------------------------------
    def clear(self, text: str = "No analysis yet.") -> None:
        self.result = None
        self.tree.clear()
        self.gate_label.setText("")
        self.caution_label.setText("")
        self.messages_label.setText("")
        self.state_label.setText(text)
        self.force_button.setEnabled(False)

    def show_pending(self, text: str = "Analysing...") -> None:
        self.state_label.setText(text)

    def set_result(self, result: AnalysisResult, manifests: Mapping[str, Any]) -> None:
        """Show ``result``; ``manifests`` maps model ids to their manifests (names, bands)."""
        self.result = result
        self.tree.clear()
        gate = result.gate
        if gate is not None:
            # Plain words first; the gate's scores (confidence, energy) are details, in the
            # tooltip (issue 16: a hip read "unknown / not a radiograph 32 % (energy ...)").
            chest = gate.region == "chest" and not gate.is_unknown
            if chest:
                words = "chest radiograph: chest models run"
            elif any(r.status == OUT_OF_SCOPE for r in result.results):
                words = "not a chest radiograph: chest models not run"
            else:
                words = f"{'not recognised' if gate.is_unknown else gate.region}"
            details = (f"body-region model: {'unknown' if gate.is_unknown else gate.region} "
                       f"{100 * gate.confidence:.0f}%"
                       + (f" ({gate.unknown_reason})" if gate.unknown_reason else ""))
            self.gate_label.setText(
                f"Body region: {words}  |  DICOM Body Part Examined: "
                f"{gate.body_part_examined or '-'}, View Position: {gate.view_position or '-'}")
            self.gate_label.setToolTip(details)
        else:
            self.gate_label.setText("Body region: not checked (no body-region model)")
        out_of_scope = False
        cautions = []
        for res in result.results:
            if gate is not None and res is result.results[0] and res.task == "classification" \
                    and res.status == OK and res.label == gate.region:
                continue  # the gate, shown above
            name = self._add_model(res, manifests.get(res.model_id))
            out_of_scope |= res.status in (OUT_OF_SCOPE, OUTSIDE_DATA)
            if res.caution:
                cautions.append(f"\u26a0 {name}: {res.caution}")
        self.tree.expandAll()
        self.caution_label.setText("\n".join(cautions))
        self.force_button.setEnabled(out_of_scope)
        forced = any(r.forced for r in result.results)
        state = "Analysed" + (" (some models forced: outside their intended input)" if forced else "")
        if any(r.status == OUTSIDE_DATA for r in result.results):
            state = ("Some models give no result: the image is outside their data (their own "
                     "check, or a study date before their population). Use \"Run anyway\" to "
                     "force them (marked as forced).")
        elif out_of_scope:
            state = ("Not analysed: outside the model's intended input. "
                     "Use \"Run anyway\" to force (marked as forced).")
        self.state_label.setText(state)
        providers = sorted({r.provider for r in result.results if r.provider})
        self.provider_label.setText(f"onnxruntime provider: {', '.join(providers) or '-'}")
        self.messages_label.setText("\n".join(result.messages))

    @staticmethod
    def _note(parent: QTreeWidgetItem, text: str) -> QTreeWidgetItem:
        """A free-text row spanning all columns (elided when narrow; full text as tooltip)."""
        item = QTreeWidgetItem(parent, [text, "", ""])
        item.setFirstColumnSpanned(True)
        item.setToolTip(0, text.strip())
        return item

    def _add_model(self, res: ModelResult, manifest: Any) -> str:
        """Add one model's rows; return the model's display name."""
        name = getattr(manifest, "name", res.model_id) if manifest is not None else res.model_id
        bands = getattr(manifest, "bands", None)
        head = QTreeWidgetItem([f"{name}  v{res.model_version}", "", ""])
        head.setData(0, Qt.ItemDataRole.UserRole, res.model_id)
        head.setToolTip(0, f"{name}  v{res.model_version} ({res.model_id})")
        self.tree.addTopLevelItem(head)
        if res.caution:
            self._note(head, f"  \u26a0 Caution: {res.caution}")
        if res.status != OK:
            text, colour = STATUS_STYLE.get(res.status, (res.status, QColor(90, 90, 90)))
            head.setText(1, text)
            head.setBackground(1, QBrush(colour))
            head.setForeground(1, QBrush(QColor("white")))
            self._note(head, res.reason or "")
            return name
        if res.task == "segmentation":
            self._add_segmenter(head, res, manifest)
            return name
        head.setText(1, call_text(res) + ("  [FORCED]" if res.forced else ""))
        head.setToolTip(1, self._operating_point(res, manifest))
        if res.positive_label is not None and res.threshold is not None:
            self._note(head, f"  {call_text(res, long=True)}")
        # The column carries shape + words; the band's edges are in the tooltip and the
        # "bands" row, so the column stays narrow enough for the class names beside it.
        head.setText(2, band_label(res.band))
        head.setToolTip(2, band_text(res.band, bands))
        self._colour(head, call_of(res))
        if res.findings:
            self._add_findings(head, res, manifest)
            self._add_measurements(head, res)
            return name
        for label, p in res.probabilities.items():
            QTreeWidgetItem(head, [f"  {label}", f"{100 * p:.1f}%", ""])
        b = dict(bands or {"green": 0.9, "orange": 0.7})
        threshold = "-" if res.threshold is None else f"{res.threshold:.3f}"
        QTreeWidgetItem(head, [f"  threshold ({res.positive_label or 'top class'})", threshold, ""])
        self._note(head, f"  bands: green >= {100 * b.get('green', 0.9):.0f}%, orange >= "
                         f"{100 * b.get('orange', 0.7):.0f}%, red below")
        self._add_measurements(head, res)
        return name

    def _add_findings(self, head: QTreeWidgetItem, res: ModelResult, manifest: Any) -> None:
        """One row per finding: its probability, threshold and call, and its own band."""
        declared = {f.label: f for f in getattr(manifest, "findings", ())}
        for f in res.findings:
            item = QTreeWidgetItem(head, [f"  {f.label}", finding_text(f), band_label(f.band)])
            item.setData(0, Qt.ItemDataRole.UserRole, f"{res.model_id}.finding.{f.label}")
            bands = getattr(declared.get(f.label), "bands", None)
            item.setToolTip(1, finding_text(f, long=True))
            item.setToolTip(2, band_text(f.band, bands))
            self._colour(item, "forced" if res.forced else ("finding" if f.positive else "no finding"))

    def _add_segmenter(self, head: QTreeWidgetItem, res: ModelResult, manifest: Any) -> None:
        """A segmenter: its call (declared presence), each segment with its role, and its
        measurements."""
        call = call_of(res)
        present = present_segments(res)
        head.setText(1, (f"present: {', '.join(present)}" if present else "no finding")
                     if call in ("finding", "no finding") else "masks ready")
        self._colour(head, call)
        roles = {s.label: s.role for s in getattr(manifest, "segments", ())}
        for o in res.overlays_of("mask") or ():
            frac = float((o.array > 0).mean()) if o.array.size else 0.0
            role = roles.get(o.label, o.role or "region").replace("_", " ")
            QTreeWidgetItem(head, [f"  {o.label} ({role})",
                                   f"{100 * frac:.1f}% of image", ""])
        if not res.overlays_of("mask"):
            self._note(head, f"  {res.label}: see Overlays")
        self._add_measurements(head, res)

    def _add_measurements(self, head: QTreeWidgetItem, res: ModelResult) -> None:
        for m in res.measurements:
            self._add_measurement(head, res, m)

    def _add_measurement(self, head: QTreeWidgetItem, res: ModelResult, m: Measurement) -> None:
        where = m.label.replace("_", " ")
        if m.kind == "heatmap_share":
            text = f"  heatmap mass inside {'lungs' if m.label == 'lung_field' else where}"
            if m.source:
                text += f" ({m.source})"
        elif m.kind == "area_fraction":
            text = f"  {where}: area"
        else:
            text = f"  {where}: presence"
        item = QTreeWidgetItem(head, [text, m.text(), ""])
        item.setData(0, Qt.ItemDataRole.UserRole, m.key)
        item.setToolTip(0, m.key + (f" ({m.note})" if m.note else ""))
        if m.kind == "heatmap_share" and m.value is None and m.note:
            self._note(head, f"  {m.note}")
        if m.kind == "heatmap_share" and m.label == "lung_field" and m.value is not None \
                and m.value < LOW_IN_LUNG:
            # A chest classifier looking mostly outside the lungs may answer from labels,
            # borders or devices (shortcut learning): say so beside the number.
            self._note(head, f"  \u26a0 only {100 * m.value:.0f}% of the heatmap lies in "
                             "the lungs: the model may be answering from something else "
                             "(markers, borders, devices)")

    @staticmethod
    def _operating_point(res: ModelResult, manifest: Any) -> str:
        """The operating point in words, with the sensitivity and specificity measured there
        when the manifest's metrics give them."""
        if res.threshold is None or res.positive_label is None:
            return ""
        text = f"operating point: {res.positive_label} when P >= {100 * res.threshold:.1f}%"
        metrics = dict((getattr(manifest, "raw", {}) or {}).get("metrics") or {})
        sens, spec = metrics.get("sensitivity"), metrics.get("specificity")
        if isinstance(sens, (int, float)) and isinstance(spec, (int, float)):
            where = metrics.get("split", "held-out data")
            text += f"; there: sensitivity {100 * sens:.1f}%, specificity {100 * spec:.1f}% ({where})"
        return text

    @staticmethod
    def _colour(item: QTreeWidgetItem, call: str | None) -> None:
        if call in CALL_STYLE:
            item.setBackground(1, QBrush(CALL_STYLE[call]))
            item.setForeground(1, QBrush(QColor("white")))

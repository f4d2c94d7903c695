"""Thumbnail grid: a list model of instance records in icon mode, filled lazily.

Thumbnails are made off the GUI thread through a :class:`~viewer.ui.task_bridge.TaskBridge`
by ``ThumbnailStore`` (disk cache, keyed by path, size and mtime). Only a few requests are in
flight at a time; the queue is rebuilt whenever the visible rows change (scroll, resize, new
selection), so visible rows go first and rows scrolled away are cancelled before they start.
Rows not yet visible are prefetched afterwards so paging through the grid is instant.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap, QResizeEvent
from PySide6.QtWidgets import QListView, QWidget

from viewer.ui.task_bridge import TaskBridge, TaskRequest

THUMB_CHANNEL = "thumb"
MAX_IN_FLIGHT = 16  # queued in the executor; still cancellable before they start
PREFETCH = 256  # rows beyond the visible ones queued at a time
ICON_FLUSH_MS = 50  # new icons are announced to the view at most this often (one repaint each)
BADGE_ROLE = Qt.ItemDataRole.UserRole + 2
RECORD_ROLE = Qt.ItemDataRole.UserRole + 1
# A thumbnail is tinted by the call (issue 16): a finding orange-red, no finding a quiet slate,
# forced results grey; confidence bands only filter, they never colour.
CALL_COLOURS = {"finding": (150, 60, 25), "no finding": (50, 66, 84), "forced": (95, 95, 95),
                "error": (120, 40, 40)}

Index = QModelIndex | QPersistentModelIndex


def array_to_qimage(array: np.ndarray) -> QImage:
    """uint8 ``(h, w)`` or ``(h, w, 3)`` array -> a QImage that owns its data."""
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        return QImage(arr.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def _placeholder(size: int, broken: bool = False) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(40, 40, 40))
    if broken:
        painter = QPainter(pixmap)
        painter.setPen(QColor(220, 80, 80))
        painter.drawLine(8, 8, size - 8, size - 8)
        painter.drawLine(size - 8, 8, 8, size - 8)
        painter.end()
    return QIcon(pixmap)


class ThumbnailModel(QAbstractListModel):
    """Records with their (lazily made) icons and optional badges (an AI extension point)."""

    def __init__(self, size: int = 128, parent: Any = None) -> None:
        super().__init__(parent)
        self.size = size
        self.records: list[Any] = []
        self._rows: dict[Any, int] = {}
        self.icons: dict[Any, QIcon] = {}
        self.badges: dict[Any, str] = {}
        self.badge_colours: dict[Any, str] = {}  # key -> band name (green / orange / red): filter
        self.badge_calls: dict[Any, str] = {}  # key -> call (finding / no finding / forced): tint
        self._empty = _placeholder(size)
        self._broken = _placeholder(size, broken=True)
        self.failed: set[Any] = set()
        # Icons arrive one by one (hundreds a second from the disk cache); announcing each one
        # repainted the grid on every event-loop turn and kept the GUI thread ~busy. They are
        # announced together, as one dataChanged over the rows that changed, per flush.
        self._dirty_rows: set[int] = set()
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(ICON_FLUSH_MS)
        self._flush_timer.timeout.connect(self.flush_icons)

    def set_records(self, records: Sequence[Any]) -> None:
        self.beginResetModel()
        self.records = list(records)
        self._rows = {rec.key: row for row, rec in enumerate(self.records)}
        self._dirty_rows.clear()  # the reset repaints everything anyway
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt API
        return 0 if parent.isValid() else len(self.records)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.records):
            return None
        rec = self.records[index.row()]
        key = rec.key
        if role == Qt.ItemDataRole.DisplayRole:
            badge = self.badges.get(key)
            return f"{rec.display_name}\n{badge}" if badge else rec.display_name
        if role == Qt.ItemDataRole.DecorationRole:
            if key in self.failed:
                return self._broken
            return self.icons.get(key, self._empty)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{rec.display_name}\n{rec.modality} {rec.body_part} {rec.cols}x{rec.rows}"
        if role == RECORD_ROLE:
            return rec
        if role == BADGE_ROLE:
            return self.badges.get(key, "")
        if role == Qt.ItemDataRole.BackgroundRole:
            call = self.badge_calls.get(key)
            return QColor(*CALL_COLOURS[call]) if call in CALL_COLOURS else None
        return None

    def row_of(self, key: Any) -> int:
        return self._rows.get(key, -1)

    def set_icon(self, key: Any, image: QImage | None) -> None:
        if image is None:
            self.failed.add(key)
        else:
            self.icons[key] = QIcon(QPixmap.fromImage(image))
        row = self.row_of(key)
        if row >= 0:
            self._dirty_rows.add(row)
            if not self._flush_timer.isActive():
                self._flush_timer.start()

    def flush_icons(self) -> None:
        """Announce the icons set since the last flush: one ``dataChanged`` (decoration role)
        per run of consecutive rows (runs on a timer; tests may call it). Never one span over
        unchanged rows: the icon-mode view re-measures every row of a changed range."""
        self._flush_timer.stop()
        rows, self._dirty_rows = sorted(self._dirty_rows), set()
        start = 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or rows[i] != rows[i - 1] + 1:
                self.dataChanged.emit(self.index(rows[start]), self.index(rows[i - 1]),
                                      [Qt.ItemDataRole.DecorationRole])
                start = i

    def set_badge(self, key: Any, text: str, band: str | None = None, call: str | None = None) -> None:
        """Show a short text under a thumbnail (AI results); empty removes it. ``band``
        (green / orange / red) is kept for filtering; ``call`` (finding / no finding / forced /
        error) tints the cell; the text always carries the meaning."""
        if text:
            self.badges[key] = text
        else:
            self.badges.pop(key, None)
        if text and band:
            self.badge_colours[key] = band
        else:
            self.badge_colours.pop(key, None)
        if text and call:
            self.badge_calls[key] = call
        else:
            self.badge_calls.pop(key, None)
        row = self.row_of(key)
        if row >= 0:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)


class ThumbnailGrid(QListView):
    """Icon-mode list of thumbnails; ``sig_record_activated`` when the user picks one."""

    sig_record_activated = Signal(object)
    sig_thumbnail_failed = Signal(object, object)  # record, TaskFailure
    sig_thumbnails_idle = Signal()

    def __init__(
        self,
        bridge: TaskBridge,
        make_thumbnail: Callable[[Any], np.ndarray],
        size: int = 128,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("thumbnailGrid")
        self.bridge = bridge
        self.make_thumbnail = make_thumbnail
        self.thumb_model = ThumbnailModel(size, self)
        self.setModel(self.thumb_model)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        # Lay out big folders in batches across event-loop turns instead of in one block.
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(200)
        self.setIconSize(QSize(size, size))
        self.setGridSize(QSize(size + 24, size + 40))
        self.setWordWrap(True)
        self._in_flight: dict[int, Any] = {}
        self._reprioritise_timer = QTimer(self)
        self._reprioritise_timer.setSingleShot(True)
        self._reprioritise_timer.setInterval(0)
        self._reprioritise_timer.timeout.connect(self.reprioritise)
        self._queue: list[Any] = []
        self.selectionModel().currentChanged.connect(self._on_selection_current_changed)
        self.verticalScrollBar().valueChanged.connect(self._on_scroll_value_changed)
        bridge.sig_task_finished.connect(self._on_bridge_task_finished)
        bridge.sig_task_errored.connect(self._on_bridge_task_errored)
        bridge.sig_task_cancelled.connect(self._on_bridge_task_cancelled)

    # -- content ---------------------------------------------------------------------------
    def set_records(self, records: Sequence[Any]) -> None:
        """Show ``records``; known icons are kept, the rest requested lazily."""
        for rid in list(self._in_flight):
            self.bridge.cancel(rid)
        self._in_flight.clear()
        self.thumb_model.set_records(records)
        self.schedule_reprioritise()

    def select_row(self, row: int) -> None:
        if 0 <= row < self.thumb_model.rowCount():
            self.setCurrentIndex(self.thumb_model.index(row))

    # -- scheduling ------------------------------------------------------------------------
    def visible_rows(self) -> list[int]:
        """Rows whose cells intersect the viewport, in display order (cost ~ visible rows)."""
        model = self.thumb_model
        rect = self.viewport().rect()
        grid = self.gridSize()
        start = 0
        # Probe down the left column: the corner itself may fall in the spacing between cells.
        for y in range(0, max(rect.height(), 1), max(grid.height() // 3, 1)):
            hit = self.indexAt(rect.topLeft() + QPoint(grid.width() // 2, y))
            if hit.isValid():
                start = hit.row()
                break
        # A partly hidden cell at the top may not be hit at the very corner: step back a row.
        per_row = max(1, rect.width() // max(grid.width(), 1))
        start = max(0, start - per_row)
        rows = []
        limit = min(model.rowCount(), start + 4 * per_row * (rect.height() // max(grid.height(), 1) + 2))
        for row in range(start, limit):
            cell = self.visualRect(model.index(row))
            if cell.intersects(rect):
                rows.append(row)
            elif rows and cell.top() > rect.bottom():
                break
        return rows

    def reprioritise(self) -> None:
        """Rebuild the request queue: visible rows first, then the next :data:`PREFETCH` rows
        (wrapping around); cancel requests for rows that scrolled out of view."""
        model = self.thumb_model
        visible = self.visible_rows()
        visible_keys = {model.records[r].key for r in visible}
        if visible:
            for rid, key in list(self._in_flight.items()):
                if key not in visible_keys:
                    self.bridge.cancel(rid)
                    del self._in_flight[rid]
        flying = set(self._in_flight.values())
        icons, failed = model.icons, model.failed

        def wanted(row: int) -> Any:
            key = model.records[row].key
            return None if key in icons or key in failed or key in flying else key

        queue = [k for k in map(wanted, visible) if k is not None]
        n = model.rowCount()
        start = visible[-1] + 1 if visible else 0
        limit = len(queue) + PREFETCH
        for i in range(n):
            if len(queue) >= limit:
                break
            key = wanted((start + i) % n)
            if key is not None and key not in visible_keys:
                queue.append(key)
        # Reversed so that _pump pops the most urgent key from the end in O(1).
        self._queue = queue[::-1]
        self._pump()

    def _pump(self) -> None:
        model = self.thumb_model
        while self._queue and len(self._in_flight) < MAX_IN_FLIGHT:
            key = self._queue.pop()
            row = model.row_of(key)
            if row < 0:
                continue
            rec = model.records[row]
            request = TaskRequest(
                THUMB_CHANNEL, self.make_thumbnail, (rec,), exclusive=False, with_progress=False
            )
            rid = self.bridge.submit(request)
            if rid:
                self._in_flight[rid] = key
        if not self._queue and not self._in_flight:
            if len(model.icons) + len(model.failed) < model.rowCount():
                self.schedule_reprioritise()  # next prefetch window
            else:
                self.sig_thumbnails_idle.emit()

    def pending(self) -> int:
        """Thumbnails not made yet (queued, in flight or not yet scheduled)."""
        model = self.thumb_model
        return model.rowCount() - len(model.icons.keys() & model._rows.keys()) - len(
            model.failed & model._rows.keys()
        )

    # -- slots -----------------------------------------------------------------------------
    def _on_bridge_task_finished(self, channel: str, rid: int, result: object) -> None:
        key = self._in_flight.pop(rid, None)
        if channel != THUMB_CHANNEL or key is None:
            return
        self.thumb_model.set_icon(key, array_to_qimage(result))  # type: ignore[arg-type]
        self._pump()

    def _on_bridge_task_errored(self, channel: str, rid: int, failure: object) -> None:
        key = self._in_flight.pop(rid, None)
        if channel != THUMB_CHANNEL or key is None:
            return
        self.thumb_model.set_icon(key, None)
        row = self.thumb_model.row_of(key)
        if row >= 0:
            self.sig_thumbnail_failed.emit(self.thumb_model.records[row], failure)
        self._pump()

    def _on_bridge_task_cancelled(self, channel: str, rid: int) -> None:
        if channel == THUMB_CHANNEL and self._in_flight.pop(rid, None) is not None:
            self._pump()

    def schedule_reprioritise(self) -> None:
        """Reprioritise on the next event-loop turn (coalesces bursts of scroll events and
        lets the view lay out first)."""
        if not self._reprioritise_timer.isActive():
            self._reprioritise_timer.start()

    def _on_scroll_value_changed(self, _value: int) -> None:
        self.schedule_reprioritise()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.schedule_reprioritise()

    def _on_selection_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        rec = current.data(RECORD_ROLE) if current.isValid() else None
        if rec is not None:
            self.sig_record_activated.emit(rec)

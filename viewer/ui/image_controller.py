"""Showing an image: decode + prepare off the GUI thread, then hand it to the canvas.

Decoding goes through an injected ``load_fn(record, frame)`` (``DecodePool.load_image``: one
frame of a multi-frame image is decoded at a time) behind the bounded
:class:`~viewer.services.image_cache.ImageCache`; :func:`prepare_image` computes the default
VOI, range and histogram on the worker too, so the GUI thread only sets the image.
Requests are exclusive: selecting another image drops the previous request's result.
"""

from __future__ import annotations

import time
from typing import Any
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from viewer.core.radiograph import Radiograph
from viewer.state.display_plan import PreparedImage, prepare_image
from viewer.ui.task_bridge import TaskBridge, TaskFailure, TaskRequest

IMAGE_CHANNEL = "image"
PREFETCH_CHANNEL = "prefetch"
HEADER_CHANNEL = "header"


def overlay_text(record: Any, rg: Radiograph | None = None) -> str:
    """Patient-info overlay text (shown on the canvas, never logged)."""
    lines = []
    name = getattr(record, "patient_name", "")
    pid = getattr(record, "patient_id", "")
    if name or pid:
        lines.append(f"{name}  {('ID ' + pid) if pid else ''}".strip())
    study = " ".join(
        v for v in (getattr(record, "study_date", ""), getattr(record, "study_description", "")) if v
    )
    if study:
        lines.append(study)
    what = " ".join(
        v for v in (getattr(record, "modality", ""), getattr(record, "body_part", ""),
                    getattr(record, "view_position", "")) if v
    )
    if what:
        lines.append(what)
    if rg is not None:
        frame = f"  frame {rg.frame_index + 1}/{rg.frame_count}" if rg.frame_count > 1 else ""
        lines.append(f"{rg.cols} x {rg.rows}  {rg.photometric}{frame}")
    return "\n".join(lines)


class ImageController(QObject):
    """Loads the selected record; ``sig_image_ready(record, PreparedImage, ms)`` on success,
    ``sig_decode_failed(record, TaskFailure)`` then ``sig_image_failed(record, text)`` when not."""

    sig_image_ready = Signal(object, object, float)
    sig_decode_failed = Signal(object, object)
    sig_image_failed = Signal(object, str)
    sig_header_ready = Signal(object, object, str)
    sig_load_started = Signal(object)  # record: a load began (the grid notes its viewport)

    def __init__(
        self,
        bridge: TaskBridge,
        load_fn: Callable[..., Radiograph],
        header_fn: Callable[[Any], Any] | None = None,
        cache: Any = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.load_fn = load_fn
        self.header_fn = header_fn
        self.cache = cache
        self.current: Any = None
        self.frame = 0
        self._image_request = 0
        self._header_request = 0
        self._started = 0.0
        self.header_wanted = False
        bridge.sig_task_finished.connect(self._on_bridge_task_finished)
        bridge.sig_task_errored.connect(self._on_bridge_task_errored)

    @property
    def current_pending(self) -> Any:
        """The record being loaded, ``None`` when idle."""
        return self.current if self._image_request else None

    def show(self, record: Any, frame: int = 0) -> int:
        """Start loading frame ``frame`` of ``record``; returns the request id."""
        header_too = self.header_wanted and record is not self.current
        self.current, self.frame = record, int(frame)
        self._started = time.perf_counter()
        self.sig_load_started.emit(record)
        self._image_request = self.bridge.submit(
            TaskRequest(IMAGE_CHANNEL, self._load_prepared, (record, self.frame), with_progress=False)
        )
        if header_too:
            self.load_header(record)
        return self._image_request

    def prefetch(self, records: list[Any]) -> None:
        """Decode ``records`` (the neighbours of the image shown) into the image cache in the
        background, so that next/previous appear without waiting for the decoder (issue 16:
        a J2K film took ~0.4 s per step). A newer prefetch replaces an older one; the cache's
        byte budget bounds the memory; failures are left for the real display to report."""
        if self.cache is None:
            return
        todo = tuple(r for r in records if r is not None and r.key not in self.cache)
        if todo:
            self.bridge.submit(TaskRequest(PREFETCH_CHANNEL, self._prefetch, (todo,), exclusive=True))

    def _prefetch(self, records: tuple[Any, ...], *, cancel: Any, progress: Any) -> int:
        done = 0
        for record in records:
            if cancel.cancelled:
                break
            try:
                self.cache.get_or_load(record.key, lambda r=record: self.load_fn(r, 0))
                done += 1
            except Exception:  # shown (and reported) when the user steps onto it
                continue
        return done

    def clear(self) -> None:
        """Forget the current image and drop any load in flight (a new folder was opened)."""
        self.bridge.cancel_channel(PREFETCH_CHANNEL)
        self.bridge.cancel_channel(IMAGE_CHANNEL)
        self.bridge.cancel_channel(HEADER_CHANNEL)
        self.current, self.frame = None, 0
        self._image_request = self._header_request = 0

    def load_header(self, record: Any) -> None:
        if record is not None and getattr(record, "kind", "dicom") != "dicom":
            # A PNG/JPEG has no DICOM header: say so instead of parsing its bytes as one (the
            # dock showed "(D8FF,E0FF) (private) UN" for a JPEG).
            self._header_request = 0
            self.sig_header_ready.emit(record, None, f"{str(record.kind).upper()} image: it has no "
                                       "DICOM header (no patient, study or acquisition attributes)")
            return
        if self.header_fn is not None and record is not None:
            self._header_request = self.bridge.submit(
                TaskRequest(HEADER_CHANNEL, self.header_fn, (record,), with_progress=False)
            )

    def _load_prepared(self, record: Any, frame: int = 0) -> PreparedImage:
        """Worker side: decode one frame (through the cache) and prepare."""
        if self.cache is not None:
            key = record.key if frame == 0 else (record.key, frame)
            rg = self.cache.get_or_load(key, lambda: self.load_fn(record, frame))
        else:
            rg = self.load_fn(record, frame)
        return prepare_image(rg)

    def _on_bridge_task_finished(self, channel: str, rid: int, result: object) -> None:
        if channel == IMAGE_CHANNEL and rid == self._image_request:
            self._image_request = 0
            ms = (time.perf_counter() - self._started) * 1000.0
            self.sig_image_ready.emit(self.current, result, ms)
        elif channel == HEADER_CHANNEL and rid == self._header_request:
            self.sig_header_ready.emit(self.current, result, "")

    def _on_bridge_task_errored(self, channel: str, rid: int, failure: TaskFailure) -> None:
        if channel == IMAGE_CHANNEL and rid == self._image_request:
            self._image_request = 0
            self.sig_decode_failed.emit(self.current, failure)
            self.sig_image_failed.emit(self.current, failure.text)
        elif channel == HEADER_CHANNEL and rid == self._header_request:
            self.sig_header_ready.emit(self.current, None, failure.text)

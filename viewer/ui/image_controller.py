"""Showing an image: decode + prepare off the GUI thread, then hand it to the canvas.

Decoding goes through an injected ``load_fn(record, frame)`` (``DecodePool.load_image``: one
frame of a multi-frame image is decoded at a time) behind the bounded
:class:`~viewer.services.image_cache.ImageCache`; :func:`prepare_image` computes the default
VOI, range and histogram on the worker too, so the GUI thread only sets the image.
Requests are exclusive: selecting another image drops the previous request's result.

Progressive display (issue 16: a cold click on a JPEG 2000 film waited ~0.6 s for its decode):
when a ``preview_fn`` is set (``DecodePool.load_preview``, wired by :mod:`viewer.ui.progressive`)
and a new image is JPEG 2000 or JPEG Baseline and not in the cache, a reduced-resolution decode
sized for the viewport (``preview_view()``: its device pixels) runs beside the full one on the
``preview`` channel and comes back as ``sig_preview_ready(record, PreparedImage)``, a stand-in
in full-image geometry (:func:`viewer.state.provisional.provisional_image`). It is delivered
only while its image request is still current and the full image has not arrived; the full
image's arrival, a failure or another selection drops it. Stepping the frames of the image on
screen gets no preview.
"""

from __future__ import annotations

import time
from typing import Any
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from viewer.core.radiograph import Radiograph
from viewer.state.display_plan import PreparedImage, prepare_image
from viewer.state.provisional import (
    JPEG_BASELINE, preview_reduce_to, provisional_image, wants_preview,
)
from viewer.ui.task_bridge import TaskBridge, TaskFailure, TaskRequest

IMAGE_CHANNEL = "image"
PREFETCH_CHANNEL = "prefetch"
HEADER_CHANNEL = "header"
PREVIEW_CHANNEL = "preview"


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
    sig_preview_ready = Signal(object, object)  # record, provisional PreparedImage (see module)

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
        # Progressive display (module docstring): both None = no previews.
        self.preview_fn: Callable[..., Radiograph | None] | None = None
        self.preview_view: Callable[[], tuple[float, float]] | None = None
        self._preview_request = 0
        bridge.sig_task_finished.connect(self._on_bridge_task_finished)
        bridge.sig_task_errored.connect(self._on_bridge_task_errored)

    @property
    def current_pending(self) -> Any:
        """The record being loaded, ``None`` when idle."""
        return self.current if self._image_request else None

    def show(self, record: Any, frame: int = 0) -> int:
        """Start loading frame ``frame`` of ``record``; returns the request id."""
        header_too = self.header_wanted and record is not self.current
        new = record is not self.current
        if new or int(frame) != self.frame:
            self._drop_preview()
        self.current, self.frame = record, int(frame)
        self._started = time.perf_counter()
        self.sig_load_started.emit(record)
        if new:  # first, so that it gets a decode process before the full decode
            self._preview_request = self._submit_preview(record, self.frame)
        self._image_request = self.bridge.submit(
            TaskRequest(IMAGE_CHANNEL, self._load_prepared, (record, self.frame), with_progress=False)
        )
        if header_too:
            self.load_header(record)
        return self._image_request

    def _submit_preview(self, record: Any, frame: int) -> int:
        """Start the stand-in decode of a new image when it helps; the request id or 0."""
        if self.preview_fn is None or self.preview_view is None or not wants_preview(record):
            return 0
        key = record.key if frame == 0 else (record.key, frame)
        if self.cache is not None and key in self.cache:
            return 0  # the full image is at hand
        width, height = self.preview_view()
        reduce_to = preview_reduce_to(int(record.rows), int(record.cols), width, height,
                                      j2k=record.transfer_syntax_uid != JPEG_BASELINE)
        if reduce_to is None:
            return 0
        return self.bridge.submit(
            TaskRequest(PREVIEW_CHANNEL, self._load_preview, (record, frame, reduce_to)))

    def _load_preview(self, record: Any, frame: int, reduce_to: int, *, cancel: Any,
                      progress: Any) -> PreparedImage | None:
        """Worker side: the reduced decode, scaled to the full geometry (``None``: no preview)."""
        assert self.preview_fn is not None
        small = self.preview_fn(record, frame, reduce_to=reduce_to, cancel=cancel)
        if small is None or cancel.cancelled:
            return None
        return provisional_image(small, int(record.rows), int(record.cols))

    def _drop_preview(self) -> None:
        if self._preview_request:
            self.bridge.cancel_channel(PREVIEW_CHANNEL)
            self._preview_request = 0

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
        self._drop_preview()
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
        if channel == PREVIEW_CHANNEL and rid == self._preview_request:
            self._preview_request = 0
            if result is not None and self._image_request:  # the full image is still to come
                self.sig_preview_ready.emit(self.current, result)
        elif channel == IMAGE_CHANNEL and rid == self._image_request:
            self._image_request = 0
            self._drop_preview()  # late: the full image is here
            ms = (time.perf_counter() - self._started) * 1000.0
            self.sig_image_ready.emit(self.current, result, ms)
        elif channel == HEADER_CHANNEL and rid == self._header_request:
            self.sig_header_ready.emit(self.current, result, "")

    def _on_bridge_task_errored(self, channel: str, rid: int, failure: TaskFailure) -> None:
        if channel == PREVIEW_CHANNEL and rid == self._preview_request:
            self._preview_request = 0  # no preview; the full decode reports its own failure
        elif channel == IMAGE_CHANNEL and rid == self._image_request:
            self._image_request = 0
            self._drop_preview()
            self.sig_decode_failed.emit(self.current, failure)
            self.sig_image_failed.emit(self.current, failure.text)
        elif channel == HEADER_CHANNEL and rid == self._header_request:
            self.sig_header_ready.emit(self.current, None, failure.text)

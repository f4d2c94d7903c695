"""Decode compressed images in worker processes, so the GUI process never stalls on the GIL.

Measured (bench/display.py, 2000x1600 12-bit): every compressed-pixel decoder available here
holds the GIL for its whole run: OpenJPEG/GDCM/Pillow JPEG 2000 0.6-1.0 s, CharLS/GDCM JPEG-LS
160-270 ms, pylibjpeg-rle 20-60 ms. A decode on a worker *thread* therefore freezes the GUI
thread (no repaint, no input) for that long. :class:`DecodePool` runs the expensive ones in a
small spawn-context process pool and returns the :class:`~viewer.core.radiograph.Radiograph` (or
thumbnail) to the calling thread, which waits with the GIL released. Uncompressed DICOM and
PNG/JPEG files stay in the calling thread; so do full-size RLE frames under a megapixel, where
the inter-process copy of the image would cost more than the decode. Every compressed thumbnail
goes to a process (only the small thumbnail comes back): with reduced-resolution J2K and RLE
thumbnails on the threads, the GUI probe (``bench.gui_probe``, 300 thumbnails) saw p99 gaps of
31-78 ms and worst gaps of 184-205 ms; with them in processes (and a 1 ms GIL switch interval,
:mod:`viewer.app`) p99 14 ms, worst 55 ms.

Call its methods from a worker thread (they block until the result is ready), never from the
GUI thread. Start-up (spawning interpreters that import pydicom, numpy and OpenCV) takes
0.3-3 s depending on load; :meth:`DecodePool.warm_up` starts it in the background at launch.
``DecodePool(workers=0)`` decodes everything in the calling thread (tests, which start fast).
This module holds no Qt code: the composition root (:mod:`viewer.app`) creates one pool and
the window joins it on close.
"""

from __future__ import annotations

import _thread
import multiprocessing
import os
import threading
import time
from typing import Any, TypeVar
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from viewer.core.radiograph import Radiograph
from viewer.dicom.load import LoadError
from viewer.dicom.scan import InstanceRecord
from viewer.services.library import load_image
from viewer.services.tasks import CancelToken, background_nice, background_priority
from viewer.services.decode_worker import init_decode_worker
from viewer.services.thumbnails import ThumbnailStore

_T = TypeVar("_T")

__all__ = ["DecodePool", "decodes_in_process"]

_CHEAP = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
          "1.2.840.10008.1.2.1.99", ""}
_RLE = "1.2.840.10008.1.2.5"
# RLE decodes at ~10 ns/pixel unloaded but 2-3x that on a busy machine: large frames stall the
# GUI for more than 3 frames (bench: 40-60 ms at 2500x2000), small ones do not.
_RLE_PROCESS_PIXELS = 1_000_000


class WorkerCrashed(RuntimeError):
    """A decode worker process died twice on the same task (a native abort or segfault)."""


class TaskTimedOut(RuntimeError):
    """A decode did not finish in :attr:`DecodePool.task_timeout_s`; its worker was killed."""


def crashed_error(record: InstanceRecord) -> LoadError:
    """The user-facing error for a file whose decoder took its worker process down."""
    return LoadError(f"{record.display_name}: the image decoder crashed on this file (its worker "
                     "process ended abruptly; the other files are not affected)",
                     advice="the file is damaged, or was made to crash image decoders",
                     transfer_syntax=record.transfer_syntax_uid)


def timeout_error(record: InstanceRecord, seconds: float) -> LoadError:
    """The user-facing error for a decode that was stopped after ``seconds``."""
    return LoadError(f"{record.display_name}: decoding did not finish within {seconds:.0f} s and "
                     "was stopped", advice="the file is damaged, or was made to hang image decoders",
                     transfer_syntax=record.transfer_syntax_uid)


def decodes_in_process(record: InstanceRecord, reduce_to: int | None = None) -> bool:
    """Whether decoding ``record`` holds the GIL long enough to be sent to a worker process."""
    if record.kind != "dicom" or record.transfer_syntax_uid in _CHEAP:
        return False
    if reduce_to is not None:
        # Every compressed thumbnail goes to a process: a reduced J2K (~20-30 ms) or an RLE
        # decode (~20-50 ms) is short alone, but the thumbnail threads run them back to back
        # and each holds the GIL throughout; on threads the GUI probe's p99 gap while a grid
        # filled was 31-78 ms. Only a thumbnail comes back, so the round trip is cheap.
        return True
    if record.transfer_syntax_uid == _RLE:
        return record.rows * record.cols >= _RLE_PROCESS_PIXELS
    return True


def _make_thumbnail(store: ThumbnailStore, record: InstanceRecord, frame: int) -> np.ndarray:
    return store.make(record, frame)


def _worker_nice() -> int | None:
    """The workers' nice value: the process's main (GUI) thread's plus BACKGROUND_NICENESS, however
    low the priority of the thread that starts the pool already is."""
    if not hasattr(os, "getpriority"):
        return None
    try:
        return background_nice(os.getpriority(os.PRIO_PROCESS, os.getpid()))
    except OSError:
        return None


class DecodePool:
    """A lazily started process pool for expensive decodes.

    Parameters
    ----------
    workers
        Worker processes (default 2: this viewer targets 2-core machines; more would only
        compete with the GUI). 0: no processes, every decode runs in the calling thread.
    """

    def __init__(self, workers: int = 2, task_timeout_s: float | None = None) -> None:
        self._workers = max(0, int(workers))
        # A native decoder can loop for ever on a hostile stream (CharLS did, on a truncated
        # JPEG-LS frame): past this a task's worker is killed and the file reported.
        self.task_timeout_s = float(task_timeout_s if task_timeout_s is not None else
                                    os.environ.get("RADVIEW_DECODE_TIMEOUT_S", 60.0))
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("DecodePool is shut down")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self._workers,
                                                 mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=init_decode_worker,
                                                 initargs=(_worker_nice(),))
            return self._pool

    @property
    def workers(self) -> int:
        """Number of worker processes (0: decodes run in the calling thread)."""
        return self._workers

    def warm_up(self) -> list[Future[object]]:
        """Start the workers and import the decoders in them (returns immediately; does nothing
        once the pool is shut down, so a delayed call after closing is harmless)."""
        if not self._workers or self._closed:
            return []
        pool = self._executor()
        return [pool.submit(decodes_in_process, InstanceRecord(path="")) for _ in range(self._workers)]

    def warm_up_in_background(self) -> None:
        """:meth:`warm_up` from a short-lived thread: spawning the workers cost the calling
        (GUI) thread 8-31 ms on the loaded 2-core machine."""

        def run() -> None:
            # Below the GUI thread's priority before spawning: the workers inherit it while
            # they start (about a second of imports each, which otherwise took the cores from
            # the GUI thread) and so do the pool's result threads.
            background_priority()
            try:
                self.warm_up()
            except RuntimeError:
                pass  # shut down meanwhile: nothing to warm

        _thread.start_new_thread(run, ())

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        """Forget a pool whose worker died (a decoder's native abort or segfault); the next
        call starts a fresh one. Only that pool: another thread may have replaced it already."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, fn: Callable[..., _T], *args: Any, cancel: CancelToken | None = None,
             **kwargs: Any) -> _T:
        """Run ``fn`` in a worker. A worker that dies takes every task in flight in its pool
        with it, so a task that meets a broken pool runs once more, alone, in a process of its
        own: a file that only shared the pool with the culprit succeeds there, and the culprit
        raises :class:`WorkerCrashed` without taking anything else down a second time."""
        pool = self._executor()
        try:
            return self._wait(pool, pool.submit(fn, *args, **kwargs), cancel)
        except BrokenProcessPool:
            self._discard(pool)
        solo = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=init_decode_worker, initargs=(_worker_nice(),))
        try:
            return self._wait(solo, solo.submit(fn, *args, **kwargs), cancel)
        except BrokenProcessPool:
            raise WorkerCrashed() from None
        finally:
            solo.shutdown(wait=False, cancel_futures=True)

    def _wait(self, pool: ProcessPoolExecutor, future: Future[_T], cancel: CancelToken | None) -> _T:
        deadline = time.monotonic() + self.task_timeout_s
        while True:
            if cancel is not None and cancel.cancelled:
                future.cancel()
                cancel.raise_if_cancelled()
            try:
                return future.result(timeout=0.1)
            except TimeoutError:
                if time.monotonic() < deadline:
                    continue
            # Stuck in native code: only killing its process stops it. The pool's other tasks
            # fail with it and are retried (see _run); this one is reported.
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            self._discard(pool)
            raise TaskTimedOut(self.task_timeout_s)

    def load_image(self, record: InstanceRecord, frame: int = 0, *, reduce_to: int | None = None,
                   cancel: CancelToken | None = None) -> Radiograph:
        """:func:`viewer.services.library.load_image`, in a worker process when expensive."""
        if not self._workers or not decodes_in_process(record, reduce_to):
            return load_image(record, frame, reduce_to=reduce_to)
        try:
            return self._run(load_image, record, frame, reduce_to=reduce_to, cancel=cancel)
        except WorkerCrashed:
            raise crashed_error(record) from None
        except TaskTimedOut as exc:
            raise timeout_error(record, exc.args[0]) from None

    def load_preview(self, record: InstanceRecord, frame: int = 0, *, reduce_to: int,
                     cancel: CancelToken | None = None) -> Radiograph | None:
        """A reduced-resolution decode for a provisional display (``viewer.state.provisional``),
        in a worker process; ``None`` when it would not arrive before the full image: without
        worker processes, or for a decode that stays on the calling thread (a decoder there
        holds the GIL, so a preview on one thread finished together with the full decode on
        the other; measured on two J2K films: 363/370 ms and 401/402 ms)."""
        if not self._workers or not decodes_in_process(record, reduce_to):
            return None
        return self.load_image(record, frame, reduce_to=reduce_to, cancel=cancel)

    def make_thumbnail(self, store: ThumbnailStore, record: InstanceRecord, frame: int = 0,
                       cancel: CancelToken | None = None) -> np.ndarray:
        """:meth:`ThumbnailStore.make`, in a worker process when the decode is expensive."""
        hit = store.cached(record, frame)
        if hit is not None:
            return hit
        if not self._workers or not decodes_in_process(record, store.size):
            return store.make(record, frame)
        try:
            return self._run(_make_thumbnail, store, record, frame, cancel=cancel)
        except WorkerCrashed:
            raise crashed_error(record) from None
        except TaskTimedOut as exc:
            raise timeout_error(record, exc.args[0]) from None

    def shutdown(self) -> None:
        """Stop the workers (pending work is cancelled; idempotent); later process decodes raise
        ``RuntimeError``."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

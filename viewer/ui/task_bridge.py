"""Run Qt-free jobs on an executor and deliver their results on the GUI thread.

The one pattern for work off the GUI thread (see docs/ARCHITECTURE.md): the GUI builds a frozen
:class:`TaskRequest` with a fresh request id, :class:`TaskBridge` runs ``request.fn`` on its
executor with a :class:`~viewer.services.tasks.CancelToken` and a progress callback, and the
outcome comes back as a Qt signal emitted on the GUI thread. Results whose id is no longer the
latest for their ``channel`` are dropped, so a slow stale scan or image load never overwrites a
newer one.

Worker threads never touch Qt: they put outcomes on a thread-safe queue that a short GUI-thread
timer drains while work is pending (at most :data:`DRAIN_INTERVAL_MS` of added latency). Emitting
PySide signals from Python worker threads is the textbook way, but with PySide6 6.8+ cross-thread
emission of Python objects crashed the interpreter here under load (``bool_dealloc`` refcount
abort while thumbnails decoded; see PYSIDE-3124), so the bridge keeps every shiboken call on the
GUI thread.
"""

from __future__ import annotations

from viewer.core.messages import exception_words

import itertools
import logging
import queue
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal

from viewer.services.tasks import CancelToken, Cancelled, background_priority

log = logging.getLogger(__name__)

JobFn = Callable[..., Any]
PROGRESS_INTERVAL_S = 0.05
DRAIN_INTERVAL_MS = 5
DRAIN_BUDGET_S = 0.008  # leave the event loop after this long; the rest waits one tick


@dataclass(frozen=True)
class TaskRequest:
    """A unit of background work.

    Attributes
    ----------
    channel
        Name of the stream this request belongs to ("scan", "image", "thumb"); only the newest
        request of an exclusive channel delivers its result.
    fn
        A Qt-free callable ``fn(*args, cancel=token, progress=fn)``.
    args
        Positional arguments (should be immutable values).
    exclusive
        When true, submitting a new request on the channel cancels the previous one.
    with_progress
        Whether ``fn`` accepts ``cancel`` and ``progress`` keyword arguments.
    """

    channel: str
    fn: JobFn
    args: tuple[Any, ...] = ()
    exclusive: bool = True
    with_progress: bool = True
    request_id: int = field(default=0, compare=False)


@dataclass(frozen=True)
class TaskFailure:
    """Why a request failed, for the user: the error's ``message``, ``advice`` and (for
    decoding errors) the (0002,0010) Transfer Syntax UID, when the exception carries them
    (:class:`viewer.services.library.LoadError` does, also across the decode processes)."""

    message: str
    advice: str = ""
    transfer_syntax: str = ""

    @property
    def text(self) -> str:
        """One line: message and advice."""
        return f"{self.message} {self.advice}".strip()


class TaskBridge(QObject):
    """Executor-to-signal bridge with request ids, cancellation and orderly shutdown.

    Signals carry ``(channel, request_id, payload)`` and are emitted on the thread that owns the
    bridge (the GUI thread), from :meth:`drain`. A failure is delivered twice, first as
    ``sig_task_errored(channel, id, TaskFailure)`` then as ``sig_task_failed(channel, id, text)``;
    a receiver connects to the one it needs.
    """

    sig_task_finished = Signal(str, int, object)
    sig_task_errored = Signal(str, int, object)
    sig_task_failed = Signal(str, int, str)
    sig_task_progressed = Signal(str, int, int, int)
    sig_task_cancelled = Signal(str, int)

    def __init__(
        self, executor: Executor | None = None, max_workers: int = 2, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._own_executor = executor is None
        # The workers run below the GUI thread's priority (as QThread::LowPriority would), and
        # so do the processes they spawn (a scan's process pool): on a busy 2-core machine the
        # GUI thread otherwise waited in the run queue behind them for half of every stall.
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="radview-io",
            initializer=background_priority,
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._latest: dict[str, int] = {}
        self._channels: dict[int, str] = {}
        self._tokens: dict[int, CancelToken] = {}
        self._futures: dict[int, Future[Any]] = {}
        self._closed = False
        self._outbox: queue.SimpleQueue[tuple[str, str, int, Any]] = queue.SimpleQueue()
        self._drain_timer = QTimer(self)
        self._drain_timer.setInterval(DRAIN_INTERVAL_MS)
        self._drain_timer.timeout.connect(self.drain)
        if self._own_executor:
            # Start the worker threads now: starting one on first submit waits for it to be
            # scheduled (~20 ms on a loaded machine) on the GUI thread.
            for _ in range(max_workers):
                self._executor.submit(time.sleep, 0.01)

    # -- submission ------------------------------------------------------------------------
    def submit(self, request: TaskRequest) -> int:
        """Queue ``request`` and return its request id (0 when the bridge is shut down)."""
        if self._closed:
            return 0
        rid = next(self._ids)
        token = CancelToken()
        with self._lock:
            if request.exclusive:
                previous = self._latest.get(request.channel)
                if previous is not None and previous in self._tokens:
                    self._tokens[previous].cancel()
            self._latest[request.channel] = rid
            self._tokens[rid] = token
            self._channels[rid] = request.channel
        future = self._executor.submit(self._run, request, rid, token)
        with self._lock:
            if rid in self._tokens:  # not already finished
                self._futures[rid] = future
        if not self._drain_timer.isActive():
            self._drain_timer.start()
        return rid

    def cancel(self, request_id: int) -> None:
        """Ask a running or queued request to stop (cooperative)."""
        with self._lock:
            token = self._tokens.get(request_id)
            future = self._futures.get(request_id)
        if token is not None:
            token.cancel()
        if future is not None and future.cancel():
            # Never started, so _run will neither clean up nor report: do both here.
            with self._lock:
                channel = self._channels.get(request_id, "")
            self._forget(request_id)
            if channel:
                self._outbox.put(("cancelled", channel, request_id, None))
                if not self._drain_timer.isActive() and not self._closed:
                    self._drain_timer.start()

    def cancel_channel(self, channel: str) -> None:
        """Cancel the latest request on ``channel`` and forget it."""
        with self._lock:
            rid = self._latest.pop(channel, None)
        if rid is not None:
            self.cancel(rid)

    def is_current(self, channel: str, request_id: int) -> bool:
        """Whether ``request_id`` is still the newest request on ``channel``."""
        with self._lock:
            return self._latest.get(channel) == request_id

    def pending(self) -> int:
        """Number of requests queued or running."""
        with self._lock:
            return len(self._tokens)

    # -- worker side -----------------------------------------------------------------------
    def _run(self, request: TaskRequest, rid: int, token: CancelToken) -> None:
        channel = request.channel
        try:
            if token.cancelled:
                raise Cancelled()
            if request.with_progress:

                last = [0.0]

                def progress(done: int, total: int) -> None:
                    token.raise_if_cancelled()
                    now = time.monotonic()
                    # At most ~20 updates a second: a queued signal per file would flood the
                    # GUI thread's event queue on a 10,000-file scan.
                    if done >= total or now - last[0] >= PROGRESS_INTERVAL_S:
                        last[0] = now
                        self._outbox.put(("progress", channel, rid, (int(done), int(total))))

                result = request.fn(*request.args, cancel=token, progress=progress)
            else:
                result = request.fn(*request.args)
            if token.cancelled:
                raise Cancelled()
        except Cancelled:
            self._outbox.put(("cancelled", channel, rid, None))
            self._forget(rid)
            return
        except Exception as exc:
            log.info("task %s #%d failed: %s", channel, rid, exc.__class__.__name__)
            self._outbox.put(("failed", channel, rid, _failure(exc)))
            self._forget(rid)
            return
        self._outbox.put(("finished" if request.exclusive else "finished_any", channel, rid, result))
        self._forget(rid)

    # -- GUI side --------------------------------------------------------------------------
    def drain(self) -> int:
        """Deliver queued outcomes as signals (GUI thread); returns how many were delivered.

        Runs from a timer while requests are pending; tests may call it directly.
        """
        delivered = 0
        deadline = time.perf_counter() + DRAIN_BUDGET_S
        while time.perf_counter() < deadline:
            try:
                kind, channel, rid, payload = self._outbox.get_nowait()
            except queue.Empty:
                break
            if self._closed:
                continue
            delivered += 1
            if kind == "progress":
                self.sig_task_progressed.emit(channel, rid, payload[0], payload[1])
            elif kind == "cancelled":
                self.sig_task_cancelled.emit(channel, rid)
            elif kind == "failed":
                self.sig_task_errored.emit(channel, rid, payload)
                self.sig_task_failed.emit(channel, rid, payload.text)
            elif kind == "finished_any" or self.is_current(channel, rid):
                self.sig_task_finished.emit(channel, rid, payload)
            # else: stale, a newer request superseded this one
        if self.pending() == 0 and self._outbox.empty():
            self._drain_timer.stop()
        return delivered

    def _forget(self, rid: int) -> None:
        with self._lock:
            self._tokens.pop(rid, None)
            self._futures.pop(rid, None)
            self._channels.pop(rid, None)

    # -- shutdown --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel everything and join the worker threads (call on quit and in tests)."""
        if self._closed:
            return
        self._closed = True
        self._drain_timer.stop()
        with self._lock:
            tokens = list(self._tokens.values())
            futures = list(self._futures.values())
        for token in tokens:
            token.cancel()
        for future in futures:
            future.cancel()
        if self._own_executor:
            self._executor.shutdown(wait=True, cancel_futures=True)


_OWN_ERRORS = frozenset({"ExportError", "DicomWriteError", "DicomExportError", "ManifestError"})


def _failure(exc: BaseException) -> TaskFailure:
    """The user-facing fields of a failure (message, advice, transfer syntax when present)."""
    # Our own errors carry messages in our words; anything else gets a category (a library's
    # exception text may quote element values or paths).
    name = type(exc).__name__
    if name == "LoadError":
        message = str(getattr(exc, "message", "") or name)
    elif name in _OWN_ERRORS:
        message = str(exc) or name
    else:
        message = exception_words(exc)
    return TaskFailure(str(message), str(getattr(exc, "advice", "") or ""),
                       str(getattr(exc, "transfer_syntax", "") or ""))

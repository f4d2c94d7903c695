"""Cancellation and progress primitives shared by every background job.

Qt-free: jobs take a :class:`CancelToken` and a :data:`ProgressFn`; the UI layer bridges them to
signals. A token is cheap to poll from worker threads and can be pickled by value for a process
pool (the pool is then cancelled by not submitting more chunks).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

__all__ = [
    "BACKGROUND_NICENESS", "Cancelled", "CancelToken", "ProgressFn", "background_nice",
    "background_priority", "no_progress",
]

BACKGROUND_NICENESS = 10
"""Added to the nice value of every background thread and worker process (Linux): they run
below the GUI thread, which otherwise waited in the run queue behind them on 2 cores."""

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``; called from worker threads, must be cheap and thread-safe."""


class Cancelled(Exception):
    """Raised inside a job when its :class:`CancelToken` was cancelled."""


class CancelToken:
    """A thread-safe, one-way cancellation flag.

    Examples
    --------
    >>> token = CancelToken()
    >>> token.cancelled
    False
    >>> token.cancel()
    >>> token.cancelled
    True
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Request cancellation; idempotent."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` has been called."""
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled()

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds for cancellation; return whether it happened."""
        return self._event.wait(timeout)


def no_progress(done: int, total: int) -> None:
    """A :data:`ProgressFn` that ignores its arguments."""


def background_nice(nice: int, step: int = BACKGROUND_NICENESS) -> int:
    """The nice value ``step`` below ``nice`` (capped at 19, the lowest priority)."""
    return min(19, nice + step)


def background_priority(step: int = BACKGROUND_NICENESS) -> None:
    """Thread initializer: raise this thread's nice value by ``step`` (Linux; elsewhere a
    no-op). Threads and processes it starts later (onnxruntime's pool, a scan's process pool)
    inherit the value."""
    if not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, background_nice(os.getpriority(os.PRIO_PROCESS, tid), step))
    except OSError:
        pass

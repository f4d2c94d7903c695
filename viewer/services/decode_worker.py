"""Start-up of a :class:`~viewer.services.decode_pool.DecodePool` worker process.

Kept in a module that imports nothing heavy, so the worker lowers its CPU priority *before* it
imports pydicom, numpy and OpenCV: spawning two workers at launch (0.3-3 s of imports each)
competed with the GUI process for a 2-core machine's cores, and a freshly opened window showed
GUI gaps of 76-236 ms while they started (``bench.gui_probe``, thumbnails reopened). A worker
shares no GIL with the GUI process, so a lower priority cannot make the GUI wait on it.
"""

from __future__ import annotations

import logging
import os

from viewer.services.tasks import BACKGROUND_NICENESS as WORKER_NICENESS


def init_decode_worker(target: int | None = None) -> None:
    """Lower this process's priority, import the decoders, quiet pydicom, one OpenCV thread.

    ``target``: the nice value to reach (the GUI process's plus :data:`WORKER_NICENESS`; the
    worker may have inherited part of it from the thread that spawned it); ``None`` raises the
    inherited value by :data:`WORKER_NICENESS`."""
    if hasattr(os, "nice"):
        step = WORKER_NICENESS if target is None else max(0, target - os.nice(0))
        try:
            if step:
                os.nice(step)
        except OSError:
            pass  # not permitted: run at the inherited priority
    import cv2

    import viewer.services.thumbnails  # noqa: F401  (imports pydicom, which resets its logger)

    logging.getLogger("pydicom").setLevel(logging.ERROR)
    # One OpenCV thread per worker: the workers already fill the cores, and OpenCV's own pool
    # in each of them oversubscribed the 2-core machine.
    cv2.setNumThreads(1)

"""Decode compressed images in worker *processes* so the GUI thread never waits for the GIL.

Measured here (1024 x 1024 JPEG 2000, loaded 2-core machine): gdcm, pylibjpeg-openjpeg and
Pillow all hold the GIL for the whole decode (~400 ms), so decoding on a worker *thread* froze
the GUI thread for that long. JPEG-LS and JPEG Lossless decoders behave the same way. A small
spawn-context process pool decodes those transfer syntaxes instead; native and RLE data (numpy,
GIL released often) stay on threads, where they cost no pickling.

This module holds no Qt code; the composition root creates one pool and the window shuts it
down on close.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable

# Uncompressed and RLE transfer syntaxes: decoded in numpy, cheap to keep on threads.
THREAD_FRIENDLY = {
    "",
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
}


def _init_child() -> None:
    """Child start-up: pydicom's per-file warnings are reported by the load report instead."""
    import logging

    import viewer.services.library  # noqa: F401  (imports pydicom, which resets its logger)

    logging.getLogger("pydicom").setLevel(logging.ERROR)


def _warm_up() -> bool:
    """Import the decoding stack in the child ahead of the first real request."""
    import viewer.services.library  # noqa: F401
    import viewer.services.thumbnails  # noqa: F401

    return True


def needs_process(record: Any) -> bool:
    """Whether decoding ``record`` would hold the GIL for long (compressed, not RLE)."""
    return getattr(record, "kind", "dicom") == "dicom" and \
        getattr(record, "transfer_syntax_uid", "") not in THREAD_FRIENDLY


class DecodePool:
    """Routes GIL-heavy decodes to a process pool; others run in the calling thread."""

    def __init__(self, processes: int = 2) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        if processes > 0:
            self._pool = ProcessPoolExecutor(
                max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_child,
            )
            for _ in range(processes):
                self._pool.submit(_warm_up)

    def wrap(
        self, fn: Callable[[Any], Any], cached: Callable[[Any], Any] | None = None
    ) -> Callable[[Any], Any]:
        """A callable ``record -> fn(record)`` that decodes in a process when that helps.

        ``fn`` must be picklable (a module-level function or a bound method of a picklable
        object such as ``ThumbnailStore.make``). ``cached(record)``, when given, is tried first
        on the calling thread (a disk-cache hit needs no process round trip).
        """

        def call(record: Any) -> Any:
            if cached is not None:
                hit = cached(record)
                if hit is not None:
                    return hit
            pool = self._pool
            if pool is None or self._closed or not needs_process(record):
                return fn(record)
            future: Future[Any] = pool.submit(fn, record)
            return future.result()  # this worker thread waits without holding the GIL

        return call

    def shutdown(self) -> None:
        """Cancel queued decodes and join the processes (idempotent)."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

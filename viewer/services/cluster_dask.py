"""The Dask side of a batch: connecting, the worker plugin, and the loop that feeds chunks.

Imported only when a cluster is asked for (``--scheduler``, ``--local-cluster`` or a
``client``): the embedded default never imports Dask.

- :class:`RadviewPlugin` loads the models and their sessions once per worker (and again on a
  worker that replaces a dead one: the scheduler installs registered plugins on new workers).
- :func:`run_on_client` keeps about two chunks per worker thread in flight (the scheduler never
  holds the whole file list, and a killed client loses only those), and isolates a file that
  ends its worker: a chunk that Dask gives up on (``KilledWorker``, after
  ``distributed.scheduler.allowed-failures`` deaths) is split into one task per file, and a file
  that still ends its worker alone becomes one ``error`` row.
- Task keys are ``radview-chunk-<run>-<n>``; tasks, settings and errors show counts, never
  file names, so no patient data reaches the scheduler's logs or dashboard.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import dask
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, as_completed, get_worker

from viewer.core.messages import exception_words
from viewer.services.cluster_task import (
    BatchSettings, Chunk, ChunkSummary, WorkerState, crashed_rows, process_chunk,
)
from viewer.services.export import ExportError

__all__ = ["ClusterError", "RadviewPlugin", "connect", "run_on_client"]

PLUGIN_NAME = "radview"
log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """The cluster cannot do the work (no workers, other models, scheduler lost); for the user."""


class RadviewPlugin(WorkerPlugin):
    """Loads the models once per worker; tasks find them in ``worker.plugins``."""

    def __init__(self, settings: BatchSettings) -> None:
        self.settings = settings
        self.state: WorkerState | None = None
        self.error: str | None = None

    def setup(self, worker: Any) -> None:
        # A daemonic worker process (Dask's default) may not start the decoding processes;
        # with DASK_DISTRIBUTED__WORKER__DAEMON=False it does, and a decoder's crash or hang
        # then costs one file instead of the worker.
        daemonic = multiprocessing.current_process().daemon
        try:
            import cv2

            # OpenCV's own pool in every worker process oversubscribed the cores (as in the
            # decode workers): size it to the threads a task may use.
            cv2.setNumThreads(max(1, self.settings.threads))
            self.state = WorkerState(self.settings, 0 if daemonic else max(1, worker.state.nthreads))
        except Exception as exc:  # reported by each task, to the client
            self.error = f"the worker cannot load the models ({exception_words(exc)})"

    def teardown(self, worker: Any) -> None:
        if self.state is not None:
            self.state.close()


def chunk_task(settings: BatchSettings, chunk: Chunk) -> ChunkSummary:
    """A task: one chunk, with this worker's models."""
    plugin = get_worker().plugins.get(PLUGIN_NAME)
    state = getattr(plugin, "state", None)
    if state is None:
        why = getattr(plugin, "error", None) or "the radview worker plugin is missing"
        raise ClusterError(why)
    if state.fingerprint != settings.fingerprint:
        raise ClusterError(f"worker {state.host} has other models than this machine "
                           "(ids, versions or files differ): install the same models everywhere")
    try:
        return process_chunk(state, settings, chunk)
    except ExportError:
        raise
    except Exception as exc:  # its words only: the message may name a file
        raise RuntimeError(f"chunk {chunk.number} failed: {exception_words(exc)}") from None


def connect(scheduler: str | None = None, local_workers: int | None = None,
            threads_per_worker: int = 1) -> tuple[Any, Any]:
    """A client of the scheduler at ``scheduler``, or of a new ``LocalCluster`` of
    ``local_workers`` processes (on 127.0.0.1); returns ``(client, cluster or None)``."""
    if scheduler:
        try:
            return Client(scheduler, timeout="30s"), None  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} "
                               f"({exception_words(exc)})") from None
    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=max(1, local_workers or 1),
                               threads_per_worker=max(1, threads_per_worker), processes=True,
                               host="127.0.0.1", dashboard_address="127.0.0.1:0",
                               silence_logs=logging.ERROR)
    return Client(cluster), cluster  # type: ignore[no-untyped-call]


def dashboard_link(client: Any) -> str | None:
    """The dashboard's address, or ``None`` when the scheduler runs none (no bokeh there)."""
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        return str(client.dashboard_link)
    except Exception:
        return None


def _split(chunk: Chunk) -> list[Chunk]:
    stem = chunk.part.removesuffix(".parquet")
    return [Chunk(chunk.number, (f,), f"{stem}-{i:04d}.parquet") for i, f in enumerate(chunk.files)]


def run_on_client(client: Any, settings: BatchSettings, chunks: Sequence[Chunk],
                  account: Callable[[ChunkSummary], None], wait_workers_s: float = 120.0,
                  ready: Callable[[], None] | None = None) -> None:
    """Run ``chunks`` on the client's workers; ``account`` gets each chunk's summary, ``ready``
    is called once the workers have loaded the models."""
    if not chunks:
        return
    try:
        client.wait_for_workers(1, timeout=wait_workers_s)
    except (TimeoutError, OSError):
        raise ClusterError(f"no Dask worker joined the scheduler within {wait_workers_s:.0f} s") from None
    client.register_plugin(RadviewPlugin(settings), name=PLUGIN_NAME)
    if ready is not None:
        ready()
    queue: deque[tuple[Chunk, bool]] = deque((c, False) for c in chunks)
    # One-file chunks whose worker died while other tasks ran beside them: a worker's death
    # counts against every task it held, so a good file next to a crashing one can be given up
    # on too. Each is tried once more with nothing else in flight; only then is it an error.
    alone: deque[Chunk] = deque()
    running: dict[str, tuple[Any, Chunk, bool]] = {}
    alone_keys: set[str] = set()
    done = as_completed()  # type: ignore[no-untyped-call]
    slots, slots_at = 1, 0.0

    def task_key(chunk: Chunk) -> str:
        # "part-<run>-<n>[-<i>].parquet" -> "radview-chunk-<run>-<n>[-<i>]": no file names
        return "radview-chunk-" + chunk.part.removesuffix(".parquet").removeprefix("part-")

    def fill() -> None:
        nonlocal slots, slots_at
        if alone:
            if not running:
                chunk = alone.popleft()
                fut = client.submit(chunk_task, settings, chunk, key=task_key(chunk) + "-alone", pure=False)
                running[fut.key] = (fut, chunk, True)
                alone_keys.add(fut.key)
                done.add(fut)  # type: ignore[no-untyped-call]
            return
        if time.monotonic() - slots_at > 5:
            slots, slots_at = max(1, sum(client.nthreads().values())), time.monotonic()
        while queue and len(running) < 2 * slots:
            chunk, solo = queue.popleft()
            fut = client.submit(chunk_task, settings, chunk, key=task_key(chunk), pure=False)
            running[fut.key] = (fut, chunk, solo)
            done.add(fut)  # type: ignore[no-untyped-call]

    fill()
    try:
        for fut in done:
            _, chunk, solo = running.pop(fut.key)
            try:
                summary = fut.result()
            except (ExportError, ClusterError):
                raise
            except KilledWorker:
                if not solo and len(chunk.files) > 1:
                    queue.extendleft((c, True) for c in reversed(_split(chunk)))
                elif fut.key not in alone_keys:
                    alone.append(chunk)
                else:
                    summary = _isolated(settings, chunk, "its analysis ended the worker process "
                                        "every time it was tried (a native crash in a decoder or "
                                        "a model); the other files are not affected")
                    account(summary)
                fill()
                continue
            except Exception as exc:
                if _cancelled(exc):
                    raise ClusterError("lost the Dask scheduler") from None
                if not solo and len(chunk.files) > 1:
                    queue.extendleft((c, True) for c in reversed(_split(chunk)))
                else:
                    account(_isolated(settings, chunk, f"the analysis failed ({exception_words(exc)})"))
                fill()
                continue
            account(summary)
            fill()
    finally:
        if running:  # stopped early (an error, Ctrl+C): nothing of ours keeps the workers busy
            client.cancel([f for f, _, _ in running.values()], force=True)


def _cancelled(exc: BaseException) -> bool:
    from concurrent.futures import CancelledError

    return isinstance(exc, CancelledError)


def _isolated(settings: BatchSettings, chunk: Chunk, why: str) -> ChunkSummary:
    """The error row of a one-file chunk that no worker could finish, written here."""
    from pathlib import Path

    from viewer.services.cluster_dataset import fence_holds, write_part

    f = chunk.files[0]
    summary = ChunkSummary(chunk.number, files=1, images=1, rows=1, errors=1)
    if fence_holds(Path(settings.out), settings.run_id):
        write_part(Path(settings.out), chunk.part, crashed_rows(settings, f, why))
        summary.written = True
    return summary


"""``radview analyze`` into a Parquet dataset, here or on a Dask cluster (issue 18).

Called by :mod:`viewer.cli` when ``--scheduler``, ``--local-cluster`` or ``--out DIR.parquet``
is given; messages and the progress line go to stderr, never file names except in the
"skipped" lines the user's own terminal shows (as ``radview analyze`` always did).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from viewer.services.batch import BatchReport, BatchUsageError, run_batch
from viewer.services.cluster_task import ChunkSummary

__all__ = ["ProgressLine", "analyze_dataset", "parse_path_map", "wants_dataset"]

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_OUTPUT = 0, 1, 2, 3
INSTALL_HINT = "cluster mode needs Dask and pyarrow: install radview[cluster] (pip install 'radview[cluster]')"


def wants_dataset(args: argparse.Namespace) -> bool:
    """Whether these ``analyze`` options go through :func:`run_batch`."""
    out = getattr(args, "out", None)
    return bool(getattr(args, "scheduler", None) or getattr(args, "local_cluster", None) is not None
                or (out is not None and Path(out).suffix.lower() == ".parquet"))


def parse_path_map(items: list[str]) -> list[tuple[str, str]]:
    """``["/mnt/a=/data/a"]`` -> ``[("/mnt/a", "/data/a")]``; ``ValueError`` when malformed."""
    pairs = []
    for item in items:
        client, sep, worker = item.partition("=")
        if not sep or not client.startswith("/") or not worker.startswith("/"):
            raise ValueError(f"--path-map {item!r}: expected CLIENT_PREFIX=WORKER_PREFIX, both absolute")
        pairs.append((client, worker))
    return pairs


class ProgressLine:
    """Files done/failed, images/s and the ETA, on one line (rewritten on a terminal)."""

    def __init__(self, stream: TextIO, min_interval_s: float = 1.0) -> None:
        self.stream, self.min_interval = stream, min_interval_s
        self.tty = stream.isatty()
        self._t0 = time.perf_counter()
        self._last = 0.0

    def __call__(self, report: BatchReport, summary: ChunkSummary | None) -> None:
        if summary is None:  # the models are loaded: the rate counts from here
            self._t0 = time.perf_counter()
            return
        now = time.perf_counter()
        todo = report.files - report.resumed
        last = report.done_files >= todo
        if not last and now - self._last < self.min_interval:
            return
        self._last = now
        rate = report.images / max(now - self._t0, 1e-9)
        files_rate = report.done_files / max(now - self._t0, 1e-9)
        eta = (todo - report.done_files) / files_rate if files_rate > 0 else float("nan")
        eta_text = "--:--" if eta != eta else time.strftime("%H:%M:%S", time.gmtime(eta))
        line = (f"[{report.done_files}/{todo} files] {report.errors} failed, "
                f"{rate:.1f} images/s, ETA {eta_text}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if last else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def analyze_dataset(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """Run ``radview analyze`` with these options through :func:`run_batch`; exit status."""
    from viewer.services.export import ExportError

    try:
        pairs = parse_path_map(list(getattr(args, "path_map", None) or []))
    except ValueError as exc:
        print(f"radview analyze: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.out is None:
        print("radview analyze: a dataset or cluster run needs --out (DIR.parquet, FILE.csv or "
              "FILE.json) on storage the workers share", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "seg", None) is not None:
        print("radview analyze: --seg is not available with a dataset or cluster run (run it "
              "without --scheduler/--local-cluster and with FILE.csv)", file=sys.stderr)
        return EXIT_USAGE
    if args.local_cluster is not None and args.local_cluster < 1:
        print("radview analyze: --local-cluster needs at least 1 worker", file=sys.stderr)
        return EXIT_USAGE
    if args.chunk_size is not None and args.chunk_size < 1:
        print("radview analyze: --chunk-size must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    networked = bool(args.scheduler) or args.local_cluster is not None
    client = cluster = None
    try:
        import pyarrow  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        print(f"radview analyze: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    if networked:
        from viewer.offline import network_denied

        if network_denied():
            print("radview analyze: the network is switched off in this process (start the "
                  "cluster options as written: --scheduler / --local-cluster)", file=sys.stderr)
            return EXIT_USAGE
        try:
            from viewer.services.cluster_dask import ClusterError, connect
        except ImportError:
            print(f"radview analyze: {INSTALL_HINT}", file=sys.stderr)
            return EXIT_USAGE
        _quiet_dask_logging()
        say("cluster mode: network sockets are allowed for Dask in this run (the offline guard "
            "is off); results stay in --out")
        try:
            client, cluster = connect(args.scheduler, args.local_cluster)
        except ClusterError as exc:
            print(f"radview analyze: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        return _run(args, client, pairs, say)
    except BatchUsageError as exc:
        print(f"radview analyze: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ExportError:
        raise  # cli.analyze_main: exit 3
    except KeyboardInterrupt:
        print("radview analyze: stopped; rerun the same command to resume (finished chunks are "
              "kept)", file=sys.stderr)
        return EXIT_ERRORS
    except RuntimeError as exc:
        if type(exc).__name__ != "ClusterError":
            raise
        print(f"radview analyze: {exc}; finished chunks are kept: rerun the same command to "
              "resume", file=sys.stderr)
        return EXIT_ERRORS
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _quiet_dask_logging() -> None:
    """Silence Dask's own logging for this command.

    A lost scheduler makes several of its modules log tracebacks (the client's reconnection,
    ``distributed.batched``'s background send, closing the client); the command says what
    happened in one line. Dask's logging configuration gives some of its loggers their own
    level, so the parent's level alone does not reach them: every ``distributed`` logger that
    exists once it is imported is set (the API leaves Dask's logging alone)."""
    import logging

    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name.partition(".")[0] == "distributed":
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _run(args: argparse.Namespace, client: Any, pairs: list[tuple[str, str]],
         say: Callable[[str], None]) -> int:
    bar = None if args.quiet else ProgressLine(sys.stderr)

    def started(report: BatchReport) -> None:
        for problem in report.problems:
            say(f"skipped {problem.path}: {problem.reason}")
        if report.resumed:
            say(f"resuming: {report.resumed} of {report.files} file(s) already in {report.dataset}, "
                "skipped")
        where = "this machine" if client is None else f"{len(client.nthreads())} Dask worker(s)"
        say(f"{report.files - report.resumed} file(s) to analyse in {report.chunks} chunk(s) on {where}")
        if client is not None:
            say(f"Dask dashboard: {report.dashboard}" if report.dashboard else
                "Dask dashboard: not available (the scheduler has no dashboard; it needs bokeh)")

    report = run_batch(
        args.paths, out=args.out, models=args.models.split(",") if args.models else None,
        force=args.force, models_dirs=args.models_dir, masks=args.masks, heatmaps=args.heatmaps,
        client=client, chunk_size=args.chunk_size, path_map=pairs, threads=args.threads,
        workers=args.workers, progress=bar, on_start=started)
    for path, reason in report.skipped:
        say(f"skipped {path}: {reason}")
    for msg in report.messages:
        say(msg)
    from viewer.services.batch import DICOMDIR_FAILURES

    dicomdir = sum(1 for p in report.problems if p.reason.startswith(DICOMDIR_FAILURES))
    if report.duplicates_removed:
        say(f"{report.duplicates_removed} duplicate row(s) from a stopped run removed")
    say(f"{report.images} image(s), {report.rows} row(s), {report.errors} image(s) with errors in "
        f"{report.seconds:.0f} s -> {report.merged or report.dataset}")
    return EXIT_ERRORS if (report.errors or dicomdir) else EXIT_OK

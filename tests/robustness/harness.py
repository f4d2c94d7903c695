"""Runs corpus items through worker processes with a per-file time limit.

Each worker (:mod:`tests.robustness.worker`) handles files one at a time; a file that does not
answer within ``timeout_s`` is a hang (the worker is killed and replaced), a worker that dies is
a crash (e.g. a segfault in a decoder). Memory is the worker's own measurement (resident set and
its high-water mark), so an allocation of gigabytes shows even when it is freed again.
"""

from __future__ import annotations

import json
import os
import queue
import re
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# A safety net for the machine running the tests, far above the ceiling the tests assert.
_ADDRESS_SPACE_LIMIT = 8 * 1024**3

# Reasons that say nothing about what is wrong.
_GENERIC = re.compile(r"^\s*(error|failed|exception|unknown error|invalid|bad file)\s*\.?\s*$", re.I)


@dataclass
class Outcome:
    path: str
    family: str
    outcome: str  # ok | refused | partial | crash | hang | died
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rss_mb: float = 0.0
    max_rss_mb: float = 0.0
    trace: str = ""


def _limit() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE_LIMIT, _ADDRESS_SPACE_LIMIT))


class _Worker:
    def __init__(self, cache_dir: Path) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENCV_FOR_THREADS_NUM="1",
                   PYTHONPATH=str(REPO_ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.robustness.worker", str(cache_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, cwd=REPO_ROOT, env=env, preexec_fn=_limit)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.lines.get(timeout=120)
        if not ready or "ready" not in ready:
            raise RuntimeError("robustness worker did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def ask(self, path: str, timeout_s: float) -> dict[str, object] | str:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(path + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            return "hang"
        except (BrokenPipeError, OSError):
            return "died"
        if line is None:
            return "died"
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_items(items: list[tuple[str, str]], cache_dir: Path, *, workers: int = 2,
              timeout_s: float = 20.0) -> list[Outcome]:
    """Open every ``(path, family)`` in ``workers`` processes; returns outcomes in input order."""
    todo: queue.Queue[int] = queue.Queue()
    for i in range(len(items)):
        todo.put(i)
    results: list[Outcome | None] = [None] * len(items)

    def loop() -> None:
        worker = _Worker(cache_dir)
        try:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                path, family = items[i]
                start = time.perf_counter()
                answer = worker.ask(path, timeout_s)
                seconds = time.perf_counter() - start
                if isinstance(answer, str):
                    results[i] = Outcome(path, family, answer, [f"worker {answer}"], seconds)
                    worker.stop()
                    worker = _Worker(cache_dir)
                    continue
                results[i] = Outcome(
                    path, family, str(answer["outcome"]), list(answer.get("reasons", [])),  # type: ignore[arg-type]
                    seconds, float(answer["rss_mb"]), float(answer["max_rss_mb"]),  # type: ignore[arg-type]
                    str(answer.get("trace", "")))
        finally:
            worker.stop()

    threads = [threading.Thread(target=loop) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


def vague_reasons(outcome: Outcome) -> list[str]:
    """Reasons that would not tell a user what is wrong with the file."""
    return [r for r in outcome.reasons if len(r.strip()) < 12 or _GENERIC.match(r)]


_REASON_CLASSES = (
    ("size limit", re.compile(r"megapixel|zip bomb guard|too large|too compressed|expands to|"
                              r"inflates to")),
    ("hostile structure", re.compile(r"Deflated data set|frame header declares|nested too deep|"
                                     r"decoder crashed|not a regular file|zero-filled")),
    ("DICOMDIR", re.compile(r"DICOMDIR")),
    ("unsafe zip name", re.compile(r"unsafe|refusing unsafe")),
    ("not DICOM / not an image", re.compile(r"not a DICOM|not an image|not a PNG|unknown signature|"
                                            r"no preamble")),
    ("transfer syntax", re.compile(r"Transfer Syntax|cannot decode|unknown encoding")),
    ("pixel data length", re.compile(r"pixel data|frame\(s\)|bytes of pixel", re.I)),
    ("damaged header", re.compile(r"damaged|unreadable|header|attribute", re.I)),
    ("decoder failure", re.compile(r"decoding .* failed|truncated|damaged or truncated")),
    ("zip archive", re.compile(r"zip")),
    ("cannot read", re.compile(r"cannot read|cannot list")),
)


def reason_class(reason: str) -> str:
    for name, pattern in _REASON_CLASSES:
        if pattern.search(reason):
            return name
    return "other"


def summary(outcomes: list[Outcome]) -> dict[str, object]:
    """Counts for the report: outcomes, reason classes, families, time and memory."""
    return {
        "files": len(outcomes),
        "outcomes": dict(Counter(o.outcome for o in outcomes)),
        "reason_classes": dict(Counter(reason_class(r) for o in outcomes for r in o.reasons)),
        "families": {f: dict(Counter(o.outcome for o in outcomes if o.family == f))
                     for f in sorted({o.family for o in outcomes})},
        "slowest_s": round(max((o.seconds for o in outcomes), default=0.0), 2),
        "max_rss_mb": round(max((o.max_rss_mb for o in outcomes), default=0.0), 1),
    }

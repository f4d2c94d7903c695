"""The self-test's report: one line per check as it runs, a summary, and a JSON copy.

Statuses
--------
``ok``        the check passed.
``expected``  a known, documented limitation, not a failure (a file that needs the optional GPL
              JPEG decoder; a file under ``broken/`` that fails cleanly).
``fail``      something the bundle must do did not work: the self-test exits non-zero.
``info``      facts worth printing (versions, the execution provider).
``skip``      a check that could not run here (no DICOM folder given, no display toolkit).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Item", "Report"]

_TAGS = {"ok": "[ OK ]", "expected": "[EXPT]", "fail": "[FAIL]", "info": "[INFO]", "skip": "[SKIP]"}


@dataclass
class Item:
    """One check's outcome."""

    section: str
    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    """Collects items and prints each one immediately to ``stream``."""

    stream: IO[str]
    items: list[Item] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, section: str, name: str, status: str, detail: str = "", seconds: float = 0.0) -> Item:
        if status not in _TAGS:
            raise ValueError(f"unknown status {status!r}")
        item = Item(section, name, status, detail, round(seconds, 4))
        self.items.append(item)
        timing = f" ({seconds * 1000:.0f} ms)" if seconds >= 0.001 else ""
        self.stream.write(f"{_TAGS[status]} {section:<10} {name}{': ' + detail if detail else ''}{timing}\n")
        self.stream.flush()
        return item

    @contextmanager
    def timed(self) -> Iterator[Callable[[], float]]:
        """``with report.timed() as elapsed: ...; elapsed()`` gives seconds since entry."""
        t0 = time.perf_counter()
        yield lambda: time.perf_counter() - t0

    def count(self, section: str | None = None, status: str | None = None) -> int:
        return sum(
            1
            for i in self.items
            if (section is None or i.section == section) and (status is None or i.status == status)
        )

    @property
    def failures(self) -> list[Item]:
        return [i for i in self.items if i.status == "fail"]

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> str:
        """Multi-line summary, ending with ``RESULT: PASS`` or ``RESULT: FAIL``."""
        lines = ["", "== radview self-test summary =="]
        for section in dict.fromkeys(i.section for i in self.items):
            if section == "env":
                continue
            parts = []
            for status in ("ok", "expected", "fail", "skip"):
                n = self.count(section, status)
                if n:
                    parts.append(f"{n} {status}")
            lines.append(f"{section:<10} {', '.join(parts) if parts else 'nothing checked'}")
        for item in self.failures:
            lines.append(f"FAILED: {item.section} {item.name}: {item.detail}")
        lines.append(f"time: {self.elapsed:.1f} s")
        lines.append("RESULT: " + ("FAIL" if self.failures else "PASS"))
        return "\n".join(lines) + "\n"

    def write_json(self, path: Path) -> None:
        data = {
            "result": "fail" if self.failures else "pass",
            "seconds": round(self.elapsed, 3),
            "items": [asdict(i) for i in self.items],
        }
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")

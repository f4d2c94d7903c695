"""Shared helpers for the benchmark scripts: timing, targets, report lines."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from collections.abc import Callable


@dataclass
class Result:
    """One measured figure against its target."""

    name: str
    value: float
    unit: str
    target: float | None
    higher_is_better: bool = False

    @property
    def ok(self) -> bool:
        if self.target is None:
            return True
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    @property
    def ratio(self) -> float:
        """value / target (for "higher is better", target / value), so < 1 means within target."""
        if self.target is None:
            return float("nan")
        if self.higher_is_better:
            return self.target / self.value if self.value else float("inf")
        return self.value / self.target if self.target else float("inf")

    def line(self) -> str:
        if self.target is None:
            return f"  [info] {self.name:<46} {self.value:>10.1f} {self.unit:<8}"
        mark = "OK  " if self.ok else "MISS"
        cmp = ">=" if self.higher_is_better else "<="
        return (f"  [{mark}] {self.name:<46} {self.value:>10.1f} {self.unit:<8} "
                f"target {cmp} {self.target:g} {self.unit} (ratio {self.ratio:.2f})")


def best_of(fn: Callable[[], object], repeat: int = 5) -> tuple[float, float]:
    """(min, median) wall time in seconds of ``fn`` over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} CPU(s), load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def report(title: str, results: list[Result]) -> list[Result]:
    print(f"{title}  ({machine()})")
    for r in results:
        print(r.line())
    return results

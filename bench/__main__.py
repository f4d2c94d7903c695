"""Run every benchmark and print its figures against the issue's targets.

``python -m bench`` (or ``make bench``); each script also runs alone, e.g. ``python -m bench.scan``.
Figures depend on the machine's load: the header line of each report prints the load average.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

# gui_probe (the UI's event-loop block probe) needs Qt; it runs offscreen when no display is set.
# bench.cluster (issue 18) starts Dask LocalClusters and takes a few minutes: not run here; run it
# alone with `python -m bench.cluster` (docs/SCALING.md).
BENCHES = ["scan", "display", "thumbnails", "memory", "gui_probe"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("only", nargs="*", help=f"benchmarks to run, among {BENCHES} (default: all)")
    args = parser.parse_args(argv)
    names = args.only or BENCHES
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose among {BENCHES}")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    results = []
    t0 = time.perf_counter()
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        results += [(name, r) for r in module.run()]
        print()
    print(f"summary ({time.perf_counter() - t0:.0f} s)")
    for name, r in results:
        if r.target is not None:
            print(f"  {name:<11}{r.line().strip()}")
    missed = [r for _, r in results if not r.ok]
    print(f"{len(missed)} of {sum(r.target is not None for _, r in results)} targets missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

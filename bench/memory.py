"""Memory while paging through 1,000 large images with the byte-bounded ImageCache.

Each step decodes (or finds in the cache) one 2,500x2,000 16-bit radiograph and makes its display
image, as the viewer does when the user pages. Target: the process's peak RSS grows by no more
than the cache budget plus 256 MiB of working memory. The 1,000 paths are hard links to 20
distinct files (different paths, so every step really decodes; no 10 GB of disk needed).
Run: ``python -m bench.memory [--count N] [--budget-mib M]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import Result, report
from bench.synth import encoded_bytes, radiograph_like
from viewer.core.windowing import display_image
from viewer.dicom.scan import InstanceRecord, scan_file
from viewer.services.image_cache import ImageCache
from viewer.services.library import load_image

MIB = 1024 * 1024


def run(count: int = 1000, budget_mib: int = 512, distinct: int = 20) -> list[Result]:
    root = Path(tempfile.mkdtemp(prefix="radview-bench-memory-"))
    proc = psutil.Process()
    try:
        sources = []
        for i in range(distinct):
            path = root / f"src{i:02d}.dcm"
            path.write_bytes(encoded_bytes(radiograph_like(2500, 2000, seed=i), "native"))
            sources.append(path)
        records: list[InstanceRecord] = []
        for i in range(count):
            link = root / f"img{i:05d}.dcm"
            os.link(sources[i % distinct], link)
            rec = scan_file(link)
            assert isinstance(rec, InstanceRecord)
            records.append(rec)
        cache = ImageCache(max_bytes=budget_mib * MIB)
        display_image(load_image(records[0]))  # imports and first-use allocations
        base = proc.memory_info().rss
        peak = base
        t0 = time.perf_counter()
        # Page forward, then back over the last 30 (those come from the cache).
        order = list(range(count)) + list(range(count - 1, count - 31, -1))
        for i in order:
            rec = records[i]
            rg = cache.get_or_load(rec.key, lambda rec=rec: load_image(rec))
            display_image(rg)
            peak = max(peak, proc.memory_info().rss)
        dt = time.perf_counter() - t0
        print(f"paged {len(order)} steps in {dt:.1f} s ({dt / len(order) * 1e3:.0f} ms/step); "
              f"cache holds {len(cache)} images, {cache.nbytes / MIB:.0f} MiB; hits {cache.hits}")
        return report("bench.memory", [
            Result(f"peak RSS growth paging {count} images (cache {budget_mib} MiB)",
                   (peak - base) / MIB, "MiB", budget_mib + 256.0),
            Result("  peak RSS", peak / MIB, "MiB", None),
            Result("  cache bytes at the end", cache.nbytes / MIB, "MiB", float(budget_mib)),
        ])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--budget-mib", type=int, default=512)
    args = parser.parse_args()
    run(args.count, args.budget_mib)


if __name__ == "__main__":
    main()

"""Thumbnails for a 1,000-image folder: first screenful, all, and reopened from the disk cache.

Targets (issue 2): first screenful < 1 s, all < 20 s, reopened from cache < 2 s. Thumbnails are
made on a pool of 2 threads, visible ones first, through
:class:`~viewer.services.decode_pool.DecodePool` (every compressed thumbnail in one of 2 worker
processes, so the GUI thread is not frozen by decoders holding the GIL); the threads-only
variant is timed too. The folder is generated (2,000x1,600 12-bit CR-like images) with a
mix of encodings, by default 5 uncompressed : 3 JPEG 2000 lossless : 1 RLE : 1 JPEG-LS; decode
cost depends almost entirely on that mix, so the per-encoding cost is printed as well.
Run: ``python -m bench.thumbnails [--count N] [--mix native:5,j2k:3,rle:1,jls:1]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from bench.common import Result, report
from bench.synth import folder_size, write_folder
from viewer.services.decode_pool import DecodePool
from viewer.services.library import scan_paths
from viewer.services.thumbnails import ThumbnailStore

TARGET_SCREEN_S = 1.0
TARGET_ALL_S = 20.0
TARGET_REOPEN_S = 2.0
SCREENFUL = 40  # 128-px tiles in a ~1,100x700 grid pane


def _mix(text: str) -> list[str]:
    out: list[str] = []
    for part in text.split(","):
        name, _, weight = part.partition(":")
        out += [name.strip()] * int(weight or 1)
    return out


def run(count: int = 1000, mix: str = "native:5,j2k:3,rle:1,jls:1", rows: int = 2000,
        cols: int = 1600, threads: int = 2) -> list[Result]:
    root = Path(tempfile.mkdtemp(prefix="radview-bench-thumbs-"))
    try:
        t0 = time.perf_counter()
        write_folder(root / "study", count, rows, cols, _mix(mix))
        print(f"generated {count} files ({folder_size(root) / 1e9:.2f} GB) in "
              f"{time.perf_counter() - t0:.1f} s; mix {mix}")
        records = sorted(scan_paths([str(root / "study")]).index.records(), key=lambda r: r.path)
        assert len(records) == count
        for r in records:  # warm the page cache like a folder that was just scanned
            Path(r.path).read_bytes()

        decode_pool = DecodePool(workers=threads)
        for f in decode_pool.warm_up():  # the viewer starts it at launch
            f.result()
        timings = {}
        try:
            for label, use_pool in (("threads only", False), ("threads + DecodePool", True)):
                store = ThumbnailStore(root / f"cache-{int(use_pool)}", size=128)
                make = (lambda r, s=store: decode_pool.make_thumbnail(s, r)) if use_pool else store.make
                t0 = time.perf_counter()
                with ThreadPoolExecutor(threads) as pool:
                    futures = [pool.submit(make, r) for r in records]
                    for fut in as_completed(futures[:SCREENFUL]):
                        fut.result()
                    screen_done = time.perf_counter() - t0
                    for fut in as_completed(futures[SCREENFUL:]):
                        fut.result()
                timings[label] = (screen_done, time.perf_counter() - t0)
        finally:
            decode_pool.shutdown()
        screen_done, all_done = timings["threads + DecodePool"]

        reopened = ThumbnailStore(root / "cache-1", size=128)
        t0 = time.perf_counter()
        hits = sum(reopened.cached(r) is not None for r in records)
        reopen = time.perf_counter() - t0
        assert hits == count, hits

        per_kind: dict[str, list[float]] = {}
        probe = ThumbnailStore(root / "probe", size=128)
        for r in records[: 3 * len(set(_mix(mix)))]:
            kind = Path(r.path).stem.split("_")[-1]
            t1 = time.perf_counter()
            probe.make(r)
            per_kind.setdefault(kind, []).append(time.perf_counter() - t1)
        results = [
            Result(f"first screenful ({SCREENFUL} thumbnails)", screen_done, "s", TARGET_SCREEN_S),
            Result(f"all {count} thumbnails ({threads} threads + DecodePool)", all_done, "s", TARGET_ALL_S),
            Result("  first screenful, threads only (GUI stalls on the GIL)", timings["threads only"][0], "s", None),
            Result("  all, threads only", timings["threads only"][1], "s", None),
            Result(f"reopen: {count} thumbnails from the disk cache", reopen, "s", TARGET_REOPEN_S),
        ]
        for kind, times in sorted(per_kind.items()):
            results.append(Result(f"  one thumbnail, {kind} (one thread, min)", min(times) * 1e3, "ms", None))
        return report("bench.thumbnails", results)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--mix", default="native:5,j2k:3,rle:1,jls:1")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    run(args.count, args.mix, threads=args.threads)


if __name__ == "__main__":
    main()

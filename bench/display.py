"""Display latency: first display of an uncompressed 2,500x2,000 16-bit radiograph after
selection (decode + display_image), and a window/level update.

Targets (issue 2): first display < 150 ms; window/level update < 16 ms (the UI sets image levels
from :func:`viewer.core.windowing.display_levels`; a full :func:`display_image` recompute is
shown for reference). Also measured: how long a thread in this process (the GUI thread in the
viewer) is frozen while a compressed image is decoded on another thread, directly or through
:class:`~viewer.services.decode_pool.DecodePool`. Run: ``python -m bench.display``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from collections.abc import Callable

from bench.common import Result, best_of, report
from bench.synth import encoded_bytes, radiograph_like
from viewer.core.radiograph import VOI
from viewer.core.windowing import default_voi, display_image, display_levels, level_image
from viewer.dicom.scan import scan_file
from viewer.services.decode_pool import DecodePool
from viewer.services.library import load_image

TARGET_FIRST_MS = 150.0
TARGET_LEVEL_MS = 16.0
TARGET_STALL_MS = 50.0  # our own bar: a GUI frozen for longer than ~3 frames feels stuck


def gui_stall_ms(work: Callable[[], object], runs: int = 3) -> float:
    """Longest gap (ms) between 1-ms ticks of this thread while ``work`` runs ``runs`` times on
    another thread: how long a GUI event loop in this process would be frozen."""
    done = threading.Event()

    def worker() -> None:
        for _ in range(runs):
            work()
        done.set()

    thread = threading.Thread(target=worker)
    worst, last = 0.0, time.perf_counter()
    thread.start()
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
    thread.join()
    return worst * 1e3


def run(repeat: int = 7, encodings: tuple[str, ...] = ("rle", "jls", "j2k")) -> list[Result]:
    root = Path(tempfile.mkdtemp(prefix="radview-bench-display-"))
    try:
        px = radiograph_like(2500, 2000, seed=3)
        path = root / "native.dcm"
        path.write_bytes(encoded_bytes(px, "native"))
        rec = scan_file(path)
        load_image(rec)  # warm page cache and imports

        def first_display() -> None:
            rg = load_image(rec)
            display_image(rg)

        first, first_med = best_of(first_display, repeat)
        rg = load_image(rec)
        decode, _ = best_of(lambda: load_image(rec), repeat)
        voi0 = default_voi(rg)
        windows = [VOI("drag", center=voi0.center + 10 * i, width=voi0.width * (1 + 0.01 * i))
                   for i in range(repeat)]
        it = iter(windows * 2)
        levels, levels_med = best_of(lambda: display_levels(rg, next(it)), repeat)
        level_image(rg)
        it2 = iter(windows * 2)
        recompute, _ = best_of(lambda: display_image(rg, next(it2)), repeat)
        results = [
            Result("first display 2500x2000 uncompressed (best)", first * 1e3, "ms", TARGET_FIRST_MS),
            Result("first display (median)", first_med * 1e3, "ms", TARGET_FIRST_MS),
            Result("  of which decode", decode * 1e3, "ms", None),
            Result("window/level update: display_levels (median)", levels_med * 1e3, "ms", TARGET_LEVEL_MS),
            Result("  full recompute with display_image (not the drag path)", recompute * 1e3, "ms", None),
        ]
        stall_records = {}
        for enc in encodings:
            p = root / f"{enc}.dcm"
            p.write_bytes(encoded_bytes(px, enc))
            r = scan_file(p)
            stall_records[enc] = r
            load_image(r)
            t, _ = best_of(lambda r=r: display_image(load_image(r)), 3)
            results.append(Result(f"  first display, {enc} 2500x2000 (decoder-bound)", t * 1e3, "ms", None))
        # Decoders hold the GIL: decoding on a thread freezes the GUI thread; DecodePool does not.
        pool = DecodePool(workers=1)
        try:
            for f in pool.warm_up():
                f.result()
            for enc, r in stall_records.items():
                pool.load_image(r)
                in_thread = gui_stall_ms(lambda r=r: load_image(r))
                in_pool = gui_stall_ms(lambda r=r: pool.load_image(r))
                results.append(Result(f"  GUI-thread stall, {enc} decoded on a thread", in_thread, "ms", None))
                results.append(Result(f"GUI-thread stall, {enc} decoded via DecodePool", in_pool, "ms",
                                      TARGET_STALL_MS))
        finally:
            pool.shutdown()
        return report("bench.display", results)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    run()


if __name__ == "__main__":
    main()

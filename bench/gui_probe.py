"""GUI-thread block probe: how long the event loop is blocked while the viewer works.

A 2 ms QTimer runs on the GUI thread and records the gap between consecutive ticks; any gap
well above the interval is time the GUI thread could not respond. Measured while scanning a
folder of generated DICOM files (default 10,000) and while a thumbnail grid of generated images
fills. Target: never blocked for more than 50 ms.

Then the speed of reading (issue 16) on generated 1841x1955 J2K films once their thumbnails are
made: select -> image shown for a cold click (film not decoded yet: first its reduced-resolution
stand-in, then the full image; progressive display) and for a click after the prefetch, and
Next/Previous Image with the prefetch done, medians against 150 ms and 50 ms.

Run: ``QT_QPA_PLATFORM=offscreen python -m bench.gui_probe [--files 10000] [--thumbs 300]
[--films 16] [--runs 5] [--select-only] [--explain]`` (``--select-only``: only the speed of
reading; ``--explain``: what each long gap was made of; see docs/ARCHITECTURE.md)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGET_MS = 50.0


class GapProbe:
    """Records event-loop gaps on the GUI thread (start/stop around a phase)."""

    def __init__(self, interval_ms: int = 2) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._on_timer_timeout)
        self.gaps: list[float] = []
        self._last = 0.0

    def start(self) -> None:
        self.gaps.clear()
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> dict[str, float]:
        self.timer.stop()
        gaps = np.asarray(self.gaps or [0.0]) * 1000.0
        return {"max_ms": round(float(gaps.max()), 1), "p99_ms": round(float(np.percentile(gaps, 99)), 1),
                "ticks": len(self.gaps)}

    def _on_timer_timeout(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self._last)
        self._last = now


class ExplainingProbe(GapProbe):
    """:class:`GapProbe` that explains each gap over ``long_s`` (``--explain``): how much of it
    the GUI thread spent on a CPU and how much waiting in the run queue (Linux schedstat; the
    rest it slept, e.g. waiting for the GIL), and the garbage collections over 5 ms meanwhile
    (which thread, which generation). Printed as one line per event, times from the start."""

    def __init__(self, interval_ms: int = 2, long_s: float = 0.03) -> None:
        import gc
        import threading

        super().__init__(interval_ms)
        self.long_s, self.t0 = long_s, time.perf_counter()
        self.events: list[str] = []
        self._gc_start: dict[int, float] = {}
        try:
            self._schedstat = open("/proc/thread-self/schedstat")
        except OSError:
            self._schedstat = None
        self._sched = self._read_sched()

        def on_gc(phase: str, info: dict[str, int]) -> None:
            now, tid = time.perf_counter(), threading.get_ident()
            if phase == "start":
                self._gc_start[tid] = now
            elif now - self._gc_start.get(tid, now) > 0.005:
                self.events.append(
                    f"{self._gc_start[tid] - self.t0:8.3f} s  gc gen {info['generation']} "
                    f"{(now - self._gc_start[tid]) * 1000:.1f} ms in {threading.current_thread().name}")

        gc.callbacks.append(on_gc)

    def _read_sched(self) -> tuple[int, int]:
        if self._schedstat is None:
            return (0, 0)
        self._schedstat.seek(0)
        run_ns, wait_ns, _ = map(int, self._schedstat.read().split())
        return run_ns, wait_ns

    def start(self) -> None:
        self.events.append(f"{time.perf_counter() - self.t0:8.3f} s  phase starts")
        super().start()
        self._sched = self._read_sched()

    def _on_timer_timeout(self) -> None:
        now = time.perf_counter()
        sched, before = self._read_sched(), self._sched
        self._sched = sched
        if now - self._last > self.long_s:
            self.events.append(
                f"{self._last - self.t0:8.3f} s  gap {(now - self._last) * 1000:.1f} ms: on CPU "
                f"{(sched[0] - before[0]) / 1e6:.1f} ms, run queue {(sched[1] - before[1]) / 1e6:.1f} ms")
        super()._on_timer_timeout()


def _wait(signal: Any, timeout_s: float) -> bool:
    from viewer.ui.demo import wait_for

    return wait_for([signal], timeout_s) is not None


def probe_idle(probe: GapProbe, seconds: float = 3.0) -> dict[str, Any]:
    """Baseline: the same probe with the viewer idle (the machine's own scheduling noise)."""
    from PySide6.QtCore import QEventLoop, QTimer

    probe.start()
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    return probe.stop()


def probe_scan(window: Any, folder: Path, probe: GapProbe) -> dict[str, Any]:
    """Scan ``folder`` through the window (browser, grid and first image included)."""
    probe.start()
    t0 = time.perf_counter()
    window.open_paths([str(folder)])
    ok = _wait(window.library.sig_scan_finished, 600)
    scan_s = time.perf_counter() - t0
    if ok and window.canvas.prepared is None:
        _wait(window.sig_image_displayed, 60)
    stats = probe.stop()
    stats.update({"files": window.library.files_seen, "scan_s": round(scan_s, 2),
                  "files_per_s": round(window.library.files_seen / max(scan_s, 1e-9)),
                  "ok": ok})
    return stats


def probe_thumbnails(window: Any, folder: Path, probe: GapProbe) -> dict[str, Any]:
    """Open ``folder`` (cold thumbnail cache) and wait until every thumbnail is made; also
    times the first screenful (all visible cells filled)."""
    from viewer.ui.demo import wait_for

    grid = window.grid
    probe.start()
    window.open_paths([str(folder)])
    _wait(window.library.sig_scan_finished, 600)
    t0 = time.perf_counter()
    _wait(window.sig_image_displayed, 120)
    first_screen_s = None
    while time.perf_counter() - t0 < 120:
        visible = grid.visible_rows()
        model = grid.thumb_model
        if visible and all(model.records[r].key in model.icons for r in visible):
            first_screen_s = time.perf_counter() - t0
            break
        wait_for([model.dataChanged], 5)
    if grid.pending():
        _wait(grid.sig_thumbnails_idle, 600)
    all_s = time.perf_counter() - t0
    stats = probe.stop()
    stats.update({"thumbnails": grid.thumb_model.rowCount() - grid.pending(),
                  "rows": grid.thumb_model.rowCount(),
                  "first_screen_s": None if first_screen_s is None else round(first_screen_s, 2),
                  "all_s": round(all_s, 2)})
    return stats


def probe_window_level(window: Any, steps: int = 60) -> dict[str, Any]:
    """Time window/level updates (levels + render) on the displayed image."""
    canvas = window.canvas
    if canvas.prepared is None:
        return {}
    item = canvas.preview.item if canvas.preview.active else canvas.image_item
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        canvas.window_drag(3.0, 1.0, start=(i == 0), finish=True)
        item.render()  # what the next paint does: levels -> 8-bit image
        times.append((time.perf_counter() - t0) * 1000.0)
    arr = np.asarray(times)
    rg = canvas.radiograph
    return {"image": f"{rg.cols}x{rg.rows} {rg.pixels.dtype}", "preview": canvas.preview.active,
            "median_ms": round(float(np.median(arr)), 2),
            "max_ms": round(float(arr.max()), 2)}


SELECT_TARGET_MS = 150.0  # select -> image shown, after the thumbnail phase (issue 16)
STEP_TARGET_MS = 50.0  # next/previous with prefetch (issue 16)


def _shown_ms(window: Any, record: Any, act: Any, previews: list[float] | None = None) -> float:
    """Milliseconds from ``act()`` (a click or a key's action) until ``record`` is displayed
    and painted (one event-loop pass after ``sig_image_displayed``); NaN on a timeout.
    ``previews``: gets the milliseconds until its provisional stand-in was shown and painted
    (``sig_preview_displayed``), when one was."""

    def on_preview(rec: Any) -> None:
        if rec is record and previews is not None:
            window.canvas.view.viewport().repaint()  # the paint that puts it on screen
            previews.append((time.perf_counter() - t0) * 1000.0)

    window.sig_preview_displayed.connect(on_preview)
    try:
        t0 = time.perf_counter()
        act()
        return _wait_shown(window, record, t0)
    finally:
        window.sig_preview_displayed.disconnect(on_preview)


def _wait_shown(window: Any, record: Any, t0: float) -> float:
    from PySide6.QtWidgets import QApplication

    from viewer.ui.demo import wait_for

    while time.perf_counter() - t0 < 60:
        got = wait_for([window.sig_image_displayed], 60)
        if got is None:
            return float("nan")
        if got[1][0] is record:
            window.canvas.view.viewport().repaint()  # the paint that puts it on screen
            QApplication.processEvents()
            return (time.perf_counter() - t0) * 1000.0
    return float("nan")


def _wait_cached(window: Any, records: list[Any], timeout_s: float = 30.0) -> bool:
    """Wait until ``records`` are in the image cache (the prefetch of the neighbours)."""
    from PySide6.QtCore import QEventLoop, QTimer

    cache = window.images.cache
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if all(r.key in cache for r in records):
            return True
        loop = QEventLoop()
        QTimer.singleShot(20, loop.quit)
        loop.exec()
    return False


def probe_select(window: Any, folder: Path, runs: int = 5) -> dict[str, Any]:
    """Speed of reading on J2K films (issue 16), once the thumbnails are made: a click on a
    thumbnail whose film was not decoded yet (cold), a click on a neighbour the prefetch has
    decoded, and Next Image (PgDown) with the prefetch done. Medians over ``runs`` each; the
    prefetch of the image shown finishes before each measured click (a reader looks first)."""
    grid = window.grid
    window.open_paths([str(folder)])
    _wait(window.library.sig_scan_finished, 600)
    if window.canvas.prepared is None:
        _wait(window.sig_image_displayed, 120)
    if grid.pending():
        _wait(grid.sig_thumbnails_idle, 600)
    records = list(grid.thumb_model.records)
    n = len(records)
    cold, warm, step, decode = [], [], [], []
    cold_preview: list[float] = []  # cold clicks whose stand-in was shown first
    first: list[float] = []  # what a cold click showed first: its stand-in, else the full image
    cache = window.images.cache
    # cold: rows 3 apart (never a neighbour of the one shown, so never prefetched)
    for row in range(3, n, 3)[:runs]:
        rec = records[row]
        shown = window.images.current
        if shown is not None:
            i = records.index(shown)
            _wait_cached(window, [records[j] for j in (i - 1, i + 1) if 0 <= j < n])
        if rec.key in cache:
            continue
        had = len(cold_preview)
        cold.append(_shown_ms(window, rec, lambda r=row: grid.select_row(r), cold_preview))
        first.append(cold_preview[-1] if len(cold_preview) > had else cold[-1])
        decode.append(window.last_display_ms)
    # a click on the prefetched neighbour, then Next Image with the prefetch done
    row = 0
    if window.images.current is not records[0]:
        _shown_ms(window, records[0], lambda: grid.select_row(0))
    for _ in range(runs):
        if row + 1 >= n:
            break
        if not _wait_cached(window, [records[row + 1]]):
            break
        warm.append(_shown_ms(window, records[row + 1], lambda r=row + 1: grid.select_row(r)))
        row += 1
    for _ in range(runs):
        if row + 1 >= n or not _wait_cached(window, [records[row + 1]]):
            break
        step.append(_shown_ms(window, records[row + 1], window.action_map["next_image"].trigger))
        row += 1
    for _ in range(runs):  # and back (Previous Image)
        if row - 1 < 0 or not _wait_cached(window, [records[row - 1]]):
            break
        step.append(_shown_ms(window, records[row - 1], window.action_map["previous_image"].trigger))
        row -= 1

    def med(values: list[float]) -> float | None:
        return round(float(np.nanmedian(values)), 1) if values else None

    rg = window.canvas.radiograph
    return {"image": f"{rg.cols}x{rg.rows} J2K" if rg is not None else "?", "films": n,
            "cold_first_ms": med(first), "cold_preview_ms": med(cold_preview),
            "cold_previews": len(cold_preview),
            "cold_click_ms": med(cold), "cold_decode_ms": med(decode),
            "prefetched_click_ms": med(warm), "next_previous_ms": med(step),
            "runs": {"cold_preview": [round(v, 1) for v in cold_preview],
                     "cold": [round(v, 1) for v in cold], "prefetched": [round(v, 1) for v in warm],
                     "next_previous": [round(v, 1) for v in step]}}


def print_select(sel: dict[str, Any]) -> None:
    def verdict(value: float | None, target: float) -> str:
        return "n/a" if value is None else ("OK" if value <= target else "OVER")

    print(f"select -> image shown, {sel['image']} films ({sel['films']}), medians:", flush=True)
    print(f"  cold click -> preview shown:  {sel['cold_preview_ms']} ms ({sel['cold_previews']} of "
          f"{len(sel['runs']['cold'])} clicks showed one; first thing shown {sel['cold_first_ms']} "
          f"ms, goal {SELECT_TARGET_MS:g} ms: {verdict(sel['cold_first_ms'], SELECT_TARGET_MS)})")
    print(f"  cold click -> full shown:     {sel['cold_click_ms']} ms (of which decode + prepare "
          f"{sel['cold_decode_ms']} ms)")
    print(f"  click after prefetch:         {sel['prefetched_click_ms']} ms (goal {SELECT_TARGET_MS:g} ms: "
          f"{verdict(sel['prefetched_click_ms'], SELECT_TARGET_MS)})")
    print(f"  next/previous with prefetch:  {sel['next_previous_ms']} ms (goal < {STEP_TARGET_MS:g} ms: "
          f"{verdict(sel['next_previous_ms'], STEP_TARGET_MS)})")
    print(f"  runs: {json.dumps(sel['runs'])}", flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--thumbs", type=int, default=300)
    parser.add_argument("--films", type=int, default=16,
                        help="J2K films of 1841x1955 for the select/next/previous timings")
    parser.add_argument("--runs", type=int, default=5, help="timed clicks/steps of each kind")
    parser.add_argument("--select-only", action="store_true",
                        help="only the speed-of-reading phase (select -> shown, next/previous)")
    parser.add_argument("--explain", action="store_true",
                        help="print each gap over 30 ms with the GUI thread's CPU and run-queue "
                             "time, and the garbage collections over 5 ms")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from bench.synth import write_folder
    from viewer.app import build_window
    from viewer.ui.settings import AppSettings

    app = QApplication.instance() or QApplication([])
    results: dict[str, Any] = {"target_ms": TARGET_MS}
    with tempfile.TemporaryDirectory(prefix="radview-probe-") as tmp:
        root = Path(tmp)
        print(f"generating {args.films} J2K films ...", flush=True)
        write_folder(root / "films", args.films, 1955, 1841, ["j2k"], distinct=2)
        settings = AppSettings(QSettings(str(root / "settings.ini"), QSettings.Format.IniFormat))
        if args.select_only:
            window = build_window(settings, root / "cache")
            window.resize(1400, 900)
            window.show()
            app.processEvents()
            try:
                results["select"] = probe_select(window, root / "films", args.runs)
            finally:
                window.shutdown()
                window.close()
            print_select(results["select"])
            return results
        print(f"generating {args.files} DICOM files and {args.thumbs} images ...", flush=True)
        write_folder(root / "scan", args.files, 64, 64, ["native"])
        write_folder(root / "thumbs", args.thumbs, 1024, 1024, ["native", "rle", "j2k"],
                     distinct=4)
        write_folder(root / "large", 1, 2500, 2000, ["native"])
        window = build_window(settings, root / "cache")
        window.resize(1400, 900)
        window.show()
        app.processEvents()
        probe = ExplainingProbe() if args.explain else GapProbe()
        try:
            results["idle"] = probe_idle(probe)
            print("idle baseline:", json.dumps(results["idle"]), flush=True)
            results["scan"] = probe_scan(window, root / "scan", probe)
            print("scan:", json.dumps(results["scan"]), flush=True)
            results["thumbnails"] = probe_thumbnails(window, root / "thumbs", probe)
            print("thumbnails:", json.dumps(results["thumbnails"]), flush=True)
            # Reopen in a fresh window (empty memory, same disk cache): all from the cache.
            window.shutdown()
            window.close()
            window = build_window(settings, root / "cache")
            window.resize(1400, 900)
            window.show()
            probe_idle(probe, 1.0)  # let the new window lay out and paint once
            results["thumbnails_reopen"] = probe_thumbnails(window, root / "thumbs", probe)
            print("thumbnails reopened (disk cache):", json.dumps(results["thumbnails_reopen"]),
                  flush=True)
            window.open_paths([str(root / "large")])
            _wait(window.sig_image_displayed, 120)
            results["display_ms"] = round(window.last_display_ms, 1)
            results["window_level"] = probe_window_level(window)
            print("first display (select -> prepared):", results["display_ms"], "ms;",
                  "window/level:", json.dumps(results["window_level"]), flush=True)
            results["select"] = probe_select(window, root / "films", args.runs)
            print_select(results["select"])
        finally:
            window.shutdown()
            window.close()
            if args.explain:
                print("\n".join(probe.events))
    worst = max(results["scan"]["max_ms"], results["thumbnails"]["max_ms"],
                results["thumbnails_reopen"]["max_ms"])
    results["gui_blocked_max_ms"] = worst
    print(f"GUI thread blocked at most {worst} ms (target <= {TARGET_MS} ms): "
          f"{'OK' if worst <= TARGET_MS else 'OVER'}")
    return results


def run(files: int = 10_000, thumbs: int = 1000) -> list[Any]:
    """Entry for ``bench/__main__.py``: the figures as :class:`bench.common.Result` rows."""
    from bench.common import Result, report

    r = main(["--files", str(files), "--thumbs", str(thumbs)])
    wl = r.get("window_level", {})
    return report("GUI thread probe", [
        Result("GUI blocked, idle baseline (max)", r["idle"]["max_ms"], "ms", None),
        Result(f"GUI blocked while scanning {files} files (max)", r["scan"]["max_ms"], "ms", TARGET_MS),
        Result("GUI blocked while scanning (p99)", r["scan"]["p99_ms"], "ms", None),
        Result(f"GUI blocked while making {thumbs} thumbnails (max)", r["thumbnails"]["max_ms"], "ms",
               TARGET_MS),
        Result("first screenful of thumbnails", r["thumbnails"]["first_screen_s"] or float("inf"), "s",
               1.0),
        Result(f"all {thumbs} thumbnails", r["thumbnails"]["all_s"], "s", 20.0),
        Result(f"all {thumbs} thumbnails reopened from the disk cache",
               r["thumbnails_reopen"]["all_s"], "s", 2.0),
        Result("window/level step in the canvas (median)", wl.get("median_ms", float("nan")), "ms", 16.0),
        Result("select -> image shown (2500x2000 native)", r["display_ms"], "ms", 150.0),
        *select_rows(r["select"]),
    ])


def select_rows(sel: dict[str, Any]) -> list[Any]:
    """The speed-of-reading figures as :class:`bench.common.Result` rows."""
    from bench.common import Result

    def value(key: str) -> float:
        v = sel.get(key)
        return float("nan") if v is None else float(v)

    return [
        Result(f"select -> preview shown, cold click on a J2K film (median of "
               f"{sel['cold_previews']} of {len(sel['runs']['cold'])})", value("cold_preview_ms"), "ms",
               None),
        Result("select -> first image shown (preview, else full), cold click (median)",
               value("cold_first_ms"), "ms", SELECT_TARGET_MS),
        Result("select -> full resolution shown, cold click (median)", value("cold_click_ms"), "ms",
               None),
        Result("  of which decode + prepare (median)", value("cold_decode_ms"), "ms", None),
        Result("select -> shown, click after prefetch (median)", value("prefetched_click_ms"), "ms",
               SELECT_TARGET_MS),
        Result("next/previous image with prefetch (median)", value("next_previous_ms"), "ms",
               STEP_TARGET_MS),
    ]


if __name__ == "__main__":
    main()

"""Measure the packaged program: bundle size per flavour, cold start to a painted window, self-test.

Usage (after ``make dist`` and/or ``make dist-cpu``)::

    .venv/bin/python bench/package.py                 # every bundle found under dist/
    .venv/bin/python bench/package.py --runs 7 --json out/package-bench.json

For each bundle (``dist/radview`` = GPU flavour, ``dist/radview-cpu`` = CPU flavour) it prints

- size: the whole folder and its largest parts (top-level entries of ``_internal/`` and the
  largest single files); goal for the CPU flavour <= 500 MB (450 MB until the models grew to ~45 MB, issue 14);
- start: the viewer (``radview-cli`` with no command, same code as ``radview``) launched with
  ``RADVIEW_STARTUP_PROBE=1`` prints the wall-clock time of its
  main window's first paint and quits; we take that minus the launch time. The first run after
  the build is reported apart ("first"), then the median of the others; goal <= 2 s. Without a
  display the offscreen Qt platform is used (no compositor, so a real desktop adds a little);
- ``--version`` round trip (bootloader + interpreter start, no Qt);
- self-test: ``radview-cli --self-test ../shared/data/dicom`` wall time and result.

Nothing is written into the bundles or the data folder; self-test output goes to a temp folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data" / "dicom").resolve()
EXE = ".exe" if sys.platform == "win32" else ""
MB = 1024 * 1024


def _size(path: Path) -> int:
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def measure_size(bundle: Path, top: int = 12) -> dict[str, object]:
    internal = bundle / "_internal"
    parts = sorted(((p.name, _size(p)) for p in internal.iterdir()), key=lambda kv: -kv[1])
    files = sorted(((str(p.relative_to(internal)), p.stat().st_size) for p in internal.rglob("*")
                    if p.is_file() and not p.is_symlink()), key=lambda kv: -kv[1])
    return {
        "total_mib": round(_size(bundle) / MB, 1),
        "files": sum(1 for p in bundle.rglob("*") if p.is_file()),
        "largest_parts_mib": [(n, round(s / MB, 1)) for n, s in parts[:top]],
        "largest_files_mib": [(n, round(s / MB, 1)) for n, s in files[:top]],
    }


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    if not any(env.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY")) and sys.platform.startswith("linux"):
        env["QT_QPA_PLATFORM"] = env.get("QT_QPA_PLATFORM") or "offscreen"
    return env


def _children_cpu() -> float:
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_once(bundle: Path, workdir: Path) -> tuple[float, float]:
    """Seconds from launching the viewer to its first painted window, and the CPU seconds the
    whole run used (a load-independent figure on a busy machine; it includes the quit)."""
    env = _env()
    env["RADVIEW_STARTUP_PROBE"] = "1"
    settings = workdir / "settings.ini"  # never touch the user's real settings
    cpu0 = _children_cpu()
    t0 = time.time()
    # radview-cli runs the same GUI when given no command; unlike the windowed radview.exe on
    # Windows it keeps stdout, so the probe line can be read on every platform.
    done = subprocess.run([str(bundle / f"radview-cli{EXE}"), "--settings", str(settings),
                           "--cache-dir", str(workdir / "cache")],
                          env=env, cwd=workdir, capture_output=True, text=True, timeout=120)
    cpu = _children_cpu() - cpu0
    for line in done.stdout.splitlines():
        if line.startswith("startup-probe: painted "):
            return float(line.split()[-1]) - t0, cpu
    raise RuntimeError(f"no startup-probe line (exit {done.returncode}): {done.stdout[-500:]} {done.stderr[-1500:]}")


def measure_start(bundle: Path, runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="radview-bench-") as tmp:
        runs_ = [start_once(bundle, Path(tmp)) for _ in range(max(2, runs))]
        times = [t for t, _ in runs_]
        cpus = [c for _, c in runs_]
        t0 = time.perf_counter()
        subprocess.run([str(bundle / f"radview-cli{EXE}"), "--version"], env=_env(), cwd=tmp,
                       capture_output=True, timeout=60, check=True)
        version_s = time.perf_counter() - t0
    return {
        "first_s": round(times[0], 3),
        "median_s": round(statistics.median(times[1:]), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "runs": len(times),
        "cpu_median_s": round(statistics.median(cpus), 3),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "version_roundtrip_s": round(version_s, 3),
        "platform": _env().get("QT_QPA_PLATFORM") or "native",
    }


def measure_selftest(bundle: Path, data: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="radview-bench-") as tmp:
        t0 = time.perf_counter()
        done = subprocess.run([str(bundle / f"radview-cli{EXE}"), "--self-test", str(data), "--out", tmp],
                               env=_env(), cwd=tmp, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - t0
        report = json.loads((Path(tmp) / "report.json").read_text())
    count = {s: sum(1 for i in report["items"] if i["status"] == s) for s in ("ok", "expected", "fail")}
    provider = next((i["detail"] for i in report["items"] if i["name"] == "provider"), "?")
    return {"wall_s": round(wall, 2), "exit": done.returncode, "result": report["result"],
            "counts": count, "provider": provider,
            "failures": [f"{i['section']} {i['name']}: {i['detail']}" for i in report["items"]
                         if i["status"] == "fail"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundles", nargs="*", type=Path, help="bundle folders (default: dist/radview*)")
    p.add_argument("--runs", type=int, default=5, help="start-up launches per bundle (default 5)")
    p.add_argument("--data", type=Path, default=DATA, help="DICOM folder for the self-test")
    p.add_argument("--no-selftest", action="store_true")
    p.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    bundles = [b.resolve() for b in args.bundles] or sorted(d for d in (REPO / "dist").glob("radview*") if (d / "_internal").is_dir())
    if not bundles:
        print("no bundle found: run `make dist` or `make dist-cpu` first", file=sys.stderr)
        return 2
    results: dict[str, object] = {}
    for bundle in bundles:
        flavour = "CPU" if bundle.name.endswith("-cpu") else "GPU"
        print(f"== {bundle.relative_to(REPO) if bundle.is_relative_to(REPO) else bundle} ({flavour} flavour)")
        res: dict[str, object] = {"flavour": flavour, "size": measure_size(bundle)}
        size = res["size"]
        goal = "  (goal <= 500 MB)" if flavour == "CPU" else ""
        print(f"size: {size['total_mib']} MiB = {size['total_mib'] * 1.048576:.0f} MB in {size['files']} files{goal}")
        print("  largest parts (MiB): " + ", ".join(f"{n} {s}" for n, s in size["largest_parts_mib"]))
        print("  largest files (MiB): " + ", ".join(f"{n} {s}" for n, s in size["largest_files_mib"][:6]))
        res["start"] = start = measure_start(bundle, args.runs)
        print(f"start to painted window: first {start['first_s']} s, median {start['median_s']} s "
              f"(min {start['min_s']}, max {start['max_s']}, {start['runs']} runs, {start['platform']} "
              f"platform; goal <= 2 s); CPU time per start {start['cpu_median_s']} s; "
              f"load average {start['load_average']}; --version {start['version_roundtrip_s']} s")
        if not args.no_selftest and args.data.is_dir():
            res["selftest"] = st = measure_selftest(bundle, args.data)
            print(f"self-test: {st['wall_s']} s, {st['result']} (exit {st['exit']}), {st['counts']}, "
                  f"provider: {st['provider']}")
            for failure in st["failures"]:
                print(f"  FAILED {failure}")
        results[bundle.name] = res
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

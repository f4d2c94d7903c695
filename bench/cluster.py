"""Archive-scale batch benchmark (issue 18): the embedded default against a Dask LocalCluster of
1 and 2 workers, the per-task overhead, and a projection to a million images.

Run: ``.venv/bin/python -m bench.cluster [--n 48] [--chunk 8] [--noop 2000]`` (about 2-4
minutes on a 2-core machine; not part of ``python -m bench``, which starts no cluster).

Prints, in one run:

- images/s end to end (listing, decoding, all models, Parquet parts) for the embedded default
  (``run_batch(client=None)``, 2 images at once) and for a LocalCluster of 1 and 2 worker
  processes of 1 thread each; and the steady rate (from the moment every worker has loaded the
  models to the last chunk);
- scaling efficiency = rate(2 workers) / (2 x rate(1 worker)), goal >= 0.85 on 2 cores;
- per-task overhead: no-op tasks through the same scheduler, and the time to write one part;
  the share of a chunk's time that is overhead at the chosen chunk size (goal < 5 %);
- the projected wall time for 1,000,000 images on 10, 100 and 1,000 workers: work
  ``images x cost / workers`` plus ``chunks x overhead / workers``, and never faster than the
  scheduler's measured task rate allows; with the read bandwidth the storage must then deliver.

Images: copies of real chest JPEGs from ``../shared/data`` in a temporary folder, cycled to N
files. Models: the committed ``models/`` (all of them), or the tiny test models if absent.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = (REPO / ".." / "shared" / "data").resolve()

from bench.common import Result, machine, report  # noqa: E402
from viewer.services.batch import auto_chunk_size, run_batch  # noqa: E402
from viewer.services.cluster_task import ChunkSummary  # noqa: E402

TARGET_EFFICIENCY = 0.85
TARGET_OVERHEAD = 0.05


def _images(folder: Path, n: int) -> list[Path]:
    sources = sorted((DATA / "pneumonia" / "originals" / "NORMAL").glob("*.jpeg"))[:40]
    if not sources:
        sys.exit(f"no JPEGs under {DATA}/pneumonia/originals/NORMAL")
    folder.mkdir(parents=True)
    out = []
    for i, src in zip(range(n), itertools.cycle(sources)):
        dst = folder / f"img{i:05d}.jpeg"
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def _models(tmp: Path) -> tuple[list[Path], str]:
    if any((REPO / "models").glob("*.json")):
        return [], "committed models (models/)"
    from tests.inference.tiny_models import make_model_set

    return [make_model_set(tmp / "tiny")], "tiny test models (no committed models)"


class _Clock:
    """Progress callback: when each chunk finished, and how many images it had."""

    def __init__(self) -> None:
        self.ready = float("nan")
        self.marks: list[tuple[float, int]] = []

    def __call__(self, _report: object, summary: ChunkSummary | None) -> None:
        if summary is None:
            self.ready = time.perf_counter()  # every worker has loaded the models
        else:
            self.marks.append((time.perf_counter(), summary.images))

    def steady(self) -> float:
        """Images/s from the moment the models are loaded to the last chunk (leaves out the
        cluster's start and the workers' model loading)."""
        if not self.marks:
            return float("nan")
        t = self.marks[-1][0] - self.ready
        return sum(n for _, n in self.marks) / t if t > 0 else float("nan")


def _run(inputs: Path, out: Path, models_dirs: list[Path], chunk: int, client: object = None
         ) -> tuple[float, float, int]:
    clock = _Clock()
    t0 = time.perf_counter()
    rep = run_batch([inputs], out=out, models_dirs=models_dirs, client=client, chunk_size=chunk,
                    workers=2, progress=clock)
    wall = time.perf_counter() - t0
    return rep.images / wall, clock.steady(), rep.images


def _noop(x: int) -> int:
    return x


def _overhead(client: object, n: int) -> tuple[float, float]:
    """(seconds of overhead per task per worker thread, scheduler tasks/s) from no-op tasks."""
    threads = sum(client.nthreads().values())  # type: ignore[attr-defined]
    client.gather(client.map(_noop, range(50), pure=False))  # type: ignore[attr-defined]  # warm
    t0 = time.perf_counter()
    futures = client.map(_noop, range(n), pure=False)  # type: ignore[attr-defined]
    client.gather(futures)  # type: ignore[attr-defined]
    wall = time.perf_counter() - t0
    return wall * threads / n, n / wall


def _part_write_s(tmp: Path, rows_per_chunk: int) -> float:
    from viewer.services.cluster_dataset import write_part

    row = {"file": "/archive/x/img.jpeg", "image_id": "sha:" + "0" * 32, "model_id": "pneumonia",
           "model_version": "1.0.0", "status": "ok", "label": "normal", "confidence": 0.9,
           "probabilities": {"normal": 0.9, "pneumonia": 0.1}, "notice": "n",
           "input_path": "/archive/x/img.jpeg", "input_size": 1, "input_mtime_ns": 1}
    times = []
    for i in range(20):
        t0 = time.perf_counter()
        write_part(tmp / "parts", f"part-bench-{i:06d}.parquet", [row] * rows_per_chunk)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=96, help="images per configuration (default 96)")
    p.add_argument("--chunk", type=int, default=8, help="files per task (default 8)")
    p.add_argument("--noop", type=int, default=2000, help="no-op tasks for the overhead (default 2000)")
    args = p.parse_args(argv)
    from distributed import Client, LocalCluster

    print(f"cluster benchmark  ({machine()})")
    tmp = Path(tempfile.mkdtemp(prefix="radview-bench-cluster-"))
    try:
        inputs = tmp / "in"
        files = _images(inputs, args.n)
        avg_bytes = statistics.mean(f.stat().st_size for f in files)
        models_dirs, what = _models(tmp)
        print(f"  {args.n} images (real chest JPEGs, mean {avg_bytes / 1e3:.0f} kB), chunks of "
              f"{args.chunk}, {what}")
        e2e, steady_embedded, _ = _run(inputs, tmp / "embedded.parquet", models_dirs, args.chunk)
        print(f"  embedded default:     {e2e:6.2f} images/s end to end, {steady_embedded:6.2f} steady")
        rates: dict[int, tuple[float, float]] = {}
        overhead_s = sched_rate = float("nan")
        import dask

        for workers in (1, 2):
            with dask.config.set({"distributed.worker.daemon": False}):
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       silence_logs=50)
            with cluster, Client(cluster) as client:
                e2e_w, steady_w, _ = _run(inputs, tmp / f"w{workers}.parquet", models_dirs,
                                          args.chunk, client)
                rates[workers] = (e2e_w, steady_w)
                print(f"  LocalCluster {workers} x 1:   {e2e_w:6.2f} images/s end to end, "
                      f"{steady_w:6.2f} steady")
                if workers == 2:
                    overhead_s, sched_rate = _overhead(client, args.noop)
        part_s = _part_write_s(tmp, 3 * args.chunk)
        eff = rates[2][1] / (2 * rates[1][1])
        eff_e2e = rates[2][0] / (2 * rates[1][0])
        cost = 1 / rates[1][1]  # seconds per image on one worker thread
        chunk_overhead = overhead_s + part_s
        share = chunk_overhead / (args.chunk * cost + chunk_overhead)
        print(f"  per-task overhead: {overhead_s * 1e3:.2f} ms (no-op tasks; scheduler "
              f"{sched_rate:.0f} tasks/s here) + {part_s * 1e3:.1f} ms to write a part; "
              f"{100 * share:.2f} % of a chunk of {args.chunk}")
        results = [
            Result("scaling efficiency, steady (2 workers / 2x1)", 100 * eff, "%",
                   100 * TARGET_EFFICIENCY, higher_is_better=True),
            Result("scaling efficiency, end to end", 100 * eff_e2e, "%", None),
            Result(f"overhead share of a chunk of {args.chunk}", 100 * share, "%",
                   100 * TARGET_OVERHEAD),
            Result("LocalCluster 2 / embedded default, steady", 100 * rates[2][1] / steady_embedded,
                   "%", None),
        ]
        report("cluster targets", results)
        print(f"projection for 1,000,000 images at {cost * 1e3:.0f} ms per image per worker "
              f"thread (measured here), {chunk_overhead * 1e3:.1f} ms per task, the scheduler at "
              f"<= {sched_rate:.0f} tasks/s (measured here; Dask documents ~1 ms per task)")
        n = 1_000_000
        for w in (10, 100, 1000):
            k = auto_chunk_size(n, w)
            tasks = -(-n // k)
            work = (n * cost + tasks * chunk_overhead) / w
            floor = tasks / sched_rate
            wall = max(work, floor)
            bound = "scheduler-bound" if floor > work else "worker-bound"
            read = n * avg_bytes / wall / 1e6
            print(f"  {w:>5} workers: chunks of {k:>3} ({tasks:>6} tasks): {wall / 3600:6.2f} h "
                  f"({wall / 60:7.1f} min, {bound}); storage must deliver {read:7.1f} MB/s at "
                  f"this file size")
        one = max((n * cost + n * chunk_overhead) / 1000, n / sched_rate)
        print(f"  1000 workers with one file per task: {one / 60:.1f} min (the scheduler's "
              f"{n} tasks at {sched_rate:.0f}/s): why files are chunked")
        return 0 if all(r.ok for r in results) else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

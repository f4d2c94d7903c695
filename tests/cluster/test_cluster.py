"""``radview analyze`` on a real Dask cluster (a scheduler and two workers on 127.0.0.1, see
conftest.py): the rows equal a local run's, a killed worker or client loses nothing and
duplicates nothing, a file that crashes its worker is one error row, and the dataset loads
with pandas and DuckDB."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.cluster.conftest import REPO, DaskCluster, make_inputs, stop, write_png
from viewer.cli import analyze_main
from viewer.services import cluster_dataset as ds
from viewer.services.batch import run_batch

distributed = pytest.importorskip("distributed")
MODELS = ["pneumonia", "lungs"]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _one_row_per_file_and_model(out: Path, files: list[Path]) -> list[dict[str, object]]:
    rows = list(ds.iter_rows(out, include_skipped=True))
    counts = Counter((r["file"], r["model_id"]) for r in rows)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    assert {str(r["input_path"]) for r in rows} == {str(f) for f in files}
    return rows


def test_cluster_rows_equal_local_rows(dask_cluster: DaskCluster, tmp_path: Path,
                                       tiny_models_dir: Path, shared_dicom: Path) -> None:
    made = make_inputs(tmp_path / "gen")
    inputs = [str(shared_dicom), str(tmp_path / "gen")]
    local = tmp_path / "local"
    assert analyze_main([*inputs, "--models-dir", str(tiny_models_dir), "--models", ",".join(MODELS),
                         "--out", str(local / "r.csv"), "--heatmaps", str(local / "heat"),
                         "--quiet"]) == 1  # the broken files are error rows
    out = tmp_path / "res" / "cohort.parquet"
    with distributed.Client(dask_cluster.address) as client:
        report = run_batch(inputs, out=out, models=MODELS, models_dirs=[tiny_models_dir],
                           masks=tmp_path / "res" / "masks", heatmaps=tmp_path / "res" / "heat",
                           client=client, chunk_size=4)
    assert report.errors > 0 and report.chunks == -(-report.files // 4)
    mine = {(r["file"], r["model_id"]): r for r in ds.iter_rows(out)}
    theirs = {(r["file"], r["model_id"]): r for r in _csv(local / "r.csv")}
    assert set(mine) == set(theirs) and len(mine) > 60, [
        (Path(str(k[0])).name, r["reason"]) for k, r in mine.items() if k not in theirs][:3]
    for key, ref in theirs.items():
        row = mine[key]
        for col in ("image_id", "model_version", "status", "reason", "label", "band"):
            assert (row[col] or "") == ref[col], (key, col)
        probs, ref_probs = row["probabilities"], json.loads(ref["probabilities"])
        assert isinstance(probs, dict) and probs.keys() == ref_probs.keys()
        assert all(abs(probs[k] - ref_probs[k]) <= 1e-6 for k in ref_probs)
        assert row["measurements"] == json.loads(ref["measurements"])
        assert row["host"] and (row["duration_s"] or 0) >= 0
    # Both workers took part; masks and heatmaps of same-stem files do not collide.
    all_rows = _one_row_per_file_and_model(
        out, [Path(shared_dicom) / p for p in _listed(shared_dicom)] + made)
    assert len({r["host"] for r in all_rows}) >= 1
    masks = list((tmp_path / "res" / "masks").glob("img0-*_lungs.png"))
    assert len(masks) == 2  # gen/a/img0.png and gen/b/img0.png
    assert len(list((tmp_path / "res" / "heat").glob("*.png"))) == len(list((local / "heat").glob("*.png")))
    # The dataset loads with pandas and with DuckDB.
    pd = pytest.importorskip("pandas")
    duckdb = pytest.importorskip("duckdb")
    frame = pd.read_parquet(out)
    assert len(frame) == len(all_rows) and {"duration_s", "host", "input_path"} <= set(frame.columns)
    n_ok = duckdb.sql(f"select count(*) from read_parquet('{out}/*.parquet') where status = 'ok'").fetchall()
    assert n_ok == [(sum(r["status"] == "ok" for r in all_rows),)]


def _listed(folder: Path) -> list[str]:
    from viewer.services.batch import list_inputs

    files, _ = list_inputs([str(folder)])
    return [os.path.relpath(f.path, folder) for f in files]


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
        dask_cluster: DaskCluster, tmp_path: Path, tiny_models_dir: Path) -> None:
    files = [write_png(tmp_path / "in" / f"p{i:02d}.png", i, size=384) for i in range(24)]
    out = tmp_path / "out.parquet"
    killed: list[int] = []
    parts_at_kill: list[int] = []
    with distributed.Client(dask_cluster.address) as client:
        pids = sorted(client.run(os.getpid).values())

        def kill_one_when_started() -> None:
            deadline = time.monotonic() + 120
            while not ds.part_files(out) and time.monotonic() < deadline:
                time.sleep(0.05)
            parts_at_kill.append(len(ds.part_files(out)))
            os.kill(pids[0], signal.SIGKILL)  # its nanny starts a new worker
            killed.append(pids[0])

        killer = threading.Thread(target=kill_one_when_started)
        killer.start()
        report = run_batch([tmp_path / "in"], out=out, models=MODELS,
                           models_dirs=[tiny_models_dir], client=client, chunk_size=2)
        killer.join()
        client.wait_for_workers(2, timeout=120)  # replaced, for the next tests
    assert killed and parts_at_kill[0] < report.chunks == 12  # killed mid-run
    assert report.done_files == len(files) and report.errors == 0
    rows = _one_row_per_file_and_model(out, files)
    assert len(rows) == 3 * len(files)


@pytest.mark.slow
def test_a_file_that_crashes_its_worker_is_one_error_row(
        dask_cluster: DaskCluster, tmp_path: Path, tiny_models_dir: Path) -> None:
    good = [write_png(tmp_path / "in" / f"ok{i}.png", i) for i in range(3)]
    bad = write_png(tmp_path / "in" / "abort-me.png", 9)  # ends the worker (abort_preload.py)
    out = tmp_path / "out.csv"
    with distributed.Client(dask_cluster.address) as client:
        report = run_batch([tmp_path / "in"], out=out, models=MODELS,
                           models_dirs=[tiny_models_dir], client=client, chunk_size=4)
        client.wait_for_workers(2, timeout=120)
    assert report.errors == 1 and report.done_files == 4
    rows = _csv(out)  # the CSV merged from the parts
    errors = [r for r in rows if r["status"] == "error"]
    assert [Path(r["file"]).name for r in errors] == ["abort-me.png"]
    assert "ended the worker process" in errors[0]["reason"]
    assert sorted(Path(r["file"]).name for r in rows if r["model_id"] == "pneumonia") == [
        p.name for p in good]
    _one_row_per_file_and_model(dataset := Path(str(out) + ".parts"), [*good, bad])
    assert dataset.is_dir()


@pytest.mark.slow
def test_sigkill_of_the_client_then_rerun_resumes(dask_cluster: DaskCluster, tmp_path: Path,
                                                  tiny_models_dir: Path) -> None:
    files = [write_png(tmp_path / "in" / f"p{i:02d}.png", i, size=256) for i in range(24)]
    out = tmp_path / "out.parquet"
    cmd = [sys.executable, "-m", "viewer", "analyze", str(tmp_path / "in"), "--models-dir",
           str(tiny_models_dir), "--models", ",".join(MODELS), "--out", str(out),
           "--scheduler", dask_cluster.address, "--chunk-size", "2"]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while len(ds.part_files(out)) < 2 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before it could be killed"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        stop(first)
    kept = len(ds.read_index(out))
    assert 0 < kept < len(files)
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr
    # Chunks in flight when the client died may still finish (their tasks run on) before the
    # rerun takes the dataset over: the rerun skips at least what was there at the kill.
    found = re.search(r"resuming: (\d+) of (\d+) file\(s\)", second.stderr)
    assert found and kept <= int(found[1]) < len(files) and int(found[2]) == len(files)
    assert "offline guard is off" in second.stderr
    rows = _one_row_per_file_and_model(out, files)
    assert len(rows) == 3 * len(files)


@pytest.mark.slow
def test_local_cluster_from_the_command_line(tmp_path: Path, tiny_models_dir: Path) -> None:
    made = make_inputs(tmp_path / "in", n_png=4, n_dicom=1)
    out = tmp_path / "out" / "r.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "viewer", "analyze", str(tmp_path / "in"), "--models-dir",
         str(tiny_models_dir), "--models", ",".join(MODELS), "--out", str(out),
         "--local-cluster", "2", "--chunk-size", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "2 Dask worker(s)" in proc.stderr and "Dask dashboard:" in proc.stderr
    rows = _csv(out)
    assert len(rows) == 3 * (len(made) - 1)  # notes.dat is skipped (not in the CSV)
    assert f"skipped {tmp_path / 'in' / 'notes.dat'}" in proc.stderr


@pytest.mark.slow
def test_a_lost_scheduler_stops_the_run_and_a_rerun_resumes(tmp_path: Path,
                                                            tiny_models_dir: Path) -> None:
    from tests.cluster.conftest import DASK, _start, free_port

    files = [write_png(tmp_path / "in" / f"p{i:02d}.png", i, size=384) for i in range(24)]
    out = tmp_path / "out.parquet"
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cluster(port: int) -> list[subprocess.Popen[bytes]]:
        address = f"tcp://127.0.0.1:{port}"
        return [_start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                        "--no-dashboard"], tmp_path / f"s{port}.log", env),
                _start([str(DASK), "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                        "--no-dashboard"], tmp_path / f"w{port}.log", env)]

    def cmd(port: int) -> list[str]:
        return [sys.executable, "-m", "viewer", "analyze", str(tmp_path / "in"), "--models-dir",
                str(tiny_models_dir), "--models", ",".join(MODELS), "--out", str(out),
                "--scheduler", f"tcp://127.0.0.1:{port}", "--chunk-size", "2"]

    port = free_port()
    procs = cluster(port)
    try:
        time.sleep(3)  # the client waits up to 30 s for the scheduler to listen
        client = subprocess.Popen(cmd(port), cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 150
        while len(ds.part_files(out)) < 2 and client.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.poll() is None, "the run ended before its scheduler could be stopped"
        os.killpg(procs[0].pid, signal.SIGKILL)
        _, err = client.communicate(timeout=120)
        assert client.returncode == 1
        assert "lost the Dask scheduler; finished chunks are kept: rerun the same command" in err
        assert "Traceback" not in err
        for proc in procs:
            stop(proc)
        port = free_port()
        procs = cluster(port)
        time.sleep(3)
        second = subprocess.run(cmd(port), cwd=REPO, capture_output=True, text=True, timeout=240)
        assert second.returncode == 0, second.stderr
        assert "resuming: " in second.stderr
    finally:
        for proc in procs:
            stop(proc)
    assert len(_one_row_per_file_and_model(out, files)) == 3 * len(files)

"""A real Dask cluster on 127.0.0.1 for the cluster tests: ``dask scheduler`` and two ``dask
worker`` processes (1 thread each, free ports, no dashboard), started once per module and
stopped by the fixture (process groups killed); plus generated inputs."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests import dicom_factory
from tests.inference.tiny_models import tiny_models_dir  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")
PRELOAD = Path(__file__).with_name("abort_preload.py")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _no_core() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the injected abort leaves no core file


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True, preexec_fn=_no_core)


def stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue


@dataclass
class DaskCluster:
    address: str
    procs: list[subprocess.Popen[bytes]]
    logs: Path


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    pytest.importorskip("distributed")
    from distributed import Client

    logs = tmp_path_factory.mktemp("dask-logs")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1",
               PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    procs = [_start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                     "--no-dashboard"], logs / "scheduler.log", env)]
    try:
        for i in range(2):
            procs.append(_start([str(DASK), "worker", address, "--nthreads", "1", "--host",
                                 "127.0.0.1", "--no-dashboard", "--preload", str(PRELOAD),
                                 "--name", f"w{i}"], logs / f"worker{i}.log", env))
        deadline = time.monotonic() + 120
        while True:  # the scheduler takes a few seconds to listen on a loaded machine
            try:
                with Client(address, timeout="10s") as client:
                    client.wait_for_workers(2, timeout=max(5.0, deadline - time.monotonic()))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield DaskCluster(address, procs, logs)
    finally:
        for proc in reversed(procs):
            stop(proc)


def write_png(path: Path, seed: int, size: int = 96) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = (0.5 * (yy + xx) + rng.integers(0, 40, (size, size))).clip(0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def make_inputs(folder: Path, n_png: int = 6, n_dicom: int = 2) -> list[Path]:
    """PNGs (two of them with one stem in two folders), DICOMs, and a text-only "x.dat"."""
    made = [write_png(folder / ("a" if i % 2 else "b") / f"img{i // 2}.png", i)
            for i in range(n_png)]
    rng = np.random.default_rng(7)
    for i in range(n_dicom):
        made.append(dicom_factory.write_dicom(
            folder / "dcm" / f"d{i}.dcm", rng.integers(0, 4096, (80, 72), dtype=np.uint16),
            bits_stored=12, Modality="CR"))
    (folder / "notes.dat").write_bytes(b"not an image at all")
    made.append(folder / "notes.dat")
    return made

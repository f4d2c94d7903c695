"""The dataset path without a cluster (the embedded default into Parquet), its pieces, and the
CLI's checks; no Dask process is started here."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.cluster.conftest import REPO, make_inputs
from viewer.__main__ import _cluster_analyze
from viewer.cli import analyze_main
from viewer.services import cluster_dataset as ds
from viewer.services.batch import (
    MAX_CHUNK, MIN_CHUNK, auto_chunk_size, dataset_folder, list_inputs, make_chunks, run_batch,
)
from viewer.services.cluster_cli import parse_path_map
from viewer.services.cluster_task import BatchSettings, Chunk, InputFile, map_path

MODELS = ["--models", "pneumonia,lungs"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_chunking_and_path_map() -> None:
    assert auto_chunk_size(10, 2) == MIN_CHUNK
    assert auto_chunk_size(10**6, 1000) == 125  # 8 chunks per worker thread
    assert auto_chunk_size(10**7, 10) == MAX_CHUNK
    files = [InputFile(f"/x/{i}", 1, 2) for i in range(21)]
    chunks = make_chunks(files, 8, "run1")
    assert [len(c.files) for c in chunks] == [8, 8, 5]
    assert [c.part for c in chunks][-1] == "part-run1-000002.parquet"
    assert sum((list(c.files) for c in chunks), []) == files
    pairs = parse_path_map(["/mnt/a=/data/a"])
    assert map_path("/mnt/a/x/y.dcm", pairs) == "/data/a/x/y.dcm"
    assert map_path("/mnt/ab/y.dcm", pairs) == "/mnt/ab/y.dcm"  # a prefix of a name is no match
    assert map_path("/data/a/x/y.dcm", pairs, reverse=True) == "/mnt/a/x/y.dcm"
    for bad in ("/mnt/a", "mnt/a=/data", "/mnt/a=data"):
        with pytest.raises(ValueError):
            parse_path_map([bad])


def test_reprs_and_task_names_carry_no_file_names() -> None:
    f = InputFile("/archive/Doe^Jane/1.dcm", 10, 20)
    chunk = Chunk(3, (f,), "part-abc-000003.parquet")
    settings = BatchSettings(out="/results/Doe^Jane.parquet", run_id="abc", fingerprint="ff",
                             masks="/results/Doe^Jane-masks")
    for text in (repr(f), repr(chunk), repr(settings), repr([chunk])):
        assert "Doe" not in text and "/archive" not in text


def test_network_guard_is_off_only_for_cluster_options() -> None:
    assert _cluster_analyze(["analyze", "x", "--scheduler", "tcp://h:8786"])
    assert _cluster_analyze(["analyze", "x", "--local-cluster=2"])
    assert not _cluster_analyze(["analyze", "x", "--out", "r.parquet"])
    assert not _cluster_analyze(["--scheduler", "x"])  # the GUI never


def test_embedded_parquet_equals_csv_and_resumes(tmp_path: Path, tiny_models_dir: Path) -> None:
    inputs = make_inputs(tmp_path / "in")
    base = [str(tmp_path / "in"), "--models-dir", str(tiny_models_dir), *MODELS, "--quiet"]
    assert analyze_main([*base, "--out", str(tmp_path / "o" / "local.csv")]) == 0
    out = tmp_path / "o" / "ds.parquet"
    assert analyze_main([*base, "--out", str(out), "--chunk-size", "3"]) == 0
    local = _rows(tmp_path / "o" / "local.csv")
    assert len(ds.part_files(out)) == 3  # 9 files in chunks of 3
    rows = list(ds.iter_rows(out, include_skipped=True))
    skipped = [r for r in rows if r["status"] == ds.SKIPPED]
    assert [Path(str(r["file"])).name for r in skipped] == ["notes.dat"]
    rows = [r for r in rows if r["status"] != ds.SKIPPED]
    assert len(rows) == len(local) == 3 * (len(inputs) - 1)
    by = {(r["file"], r["model_id"]): r for r in rows}
    for r in local:
        mine = by[(r["file"], r["model_id"])]
        assert mine["status"] == r["status"] and (mine["label"] or "") == r["label"]
        assert mine["host"] and mine["input_size"] == Path(r["file"]).stat().st_size
    # A rerun skips every file, and says so; a new file is analysed alone.
    before = {p.name for p in ds.part_files(out)}
    new = make_inputs(tmp_path / "in" / "more", n_png=1, n_dicom=0)[0]
    report = run_batch([tmp_path / "in"], out=out, models=["pneumonia", "lungs"],
                       models_dirs=[tiny_models_dir], workers=1)
    assert report.resumed == len(inputs) and report.done_files == 2  # the PNG and its notes.dat
    assert len({p.name for p in ds.part_files(out)} - before) == 1
    keys = ds.read_index(out)
    assert len(keys) == len(inputs) + 2 and (str(new), new.stat().st_size,
                                              new.stat().st_mtime_ns) in keys
    # Other models on the same dataset: refused, nothing written.
    assert analyze_main([*base, "--out", str(out), "--models", "pneumonia"]) == 2


def test_dedupe_keeps_one_part_per_input(tmp_path: Path) -> None:
    out = tmp_path / "d.parquet"

    def row(path: str, model: str) -> dict[str, object]:
        return {"file": path, "model_id": model, "status": "ok", "probabilities": {"a": 0.5},
                "input_path": path, "input_size": 1, "input_mtime_ns": 2}

    ds.write_part(out, "part-a-000000.parquet", [row("/x/1", "m"), row("/x/2", "m")])
    ds.write_part(out, "part-b-000000.parquet", [row("/x/2", "m"), row("/x/3", "m")])
    assert ds.dedupe(out) == 1
    files = sorted(str(r["file"]) for r in ds.iter_rows(out))
    assert files == ["/x/1", "/x/2", "/x/3"]
    assert pq.read_table(out / "part-b-000000.parquet").num_rows == 1


def test_a_task_of_a_superseded_run_writes_nothing(tmp_path: Path, tiny_models_dir: Path) -> None:
    from viewer.services.cluster_task import WorkerState, process_chunk

    png = make_inputs(tmp_path / "in", n_png=1, n_dicom=0)[0]
    out = tmp_path / "d.parquet"
    ds.set_fence(out, "newer")
    st = png.stat()
    settings = BatchSettings(out=str(out), run_id="older", fingerprint="",
                             models_dirs=(str(tiny_models_dir),))
    state = WorkerState(settings, decode_workers=0)
    try:
        summary = process_chunk(state, settings, Chunk(0, (InputFile(str(png), st.st_size,
                                                                     st.st_mtime_ns),), "part-older-000000.parquet"))
    finally:
        state.close()
    assert summary.images == 1 and not summary.written and ds.part_files(out) == []


def test_usage_errors(tmp_path: Path, tiny_models_dir: Path) -> None:
    png = make_inputs(tmp_path / "in", n_png=1, n_dicom=0)[0]
    base = [str(png), "--models-dir", str(tiny_models_dir), "--quiet"]
    assert analyze_main([*base, "--local-cluster", "0", "--out", str(tmp_path / "r.parquet")]) == 2
    assert analyze_main([*base, "--scheduler", "tcp://127.0.0.1:1"]) == 2  # no --out
    assert analyze_main([*base, "--out", str(tmp_path / "r.parquet"), "--path-map", "x"]) == 2
    assert analyze_main([*base, "--out", str(tmp_path / "r.parquet"), "--seg", str(tmp_path / "s")]) == 2
    # The dataset never goes into a study folder.
    assert analyze_main([*base, "--out", str(png.parent / "r.parquet")]) == 2
    assert not (png.parent / "r.parquet").exists()
    assert dataset_folder(Path("/r/x.csv")) == Path("/r/x.csv.parts")
    files, problems = list_inputs([str(tmp_path / "in"), str(tmp_path / "missing")])
    assert sorted(Path(f.path).name for f in files) == ["img0.png", "notes.dat"]
    assert [p.reason for p in problems] == ["path does not exist"]


def test_embedded_runs_never_import_dask(tmp_path: Path, tiny_models_dir: Path) -> None:
    png = make_inputs(tmp_path / "in", n_png=1, n_dicom=0)[0]
    code = (
        "import sys\n"
        "from viewer.__main__ import main\n"
        "from viewer.offline import network_denied\n"
        f"common = [{str(png)!r}, '--models-dir', {str(tiny_models_dir)!r}, '--models', 'pneumonia', '--quiet']\n"
        f"assert main(['analyze', *common, '--out', {str(tmp_path / 'r.csv')!r}]) == 0\n"
        f"assert main(['analyze', *common, '--out', {str(tmp_path / 'r.parquet')!r}]) == 0\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]\n"
        "assert network_denied() or sys.platform != 'linux'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr

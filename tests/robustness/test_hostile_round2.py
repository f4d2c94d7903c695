"""Hostile input, round two (issue 15): inputs that used to crash, hang or leak, each checked
through the real entry points (scan, decode, header dock, `radview analyze`)."""

from __future__ import annotations

import csv
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from tests import dicom_factory
from tests.inference.tiny_models import tiny_models_dir  # noqa: F401
from viewer.cli import analyze_main
from viewer.dicom.load import LoadError, read_header
from viewer.services.library import load_image, scan_paths

pytestmark = pytest.mark.timeout(120)


def _peak_mb(fn):  # type: ignore[no-untyped-def]
    """``fn()`` and the peak of Python allocations during it, in MB (tracemalloc: a process's
    RSS high-water mark could already be above what the call needs)."""
    import tracemalloc

    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] / 1024**2
    finally:
        tracemalloc.stop()


def _good(folder: Path, name: str = "good.dcm") -> Path:
    return dicom_factory.write_dicom(folder / name, np.full((32, 32), 900, np.uint16),
                                     bits_stored=12, PatientName="Good^One")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_fifo_and_devices_are_reported_never_opened(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _good(folder)
    os.mkfifo(folder / "pipe.dcm")  # opening it for reading would wait for a writer forever
    done: dict[str, object] = {}

    def run() -> None:
        done["folder"] = scan_paths([str(folder)], workers=1)
        done["fifo"] = scan_paths([str(folder / "pipe.dcm")], workers=1)
        done["zero"] = scan_paths(["/dev/zero"], workers=1)  # reading it never ends

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "a FIFO or a device blocked the scan"
    folder_scan = done["folder"]
    assert len(folder_scan.index.records()) == 1  # the good file is still there
    reasons = [p.reason for p in folder_scan.problems]
    assert any("not a regular file" in r and "FIFO" in r for r in reasons)
    for key in ("fifo", "zero"):
        scan = done[key]
        assert not scan.index.records()
        assert any("not a regular file" in p.reason for p in scan.problems), key


def _nested_sequence_file(path: Path, depth: int, undefined: bool) -> Path:
    """A data set whose first element is a sequence nested ``depth`` deep (a hostile header)."""
    ds = dicom_factory._base(dicom_factory.CR_STORAGE, pydicom.uid.ExplicitVRLittleEndian,
                             PatientName="Deep^Nest")
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 12, 11
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.PixelData = np.zeros((8, 8), np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    # Splice a hand-built nested sequence at (0008,1140) right after the file meta.
    meta_end = 132 + 12 + struct.unpack_from("<I", raw, 140)[0]
    if undefined:
        item_open = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        item_close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        seq_open = struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF)
        seq_close = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        body = b""
        for _ in range(depth):
            body = seq_open + item_open + body + item_close + seq_close
    else:
        body = b""
        for _ in range(depth):
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
            body = struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, len(item)) + item
    path.write_bytes(raw[:meta_end] + body + raw[meta_end:])
    return path


@pytest.mark.parametrize("undefined", [True, False])
def test_deeply_nested_sequences_never_lose_the_folder(tmp_path: Path, undefined: bool) -> None:
    folder = tmp_path / "in"
    _good(folder)
    _nested_sequence_file(folder / "deep.dcm", 600, undefined)
    scan = scan_paths([str(folder)], workers=1)  # must not raise RecursionError
    names = {os.path.basename(r.path) for r in scan.index.records()}
    assert "good.dcm" in names
    deep = [p for p in scan.problems if p.path.endswith("deep.dcm")]
    if "deep.dcm" in names:  # pydicom read it: the header dock must not crash on it
        rec = next(r for r in scan.index.records() if r.path.endswith("deep.dcm"))
        try:
            nodes = read_header(rec)
            assert nodes
        except LoadError as exc:
            assert "nested too deeply" in str(exc)
    else:
        assert deep and "DICOM" in deep[0].reason


def test_a_patient_name_with_a_wrong_vr_never_reaches_a_message(tmp_path: Path,
                                                                tiny_models_dir: Path) -> None:
    """pydicom's exception texts quote element values; our messages must not."""
    marker = "Vulpecula^Wrongvr"
    folder = tmp_path / "in"
    good = _good(folder)
    raw = good.read_bytes()
    # Rewrite (0010,0010) Patient's Name as VR "FD" holding the text: pydicom then fails to
    # convert it and quotes the value in its error (BytesLengthException).
    ds = pydicom.dcmread(good)
    ds.PatientName = marker
    ds.save_as(folder / "wrongvr.dcm", enforce_file_format=True)
    data = (folder / "wrongvr.dcm").read_bytes()
    at = data.index(b"\x10\x00\x10\x00PN")
    data = data[:at + 4] + b"FD" + data[at + 6:]
    (folder / "wrongvr.dcm").write_bytes(data)
    assert raw  # the good file is untouched
    messages: list[str] = []
    scan = scan_paths([str(folder)], workers=1)
    messages += [p.reason + p.advice for p in scan.problems]
    for rec in scan.index.records():
        for step in (load_image, read_header):
            try:
                shown = step(rec)
            except LoadError as exc:
                messages.append(str(exc))
            else:
                if step is read_header:  # the header dock shows the element, in our words
                    messages += [n.value for n in shown]
    out = tmp_path / "out" / "r.csv"
    analyze_main([str(folder), "--models-dir", str(tiny_models_dir), "--out", str(out), "--quiet"])
    messages += [r["reason"] for r in csv.DictReader(out.open(encoding="utf-8"))]
    for text in messages:
        assert "Vulpecula" not in text and "Wrongvr" not in text, text


def test_header_dock_of_an_unreadable_value_uses_our_words() -> None:
    from viewer.dicom.load import _nodes

    ds = Dataset()
    ds.add_new(0x00100010, "US", b"Secretname")  # a value pydicom cannot convert
    text = " ".join(n.value for n in _nodes(ds))
    assert "Secretname" not in text


def _codestream_claim(src: Path, dst: Path, rows: int, cols: int) -> Path:
    """Rewrite the frame header of ``src``'s first (only) compressed frame to claim
    ``cols`` x ``rows`` pixels, leaving (0028,0010)/(0028,0011) as they are."""
    from pydicom.encaps import encapsulate, get_frame

    from viewer.dicom.codestream import frame_header

    ds = pydicom.dcmread(src)
    frame = bytearray(get_frame(ds.PixelData, 0, number_of_frames=1))
    kind = frame_header(bytes(frame)).kind
    if kind == "JPEG 2000":
        at = frame.index(b"\xff\x4f\xff\x51") + 8  # Xsiz, Ysiz after Lsiz, Rsiz
        frame[at:at + 8] = struct.pack(">II", cols, rows)
    else:
        at = frame.index(b"\xff\xf7" if kind == "JPEG-LS" else b"\xff\xc3") + 5
        frame[at:at + 4] = struct.pack(">HH", rows, cols)
    ds.PixelData = encapsulate([bytes(frame)])
    ds.save_as(dst)
    return dst


@pytest.mark.parametrize("syntax", ["JPEGLSLossless", "JPEG2000Lossless"])
def test_a_codestream_claiming_another_size_is_refused_before_decoding(tmp_path: Path,
                                                                       syntax: str,
                                                                       tiny_models_dir: Path) -> None:
    """A 65000 x 65000 claim in a small JPEG-LS frame aborted the process (std::length_error
    in the decoder); the frame header is now checked against Rows/Columns first."""
    folder = tmp_path / "in"
    good = _good(folder)
    ds = pydicom.dcmread(good)
    ds.compress(getattr(pydicom.uid, syntax),
                encoding_plugin="pyjpegls" if "LS" in syntax else "pylibjpeg")
    ds.save_as(tmp_path / "src.dcm")
    _codestream_claim(tmp_path / "src.dcm", folder / "claim.dcm", 65000, 65000)
    rec = next(r for r in scan_paths([str(folder)], workers=1).index.records()
               if r.path.endswith("claim.dcm"))
    with pytest.raises(LoadError, match="frame header declares 65000 x 65000"):
        load_image(rec)
    out = tmp_path / "out" / "r.csv"
    code = analyze_main([str(folder), "--models-dir", str(tiny_models_dir), "--out", str(out),
                         "--quiet", "--workers", "1"])
    assert code == 1  # the bad file is an error row; the good one is analysed
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    by_file = {}
    for r in rows:
        by_file.setdefault(os.path.basename(r["file"]), set()).add(r["status"])
    assert by_file["claim.dcm"] == {"error"} and "error" not in by_file["good.dcm"]


def _abort_when(flag: str) -> str:
    if flag == "crash":
        os.abort()  # what a decoder's uncaught C++ exception does
    return flag


@pytest.mark.timeout(400)  # several worker processes start (seconds each on a loaded machine)
def test_a_worker_that_dies_costs_one_task_and_is_replaced() -> None:
    from viewer.services.decode_pool import DecodePool, WorkerCrashed

    pool = DecodePool(workers=2)
    try:
        assert pool._run(_abort_when, "fine") == "fine"
        with pytest.raises(WorkerCrashed):
            pool._run(_abort_when, "crash")
        assert pool._run(_abort_when, "after") == "after"  # a fresh pool took over
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(3) as ex:  # tasks in flight beside the crash still succeed
            futures = [ex.submit(pool._run, _abort_when, f) for f in ("a", "crash", "b")]
            outcomes = []
            for fut in futures:
                try:
                    outcomes.append(fut.result(timeout=60))
                except WorkerCrashed:
                    outcomes.append("crashed")
        assert outcomes == ["a", "crashed", "b"]
    finally:
        pool.shutdown()


@pytest.mark.timeout(60)
def test_a_zero_filled_dcm_is_refused_from_its_first_bytes(tmp_path: Path) -> None:
    """Pre-allocated downloads are zero-filled: pydicom's forced read took 18 s per 64 MB."""
    folder = tmp_path / "in"
    _good(folder)
    with open(folder / "prealloc.dcm", "wb") as fh:
        fh.truncate(256 * 1024**2)  # sparse: costs no disk
    scan = scan_paths([str(folder)], workers=1)
    assert len(scan.index.records()) == 1
    reason = next(p.reason for p in scan.problems if p.path.endswith("prealloc.dcm"))
    assert "zero-filled" in reason
    with pytest.raises(LoadError, match="not a DICOM file"):
        from viewer.dicom.load import read_dataset

        read_dataset(str(folder / "prealloc.dcm"))


def _dicomdir(tmp_path: Path, n: int = 2) -> Path:
    from pydicom.fileset import FileSet

    fs = FileSet()
    for i in range(n):
        src = dicom_factory.write_dicom(tmp_path / "src" / f"a{i}.dcm", np.full((4, 4), i, np.uint16),
                                        StudyTime="101010", StudyID="1", PatientID=f"DD{i}")
        fs.add(pydicom.dcmread(src))
    fs.write(tmp_path / "media")
    return tmp_path / "media" / "DICOMDIR"


@pytest.mark.timeout(60)
def test_dicomdir_with_looping_offsets_is_read_once(tmp_path: Path) -> None:
    """Records whose offsets point back at themselves sent pydicom's FileSet round for ever."""
    path = _dicomdir(tmp_path)
    ds = pydicom.dcmread(path)
    first = ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity
    for record in ds.DirectoryRecordSequence:
        record.OffsetOfTheNextDirectoryRecord = first  # every record's "next" is the first
        record.OffsetOfReferencedLowerLevelDirectoryEntity = first
    ds.save_as(path)
    scan = scan_paths([str(path)], workers=1)
    assert sorted(r.patient_id for r in scan.index.records()) == ["DD0", "DD1"]


def test_dicomdir_missing_and_self_references_are_reported(tmp_path: Path) -> None:
    path = _dicomdir(tmp_path)
    ds = pydicom.dcmread(path)
    images = [r for r in ds.DirectoryRecordSequence if r.get("ReferencedFileID")]
    images[0].ReferencedFileID = ["DICOMDIR"]
    images[1].ReferencedFileID = ["NOPE", "IM9999"]
    ds.save_as(path)
    scan = scan_paths([str(path)], workers=1)
    reasons = sorted(p.reason for p in scan.problems)
    assert reasons == ["a DICOMDIR record refers to the DICOMDIR itself",
                       "file listed in DICOMDIR is missing"]
    assert not scan.index.records()


def test_dicomdir_scan_can_be_cancelled(tmp_path: Path) -> None:
    from viewer.services.tasks import Cancelled, CancelToken

    path = _dicomdir(tmp_path, 1)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        scan_paths([str(path)], cancel=token, workers=1)


@pytest.mark.timeout(60)
def test_deflated_bombs_and_zeros_are_refused_cheaply(tmp_path: Path) -> None:
    import zlib

    folder = tmp_path / "in"
    _good(folder)
    # 1.5 GB of zeros deflates to ~1.5 MB: inflating it all used 3.2 GB and took a minute.
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    ds = pydicom.dcmread(_good(tmp_path / "src"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "ref.dcm", enforce_file_format=True)
    raw = (tmp_path / "ref.dcm").read_bytes()
    meta_end = 144 + struct.unpack_from("<I", raw, 140)[0]
    block = bytes(1 << 24)
    with open(folder / "zeros.dcm", "wb") as fh:
        fh.write(raw[:meta_end])
        for _ in range(96):  # 1.5 GiB of zeros
            fh.write(comp.compress(block))
        fh.write(comp.flush())
    # A genuine deflated data set still reads (pydicom writes it deflated for this syntax).
    ds.save_as(folder / "deflated-ok.dcm", enforce_file_format=True)
    scan, grown_mb = _peak_mb(lambda: scan_paths([str(folder)], workers=1))
    names = sorted(os.path.basename(r.path) for r in scan.index.records())
    assert names == ["deflated-ok.dcm", "good.dcm"]
    assert load_image(next(r for r in scan.index.records() if "deflated" in r.path)).pixels.max() == 900
    reason = next(p.reason for p in scan.problems if p.path.endswith("zeros.dcm"))
    assert "Deflated" in reason
    assert grown_mb < 200, f"scanning grew the process by {grown_mb:.0f} MB"


def test_zip_member_that_is_not_dicom_is_not_read_whole(tmp_path: Path) -> None:
    """The scan read a whole member when its first 256 KB were not DICOM (3.9 GB peak for a
    1.9 GB member); a nested zip was called "not a DICOM file"."""
    import zipfile

    rng = np.random.default_rng(0)
    # ~100:1 compressible, not DICOM: short random runs repeated.
    chunk = (rng.integers(0, 255, 4096, dtype=np.uint8).tobytes() + bytes(400_000)) * 4
    archive = tmp_path / "big.zip"
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("x.txt", "hello")
    good = _good(tmp_path / "src")
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("blob.dcm", "w") as fh:
            for _ in range(60):  # ~96 MB
                fh.write(chunk)
        zf.write(inner, "nested.zip")
        zf.write(good, "good.dcm")
    scan, grown_mb = _peak_mb(lambda: scan_paths([str(archive)], workers=1))
    assert [r.member for r in scan.index.records()] == ["good.dcm"]
    by_member = {p.member: p.reason for p in scan.problems}
    assert "zip archive inside the zip archive" in by_member["nested.zip"]
    assert "not a DICOM file" in by_member["blob.dcm"]
    assert grown_mb < 60, f"scanning grew the process by {grown_mb:.0f} MB"


def test_plain_images_are_sized_by_their_own_samples(tmp_path: Path) -> None:
    """A 100 MP 16-bit grey PNG was refused as "572 MiB" (sized as three samples); a big RGB
    PNG inside the pixel limit took 2.3 GB: both are now judged by what they decode to."""
    import zlib

    from viewer.services.library import MAX_PLAIN_DECODED_BYTES, load_plain_image

    def png_header(width: int, height: int, depth: int, colour: int) -> bytes:
        def chunk(kind: bytes, body: bytes) -> bytes:
            return (struct.pack(">I", len(body)) + kind + body
                    + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
        ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")

    grey16 = png_header(9000, 9000, 16, 0)  # 81 MP, 154 MiB decoded: within both limits
    with pytest.raises(LoadError) as grey_err:  # no pixel data: damaged, not "too big"
        load_plain_image(grey16, "g.png")
    assert "damaged or truncated" in str(grey_err.value)
    rgb = png_header(9000, 9000, 8, 2)  # 81 MP RGB: 232 MiB decoded
    with pytest.raises(LoadError, match="MiB limit for PNG/JPEG") as rgb_err:
        load_plain_image(rgb, "c.png")
    assert f"{MAX_PLAIN_DECODED_BYTES // 1024**2} MiB" in str(rgb_err.value)


def test_a_transfer_syntax_contradicting_the_encoding_is_named(tmp_path: Path) -> None:
    """Explicit VR Little Endian in (0002,0010) over an Implicit VR data set used to be reported
    as "not an image ... SOP Class absent"."""
    pixels = np.full((32, 32), 900, np.uint16)
    explicit = dicom_factory.write_dicom(tmp_path / "src" / "e.dcm", pixels, bits_stored=12)
    implicit = dicom_factory.write_dicom(tmp_path / "src" / "i.dcm", pixels, bits_stored=12,
                                         transfer_syntax=pydicom.uid.ImplicitVRLittleEndian)
    e, i = explicit.read_bytes(), implicit.read_bytes()
    e_end = 144 + struct.unpack_from("<I", e, 140)[0]
    i_end = 144 + struct.unpack_from("<I", i, 140)[0]
    bad = tmp_path / "in" / "mismatch.dcm"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(e[:e_end] + i[i_end:])  # meta says explicit, data set is implicit
    scan = scan_paths([str(bad)], workers=1)
    if scan.index.records():  # pydicom coped: the image must then load or fail cleanly
        try:
            load_image(scan.index.records()[0])
        except LoadError:
            pass
    else:
        (problem,) = scan.problems
        assert "without explicit VRs" in problem.reason, problem.reason


def _sleep_forever(_: str) -> str:
    import time

    time.sleep(3600)  # what a decoder looping in native code looks like from outside
    return "never"


@pytest.mark.timeout(400)
def test_a_decode_that_never_ends_is_stopped_and_the_pool_recovers() -> None:
    from viewer.services.decode_pool import DecodePool, TaskTimedOut

    pool = DecodePool(workers=1, task_timeout_s=3)
    try:
        with pytest.raises(TaskTimedOut):
            pool._run(_sleep_forever, "x")
        pool.task_timeout_s = 120  # the limit counts a fresh worker's start-up too
        assert pool._run(_abort_when, "after") == "after"
    finally:
        pool.shutdown()


def test_analyze_exits_1_when_a_dicomdir_lists_missing_files(tmp_path: Path, tiny_models_dir: Path) -> None:
    """A self-referencing DICOMDIR, or one naming a missing file, passed silently (exit 0)."""
    path = _dicomdir(tmp_path)
    ds = pydicom.dcmread(path)
    images = [r for r in ds.DirectoryRecordSequence if r.get("ReferencedFileID")]
    images[1].ReferencedFileID = ["NOPE", "IM9999"]
    ds.save_as(path)
    out = tmp_path / "out" / "r.csv"
    code = analyze_main([str(path), "--models-dir", str(tiny_models_dir), "--out", str(out), "--quiet"])
    assert code == 1
    assert len({r["file"] for r in csv.DictReader(out.open(encoding="utf-8"))}) == 1  # the other image

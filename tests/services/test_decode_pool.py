"""DecodePool: expensive decodes in worker processes give the same results as in-thread."""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pydicom
import pytest
from pydicom import uid

from tests import dicom_factory as fac
from viewer.dicom.load import LoadError
from viewer.dicom.scan import InstanceRecord, scan_file
from viewer.services.decode_pool import DecodePool, decodes_in_process
from viewer.services.library import load_image
from viewer.services.tasks import Cancelled, CancelToken
from viewer.services.thumbnails import ThumbnailStore


def _j2k_file(path, px):
    fac.write_dicom(path, px, bits_stored=12, photometric="MONOCHROME1")
    ds = pydicom.dcmread(path)
    ds.compress(uid.JPEG2000Lossless, px)
    ds.save_as(path)
    return scan_file(path)


@pytest.fixture(scope="module")
def pool():
    p = DecodePool(workers=1)
    yield p
    p.shutdown()


def test_routing_rules():
    j2k = InstanceRecord(path="a", transfer_syntax_uid=uid.JPEG2000Lossless, rows=1, cols=1)
    assert decodes_in_process(j2k) and decodes_in_process(j2k, reduce_to=128)
    jls = InstanceRecord(path="a", transfer_syntax_uid=uid.JPEGLSLossless, rows=1, cols=1)
    assert decodes_in_process(jls, reduce_to=128)
    native = InstanceRecord(path="a", transfer_syntax_uid=uid.ExplicitVRLittleEndian)
    assert not decodes_in_process(native) and not decodes_in_process(native, reduce_to=128)
    assert not decodes_in_process(InstanceRecord(path="a.png", kind="image"), reduce_to=128)
    rle = dict(path="a", transfer_syntax_uid=uid.RLELossless)
    assert decodes_in_process(InstanceRecord(rows=2000, cols=1600, **rle))
    # every compressed thumbnail goes to a process; a small full-size RLE frame does not
    assert decodes_in_process(InstanceRecord(rows=512, cols=512, **rle), reduce_to=128)
    assert not decodes_in_process(InstanceRecord(rows=512, cols=512, **rle))


def test_process_decode_equals_in_thread_decode(tmp_path, pool):
    px = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 3) % 4096
    rec = _j2k_file(tmp_path / "j.dcm", px)
    rg = pool.load_image(rec)
    np.testing.assert_array_equal(rg.pixels, px)
    direct = load_image(rec)
    assert rg.photometric == direct.photometric == "MONOCHROME1" and rg.vois == direct.vois


def test_load_error_keeps_its_fields_across_processes(tmp_path, pool):
    err = LoadError("m", "a", "1.2")
    again = pickle.loads(pickle.dumps(err))
    assert (again.message, again.advice, again.transfer_syntax) == ("m", "a", "1.2")
    px = np.zeros((32, 32), np.uint16)
    rec = _j2k_file(tmp_path / "j.dcm", px)
    cut = fac.write_truncated(rec.path, tmp_path / "cut.dcm", rec.size - 40)
    with pytest.raises(LoadError) as info:
        pool.load_image(scan_file(cut))
    assert info.value.transfer_syntax == uid.JPEG2000Lossless and "cut.dcm" in info.value.message


def test_thumbnail_in_worker_lands_in_the_cache(tmp_path, pool):
    px = np.zeros((400, 300), np.uint16)
    px[:, 150:] = 4000
    path = fac.write_dicom(tmp_path / "l.dcm", px, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.compress(uid.JPEGLSLossless, px)
    ds.save_as(path)
    rec = scan_file(path)
    store = ThumbnailStore(tmp_path / "cache", size=64)
    thumb = pool.make_thumbnail(store, rec)
    assert thumb.shape == (64, 48) and thumb[:, -10:].mean() > 200
    np.testing.assert_array_equal(store.cached(rec), thumb)


def test_cancelled_token_raises(tmp_path, pool):
    rec = _j2k_file(tmp_path / "j.dcm", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        pool.load_image(rec, cancel=token)


def test_shutdown_refuses_new_work(tmp_path):
    p = DecodePool(workers=1)
    p.shutdown()
    rec = InstanceRecord(path=str(tmp_path / "x.dcm"), transfer_syntax_uid=uid.JPEG2000Lossless, rows=1, cols=1)
    with pytest.raises(RuntimeError):
        p.load_image(rec)


def test_zero_workers_decodes_in_the_calling_thread(tmp_path):
    px = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096
    rec = _j2k_file(tmp_path / "j.dcm", px)
    p = DecodePool(workers=0)
    assert p.workers == 0 and p.warm_up() == []
    np.testing.assert_array_equal(p.load_image(rec).pixels, px)
    store = ThumbnailStore(tmp_path / "cache", size=16)
    np.testing.assert_array_equal(p.make_thumbnail(store, rec), store.cached(rec))
    assert p._pool is None  # never started a process
    p.shutdown()
    p.shutdown()  # idempotent


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process niceness on this platform")
def test_workers_run_at_lower_priority(pool):
    from viewer.services.decode_worker import WORKER_NICENESS

    child = pool._executor().submit(os.nice, 0).result(timeout=60)
    assert child == min(os.nice(0) + WORKER_NICENESS, 19)


def test_warm_up_in_background_starts_the_workers():
    p = DecodePool(workers=1)
    try:
        p.warm_up_in_background()
        deadline = time.monotonic() + 60
        while p._pool is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p._pool is not None
    finally:
        p.shutdown()
    p.warm_up_in_background()  # after shutdown: a no-op, no error in the thread

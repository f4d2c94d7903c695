"""Thumbnails: size, windowing, disk cache keyed by path + size + mtime, reduced decode."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pydicom import uid

from tests import dicom_factory as fac
from viewer.dicom.load import load_radiograph
from viewer.dicom.reduced import decode_reduced, j2k_header
from viewer.dicom.scan import scan_file
from viewer.services.library import LoadError
from viewer.services.thumbnails import ThumbnailStore, downsample


def test_downsample_keeps_dtype_and_aspect():
    px = np.arange(400 * 300, dtype=np.uint16).reshape(400, 300)
    small = downsample(px, 100)
    assert small.shape == (100, 75) and small.dtype == np.uint16
    assert downsample(px, 1000) is px


def test_make_then_cached_and_invalidated_by_mtime(tmp_path):
    px = np.zeros((300, 200), np.uint16)
    px[:, 100:] = 4000  # right half: high stored value
    path = fac.write_dicom(tmp_path / "in" / "a.dcm", px, bits_stored=12, photometric="MONOCHROME1")
    rec = scan_file(path)
    store = ThumbnailStore(tmp_path / "cache", size=64)
    assert store.cached(rec) is None
    thumb = store.make(rec)
    assert thumb.dtype == np.uint8 and thumb.shape == (64, 43)
    # MONOCHROME1: high stored values are dark
    assert thumb[:, :15].mean() > 200 and thumb[:, -15:].mean() < 50
    np.testing.assert_array_equal(store.cached(rec), thumb)
    assert list((tmp_path / "in").iterdir()) == [path]  # nothing written next to the study
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert store.cached(rec) is None
    assert ThumbnailStore(tmp_path / "cache", size=32).cached(rec) is None


def test_colour_thumbnail_round_trips_through_cache(tmp_path):
    rgb = np.zeros((50, 80, 3), np.uint8)
    rgb[..., 0] = 220
    rec = scan_file(fac.write_dicom(tmp_path / "c.dcm", rgb, sop_class=fac.SC_STORAGE))
    store = ThumbnailStore(tmp_path / "cache", size=40)
    thumb = store.make(rec)
    assert thumb.shape == (25, 40, 3)
    np.testing.assert_array_equal(store.cached(rec), thumb)
    assert thumb[..., 0].min() == 220 and thumb[..., 1].max() == 0


def test_undecodable_file_raises_load_error(tmp_path):
    rec = scan_file(fac.write_dicom(tmp_path / "a.dcm", np.zeros((64, 64), np.uint16)))
    cut = fac.write_truncated(rec.path, tmp_path / "cut.dcm", rec.size - 3000)
    with pytest.raises(LoadError):
        ThumbnailStore(tmp_path / "cache").make(scan_file(cut))


def test_reduced_j2k_decode_matches_full_decode(tmp_path):
    y, x = np.mgrid[0:512, 0:512]
    px = ((x * 3 + y * 5) % 4096).astype(np.uint16) // 2 + 100
    path = fac.write_dicom(tmp_path / "j.dcm", px, bits_stored=12)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.compress(uid.JPEG2000Lossless, px)
    ds.save_as(path)
    ds = pydicom.dcmread(path)
    from pydicom.encaps import get_frame

    comps, precision, signed, levels = j2k_header(get_frame(ds.PixelData, 0, number_of_frames=1))
    assert (comps, signed) == (1, False) and precision >= 12 and levels >= 1
    reduced = decode_reduced(ds, 0, 64)
    assert reduced is not None
    arr, factor = reduced
    assert factor == 4 and arr.shape == (128, 128)
    full = load_radiograph(path).pixels.astype(np.float64)
    block = full.reshape(128, 4, 128, 4).mean(axis=(1, 3))
    assert np.corrcoef(block.ravel(), arr.astype(np.float64).ravel())[0, 1] > 0.95
    rg = load_radiograph(path, reduce_to=64)
    assert rg.pixels.shape == (128, 128)


def test_native_decimation_reads_every_nth_pixel_from_a_memory_map(tmp_path):
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 4096, (2, 600, 500)).astype(np.uint16)
    path = fac.write_dicom(tmp_path / "n.dcm", frames, bits_stored=12, PixelSpacing=[0.1, 0.2])
    rg = load_radiograph(path, frame=1, reduce_to=100)
    np.testing.assert_array_equal(rg.pixels, frames[1][::3, ::3])
    assert rg.spacing_mm == pytest.approx((0.3, 0.6))
    signed = rng.integers(-2000, 2000, (400, 400)).astype(np.int16)
    spath = fac.write_dicom(tmp_path / "s.dcm", signed)
    np.testing.assert_array_equal(load_radiograph(spath, reduce_to=50).pixels, signed[::4, ::4])


def test_prune_removes_oldest_entries_first(tmp_path):
    store = ThumbnailStore(tmp_path / "cache", size=32)
    recs = []
    for i in range(4):
        recs.append(scan_file(fac.write_dicom(tmp_path / f"{i}.dcm", np.full((64, 64), i * 100, np.uint16))))
        store.make(recs[-1])
        png = next(p for p in (tmp_path / "cache").glob("*/*.png") if p.stem == store.key(recs[-1]))
        os.utime(png, (1000 + i, 1000 + i))
    sizes = sorted(p.stat().st_size for p in (tmp_path / "cache").glob("*/*.png"))
    removed = store.prune(max_bytes=sum(sizes[-2:]))
    assert removed >= 2
    assert store.cached(recs[0]) is None and store.cached(recs[3]) is not None

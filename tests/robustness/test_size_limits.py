"""Size claims are refused before anything is allocated for them.

``tracemalloc`` sees numpy's and Python's allocations: loading a file whose header claims
gigapixels must raise ``LoadError`` naming the limit while allocating next to nothing.
"""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path
from collections.abc import Callable

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from tests import dicom_factory
from viewer.dicom.load import MAX_FRAME_PIXELS, LoadError
from viewer.services.library import load_image, scan_paths


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(bytes(3 * width + 1) * 4)) + chunk(b"IEND", b""))


def _peak_while(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def _load_first(path: Path) -> None:
    (record,) = scan_paths([str(path)], workers=1).index.records()
    load_image(record)


@pytest.mark.parametrize("size", [(60000, 60000), (20000, 20000), (11000, 10000)])
def test_png_size_claim_refused_before_decoding(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(*size))
    with pytest.raises(LoadError, match="megapixel"):
        _load_first(path)
    assert _peak_while(lambda: pytest.raises(LoadError, _load_first, path)) < 20 * 2**20


def test_compressed_dicom_with_lying_rows_refused_before_decoding(tmp_path: Path) -> None:
    """JPEG Baseline data of 64 x 64 under a header claiming 50000 x 40000."""
    import cv2

    path = dicom_factory.write_dicom(tmp_path / "x.dcm", np.zeros((64, 64), np.uint8))
    ds = pydicom.dcmread(path)
    ok, buf = cv2.imencode(".jpg", np.full((64, 64), 128, np.uint8))
    assert ok
    ds.PixelData = encapsulate([buf.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows, ds.Columns = 50000, 40000
    ds.save_as(path)
    assert 50000 * 40000 > MAX_FRAME_PIXELS
    with pytest.raises(LoadError, match=r"50000 x 40000 pixels .* limit"):
        _load_first(path)
    assert _peak_while(lambda: pytest.raises(LoadError, _load_first, path)) < 20 * 2**20


def test_largest_real_size_still_loads(tmp_path: Path) -> None:
    """A 4300 x 4300 16-bit radiograph (the largest detector size) is under the limits."""
    px = np.zeros((4300, 4300), np.uint16)
    path = dicom_factory.write_dicom(tmp_path / "big.dcm", px, bits_stored=12)
    (record,) = scan_paths([str(path)], workers=1).index.records()
    assert load_image(record).pixels.shape == (4300, 4300)

"""Thumbnails: small display-windowed images with a disk cache.

A thumbnail is the display pipeline (:func:`viewer.core.windowing.display_image`) applied to a
downsampled copy of the stored pixels, which is exact for the windowing (an element-wise map)
and cheap. Decoding is the cost, so results are kept as PNG files under ``cache_dir`` keyed by
the source path (and zip member), the file's size and modification time, and the thumbnail size:
a changed file gets a new key and its old entry is simply never read again.

Call :meth:`ThumbnailStore.make` off the GUI thread; :meth:`ThumbnailStore.cached` is cheap
enough (one small PNG read) to call from a worker that serves the visible grid first.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from viewer.core.radiograph import Radiograph
from viewer.core.windowing import default_voi, display_image
from viewer.dicom.scan import InstanceRecord
from viewer.services.library import load_image

__all__ = ["ThumbnailStore", "downsample", "thumbnail_of"]

_KEY_VERSION = "v1"


def downsample(pixels: np.ndarray, size: int) -> np.ndarray:
    """Shrink so that the longer side is at most ``size`` (area averaging; dtype kept)."""
    rows, cols = pixels.shape[:2]
    scale = size / max(rows, cols)
    if scale >= 1.0:
        return pixels
    new = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    # Decimate by an integer step first (keeping >= 2 samples per output pixel), so the area
    # filter touches a few hundred thousand pixels instead of millions.
    step = int(max(rows, cols) // (2 * size))
    src = pixels[::step, ::step] if step >= 2 else pixels
    if src.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        src = src.astype(np.float32)
    out = cv2.resize(src, new, interpolation=cv2.INTER_AREA)
    if out.dtype != pixels.dtype:
        out = out.astype(pixels.dtype)
    return out


def thumbnail_of(rg: Radiograph, size: int) -> np.ndarray:
    """uint8 grey ``(h, w)`` or RGB ``(h, w, 3)`` thumbnail, longer side ``<= size``.

    The default VOI is chosen on the full-resolution modality values' sub-sample (the same choice
    as the full display), then applied to the shrunken stored values.
    """
    small = replace(rg, pixels=np.ascontiguousarray(downsample(rg.pixels, size)))
    voi = None if rg.is_colour else default_voi(small)
    return display_image(small, voi)


class ThumbnailStore:
    """Disk-cached thumbnails for :class:`InstanceRecord` objects.

    Parameters
    ----------
    cache_dir
        A folder the viewer owns (never a study folder); created on first write.
    size
        Longer side of a thumbnail in pixels.
    """

    def __init__(self, cache_dir: Path | str, size: int = 128) -> None:
        self.cache_dir = Path(cache_dir)
        self.size = int(size)

    def key(self, record: InstanceRecord, frame: int = 0) -> str:
        """Cache key from path, zip member, file size and mtime (stat now), frame and size."""
        try:
            st = os.stat(record.path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = f"{record.size}:{record.mtime}"
        text = f"{_KEY_VERSION}|{record.path}|{record.member or ''}|{frame}|{self.size}|{stamp}"
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()

    def _file(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.png"

    def cached(self, record: InstanceRecord, frame: int = 0) -> np.ndarray | None:
        """The cached thumbnail, or ``None`` when it has not been made (or is unreadable)."""
        path = self._file(self.key(record, frame))
        try:
            data = path.read_bytes()
        except OSError:
            return None
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            return None
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return img

    def make(self, record: InstanceRecord, frame: int = 0) -> np.ndarray:
        """Decode, shrink, window and cache a thumbnail (raises LoadError for bad files)."""
        hit = self.cached(record, frame)
        if hit is not None:
            return hit
        thumb = thumbnail_of(load_image(record, frame, reduce_to=self.size), self.size)
        self._store(self.key(record, frame), thumb)
        return thumb

    def prune(self, max_bytes: int = 256 * 1024**2) -> int:
        """Delete the least recently written thumbnails until the cache fits ``max_bytes``.

        Entries of changed or deleted files are never read again; this keeps them from piling
        up. Returns the number of files removed. Safe to run while other threads add entries.
        """
        entries = []
        for png in self.cache_dir.glob("*/*.png"):
            try:
                st = png.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, png))
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, png in sorted(entries):
            if total <= max_bytes:
                break
            try:
                png.unlink()
            except OSError:
                continue
            total -= size
            removed += 1
        return removed

    def _store(self, key: str, thumb: np.ndarray) -> None:
        target = self._file(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        img = cv2.cvtColor(thumb, cv2.COLOR_RGB2BGR) if thumb.ndim == 3 else thumb
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            return
        # Write-then-rename so a reader never sees half a file (several workers may race).
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fp:
                fp.write(buf.tobytes())
            os.replace(tmp, target)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass

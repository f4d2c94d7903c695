"""A thread-safe LRU cache of decoded radiographs, bounded in bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from viewer.core.radiograph import Radiograph

__all__ = ["ImageCache", "radiograph_nbytes"]


def radiograph_nbytes(rg: Radiograph) -> int:
    """Memory held by a radiograph's arrays (pixels and any LUT tables)."""
    total = int(rg.pixels.nbytes)
    if rg.modality_lut.lut is not None:
        total += int(rg.modality_lut.lut.nbytes)
    for voi in rg.vois:
        if voi.lut is not None:
            total += int(voi.lut.nbytes)
    return total


class ImageCache:
    """Least-recently-used cache of :class:`Radiograph` objects with a byte budget.

    Parameters
    ----------
    max_bytes
        Budget for the cached pixel arrays (default 512 MiB). An item larger than the whole
        budget is returned to the caller but not kept.

    Notes
    -----
    ``get_or_load`` runs the loader outside the lock, so two threads asking for the same key at
    once may both decode it; the second result simply replaces the first.
    """

    def __init__(self, max_bytes: int = 512 * 1024**2) -> None:
        self._max = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Radiograph, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def max_bytes(self) -> int:
        return self._max

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: Hashable) -> Radiograph | None:
        """The cached radiograph (marked most recent) or ``None``."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, rg: Radiograph) -> None:
        """Insert or replace ``key``, evicting least-recently-used items over the budget."""
        size = radiograph_nbytes(rg)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self._max:
                return
            self._items[key] = (rg, size)
            self._bytes += size
            while self._bytes > self._max and self._items:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def get_or_load(self, key: Hashable, loader: Callable[[], Radiograph]) -> Radiograph:
        """Cached value for ``key``, else ``loader()`` (stored, then returned)."""
        rg = self.get(key)
        if rg is not None:
            return rg
        rg = loader()
        self.put(key, rg)
        return rg

    def discard(self, key: Hashable) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

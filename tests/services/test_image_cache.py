"""Byte-bounded LRU cache of radiographs."""

from __future__ import annotations

import threading

import numpy as np

from viewer.core.radiograph import Radiograph
from viewer.services.image_cache import ImageCache


def rg(nbytes: int) -> Radiograph:
    return Radiograph(pixels=np.zeros((1, nbytes), np.uint8))


def test_evicts_least_recently_used_by_bytes():
    cache = ImageCache(max_bytes=300)
    for key in "abc":
        cache.put(key, rg(100))
    assert cache.get("a") is not None  # a is now most recent
    cache.put("d", rg(100))
    assert "b" not in cache and all(k in cache for k in "acd")
    assert cache.nbytes == 300 and len(cache) == 3


def test_oversized_item_is_returned_but_not_kept():
    cache = ImageCache(max_bytes=50)
    value = cache.get_or_load("big", lambda: rg(100))
    assert value.pixels.size == 100 and "big" not in cache and cache.nbytes == 0


def test_get_or_load_calls_loader_once_when_cached():
    cache = ImageCache(max_bytes=1000)
    calls = []
    for _ in range(3):
        cache.get_or_load("k", lambda: calls.append(1) or rg(10))
    assert len(calls) == 1 and cache.hits == 2


def test_replace_and_discard_keep_byte_count():
    cache = ImageCache(max_bytes=1000)
    cache.put("k", rg(100))
    cache.put("k", rg(200))
    assert cache.nbytes == 200
    cache.discard("k")
    assert cache.nbytes == 0 and len(cache) == 0


def test_concurrent_use_stays_within_budget():
    cache = ImageCache(max_bytes=10_000)

    def work(seed: int) -> None:
        for i in range(300):
            cache.get_or_load((seed, i % 40), lambda: rg(500))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes <= 10_000 and cache.nbytes == 500 * len(cache)

"""Fault injection for the test cluster's workers (``dask worker --preload <this file>``).

A file whose name starts with ``abort-me`` ends the worker process with ``os.abort()`` when it
is decoded, which is what a decoder's uncaught native exception does (issue 15 met one); no
hostile file that still crashes today's decoders is known, so the crash is injected. Every other
file goes through the real decoder.
"""

from __future__ import annotations

import os
from typing import Any

import viewer.services.decode_pool as decode_pool

# Dask may run a preload file more than once in a process: wrap the real function only.
_real_load_image = getattr(decode_pool, "_unwrapped_load_image", decode_pool.load_image)
decode_pool._unwrapped_load_image = _real_load_image  # type: ignore[attr-defined]


def _load_image(record: Any, *args: Any, **kwargs: Any) -> Any:
    if os.path.basename(record.path).startswith("abort-me"):
        os.abort()
    return _real_load_image(record, *args, **kwargs)


decode_pool.load_image = _load_image

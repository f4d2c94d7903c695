"""Child process for the hostile-input harness: opens each path it is sent exactly as the viewer
and ``radview analyze`` do, and answers one JSON line per path.

Protocol: one path per line on stdin; one JSON object per line on stdout with ``path``,
``outcome`` ("ok" | "refused" | "crash"), ``reasons`` (the load-report texts), ``records``,
``loaded``, ``rss_mb`` (resident set now), ``max_rss_mb`` (high-water mark) and ``trace`` (for a
crash). Run as ``python -m tests.robustness.worker CACHE_DIR`` from the repository root.

Code paths: :func:`viewer.services.library.scan_paths` (the browser's scan; also the CLI's),
:func:`viewer.services.library.load_image` (the canvas), :meth:`ThumbnailStore.make`
(thumbnail grid) and :func:`viewer.services.analysis_inputs.input_from_record` (the analysis
input builder). A :class:`~viewer.dicom.load.LoadError` is the expected, user-facing refusal;
any other exception is a crash.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback

import psutil


def _open(path: str, store, pool) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from viewer.dicom.load import LoadError
    from viewer.services.analysis_inputs import input_from_record
    from viewer.services.library import scan_paths

    reasons: list[str] = []
    loaded = 0
    scan = scan_paths([path], workers=1)
    reasons.extend(p.reason for p in scan.problems)
    records = [r for r in scan.index.records() if r.is_image]
    for rec in records:
        ok = True
        # As the window and `radview analyze` do: compressed files decode in worker processes
        # (a native crash or hang costs that file only).
        for step in (lambda rec=rec: pool.load_image(rec), lambda rec=rec: pool.make_thumbnail(store, rec),
                     lambda rec=rec: input_from_record(rec, load=pool.load_image)):
            try:
                step()
            except LoadError as exc:
                reasons.append(str(exc))
                ok = False
                break
        loaded += ok
    outcome = "ok" if loaded and loaded == len(records) and not scan.problems else "refused"
    if loaded and outcome != "ok":
        outcome = "partial"
    return {"outcome": outcome, "reasons": reasons, "records": len(records), "loaded": loaded}


def main(argv: list[str]) -> int:
    import warnings

    warnings.simplefilter("ignore")
    from viewer.services.thumbnails import ThumbnailStore

    from viewer.services.decode_pool import DecodePool

    store = ThumbnailStore(argv[0], size=128)
    # A decode stuck in native code is stopped well inside the harness's per-file limit.
    pool = DecodePool(workers=1, task_timeout_s=float(os.environ.get("RADVIEW_DECODE_TIMEOUT_S", 5)))
    proc = psutil.Process()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        path = line.rstrip("\n")
        if not path:
            continue
        try:
            answer = _open(path, store, pool)
        except Exception as exc:  # the harness counts these as crashes
            answer = {"outcome": "crash", "reasons": [f"{type(exc).__name__}: {exc}"],
                      "trace": traceback.format_exc(limit=6)}
        answer["path"] = path
        answer["rss_mb"] = proc.memory_info().rss / 2**20
        answer["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

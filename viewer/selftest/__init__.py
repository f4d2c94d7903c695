"""``radview --self-test [DICOM_FOLDER]``: prove that this installation (frozen or not) works.

Packaging breaks at run time, not at build time (a frozen pydicom loses its decoders without a
word), so the self-test exercises what a user needs, with real files:

1. environment: version, frozen or not, onnxruntime and the execution provider it will use;
2. codecs: pydicom has a decoder plugin for every compressed transfer syntax we promise;
3. DICOM: every ``*.dcm`` in the folder decodes and displays (``broken/`` counted apart; 12-bit
   JPEG Extended reported as "needs optional GPL decoder", not as a failure). Without a folder,
   small DICOM files are written in the bundled codecs' syntaxes to a temporary folder;
4. models: every bundled model runs on a real (chest, if any) image, Grad-CAM++ for classifiers;
5. process: a spawn-context worker process (as the viewer's decode and scan pools use) starts
   and decodes a file: in a frozen build this re-launches the executable itself;
6. screenshot: the image and its heatmap rendered offscreen to a PNG.

Exit status 0 when nothing failed, 1 otherwise; a JSON copy of the report goes next to the
screenshot (``--out``, default a new temporary folder; never the DICOM folder).
"""

from __future__ import annotations

from viewer.core.messages import exception_words

import argparse
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar
from collections.abc import Callable, Sequence

from viewer.selftest.report import Report

__all__ = ["selftest_main"]

T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="radview --self-test",
        description="Check that decoding, the bundled models, Grad-CAM++ and rendering work.",
    )
    p.add_argument("--self-test", dest="folder", nargs="?", const="", default="", metavar="DICOM_FOLDER",
                   help="folder of DICOM files to decode (its broken/ subfolder is counted apart)")
    p.add_argument("--out", type=Path, default=None, help="where to write the screenshot and report.json")
    p.add_argument("--models", type=Path, action="append", default=[], metavar="FOLDER",
                   help="also check the models in FOLDER (a user models folder)")
    p.add_argument("--no-gui", action="store_true", help="skip the offscreen screenshot")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    return p


def _flavour() -> str:
    for dist, name in (("onnxruntime-gpu", "GPU"), ("onnxruntime", "CPU")):
        try:
            return f"{name} (onnxruntime{'-gpu' if name == 'GPU' else ''} {metadata.version(dist)})"
        except metadata.PackageNotFoundError:
            continue
    return "unknown (no onnxruntime distribution metadata)"


def _environment(report: Report) -> None:
    from viewer import RESEARCH_NOTICE, __version__
    from viewer.runtime_paths import bundle_root, is_frozen

    report.add("env", "radview", "info", f"{__version__}, {'frozen bundle' if is_frozen() else 'from source'}"
               f" at {bundle_root()}")
    report.add("env", "flavour", "info", _flavour())
    report.add("env", "platform", "info", f"{platform.platform()}, Python {platform.python_version()}")
    report.add("env", "notice", "info", RESEARCH_NOTICE)


def _step(report: Report, section: str, run: Callable[[], T]) -> T | None:
    """Run one stage; an exception (e.g. a module missing from a bundle) is a failure line."""
    try:
        return run()
    except Exception as exc:
        report.add(section, "crashed", "fail", exception_words(exc)[:400])
        return None


def _runtime(report: Report) -> None:
    from viewer.selftest.model_checks import check_runtime

    check_runtime(report)


def _codecs(report: Report) -> None:
    from viewer.selftest.dicom_checks import check_codecs

    check_codecs(report)


def _dicom(report: Report, folder_arg: str, fixtures_parent: Path | None) -> list[Any]:
    from viewer.selftest.dicom_checks import check_files, make_fixtures

    if folder_arg:
        folder = Path(folder_arg)
        if not folder.is_dir():
            report.add("dicom", str(folder), "fail", "not a folder")
            return []
        return check_files(report, folder)
    folder = make_fixtures(fixtures_parent / "fixtures" if fixtures_parent else None)
    report.add("dicom", "no DICOM folder given", "info", f"checking files written to {folder}")
    return check_files(report, folder)


def _models(report: Report, images: list[Any], threads: int, extra: list[Path]) -> dict[str, Any]:
    from viewer.selftest.model_checks import check_models

    return check_models(report, images, threads=threads, extra_folders=extra)


def _process(report: Report, images: list[Any]) -> None:
    from viewer.selftest.pool_check import check_process_pool

    # the smallest decoded compressed file keeps the worker's job short
    candidates = sorted(images, key=lambda i: i.path.stat().st_size)
    check_process_pool(report, candidates[0].path if candidates else None)


def _screenshot(report: Report, shown: dict[str, Any], out_dir: Path) -> None:
    from viewer.selftest.screenshot import check_screenshot

    check_screenshot(report, shown, out_dir)


def selftest_main(argv: Sequence[str]) -> int:
    """Run the self-test; ``argv`` holds the command-line arguments (``--self-test`` included)."""
    args, _unknown = _parser().parse_known_args(list(argv))
    from viewer.services.support_log import setup_support_log

    setup_support_log("self-test")
    report = Report(sys.stdout)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="radview-selftest-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.write("radview self-test\n")

    def checkpoint(stage: str) -> None:
        # report.json is rewritten after every stage, with the stage about to run: if a native
        # library takes the process down, the report says how far it got and where it stopped.
        try:
            report.write_json(out_dir / "report.json")
            (out_dir / "report.json.stage").write_text(stage + "\n", encoding="utf-8")
        except OSError:
            pass

    checkpoint("env")
    _step(report, "env", lambda: _environment(report))
    _step(report, "env", lambda: _runtime(report))
    checkpoint("codec")
    _step(report, "codec", lambda: _codecs(report))
    checkpoint("dicom")
    images = _step(report, "dicom", lambda: _dicom(report, args.folder, out_dir if args.out else None)) or []
    checkpoint("model")
    shown = _step(report, "model", lambda: _models(report, images, args.threads, args.models)) or {}
    checkpoint("process")
    _step(report, "process", lambda: _process(report, images))
    checkpoint("screenshot")
    if args.no_gui:
        report.add("screenshot", "render", "skip", "--no-gui")
    else:
        _step(report, "screenshot", lambda: _screenshot(report, shown, out_dir))
    (out_dir / "report.json.stage").unlink(missing_ok=True)
    sys.stdout.write(report.summary())
    try:
        report.write_json(out_dir / "report.json")
        sys.stdout.write(f"report: {out_dir / 'report.json'}\n")
    except OSError as exc:
        sys.stdout.write(f"could not write report.json: {exception_words(exc)}\n")
    sys.stdout.flush()
    return 1 if report.failures else 0

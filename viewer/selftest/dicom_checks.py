"""Self-test, DICOM part: decoder plugins present, then every file decoded and displayed.

A frozen pydicom loses its decoders silently (plugins are found by import and by
``importlib.metadata``), so this checks two things: pydicom sees at least one plugin for each
compressed transfer syntax we promise, and each real file decodes to the size its header states,
with a non-constant display image.

Classification of a file that does not decode:

- 12-bit JPEG Extended (1.2.840.10008.1.2.4.51 with (0028,0100) Bits Allocated > 8) without
  pylibjpeg-libjpeg installed: ``expected``, "needs optional GPL decoder" (GPL-3.0, never bundled).
- anything under a ``broken/`` folder: ``expected`` if it raises a clean Python exception (a file
  there that decodes anyway is also fine); they are counted separately.
- anything else: ``fail``.
"""

from __future__ import annotations

from viewer.core.messages import exception_words

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
import pydicom
from pydicom import uid

from viewer.selftest.report import Report

__all__ = ["DecodedImage", "PROMISED_SYNTAXES", "check_codecs", "check_files", "make_fixtures"]

# Compressed transfer syntaxes the bundle must decode (JPEG Extended 12-bit needs the GPL
# decoder and is not promised; 8-bit JPEG Extended is covered by gdcm/pillow).
PROMISED_SYNTAXES = {
    uid.JPEGBaseline8Bit: "JPEG Baseline",
    uid.JPEGLosslessSV1: "JPEG Lossless SV1",
    uid.JPEGLossless: "JPEG Lossless P14",
    uid.JPEGLSLossless: "JPEG-LS Lossless",
    uid.JPEGLSNearLossless: "JPEG-LS Near-Lossless",
    uid.JPEG2000Lossless: "JPEG 2000 Lossless",
    uid.JPEG2000: "JPEG 2000",
    uid.RLELossless: "RLE Lossless",
}

# Decoder plugins we ship, by a syntax each must serve: a bundle that lost one (e.g. the
# entry-point metadata of pylibjpeg-openjpeg) still decodes through gdcm, so check each by name.
SHIPPED_PLUGINS = {
    "gdcm": uid.JPEGLosslessSV1,
    "pylibjpeg": uid.JPEG2000Lossless,  # via pylibjpeg-openjpeg
    "pyjpegls": uid.JPEGLSLossless,
    "pydicom": uid.RLELossless,
}

GPL_NOTE = "needs optional GPL decoder (pylibjpeg-libjpeg, not bundled)"


@dataclass(frozen=True)
class DecodedImage:
    """A decoded file kept for the model and screenshot checks."""

    name: str
    path: Path
    display: np.ndarray  # uint8 (rows, cols) or (rows, cols, 3)
    body_part: str
    radiograph: Any  # viewer.core.radiograph.Radiograph when the project loader ran, else None


def _gpl_decoder_installed() -> bool:
    try:
        import libjpeg  # noqa: F401  (pylibjpeg-libjpeg)
    except ImportError:
        return False
    return True


def check_codecs(report: Report) -> None:
    """One line per promised transfer syntax: which plugins pydicom can use for it."""
    from pydicom.pixels import get_decoder

    for ts, label in PROMISED_SYNTAXES.items():
        try:
            plugins = sorted(get_decoder(ts).available_plugins)
        except Exception as exc:
            report.add("codec", label, "fail", exception_words(exc))
            continue
        status = "ok" if plugins else "fail"
        report.add("codec", label, status, ", ".join(plugins) or "no decoder plugin available")
    for plugin, ts in SHIPPED_PLUGINS.items():
        try:
            available = plugin in get_decoder(ts).available_plugins
        except Exception:
            available = False
        report.add("codec", f"plugin {plugin}", "ok" if available else "fail",
                   f"serves {PROMISED_SYNTAXES[ts]}" if available else f"not available for {PROMISED_SYNTAXES[ts]}")
    gpl = "installed (user-added)" if _gpl_decoder_installed() else "not bundled (GPL-3.0, optional)"
    report.add("codec", "pylibjpeg-libjpeg", "info", gpl)


def _project_loader() -> tuple[Callable[[Path], Any] | None, Callable[[Any], np.ndarray] | None, str]:
    """The project's own file -> Radiograph -> display image path, when it is there."""
    load = None
    for module_name in ("viewer.dicom.load", "viewer.dicom", "viewer.services.library"):
        try:
            module = __import__(module_name, fromlist=["load_radiograph"])
        except ImportError:
            continue
        load = getattr(module, "load_radiograph", None)
        if load is not None:
            where = f"{module_name}.load_radiograph"
            break
    display_image: Callable[..., Any] | None
    try:
        from viewer.core.windowing import display_image
    except ImportError:
        display_image = None
    if load is None or display_image is None:
        return None, None, "pydicom (project loader not found)"
    return load, display_image, f"{where} + viewer.core.windowing.display_image"


def _plain_display(pixels: np.ndarray, photometric: str) -> np.ndarray:
    """Min-max display for the fallback path (no project loader)."""
    arr = pixels.astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] != 3:
        arr = arr[0]
    lo, hi = float(arr.min()), float(arr.max())
    out = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    if photometric == "MONOCHROME1":
        out = 255.0 - out
    return out.astype(np.uint8)


def _decode_one(path: Path, load: Any, display: Any) -> tuple[np.ndarray, Any]:
    if load is not None:
        rg = load(path)
        return np.asarray(display(rg)), rg
    ds = pydicom.dcmread(path)
    return _plain_display(ds.pixel_array, str(ds.get("PhotometricInterpretation", ""))), None


def _header(path: Path) -> dict[str, Any]:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:
        return {}
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""
    return {
        "ts": str(ts),
        "ts_name": uid.UID(ts).name if ts else "no transfer syntax",
        "rows": int(ds.get("Rows", 0) or 0),
        "cols": int(ds.get("Columns", 0) or 0),
        "bits": int(ds.get("BitsAllocated", 0) or 0),
        "body_part": str(ds.get("BodyPartExamined", "") or ""),
    }


def check_files(report: Report, folder: Path) -> list[DecodedImage]:
    """Decode every ``*.dcm`` in ``folder`` (and its ``broken/``), display it, report each.

    Returns the decoded images (not the broken ones) for the model and screenshot checks.
    """
    load, display, how = _project_loader()
    report.add("dicom", "loader", "info", how)
    decoded: list[DecodedImage] = []
    files = sorted(folder.glob("*.dcm"))
    broken = sorted((folder / "broken").glob("*.dcm")) if (folder / "broken").is_dir() else []
    if not files:
        report.add("dicom", str(folder), "fail", "no *.dcm files found")
    syntaxes: set[str] = set()
    for path in files:
        head = _header(path)
        label = f"{path.name} [{head.get('ts_name', '?')}]"
        t0 = time.perf_counter()
        try:
            image, rg = _decode_one(path, load, display)
        except Exception as exc:
            dt = time.perf_counter() - t0
            gpl = head.get("ts") == uid.JPEGExtended12Bit and head.get("bits", 0) > 8
            if gpl and not _gpl_decoder_installed():
                report.add("dicom", label, "expected", GPL_NOTE, dt)
            else:
                report.add("dicom", label, "fail", exception_words(exc)[:300], dt)
            continue
        dt = time.perf_counter() - t0
        problem = _check_image(image, head)
        if problem:
            report.add("dicom", label, "fail", problem, dt)
            continue
        syntaxes.add(head.get("ts", ""))
        report.add("dicom", label, "ok", f"{image.shape[1]}x{image.shape[0]} {image.dtype}", dt)
        decoded.append(DecodedImage(path.name, path, image, head.get("body_part", "").upper(), rg))
    if files:
        report.add("dicom", "transfer syntaxes decoded", "info", str(len(syntaxes - {""})))
    for path in broken:
        head = _header(path)
        t0 = time.perf_counter()
        try:
            image, _ = _decode_one(path, load, display)
            outcome = f"decoded anyway ({image.shape[1]}x{image.shape[0]})"
        except Exception as exc:
            outcome = f"failed cleanly: {exception_words(exc)}"[:200]
        report.add("broken", path.name, "expected", outcome, time.perf_counter() - t0)
    return decoded


def _check_image(image: np.ndarray, head: dict[str, Any]) -> str:
    """Empty if the display image is plausible, else what is wrong."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        return f"display image is {image.dtype} {image.shape}, expected uint8 2-D"
    rows, cols = head.get("rows", 0), head.get("cols", 0)
    if rows and cols and image.shape[:2] != (rows, cols):
        return f"decoded {image.shape[:2]} but (0028,0010)/(0028,0011) say {(rows, cols)}"
    if int(image.max()) == int(image.min()):
        return "display image is constant"
    return ""


def make_fixtures(folder: Path | None = None) -> Path:
    """Write small real DICOM files in the bundled codecs' syntaxes (no folder given).

    A 256x256 12-bit ramp with noise, encoded uncompressed, RLE, JPEG-LS Lossless and JPEG 2000
    Lossless with the bundled encoders (pydicom RLE, pyjpegls, pylibjpeg-openjpeg).
    """
    from pydicom.dataset import Dataset, FileMetaDataset

    out = folder or Path(tempfile.mkdtemp(prefix="radview-selftest-dicom-"))
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(256), np.arange(256)) * 8
    pixels = (ramp + rng.integers(0, 64, size=ramp.shape)).astype(np.uint16)
    syntaxes = {
        "uncompressed": uid.ExplicitVRLittleEndian,
        "rle": uid.RLELossless,
        "jpegls": uid.JPEGLSLossless,
        "j2k": uid.JPEG2000Lossless,
    }
    for name, ts in syntaxes.items():
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = uid.ComputedRadiographyImageStorage
        meta.MediaStorageSOPInstanceUID = uid.generate_uid()
        meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CR"
        ds.BodyPartExamined = "CHEST"
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.PixelData = pixels.tobytes()
        if ts != uid.ExplicitVRLittleEndian:
            ds.compress(ts)
        ds.save_as(out / f"selftest-{name}.dcm", enforce_file_format=True)
    return out

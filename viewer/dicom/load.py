"""Decode a DICOM file (or zip member) into a :class:`~viewer.core.radiograph.Radiograph`.

Reads only the requested frame (pydicom 3 ``pixel_array(index=...)``), converts YBR to RGB and
applies a (0028,1101-1203) PALETTE COLOR lookup, and collects the modality transform, every
window and VOI LUT the file offers, and the pixel spacing with the attribute it came from
(attribute parsing: :mod:`viewer.dicom.attributes`).
Every failure becomes a :class:`LoadError` whose message names the file's transfer syntax and,
where one exists, the decoder that would read it.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import pydicom
from pydicom import uid as _uid
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, pixel_array

from viewer.core.radiograph import ModalityLUT, Radiograph
from viewer.dicom.attributes import (
    modality_lut, patient_age_years, pixel_spacing, study_date, to_rgb_u8, vois,
)
from viewer.dicom.codecs import codec_status, describe_transfer_syntax
from viewer.dicom.reduced import decode_reduced, native_decimated
from viewer.dicom.scan import InstanceRecord, deflate_problem, plausible_raw_dataset
from viewer.core.files import open_regular
from viewer.core.messages import exception_words
from viewer.dicom.codestream import check_frame_header
from viewer.dicom.fastheader import redecode_undeclared

__all__ = ["HeaderNode", "LoadError", "MAX_FRAME_BYTES", "MAX_FRAME_PIXELS", "check_frame_size",
           "load_radiograph", "open_source", "read_dataset", "read_header",
           "radiograph_from_dataset"]

# Uncompressed zip members larger than this are refused (zip-bomb guard), bytes.
MAX_MEMBER_BYTES = 1024**3  # a member is read whole to decode it: within the 1.5 GiB ceiling
MAX_ZIP_RATIO = 200.0
# A frame whose header claims more than this is refused before any decoder allocates for it
# (a damaged or hostile (0028,0010) Rows / (0028,0011) Columns). The largest projection
# radiographs are ~4300 x 4300 (18 megapixels); full-field mammograms ~30 megapixels.
MAX_FRAME_PIXELS = 100_000_000
MAX_FRAME_BYTES = 512 * 1024**2


def check_frame_size(name: str, rows: int, cols: int, samples: int = 1, bits_allocated: int = 8,
                     transfer_syntax: str = "") -> None:
    """Raise :class:`LoadError` when a frame's claimed size is empty or over the caps.

    Called with the header's (0028,0010) Rows, (0028,0011) Columns, (0028,0002) Samples per
    Pixel and (0028,0100) Bits Allocated before anything is decoded, so a header claiming
    gigapixels costs nothing.
    """
    if rows <= 0 or cols <= 0:
        raise LoadError(f"{name}: (0028,0010) Rows x (0028,0011) Columns is {rows} x {cols}; "
                        "no pixels to show", transfer_syntax=transfer_syntax)
    pixels = rows * cols
    nbytes = pixels * max(samples, 1) * max((bits_allocated + 7) // 8, 1)
    if pixels > MAX_FRAME_PIXELS or nbytes > MAX_FRAME_BYTES:
        raise LoadError(
            f"{name}: header claims {rows} x {cols} pixels ({pixels / 1e6:.0f} megapixels, "
            f"{nbytes / 1024**2:.0f} MiB per frame), over the {MAX_FRAME_PIXELS // 1_000_000}-"
            f"megapixel / {MAX_FRAME_BYTES // 1024**2} MiB limit; not decoded",
            advice="the header is probably damaged", transfer_syntax=transfer_syntax)


class LoadError(Exception):
    """A file that cannot be shown; ``message`` is for the user, ``advice`` says what would help."""

    def __init__(self, message: str, advice: str = "", transfer_syntax: str = "") -> None:
        super().__init__(message if not advice else f"{message}: {advice}")
        self.message = message
        self.advice = advice
        self.transfer_syntax = transfer_syntax

    def __reduce__(self) -> tuple[type[LoadError], tuple[str, str, str]]:
        # Keep the fields when the error crosses a process boundary (DecodePool).
        return (type(self), (self.message, self.advice, self.transfer_syntax))


def _decoder_failure(exc: BaseException) -> bool:
    """True for an exception a decoder raised on bad data.

    Rust-based plugins (pylibjpeg-rle) surface panics as ``pyo3_runtime.PanicException``, a
    ``BaseException``: a flipped byte in an RLE segment header must not end the process.
    """
    return not isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))


def read_member(zip_path: str, member: str) -> bytes:
    """Read one zip member in place (never extracted), refusing bombs and traversal names."""
    if member.startswith(("/", "\\")) or ".." in member.replace("\\", "/").split("/"):
        raise LoadError(f"refusing unsafe zip member name {member!r}")
    with open_regular(zip_path) as raw, zipfile.ZipFile(raw) as zf:
        info = zf.getinfo(member)
        if info.file_size > MAX_MEMBER_BYTES:
            raise LoadError(f"zip member {member!r} is too large ({info.file_size} bytes)")
        if info.compress_size and info.file_size / info.compress_size > MAX_ZIP_RATIO:
            raise LoadError(f"zip member {member!r} has a suspicious compression ratio")
        with zf.open(info) as fp:
            data = fp.read(MAX_MEMBER_BYTES + 1)
    if len(data) > MAX_MEMBER_BYTES:
        raise LoadError(f"zip member {member!r} is too large")
    return data


def open_source(path: str, member: str | None = None) -> IO[bytes]:
    """A readable binary stream for a file or a zip member (in memory)."""
    if member is None:
        return open_regular(path)
    return io.BytesIO(read_member(path, member))


def read_dataset(path: str, member: str | None = None, *, stop_before_pixels: bool = False,
                 defer_size: int | None = None) -> Dataset:
    """``dcmread`` a file or zip member; non-DICOM or damaged input raises :class:`LoadError`.

    ``defer_size`` (plain files only) leaves larger values, such as the pixel data, unread until
    used.
    """
    name = os.path.basename(member or path)
    try:
        with open_source(path, member) as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head = fp.read(132)
            if head[128:132] != b"DICM" and not plausible_raw_dataset(head):
                raise LoadError(f"{name} is not a DICOM file (no preamble and no DICOM elements)")
            deflated = deflate_problem(fp)
            if deflated:
                raise LoadError(f"{name}: damaged or hostile DICOM, not read: {deflated}")
            fp.seek(0)
            return pydicom.dcmread(fp, stop_before_pixels=stop_before_pixels,
                                   force=head[128:132] != b"DICM",
                                   defer_size=defer_size if member is None else None)
    except LoadError:
        raise
    except InvalidDicomError as exc:
        raise LoadError(f"{name} is not a DICOM file ({exception_words(exc)})") from exc
    except OSError as exc:
        raise LoadError(f"cannot read {name}: {exception_words(exc)}") from exc
    except Exception as exc:
        raise LoadError(f"{name} has a damaged DICOM header ({exception_words(exc)})") from exc


# Fastest permissive plugin per transfer syntax (measured on 2000x1600 12-bit: RLE pylibjpeg-rle
# 17 ms vs pydicom 62 ms; JPEG-LS pyjpegls 196 ms vs gdcm 253 ms; JPEG 2000 pylibjpeg 683 ms vs
# gdcm 764 ms). pydicom would otherwise try gdcm first. Any failure retries pydicom's own order.
_PREFERRED_PLUGIN = {
    _uid.RLELossless: "pylibjpeg",
    _uid.JPEGLSLossless: "pyjpegls",
    _uid.JPEGLSNearLossless: "pyjpegls",
    _uid.JPEG2000Lossless: "pylibjpeg",
    _uid.JPEG2000: "pylibjpeg",
}


def _decode_full(ds: Dataset, frame: int, n_frames: int, photometric: str) -> np.ndarray:
    """One frame at full resolution; YBR -> RGB (pydicom), PALETTE COLOR -> RGB."""
    ts = ds.file_meta.TransferSyntaxUID
    preferred = _PREFERRED_PLUGIN.get(ts)
    index = frame if n_frames > 1 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = None
        if preferred and preferred in codec_status(str(ts)).available:
            try:
                arr = pixel_array(ds, index=index, raw=False, decoding_plugin=preferred)
            except BaseException as exc:
                if not _decoder_failure(exc):
                    raise
                arr = None
        if arr is None:
            arr = pixel_array(ds, index=index, raw=False)
        if n_frames > 1 and arr.ndim >= 3 and arr.shape[0] == n_frames and (
                arr.ndim == 4 or int(ds.get("SamplesPerPixel", 1)) == 1):
            arr = arr[frame]
        if photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
    return arr


def _declared_shape(arr: np.ndarray, rows: int, cols: int, samples: int, name: str,
                    ts: str) -> np.ndarray:
    """Check a decoded frame against (0028,0010) Rows, (0028,0011) Columns and (0028,0002)
    Samples per Pixel. Pixel data longer than declared can decode as extra "frames"; only the
    declared frame is kept (the excess is ignored, as for padding)."""
    if samples == 1 and arr.ndim == 3 and arr.shape[1:] == (rows, cols):
        return np.ascontiguousarray(arr[0])
    if arr.shape[:2] != (rows, cols) or arr.ndim > 3:
        raise LoadError(f"{name}: decoded pixels are {'x'.join(map(str, arr.shape))}, the header "
                        f"declares {rows} x {cols} x {samples}", transfer_syntax=ts,
                        advice="the header or the pixel data is damaged")
    return arr


def _check_codestream(ds: Dataset, frame: int, n_frames: int, rows: int, cols: int, samples: int,
                      bits_alloc: int, name: str, ts: str) -> None:
    """Refuse a compressed frame whose own header contradicts the data set, before a native
    decoder trusts it (viewer.dicom.codestream: a hostile size claim aborted the process)."""
    if not _uid.UID(ts).is_compressed or ts == _uid.RLELossless:
        return
    try:
        data = get_frame(ds.PixelData, frame, number_of_frames=max(n_frames, 1))
    except Exception:
        return  # the decoder will say what is wrong with the encapsulation
    why = check_frame_header(data, rows, cols, samples, bits_alloc)
    if why:
        raise LoadError(f"{name}: not decoded: {why}", transfer_syntax=ts,
                        advice="the file is damaged, or was made to crash image decoders")


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_finite(name: str, pixels: np.ndarray, mlut: ModalityLUT, ts: str) -> None:
    """Refuse grey values that cannot be displayed: NaN or infinity in float pixel data, or a
    (0028,1053) Rescale Slope / (0028,1052) Rescale Intercept that takes stored values beyond
    float32 (the display pipeline's type). Windowing, histograms and OpenCV would otherwise get
    NaN, whose handling differs between libraries and versions."""
    if pixels.dtype.kind == "f" and not bool(np.isfinite(pixels).all()):
        raise LoadError(f"{name}: the pixel data holds values that are not numbers (NaN or "
                        "infinity); the image cannot be displayed", transfer_syntax=ts,
                        advice="the file is damaged or was written by faulty software")
    if mlut.lut is not None:
        return
    if pixels.dtype.kind == "f":
        top = float(np.abs(pixels).max()) if pixels.size else 0.0
    else:
        info = np.iinfo(pixels.dtype)
        top = float(max(abs(int(info.min)), int(info.max)))
    reach = abs(mlut.slope) * top + abs(mlut.intercept)
    if not np.isfinite(reach) or reach > _FLOAT32_MAX:
        raise LoadError(f"{name}: (0028,1053) Rescale Slope and (0028,1052) Rescale Intercept map "
                        "the stored values beyond the range of real numbers the display uses; "
                        "the image cannot be displayed", transfer_syntax=ts,
                        advice="the rescale attributes of the file are damaged")


def _lenient(fn: Any, default: Any) -> Any:
    """``fn()``, or ``default`` when an optional attribute is damaged (unknown VR, bad length)."""
    try:
        return fn()
    except Exception:
        return default


_DIRECTIONS = frozenset("LRAPHF")


def _patient_orientation(ds: Dataset) -> tuple[str, str] | None:
    """(0020,0020) Patient Orientation as two direction strings made of L/R/A/P/H/F."""
    value = ds.get("PatientOrientation")
    if value is None or len(value) != 2:
        return None
    row, col = (str(v).strip().upper() for v in value)
    if row and col and set(row) <= _DIRECTIONS and set(col) <= _DIRECTIONS:
        return (row, col)
    return None


def _iso(day: Any) -> str:
    return "" if day is None else day.isoformat()


def radiograph_from_dataset(ds: Dataset, frame: int = 0, source: str = "",
                            reduce_to: int | None = None, file_path: str | None = None) -> Radiograph:
    """Decode frame ``frame`` of a dataset that already holds its pixel data.

    pydicom converts raw elements when they are first read, so a damaged attribute (unknown
    VR, wrong length) surfaces here: optional ones (windows, LUTs, spacing) are skipped, any
    other becomes a :class:`LoadError` naming it. See :func:`_radiograph_from_dataset`.
    """
    try:
        return _radiograph_from_dataset(ds, frame, source, reduce_to, file_path)
    except LoadError:
        raise
    except Exception as exc:
        name = os.path.basename(source) or "file"
        raise LoadError(f"{name}: damaged header attribute ({exception_words(exc)})",
                        advice="the file's header is damaged") from exc


def _radiograph_from_dataset(ds: Dataset, frame: int = 0, source: str = "",
                             reduce_to: int | None = None, file_path: str | None = None) -> Radiograph:
    """Decode frame ``frame`` of a dataset that already holds its pixel data.

    With ``reduce_to``, JPEG 2000 and JPEG Baseline frames may be decoded at a reduced
    resolution whose long side stays >= ``2 * reduce_to`` (:mod:`viewer.dicom.reduced`); the
    spacing is scaled to match. With ``file_path`` (a plain file read with ``defer_size``),
    uncompressed frames are decimated straight from a memory map. Other encodings decode at
    full size.
    """
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    name = os.path.basename(source) or "file"
    try:
        bits_alloc = int(ds.get("BitsAllocated", 16) or 16)
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except Exception as exc:
        raise LoadError(f"{name}: unreadable image pixel attributes ((0028,0010) Rows, (0028,0011) "
                        f"Columns, (0028,0100) Bits Allocated, (0028,0008) Number of Frames: "
                        f"{exception_words(exc)})", transfer_syntax=ts) from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise LoadError(f"{name} has no pixel data", transfer_syntax=ts)
    if not 0 <= frame < max(n_frames, 1):
        raise LoadError(f"{name} has {n_frames} frame(s); frame {frame + 1} does not exist",
                        transfer_syntax=ts)
    if not ts:
        # No (0002,0010): the data set was parsed anyway, so its own encoding is known.
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if little is None:
            raise LoadError(f"{name}: no (0002,0010) Transfer Syntax UID and unknown encoding",
                            advice="re-export the file with complete file meta information")
        ts = (_uid.ImplicitVRLittleEndian if implicit else
              _uid.ExplicitVRLittleEndian if little else _uid.ExplicitVRBigEndian)
        ds.file_meta = ds.get("file_meta") or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
    status = codec_status(ts, bits_alloc)
    if not status.decodable:
        raise LoadError(f"{name}: cannot decode {describe_transfer_syntax(ts)}",
                        advice=status.advice, transfer_syntax=ts)
    check_frame_size(name, rows, cols, samples, bits_alloc, ts)
    _check_codestream(ds, frame, n_frames, rows, cols, samples, bits_alloc, name, ts)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    reduced = None
    if reduce_to and file_path:
        reduced = native_decimated(file_path, ds, frame, reduce_to)
    if reduce_to and reduced is None:
        reduced = decode_reduced(ds, frame, reduce_to)
    factor = 1
    try:
        if reduced is not None:
            arr, factor = reduced
            if arr.ndim == 3:
                photometric = "RGB"
        else:
            arr = _decode_full(ds, frame, n_frames, photometric)
            arr = _declared_shape(arr, rows, cols, samples, name, ts)
    except LoadError:
        raise
    except BaseException as exc:
        if not _decoder_failure(exc):
            raise
        raise LoadError(f"{name}: decoding {describe_transfer_syntax(ts)} failed "
                        f"({exception_words(exc)})",
                        advice=status.advice or "the pixel data may be damaged or truncated",
                        transfer_syntax=ts) from exc
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    bits_stored = int(ds.get("BitsStored", bits_alloc) or bits_alloc)
    spacing, kind = _lenient(lambda: pixel_spacing(ds), (None, None))
    if spacing is not None and factor != 1:
        spacing = (spacing[0] * factor, spacing[1] * factor)
    if arr.ndim == 3:
        out_photometric = "RGB"
        # Palette lookups give 8- or 16-bit entries whatever (0028,0101) Bits Stored says.
        colour_bits = 8 if arr.dtype == np.uint8 else (16 if photometric == "PALETTE COLOR" else bits_stored)
        pixels = to_rgb_u8(arr, colour_bits)
        mlut, voi_list = ModalityLUT(), ()
    elif arr.ndim == 2:
        out_photometric = "MONOCHROME1" if photometric == "MONOCHROME1" else "MONOCHROME2"
        pixels = np.ascontiguousarray(arr)
        mlut = _lenient(lambda: modality_lut(ds, signed), ModalityLUT())
        voi_list = _lenient(lambda: vois(ds, signed), ())
        _check_finite(name, pixels, mlut, ts)
    else:
        raise LoadError(f"{name}: unexpected pixel array shape {arr.shape}", transfer_syntax=ts)
    return Radiograph(
        pixels=pixels, photometric=out_photometric, bits_stored=bits_stored, signed=signed,
        modality_lut=mlut, vois=voi_list, spacing_mm=spacing, spacing_kind=kind,
        frame_index=frame, frame_count=n_frames, source=source,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        modality=str(ds.get("Modality", "") or ""), body_part=str(ds.get("BodyPartExamined", "") or ""),
        view_position=str(ds.get("ViewPosition", "") or ""),
        patient_age_years=_lenient(lambda: patient_age_years(ds), None),
        patient_orientation=_lenient(lambda: _patient_orientation(ds), None),
        study_date=_lenient(lambda: _iso(study_date(ds)), ""),
    )


def load_radiograph(path_or_record: str | os.PathLike[str] | InstanceRecord, frame: int = 0, *,
                    reduce_to: int | None = None) -> Radiograph:
    """Decode one frame of a DICOM file or zip member into a :class:`Radiograph`.

    ``reduce_to`` (thumbnails): allow a reduced-resolution decode whose long side stays
    >= ``2 * reduce_to`` where the encoding supports it (see :func:`radiograph_from_dataset`).

    Raises
    ------
    LoadError
        With a user-facing message naming the transfer syntax and the decoder that would read
        it, e.g. "needs pylibjpeg-libjpeg (GPL-3.0, ...)" for 12-bit JPEG Extended.
    """
    if isinstance(path_or_record, InstanceRecord):
        path, member = path_or_record.path, path_or_record.member
        source = path_or_record.source
    else:
        path, member = os.fspath(path_or_record), None
        source = path
    plain = reduce_to is not None and member is None
    ds = read_dataset(path, member, defer_size=64 * 1024 if plain else None)
    return radiograph_from_dataset(ds, frame, source, reduce_to, path if plain else None)


# --------------------------------------------------------------------------------------------
# Header tree for the tag browser
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderNode:
    """One element of the tag tree: ``tag`` like "(0028,0010)", its keyword, VR, value text."""

    tag: str
    keyword: str
    vr: str
    value: str
    children: tuple[HeaderNode, ...] = field(default=())


_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})


def _value_text(elem: Any, limit: int = 200, undeclared: bool = False) -> str:
    if elem.VR == "SQ":
        return f"{len(elem.value)} item(s)"
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if elem.tag == 0x7FE00010:
        return "<pixel data>"
    text = str(value)
    if undeclared and elem.VR in _TEXT_VRS:
        text = redecode_undeclared(text)
    if elem.VR == "UI" and hasattr(value, "name") and value.name and value.name != str(value):
        text = f"{value} ({value.name})"
    return text if len(text) <= limit else text[: limit - 1] + "…"


HEADER_MAX_DEPTH = 32  # sequence levels shown in the header tree


def _nodes(ds: Dataset, depth: int = 0, undeclared: bool | None = None) -> tuple[HeaderNode, ...]:
    if undeclared is None:  # the top level decides for the whole tree
        undeclared = "SpecificCharacterSet" not in ds
    if depth > HEADER_MAX_DEPTH:
        return (HeaderNode("", "", "", f"<sequences nested deeper than {HEADER_MAX_DEPTH} levels: "
                                       "not shown>", ()),)
    out: list[HeaderNode] = []
    for key in list(ds.keys()):
        try:
            elem = ds[key]  # converts a raw element: may fail on a value that contradicts its VR
        except Exception:  # the library's message quotes the value: our words only
            raw = ds.get_item(key)
            out.append(HeaderNode(f"({key.group:04X},{key.element:04X})",
                                  keyword_for_tag(key) or "(unknown)", str(getattr(raw, "VR", "") or ""),
                                  "<unreadable value: it does not match its VR>", ()))
            continue
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        children: tuple[HeaderNode, ...] = ()
        if elem.VR == "SQ":
            children = tuple(HeaderNode(f"Item {i + 1}", "", "", "", _nodes(item, depth + 1, undeclared))
                             for i, item in enumerate(elem.value))
        try:
            text = _value_text(elem, undeclared=undeclared)
        except Exception:  # the library's message may quote the value: our words only
            text = "<unreadable value>"
        keyword = elem.keyword or ("(private)" if elem.tag.is_private else "(unknown)")
        out.append(HeaderNode(tag, keyword, str(elem.VR), text, children))
    return tuple(out)


def read_header(path_or_record: str | os.PathLike[str] | InstanceRecord) -> list[HeaderNode]:
    """The file meta and data set as a tree of :class:`HeaderNode` (pixel data not read)."""
    if isinstance(path_or_record, InstanceRecord):
        path, member = path_or_record.path, path_or_record.member
    else:
        path, member = os.fspath(path_or_record), None
    try:
        ds = read_dataset(path, member, stop_before_pixels=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta = list(_nodes(ds.file_meta)) if getattr(ds, "file_meta", None) is not None else []
            return meta + list(_nodes(ds))
    except RecursionError:
        raise LoadError(f"{os.path.basename(member or path)}: the header's sequences are nested "
                        "too deeply to read", advice="the file is damaged or hostile") from None

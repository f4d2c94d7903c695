"""Header-only scanning: one file (or zip member) -> :class:`InstanceRecord` or :class:`LoadProblem`.

Reads only the attributes the study browser needs, with ``stop_before_pixels`` and
``specific_tags`` so pixel data is never read. Runs in worker processes, so this module imports
nothing heavy at import time (pydicom is imported only when the fast header reader declines a
file), so spawned workers start quickly, and keeps its results picklable (frozen dataclasses of
str/int).
PNG and JPEG files are recognised by their magic bytes and sized from their headers.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from typing import IO, Any, Literal

from functools import lru_cache

from viewer.dicom.fastheader import parse_header, redecode_undeclared
from viewer.core.files import open_regular
from viewer.core.messages import exception_words

__all__ = [
    "header_tags",
    "InstanceRecord",
    "LoadProblem",
    "image_kind",
    "image_size",
    "scan_bytes",
    "scan_file",
    "scan_files",
    "source_text",
    "split_source",
    "undecodable_problem",
]

RecordKind = Literal["dicom", "image"]

# Bytes read for the fast header parser; longer headers fall back to pydicom.
_FAST_BYTES = 16 * 1024

# keyword -> field name (str fields); ints handled separately.
_STR_FIELDS = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex",
    "StudyInstanceUID": "study_uid",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "StudyDescription": "study_description",
    "AccessionNumber": "accession_number",
    "SeriesInstanceUID": "series_uid",
    "SeriesDescription": "series_description",
    "Modality": "modality",
    "BodyPartExamined": "body_part",
    "ViewPosition": "view_position",
    "SOPInstanceUID": "sop_instance_uid",
    "SOPClassUID": "sop_class_uid",
    "PhotometricInterpretation": "photometric",
}
_INT_FIELDS = {
    "SeriesNumber": "series_number",
    "InstanceNumber": "instance_number",
    "Rows": "rows",
    "Columns": "cols",
    "NumberOfFrames": "frames",
    "BitsStored": "bits_stored",
}
_HEADER_KEYWORDS = (*_STR_FIELDS, *_INT_FIELDS, "BitsAllocated", "SpecificCharacterSet",
                    "DirectoryRecordSequence")


@lru_cache(maxsize=1)
def header_tags() -> list[Any]:
    """The pydicom ``specific_tags`` list for the fallback reader."""
    from pydicom.tag import Tag

    return [Tag(k) for k in _HEADER_KEYWORDS]

def source_text(path: str, member: str | None = None) -> str:
    """The one text form of an image's source: ``path`` for a file, ``path!member`` for a zip
    member. It names the file in results (the CSV/JSON ``file`` column, the history) and in
    messages; code that has the record uses ``record.path`` / ``record.member``, never this
    text parsed back."""
    return f"{path}!{member}" if member else path


def split_source(source: str) -> tuple[str, str | None]:
    """``(path, member)`` of a :func:`source_text` (the one parser, for texts stored without
    their record: history rows, result files).

    A ``!`` may be part of a folder's or a file's name as well as the zip separator, so the
    text is split at the first ``!`` whose left part is an existing regular file (a container
    cannot have a folder below it); a source that exists as it is, or that has no such split,
    is a plain path."""
    if "!" not in source or os.path.exists(source):
        return source, None
    at = source.find("!")
    while at >= 0:
        head = source[:at]
        if head and os.path.isfile(head):
            return head, source[at + 1:] or None
        at = source.find("!", at + 1)
    return source, None


_NON_IMAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT Plan",
    "1.2.840.10008.5.1.4.1.1.66": "Raw Data",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
    "1.2.840.10008.1.3.10": "Media Storage Directory (DICOMDIR)",
    "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State",
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG Waveform",
}


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """What the study browser knows about one image before decoding it.

    Strings are "" and integers 0 when the attribute is absent. ``member`` is the name inside a
    zip archive at ``path`` (``None`` for plain files). ``kind`` is "dicom" or "image" (PNG/JPEG).
    """

    path: str
    member: str | None = None
    kind: RecordKind = "dicom"
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    series_uid: str = ""
    series_number: int = 0
    series_description: str = ""
    modality: str = ""
    body_part: str = ""
    view_position: str = ""
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    instance_number: int = 0
    rows: int = 0
    cols: int = 0
    frames: int = 1
    bits_stored: int = 0
    photometric: str = ""
    transfer_syntax_uid: str = ""
    size: int = 0
    mtime: float = 0.0

    @property
    def is_image(self) -> bool:
        """Has pixels to show ((0028,0010) Rows and (0028,0011) Columns, or a PNG/JPEG)."""
        return self.rows > 0 and self.cols > 0

    @property
    def key(self) -> tuple[str, str | None]:
        """Identity of the file: ``(path, member)``."""
        return (self.path, self.member)

    @property
    def source(self) -> str:
        """The file as results and the history name it (:func:`source_text`)."""
        return source_text(self.path, self.member)

    @property
    def display_name(self) -> str:
        """File (or member) name for lists and messages."""
        return os.path.basename(self.member or self.path)


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """A file that cannot be shown, with a precise, user-facing reason.

    ``transfer_syntax`` is the (0002,0010) UID when known; ``advice`` says which decoder would
    decode it or what else to do.
    """

    path: str
    reason: str
    transfer_syntax: str = ""
    advice: str = ""
    member: str | None = None

    @property
    def display_name(self) -> str:
        return os.path.basename(self.member or self.path)

    @property
    def source(self) -> str:
        """The file as messages and the Load Report name it (:func:`source_text`)."""
        return source_text(self.path, self.member)


def image_kind(head: bytes) -> str | None:
    """"png" / "jpeg" from magic bytes, else ``None``."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return None


def _png_size(data: bytes) -> tuple[int, int, int]:
    """(rows, cols, bit depth) from the PNG IHDR chunk."""
    if len(data) < 26 or data[12:16] != b"IHDR":
        raise ValueError("PNG without IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return int(height), int(width), int(data[24])


def _jpeg_size(fp: IO[bytes]) -> tuple[int, int, int]:
    """(rows, cols, precision) from the first JPEG SOFn marker."""
    fp.seek(2)
    while True:
        byte = fp.read(1)
        while byte and byte != b"\xff":
            byte = fp.read(1)
        while byte == b"\xff":
            byte = fp.read(1)
        if not byte:
            raise ValueError("JPEG without a frame header")
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        seg = fp.read(2)
        if len(seg) < 2:
            raise ValueError("truncated JPEG")
        length = struct.unpack(">H", seg)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            body = fp.read(5)
            if len(body) < 5:
                raise ValueError("truncated JPEG frame header")
            precision, height, width = struct.unpack(">BHH", body)
            return int(height), int(width), int(precision)
        fp.seek(length - 2, io.SEEK_CUR)


_PNG_SAMPLES = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # IHDR colour type -> samples once decoded


def image_samples(data: bytes) -> int:
    """Samples per pixel of PNG/JPEG bytes once decoded (3 when the header does not say)."""
    kind = image_kind(data[:8])
    if kind == "png" and len(data) >= 26:
        return _PNG_SAMPLES.get(data[25], 3)
    if kind == "jpeg":
        from viewer.dicom.codestream import frame_header

        fh = frame_header(data)
        if fh is not None and fh.components in (1, 3, 4):
            return fh.components
    return 3


def image_size(data: bytes) -> tuple[int, int, int]:
    """(rows, cols, bit depth or precision) of PNG/JPEG bytes, from the header alone.

    Raises ``ValueError`` for an unknown signature or a damaged header.
    """
    kind = image_kind(data[:8])
    if kind == "png":
        return _png_size(data[:32])
    if kind == "jpeg":
        try:
            return _jpeg_size(io.BytesIO(data))
        except struct.error as exc:
            raise ValueError("damaged JPEG header") from exc
    raise ValueError("not a PNG or JPEG signature")


def _image_record(fp: IO[bytes], kind: str, path: str, member: str | None,
                  size: int, mtime: float) -> InstanceRecord | LoadProblem:
    try:
        if kind == "png":
            fp.seek(0)
            rows, cols, depth = _png_size(fp.read(32))
        else:
            rows, cols, depth = _jpeg_size(fp)
    except (ValueError, struct.error, OSError) as exc:
        return LoadProblem(path, f"unreadable {kind.upper()} header: {exception_words(exc)}",
                           member=member)
    if rows <= 0 or cols <= 0:
        return LoadProblem(path, f"{kind.upper()} header declares {cols} x {rows} pixels; no image",
                           member=member)
    folder = os.path.dirname(member) if member else os.path.dirname(path)
    # The folder inside the zip (possibly its root, "") is the study and series identity.
    container = f"{path}!{folder}" if member else folder
    return InstanceRecord(
        path=path, member=member, kind="image",
        study_uid=f"dir:{container}", study_description=os.path.basename(folder) or folder,
        series_uid=f"dir:{container}", series_description=kind.upper(),
        sop_instance_uid=f"file:{source_text(path, member)}",
        rows=rows, cols=cols, frames=1, bits_stored=depth, photometric="",
        size=size, mtime=mtime,
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def plausible_raw_dataset(head: bytes) -> bool:
    """Whether bytes without the Part 10 preamble may still be a DICOM data set, judged from
    its first element: a group between (0002) and (7FE0), an even one (or FFFE items), and a
    tag that is not (0000,0000). pydicom's ``force=True`` otherwise reads anything, a zero-filled
    file as millions of empty elements (18 s for 64 MB: pre-allocated downloads look like
    that)."""
    if len(head) < 8 or not any(head[:132]):
        return False
    group, elem = struct.unpack_from("<HH", head, 0)
    if group == 0xFFFE or (group, elem) == (0, 0):
        return False
    return bool(0x0002 <= group <= 0x7FE0 and group % 2 == 0)


DEFLATED = "1.2.840.10008.1.2.1.99"
# A Deflated Explicit VR data set is inflated whole by pydicom: past this it is refused (a
# radiograph's data set is tens of MB; 1.5 GB inflated took 3.2 GB of memory).
MAX_INFLATED_BYTES = 512 * 1024**2


def _meta_end(head: bytes) -> int | None:
    """End of the file meta group from (0002,0000) File Meta Information Group Length."""
    if head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00" or len(head) < 144:
        return None
    return 144 + int(struct.unpack_from("<I", head, 140)[0])


def deflate_problem(fp: IO[bytes]) -> str | None:
    """For a Deflated Explicit VR Little Endian file: why it must not be read, or ``None``.

    Inflates as a stream, keeping nothing but the first bytes, so neither a deflate bomb nor
    gigabytes of deflated zeros cost memory or more than about a second: the data set must
    start like one (:func:`plausible_raw_dataset`) and inflate to at most
    :data:`MAX_INFLATED_BYTES`. Leaves ``fp`` at its start."""
    import zlib

    fp.seek(0)
    head = fp.read(4096)
    end = _meta_end(head)
    if end is None or DEFLATED.encode() not in head[132:end]:
        fp.seek(0)
        return None
    fp.seek(end)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, first = 0, b""
    try:
        while True:
            chunk = fp.read(1 << 20)
            if not chunk:
                break
            out = inflater.decompress(chunk, 1 << 24)
            while True:
                total += len(out)
                if len(first) < 256:
                    first += out[:256 - len(first)]
                if total > MAX_INFLATED_BYTES:
                    return (f"its Deflated data set inflates to over {MAX_INFLATED_BYTES // 1024**2} MiB "
                            "(a deflate bomb?)")
                if not inflater.unconsumed_tail:
                    break
                out = inflater.decompress(inflater.unconsumed_tail, 1 << 24)
            if len(first) >= 8 and not plausible_raw_dataset(first.ljust(132, b"\x01")):
                return "its Deflated data set does not start with DICOM elements"
    except zlib.error:
        return "its Deflated data set is not valid deflate data"
    finally:
        fp.seek(0)
    return None


def scan_bytes(fp: IO[bytes], path: str, member: str | None = None, *, size: int = 0,
               mtime: float = 0.0, fast: bool = True) -> InstanceRecord | LoadProblem:
    """Scan an open binary stream (a file, or a zip member read into memory).

    ``fast`` tries :func:`viewer.dicom.fastheader.parse_header` first (about 10x cheaper than
    pydicom) and falls back to pydicom for anything it declines.
    """
    with warnings.catch_warnings():
        # Over-long values and similar vendor sloppiness are common; the header still reads.
        warnings.simplefilter("ignore")
        return _scan_stream(fp, path, member, size, mtime, fast)


def _scan_stream(fp: IO[bytes], path: str, member: str | None, size: int, mtime: float,
                 fast: bool) -> InstanceRecord | LoadProblem:
    head = fp.read(_FAST_BYTES) if fast else fp.read(132)
    kind = image_kind(head)
    if kind is not None:
        return _image_record(fp, kind, path, member, size, mtime)
    has_preamble = head[128:132] == b"DICM"
    parsed = parse_header(head) if fast else None
    if parsed is not None:
        ts = str(parsed.get("TransferSyntaxUID", ""))
        values: dict[str, Any] = {field_name: str(parsed.get(k, "")) for k, field_name in _STR_FIELDS.items()}
        values.update({field_name: int(parsed.get(k, 0)) for k, field_name in _INT_FIELDS.items()})
        return _finish(values, path, member, ts, size, mtime, "DirectoryRecordSequence" in parsed, head)
    deflated = deflate_problem(fp) if has_preamble and DEFLATED.encode() in head[:4096] else None
    if deflated:
        return LoadProblem(path, f"damaged or hostile DICOM, not read: {deflated}", member=member)
    if not has_preamble and not plausible_raw_dataset(head):
        what = "empty or zero-filled" if not any(head[:132]) else "no preamble and no DICOM elements"
        return LoadProblem(path, f"not a DICOM file ({what})", member=member)
    import pydicom
    from pydicom.errors import InvalidDicomError

    fp.seek(0)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=header_tags(),
                             force=not has_preamble)
    except InvalidDicomError as exc:
        return LoadProblem(path, f"not a DICOM file ({exception_words(exc)})", member=member)
    except Exception as exc:  # pydicom raises many kinds on damaged files
        return LoadProblem(path, f"damaged DICOM header: {exception_words(exc)}", member=member)
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    values = {}
    try:
        undeclared = "SpecificCharacterSet" not in ds
        for keyword, field_name in _STR_FIELDS.items():
            text = _text(ds.get(keyword))
            values[field_name] = redecode_undeclared(text) if undeclared else text
        for keyword, field_name in _INT_FIELDS.items():
            values[field_name] = _int(ds.get(keyword))
    except Exception as exc:
        return LoadProblem(path, f"damaged DICOM header: {exception_words(exc)}",
                           transfer_syntax=ts, member=member)
    if not has_preamble and not values["sop_class_uid"] and not values["rows"] and len(ds) == 0:
        return LoadProblem(path, "not a DICOM file (no preamble and no DICOM elements)", member=member)
    return _finish(values, path, member, ts, size, mtime, "DirectoryRecordSequence" in ds, head)


def _uid_name(value: str) -> str:
    if not value:
        return ""
    from pydicom.uid import UID

    return str(UID(value).name)


_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO",
                   b"LT", b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ",
                   b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT",
                   b"UV"})
_IMPLICIT_LE = "1.2.840.10008.1.2"


def encoding_mismatch(head: bytes, ts: str) -> str | None:
    """Whether the data set's first element contradicts the (0002,0010) Transfer Syntax UID:
    an explicit-VR syntax whose first element has no VR, or Implicit VR whose first element
    carries one. ``None`` when they agree or it cannot be told."""
    end = _meta_end(head)
    if end is None or end + 8 > len(head) or not ts:
        return None
    vr = head[end + 4:end + 6]
    if ts == _IMPLICIT_LE and vr in _VRS:
        return "the data set is encoded with explicit VRs but (0002,0010) says Implicit VR Little Endian"
    if ts != _IMPLICIT_LE and ts.startswith("1.2.840.10008.1.2") and vr not in _VRS:
        return ("the data set is encoded without explicit VRs but (0002,0010) Transfer Syntax UID "
                "says otherwise")
    return None


def _finish(values: dict[str, Any], path: str, member: str | None, ts: str, size: int,
            mtime: float, is_dicomdir: bool, head: bytes = b"") -> InstanceRecord | LoadProblem:
    """Classify the header values: a DICOMDIR, a non-image object, or an image record."""
    if is_dicomdir:
        return LoadProblem(path, "DICOMDIR (index of other files, scanned separately)",
                           transfer_syntax=ts, member=member)
    sop_class = str(values["sop_class_uid"])
    if not (values["rows"] and values["cols"]) and not sop_class:
        mismatch = encoding_mismatch(head, ts)
        if mismatch:
            return LoadProblem(path, f"damaged DICOM header: {mismatch}", transfer_syntax=ts,
                               member=member, advice="the file's transfer syntax is wrong")
    if not (values["rows"] and values["cols"]):
        label = _NON_IMAGE_CLASSES.get(sop_class) or _uid_name(sop_class)
        what = f"{label} " if label and label != sop_class else ""
        return LoadProblem(path, f"not an image: {what}object without (0028,0010) Rows / "
                                 f"(0028,0011) Columns (SOP Class {sop_class or 'absent'})",
                           transfer_syntax=ts, member=member)
    if values["frames"] == 0:
        values["frames"] = 1
    return InstanceRecord(path=path, member=member, kind="dicom", transfer_syntax_uid=ts,
                          size=size, mtime=mtime, **values)


def scan_file(path: str | os.PathLike[str]) -> InstanceRecord | LoadProblem:
    """Scan one file's header (never its pixels); never raises for a bad file.

    Returns
    -------
    InstanceRecord | LoadProblem
        A record for a DICOM image or PNG/JPEG; a problem for anything else (not DICOM,
        truncated/damaged header, DICOM without pixels such as SR or RT Structure Set).
    """
    p = os.fspath(path)
    try:
        with open_regular(p) as fp:
            st = os.fstat(fp.fileno())
            return scan_bytes(fp, p, size=st.st_size, mtime=st.st_mtime)
    except OSError as exc:
        return LoadProblem(p, f"cannot read file: {exception_words(exc)}")


def undecodable_problem(rec: InstanceRecord) -> LoadProblem | None:
    """A :class:`LoadProblem` when no installed decoder handles ``rec``'s transfer syntax."""
    if rec.kind != "dicom":
        return None
    from viewer.dicom.codecs import codec_status, describe_transfer_syntax

    status = codec_status(rec.transfer_syntax_uid, 16 if rec.bits_stored > 8 else 8)
    if status.decodable or not rec.transfer_syntax_uid:
        return None
    return LoadProblem(rec.path, f"cannot decode {describe_transfer_syntax(rec.transfer_syntax_uid)}",
                       transfer_syntax=rec.transfer_syntax_uid, advice=status.advice,
                       member=rec.member)


def scan_files(paths: list[str]) -> list[InstanceRecord | LoadProblem]:
    """Scan a chunk of files (the unit of work sent to a worker process)."""
    return [scan_file(p) for p in paths]

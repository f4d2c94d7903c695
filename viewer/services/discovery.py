"""Find candidate files under the paths a user opened: folders (recursive), single files,
DICOMDIR files (via pydicom's :class:`~pydicom.fileset.FileSet`) and zip archives (members read in
place, never extracted).

Nothing here decodes anything; :mod:`viewer.services.library` scans what is found.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from collections.abc import Iterable

from viewer.dicom.load import MAX_MEMBER_BYTES, MAX_ZIP_RATIO
from viewer.dicom.scan import InstanceRecord, LoadProblem, plausible_raw_dataset, scan_bytes
from viewer.services.tasks import CancelToken, Cancelled
from viewer.core.files import file_kind, open_regular
from viewer.core.messages import exception_words

__all__ = ["Discovery", "discover", "scan_zip", "MAX_ZIP_TOTAL_BYTES"]

# Whole-archive cap on uncompressed bytes (zip-bomb guard).
MAX_ZIP_TOTAL_BYTES = 64 * 1024**3
# Headers are read from the first part of a zip member; a DICOM header longer than that is read
# again from up to _ZIP_HEADER_MAX bytes (headers before the pixel data are kilobytes; icons
# and private sequences can reach megabytes).
_ZIP_HEAD_BYTES = 256 * 1024
_ZIP_HEADER_MAX = 64 * 1024**2


def _dicom_like(head: bytes) -> bool:
    """Whether a zip member's first bytes are a DICOM file's (so a longer read may help)."""
    return head[128:132] == b"DICM" or plausible_raw_dataset(head)

# Files that are certainly not images: skipped silently instead of reported one by one.
_SKIP_SUFFIXES = frozenset({
    ".txt", ".md", ".csv", ".tsv", ".json", ".xml", ".html", ".htm", ".pdf", ".ini", ".log",
    ".py", ".pyc", ".exe", ".dll", ".so", ".db", ".sqlite", ".inf", ".bat", ".sh", ".js",
    ".css", ".doc", ".docx", ".xls", ".xlsx", ".rtf", ".yaml", ".yml", ".toml", ".sha256",
})
_SKIP_NAMES = frozenset({"thumbs.db", "desktop.ini", "sha256sums", "md5sums", "readme", "license"})


@dataclass
class Discovery:
    """Files to scan, zip archives to scan, and problems met on the way."""

    files: list[str] = field(default_factory=list)
    zips: list[str] = field(default_factory=list)
    problems: list[LoadProblem] = field(default_factory=list)


def _is_dicomdir(path: str) -> bool:
    return os.path.basename(path).upper() == "DICOMDIR"


def _skipped(name: str) -> bool:
    lower = name.lower()
    return lower.startswith(".") or lower in _SKIP_NAMES or os.path.splitext(lower)[1] in _SKIP_SUFFIXES


MAX_DICOMDIR_RECORDS = 1_000_000


def _dicomdir_files(path: str, out: Discovery, cancel: CancelToken) -> None:
    """Referenced files of a DICOMDIR (PS3.10 Media Storage Directory, PS3.3 F.3).

    The records are read as the flat (0004,1220) Directory Record Sequence, one pass, never by
    following their (0004,1400)/(0004,1420) offsets: a DICOMDIR whose offsets loop sent
    pydicom's ``FileSet`` round for ever. Every (0004,1500) Referenced File ID is resolved
    against the DICOMDIR's folder; a file that is missing, lies outside that folder, or is the
    DICOMDIR itself is reported, and the pass checks ``cancel``.
    """
    root = os.path.dirname(os.path.abspath(path))
    try:
        import pydicom

        with open_regular(path) as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fh, force=True)
            records = ds.get("DirectoryRecordSequence")
            if records is None:
                out.problems.append(LoadProblem(path, "a DICOMDIR without a Directory Record Sequence"))
                return
            refs = []
            for i, record in enumerate(records):
                if i % 1000 == 0:
                    cancel.raise_if_cancelled()
                if i >= MAX_DICOMDIR_RECORDS:
                    out.problems.append(LoadProblem(
                        path, f"the DICOMDIR has over {MAX_DICOMDIR_RECORDS} records; the rest were not read"))
                    break
                ref = record.get("ReferencedFileID")
                if ref:
                    parts = [str(p) for p in (ref if isinstance(ref, (list, tuple)) or
                                              type(ref).__name__ == "MultiValue" else [ref])]
                    refs.append(parts)
    except Cancelled:
        raise
    except Exception as exc:
        out.problems.append(LoadProblem(path, f"unreadable DICOMDIR ({exception_words(exc)})"))
        return
    if not refs:
        out.problems.append(LoadProblem(path, "the DICOMDIR lists no files"))
        return
    me = os.path.realpath(path)
    for parts in refs:
        if any(p in ("..", "") or "/" in p or "\\" in p for p in parts):
            out.problems.append(LoadProblem(path, "a DICOMDIR record with an unsafe file name was refused"))
            continue
        ref_path = os.path.join(root, *parts)
        if not os.path.exists(ref_path):
            # File IDs are upper case on media; a copy may have lower-cased them.
            alt = os.path.join(root, *[p.lower() for p in parts])
            ref_path = alt if os.path.exists(alt) else ref_path
        if os.path.realpath(ref_path) == me:
            out.problems.append(LoadProblem(path, "a DICOMDIR record refers to the DICOMDIR itself"))
        elif not os.path.exists(ref_path):
            out.problems.append(LoadProblem(ref_path, "file listed in DICOMDIR is missing"))
        elif not os.path.isfile(ref_path):
            out.problems.append(LoadProblem(ref_path, "entry listed in DICOMDIR is not a regular file"))
        else:
            out.files.append(ref_path)


def _walk(root: str, out: Discovery, cancel: CancelToken) -> None:
    stack = [root]
    while stack:
        cancel.raise_if_cancelled()
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            out.problems.append(LoadProblem(folder, f"cannot list folder: {exception_words(exc)}"))
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith("."):
                        subdirs.append(entry.path)
                    continue
                if not entry.is_file():
                    mode = entry.stat().st_mode  # follows a symbolic link
                    if not stat.S_ISDIR(mode):  # links to folders are not followed (loops)
                        out.problems.append(LoadProblem(
                            entry.path, f"not a regular file: {file_kind(mode)}, not read"))
                    continue
            except OSError:
                continue
            if _is_dicomdir(entry.path) or _skipped(entry.name):
                continue
            if entry.name.lower().endswith(".zip"):
                out.zips.append(entry.path)
            else:
                out.files.append(entry.path)
        stack.extend(reversed(subdirs))


def discover(paths: Iterable[str], cancel: CancelToken) -> Discovery:
    """Expand user-chosen paths into files to scan (duplicates removed, order kept)."""
    out = Discovery()
    for raw in paths:
        path = os.path.abspath(os.fspath(raw))
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            _walk(path, out, cancel)
        elif mode is None:
            out.problems.append(LoadProblem(path, "path does not exist"))
        elif not stat.S_ISREG(mode):  # a FIFO or a device: opening or reading it may never end
            out.problems.append(LoadProblem(path, f"not a regular file: {file_kind(mode)}, not read"))
        elif _is_dicomdir(path):
            _dicomdir_files(path, out, cancel)
        elif path.lower().endswith(".zip") or zipfile.is_zipfile(path):
            out.zips.append(path)
        else:
            out.files.append(path)
    out.files = list(dict.fromkeys(out.files))
    out.zips = list(dict.fromkeys(out.zips))
    return out


def _unsafe_member(name: str) -> bool:
    norm = name.replace("\\", "/")
    return norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in norm.split("/")


def scan_zip(path: str, cancel: CancelToken) -> tuple[list[InstanceRecord], list[LoadProblem], int]:
    """Scan every member of a zip archive in place; returns (records, problems, members seen).

    Guards: member names with ``..`` or absolute paths are refused; members over
    :data:`~viewer.dicom.load.MAX_MEMBER_BYTES` or with a compression ratio over
    :data:`~viewer.dicom.load.MAX_ZIP_RATIO`, and archives whose members add up to more than
    :data:`MAX_ZIP_TOTAL_BYTES` or to more than ``MAX_ZIP_RATIO`` times the archive's size, are
    reported instead of read.
    """
    records: list[InstanceRecord] = []
    problems: list[LoadProblem] = []
    seen = 0
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [], [LoadProblem(path, f"unreadable zip archive: {exception_words(exc)}")], 1
    mtime = os.stat(path).st_mtime
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        total = sum(i.file_size for i in infos)
        archive_size = max(os.path.getsize(path), 1)
        if total > MAX_ZIP_TOTAL_BYTES or total / archive_size > MAX_ZIP_RATIO:
            return [], [LoadProblem(path, f"zip archive expands to {total} bytes from {archive_size} "
                                          "(zip bomb guard); refused")], 1
        for info in infos:
            cancel.raise_if_cancelled()
            name = info.filename
            base = os.path.basename(name.replace("\\", "/").rstrip("/"))
            # Unsafe names first: "..\\..\\x.dcm" has no "/" and would pass for a dot-file.
            if _unsafe_member(name):
                seen += 1
                problems.append(LoadProblem(path, f"unsafe member name {name!r} refused", member=name))
                continue
            if _skipped(base) or base.upper() == "DICOMDIR":
                continue
            seen += 1
            if info.file_size > MAX_MEMBER_BYTES or (
                    info.compress_size and info.file_size / info.compress_size > MAX_ZIP_RATIO):
                problems.append(LoadProblem(path, "member too large or too compressed (zip bomb guard)",
                                            member=name))
                continue
            try:
                with zf.open(info) as fp:
                    data = fp.read(_ZIP_HEAD_BYTES)
                    if data[:4] == b"PK\x03\x04":
                        problems.append(LoadProblem(path, "a zip archive inside the zip archive: not "
                                                          "opened (extract it and open it)", member=name))
                        continue
                    result = scan_bytes(io.BytesIO(data), path, name, size=info.file_size, mtime=mtime)
                    if (isinstance(result, LoadProblem) and len(data) == _ZIP_HEAD_BYTES
                            and _dicom_like(data)):
                        # A header longer than the first part: read more, up to a bound (the
                        # whole member of a 1.9 GB non-DICOM file used to be read to look).
                        data += fp.read(_ZIP_HEADER_MAX - len(data))
                        result = scan_bytes(io.BytesIO(data), path, name, size=info.file_size,
                                            mtime=mtime)
            except Exception as exc:  # bad CRC, unsupported compression, encryption
                problems.append(LoadProblem(path, f"unreadable zip member: {exception_words(exc)}",
                                            member=name))
                continue
            (records if isinstance(result, InstanceRecord) else problems).append(result)  # type: ignore[arg-type]
    return records, problems, seen

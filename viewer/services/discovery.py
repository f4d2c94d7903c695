"""Find candidate files under the paths a user opened: folders (recursive), single files,
DICOMDIR files (via pydicom's :class:`~pydicom.fileset.FileSet`) and zip archives (members read in
place, never extracted).

Nothing here decodes anything; :mod:`viewer.services.library` scans what is found.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from collections.abc import Iterable

from viewer.dicom.load import MAX_MEMBER_BYTES, MAX_ZIP_RATIO
from viewer.dicom.scan import InstanceRecord, LoadProblem, scan_bytes
from viewer.services.tasks import CancelToken

__all__ = ["Discovery", "discover", "scan_zip", "MAX_ZIP_TOTAL_BYTES"]

# Whole-archive cap on uncompressed bytes (zip-bomb guard).
MAX_ZIP_TOTAL_BYTES = 64 * 1024**3
# Headers are read from the first part of a zip member; a longer header falls back to all of it.
_ZIP_HEAD_BYTES = 256 * 1024

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


def _dicomdir_files(path: str, out: Discovery) -> None:
    """Referenced files of a DICOMDIR (PS3.10 Media Storage Directory)."""
    try:
        import pydicom
        from pydicom.fileset import FileSet

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fs = FileSet(pydicom.dcmread(path))
            found = [os.fspath(inst.path) for inst in fs]
    except Exception as exc:
        out.problems.append(LoadProblem(path, f"unreadable DICOMDIR ({type(exc).__name__}: {exc})"))
        return
    for ref in found:
        if os.path.isfile(ref):
            out.files.append(ref)
        else:
            out.problems.append(LoadProblem(ref, "file listed in DICOMDIR is missing"))


def _walk(root: str, out: Discovery, cancel: CancelToken) -> None:
    stack = [root]
    while stack:
        cancel.raise_if_cancelled()
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            out.problems.append(LoadProblem(folder, f"cannot list folder: {exc.strerror or exc}"))
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith("."):
                        subdirs.append(entry.path)
                    continue
                if not entry.is_file():
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
        if os.path.isdir(path):
            _walk(path, out, cancel)
        elif not os.path.exists(path):
            out.problems.append(LoadProblem(path, "path does not exist"))
        elif _is_dicomdir(path):
            _dicomdir_files(path, out)
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
        return [], [LoadProblem(path, f"unreadable zip archive: {exc}")], 1
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
                    result = scan_bytes(io.BytesIO(data), path, name, size=info.file_size, mtime=mtime)
                    if isinstance(result, LoadProblem) and len(data) == _ZIP_HEAD_BYTES:
                        data += fp.read(MAX_MEMBER_BYTES)
                        result = scan_bytes(io.BytesIO(data), path, name, size=info.file_size,
                                            mtime=mtime)
            except Exception as exc:  # bad CRC, unsupported compression, encryption
                problems.append(LoadProblem(path, f"unreadable zip member: {exc}", member=name))
                continue
            (records if isinstance(result, InstanceRecord) else problems).append(result)  # type: ignore[arg-type]
    return records, problems, seen

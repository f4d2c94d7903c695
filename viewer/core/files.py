"""Atomic file writes with user-facing failure messages (stdlib only).

Every export (CSV/JSON/PNG in ``services.export``, DICOM in ``dicom.export``) writes through
:func:`atomic_write`: a temporary ``.part`` file beside the destination, flushed and fsynced,
then renamed, so the final name never points at a partial file, even after a kill. A
``.part`` file orphaned by a kill is removed by the next write to the same destination once it
is stale (:func:`remove_stale_parts`).
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from glob import escape as glob_escape
from pathlib import Path
from typing import BinaryIO
from collections.abc import Callable

__all__ = ["NotRegularFile", "atomic_write", "open_regular", "remove_stale_parts", "temp_beside",
           "write_failure_text"]

STALE_PART_S = 15 * 60  # a .part file untouched this long belongs to a killed writer


class NotRegularFile(OSError):
    """A path that is not a regular file (a FIFO, a character or block device, a socket):
    reading one can block forever or never end, so it is never read."""

    def __init__(self, kind: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({kind})")
        self.kind = kind


def file_kind(mode: int) -> str:
    """Words for a non-regular file type (``stat.S_IFMT``)."""
    import stat

    for test, words in ((stat.S_ISFIFO, "a FIFO / named pipe"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISDIR, "a folder")):
        if test(mode):
            return words
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file, without ever blocking: a FIFO
    is opened non-blocking and refused after ``fstat`` (a plain ``open`` of a FIFO waits for a
    writer; reading ``/dev/zero`` never ends). Raises :class:`NotRegularFile`."""
    import stat

    def opener(name: str, flags: int) -> int:
        return os.open(name, flags | getattr(os, "O_NONBLOCK", 0))

    # open() with an opener keeps the path as the file's name (pydicom re-opens deferred values
    # by name).
    fh = open(os.fspath(path), "rb", opener=opener)
    try:
        mode = os.fstat(fh.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(file_kind(mode))
    except BaseException:
        fh.close()
        raise
    return fh


def write_failure_text(target: Path, exc: OSError) -> str:
    """A message for the user about an ``OSError`` met while writing ``target``."""
    folder = target.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (f"not enough free space to write {target.name} in {folder}; "
                "free some space or choose another folder")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"the folder {folder} is read-only or not writable; "
                f"choose another folder for {target.name}")
    return f"cannot write {target.name} in {folder}: {exc.strerror or exc}"


def remove_stale_parts(dest: Path, older_than_s: float = STALE_PART_S) -> int:
    """Delete ``.<name>.*.part`` files beside ``dest`` left by a writer that was killed.

    Only our own temporary names for this destination are touched, and only when they have not
    been modified for ``older_than_s`` seconds (a writer still running keeps its file fresh).
    Returns how many were removed; errors are ignored (the next export tries again).
    """
    dest = Path(dest)
    removed = 0
    try:
        now = time.time()
        for part in dest.parent.glob(f".{glob_escape(dest.name)}.*.part"):
            try:
                if now - part.stat().st_mtime >= older_than_s:
                    part.unlink()
                    removed += 1
            except OSError:
                continue
    except OSError:
        pass
    return removed


def temp_beside(dest: Path) -> tuple[int, str]:
    """``mkstemp`` beside ``dest`` with our ``.part`` naming, after removing stale ones."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(dest)
    return tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)


def atomic_write(dest: Path, write: Callable[[BinaryIO], object],
                 error: Callable[[str], Exception]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``dest``, then rename it to ``dest``.

    Parameters
    ----------
    dest
        Final path; its folder is created if needed.
    write
        Writes the content to the open binary file.
    error
        Builds the exception raised (from the ``OSError``) when the folder cannot be written;
        no partial file is left under ``dest``'s name.
    """
    dest = Path(dest)
    try:
        fd, tmp = temp_beside(dest)
    except OSError as exc:
        raise error(write_failure_text(dest, exc)) from exc
    try:
        # Through the descriptor, flushed and fsynced before the rename, so that the final
        # name never points at a file whose data did not reach the disk.
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise error(write_failure_text(dest, exc)) from exc
        raise
    return dest

"""Our own words for a library's exception, for every message a user, a log or an export sees.

A library's exception text can carry what it was reading: pydicom quotes element values (a
Patient's Name stored with a wrong VR appears verbatim in its ``ValueError``), ``OSError``
quotes paths, zipfile quotes member names. Messages are therefore built from a category and the
exception's type, never from ``str(exc)`` (issue 15; docs/ROBUSTNESS.md, "Messages").
"""

from __future__ import annotations

import errno
import os

__all__ = ["exception_words"]

_OS_WORDS = {
    errno.ENOENT: "the file does not exist (any more)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "it is a folder",
    errno.ENOSPC: "no space left on the device",
    errno.EIO: "input/output error (damaged medium or a network share that went away)",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ELOOP: "too many levels of symbolic links",
}


def exception_words(exc: BaseException) -> str:
    """A short description of ``exc`` in our words: a category plus the exception's type name.

    Never contains a library exception's message, its arguments or a file name (our own
    ``LoadError`` keeps its message, which is built from our words).
    """
    name = type(exc).__name__
    own = getattr(exc, "message", None)
    if name == "LoadError" and isinstance(own, str) and own:
        return own  # viewer.dicom.load.LoadError: a message in our words already
    if isinstance(exc, OSError) and hasattr(exc, "kind") and name == "NotRegularFile":
        return f"not a regular file: {exc.kind}, not read"
    if isinstance(exc, OSError):
        code = exc.errno
        words = _OS_WORDS.get(code) if code is not None else None
        if words is None and code is not None:
            words = os.strerror(code).lower()  # the system's text for the code: no path in it
        return f"{words or 'input/output error'} ({name})"
    if isinstance(exc, MemoryError):
        return "not enough memory (MemoryError)"
    if isinstance(exc, RecursionError):
        return "structures nested too deeply (RecursionError)"
    if name in ("InvalidDicomError",):
        return "not recognised as DICOM (InvalidDicomError)"
    if name in ("BadZipFile", "LargeZipFile"):
        return f"not a readable zip archive ({name})"
    if isinstance(exc, (EOFError,)) or name in ("error",):  # struct.error
        return f"the data ends early or is malformed ({name})"
    if isinstance(exc, (ValueError, KeyError, IndexError, TypeError, AttributeError,
                        NotImplementedError, OverflowError, UnicodeError)):
        return f"malformed or unsupported data ({name})"
    return f"unexpected failure ({name})"

"""The support log: a rotating file a user can send when something went wrong, with no patient
data in it.

What is logged (docs/ROBUSTNESS.md, "Support log"): versions, the platform, the execution
provider of each model, timings of scans and analyses, and every per-file error with its
category, the exception's type and the code locations of its traceback.

What is never logged: patient names, IDs, dates, UIDs, element values, file or folder names of
studies, and exception *messages* (pydicom's quote element values, ``OSError``'s quote paths).
Three rules make that hold without trusting every caller:

- a file is named by :func:`file_token`, a keyed hash whose key is drawn anew for every process
  (the same file has the same token within a session, and a different one in the next);
- tracebacks are written as code locations and exception types only
  (:class:`_SafeFormatter`);
- a filter replaces, in every record, each path the user opened in this session
  (:func:`register_opened`) by its token, as a net under the first two.

Only the ``radview`` and ``viewer`` loggers are written; libraries' loggers (pydicom's quotes
values) never reach the file. The folder is ``$RADVIEW_LOG_DIR`` when set, else the user's data
folder (``~/.local/share/radview/logs`` on Linux, ``%LOCALAPPDATA%\\radview\\logs`` on Windows,
``~/Library/Application Support/radview/logs`` on macOS).
"""

from __future__ import annotations

import hashlib
import logging
import logging.handlers
import os
import platform
import re
import secrets
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType

from viewer.runtime_paths import user_data_dir

__all__ = [
    "LOG_DIR_ENV",
    "LOG_FILE_NAME",
    "default_log_dir",
    "error_category",
    "file_token",
    "log_file_error",
    "problem_category",
    "register_opened",
    "setup_support_log",
]

LOG_DIR_ENV = "RADVIEW_LOG_DIR"
LOG_FILE_NAME = "radview.log"
_MAX_BYTES = 2 * 1024 * 1024
_BACKUPS = 4
_LOGGERS = ("radview", "viewer")
_KEY = secrets.token_bytes(16)  # per process: tokens cannot be linked across sessions
_lock = threading.Lock()
_opened: dict[str, str] = {}  # opened path (as given and resolved) -> token
_installed: list[logging.Handler] = []


def default_log_dir() -> Path:
    """Where the log file goes (``$RADVIEW_LOG_DIR`` wins)."""
    return user_data_dir("logs", LOG_DIR_ENV)


def file_token(path: str | os.PathLike[str], member: str | None = None) -> str:
    """A per-session pseudonym for a file (or a zip member): ``file-<10 hex>``."""
    text = os.fspath(path) + ("!" + member if member else "")
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), key=_KEY, digest_size=5)
    return f"file-{digest.hexdigest()}"


def register_opened(paths: list[str] | tuple[str, ...]) -> None:
    """Remember what the user opened, so that no log line can carry it (the filter's net)."""
    with _lock:
        for p in paths:
            for form in {os.fspath(p), os.path.abspath(p), os.path.realpath(p)}:
                if len(form) > 1:
                    _opened[form] = file_token(form)


_PROBLEM_CUT = re.compile(r"[:('\"!]")


def problem_category(reason: str) -> str:
    """The category of a load problem: its reason up to the first detail (a colon, bracket or
    quote), which is our own wording; the details may quote names or element values."""
    return _PROBLEM_CUT.split(reason, maxsplit=1)[0].strip()[:80] or "unknown"


def error_category(exc: BaseException) -> str:
    """A coarse category for an exception, for the log and for counting."""
    name = type(exc).__name__
    if name == "LoadError":
        return "load"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OSError):
        return "io"
    if isinstance(exc, (ValueError, KeyError, IndexError, TypeError)):
        return "data"
    return "internal"


def log_file_error(logger: logging.Logger, what: str, path: str | os.PathLike[str],
                   exc: BaseException, *, member: str | None = None,
                   position: int | None = None) -> None:
    """Log one file's failure: category, token, exception type and traceback (code only)."""
    where = file_token(path, member) + (f" (#{position} in batch)" if position is not None else "")
    logger.warning("%s failed: %s [%s] %s", what, where, error_category(exc), type(exc).__name__,
                   exc_info=(type(exc), exc, exc.__traceback__))


class _SafeFormatter(logging.Formatter):
    """Tracebacks as code locations and exception types, never exception messages."""

    def format(self, record: logging.LogRecord) -> str:
        # logging caches a record's traceback text (exc_text) from whichever handler formatted
        # it first, with that handler's formatter: never reuse it.
        saved = record.exc_text
        record.exc_text = None
        try:
            return super().format(record)
        finally:
            record.exc_text = saved

    def formatException(self, ei: tuple[type[BaseException], BaseException, TracebackType | None]
                        | tuple[None, None, None]) -> str:
        _etype, value, tb = ei
        lines = ["Traceback (code locations only; messages are not logged):"]
        chain: list[BaseException] = []
        seen: set[int] = set()
        exc: BaseException | None = value
        while exc is not None and id(exc) not in seen and len(chain) < 8:
            seen.add(id(exc))
            chain.append(exc)
            exc = exc.__cause__ or exc.__context__
        for depth, item in enumerate(reversed(chain)):
            if depth:
                lines.append("  -> then")
            frames = traceback.extract_tb(item.__traceback__ if item is not value else tb)
            for fr in frames[-12:]:
                lines.append(f"  {_code_path(fr.filename)}:{fr.lineno} in {fr.name}")
            lines.append(f"  {type(item).__module__}.{type(item).__qualname__}")
        return "\n".join(lines)


def _code_path(filename: str) -> str:
    """A source file's path from its package on (``viewer/dicom/load.py``,
    ``pydicom/filereader.py``): the install location says nothing useful and could carry a
    user name."""
    parts = Path(filename).parts
    for anchor in ("site-packages", "dist-packages", "_internal"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1:])
    if "viewer" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("viewer"):])
    return Path(filename).name


class _Scrubber(logging.Filter):
    """Replaces every opened path in a record's text by its token (the net under the rules)."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            opened = sorted(_opened.items(), key=lambda kv: -len(kv[0]))
        if opened:
            text = record.getMessage()
            for raw, token in opened:
                if raw in text:
                    text = text.replace(raw, token)
            record.msg, record.args = text, None
        return True


def setup_support_log(component: str, *, verbose: bool = False,
                      log_dir: Path | None = None) -> Path | None:
    """Start the support log for this process (idempotent; the last call's settings win).

    Returns the log file's path, or ``None`` when the folder cannot be written (the program
    works on without a log, and says so on stderr at ``-v``).
    """
    folder = log_dir if log_dir is not None else default_log_dir()
    fmt = _SafeFormatter("%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s")
    handlers: list[logging.Handler] = []
    target: Path | None = folder / LOG_FILE_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            str(target), maxBytes=_MAX_BYTES, backupCount=_BACKUPS, encoding="utf-8", delay=True)
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        handlers.append(file_handler)
    except OSError as exc:
        target = None
        if verbose:
            print(f"radview: no support log ({type(exc).__name__}); continuing without one",
                  file=sys.stderr)
    if verbose:  # -v: the same lines on stderr too
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setLevel(logging.DEBUG)
        handlers.append(stderr)
    scrub = _Scrubber()
    with _lock:
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            for old in _installed:
                logger.removeHandler(old)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
        for old in _installed:
            old.close()
        _installed.clear()
        for handler in handlers:
            handler.setFormatter(fmt)
            handler.addFilter(scrub)
            for name in _LOGGERS:
                logging.getLogger(name).addHandler(handler)
            _installed.append(handler)
    logging.getLogger("radview").info("%s", _banner(component))
    return target


def _banner(component: str) -> str:
    from viewer import __version__

    versions = [f"radview {__version__}", f"python {platform.python_version()}",
                f"{platform.system()} {platform.release()} {platform.machine()}"]
    for module, label in (("numpy", "numpy"), ("pydicom", "pydicom"), ("cv2", "opencv"),
                          ("onnxruntime", "onnxruntime"), ("PySide6", "PySide6")):
        mod = sys.modules.get(module)
        if mod is None and module in ("numpy", "pydicom", "cv2"):
            try:
                mod = __import__(module)
            except ImportError:
                mod = None
        if mod is not None:
            versions.append(f"{label} {getattr(mod, '__version__', '?')}")
    frozen = " (frozen bundle)" if getattr(sys, "frozen", False) else ""
    from viewer.offline import network_denied, tcp_display

    guard = ("network sockets denied (seccomp)" if network_denied() else
             "network sockets NOT denied" + (" (X display over TCP)" if tcp_display() else ""))
    return f"start {component}{frozen}: " + ", ".join(versions) + f"; {guard}"


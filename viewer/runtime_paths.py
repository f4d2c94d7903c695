"""Where the application's own files are, from a checkout or from a PyInstaller bundle.

A one-folder PyInstaller build unpacks nothing: ``sys._MEIPASS`` is the bundle's ``_internal/``
folder, which holds ``models/`` and ``resources/`` exactly as the repository root does (see
``viewer.spec``). Everything here is stdlib-only and import-time side-effect free, so any layer may
use it. :func:`viewer.inference.registry.bundled_models_dir` follows the same rule.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = [
    "is_frozen",
    "bundle_root",
    "models_dir",
    "resources_dir",
    "executable_dir",
    "user_data_dir",
]


def is_frozen() -> bool:
    """``True`` inside a PyInstaller build."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def bundle_root() -> Path:
    """The folder holding ``models/`` and ``resources/``.

    ``sys._MEIPASS`` when frozen, else the repository root (the parent of ``viewer/``).
    """
    if is_frozen():
        return Path(getattr(sys, "_MEIPASS"))  # noqa: B009 - set by the PyInstaller boot loader only
    return Path(__file__).resolve().parents[1]


def models_dir() -> Path:
    """The bundled models folder (``<id>.onnx`` + ``<id>.json`` pairs, docs/MODELS.md)."""
    return bundle_root() / "models"


def resources_dir() -> Path:
    """Icons, styles and other read-only resources shipped with the program."""
    return bundle_root() / "resources"


def executable_dir() -> Path:
    """The folder of the running program (the bundle folder when frozen), for user-visible paths."""
    if is_frozen():
        return Path(sys.executable).resolve().parent
    return bundle_root()


def user_data_dir(name: str, env: str | None = None) -> Path:
    """A per-user folder ``radview/<name>`` (``$<env>`` wins when set and not empty).

    The platform's per-user data folder: ``$XDG_DATA_HOME`` or ``~/.local/share`` on Linux,
    ``%LOCALAPPDATA%`` on Windows, ``~/Library/Application Support`` on macOS. Not created here.
    """
    override = os.environ.get(env) if env else None
    if override:
        return Path(override)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "radview" / name

"""Model discovery: every ``*.json`` manifest in the bundled and the user's models folders.

The bundled folder is ``models/`` at the repository root, or ``sys._MEIPASS/models`` inside a
PyInstaller build. The user's folders come first, so a user can replace a shipped model by
dropping in a newer file pair; the first folder to define an id wins, and a later manifest with
the same id is listed as unavailable ("shadowed") so the user can see why it is ignored.
"""

from __future__ import annotations

import sys
from pathlib import Path
from collections.abc import Iterable, Sequence

from viewer.inference.manifest import ModelEntry, ModelManifest, load_manifest

__all__ = ["bundled_models_dir", "ModelRegistry"]


def bundled_models_dir() -> Path:
    """The models shipped with the application (repo ``models/`` or the frozen bundle's)."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "models"
    return Path(__file__).resolve().parents[2] / "models"


class ModelRegistry:
    """The models found in a list of folders, in priority order.

    Parameters
    ----------
    folders
        Folders to scan, first wins on duplicate ids. Missing folders are skipped.
    verify_checksum
        Check each ONNX file against its manifest's ``sha256`` (a few ms per MB).
    """

    def __init__(self, folders: Iterable[Path], *, verify_checksum: bool = True) -> None:
        self._folders = tuple(Path(f) for f in folders)
        entries: list[ModelEntry] = []
        seen: dict[str, Path] = {}
        for folder in self._folders:
            if not folder.is_dir():
                continue
            for manifest_path in sorted(folder.glob("*.json")):
                entry = load_manifest(manifest_path, verify_checksum=verify_checksum)
                if entry.id in seen:
                    entry = ModelEntry(
                        entry.id, manifest_path, None, f"shadowed by {seen[entry.id]}"
                    )
                elif entry.available:
                    seen[entry.id] = manifest_path
                entries.append(entry)
        self._entries = tuple(entries)

    @classmethod
    def default(cls, user_dirs: Sequence[Path] = ()) -> ModelRegistry:
        """The user's folders first, then the bundled models."""
        return cls([*user_dirs, bundled_models_dir()])

    @property
    def folders(self) -> tuple[Path, ...]:
        return self._folders

    @property
    def entries(self) -> tuple[ModelEntry, ...]:
        """Every manifest found, available or not (for a models panel)."""
        return self._entries

    def available(self) -> tuple[ModelManifest, ...]:
        """Manifests of the usable models, in discovery order."""
        return tuple(e.manifest for e in self._entries if e.available and e.manifest)

    def unavailable(self) -> tuple[ModelEntry, ...]:
        return tuple(e for e in self._entries if not e.available)

    def get(self, model_id: str) -> ModelManifest | None:
        """The usable manifest with this id, or ``None``."""
        return next((m for m in self.available() if m.id == model_id), None)

    def gate(self) -> ModelManifest | None:
        """The body-region gate model (``"gate": true``), if any."""
        return next((m for m in self.available() if m.gate), None)

    def about(self, model_id: str) -> dict[str, object] | None:
        """The full manifest of a model as a plain dict, for an "About this model" panel."""
        entry = next((e for e in self._entries if e.id == model_id), None)
        if entry is None:
            return None
        if entry.manifest is None:
            return {"id": entry.id, "available": False, "reason": entry.reason}
        return {**dict(entry.manifest.raw), "available": True}

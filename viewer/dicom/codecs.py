"""Which pixel decoders are installed, and what to tell the user when none can decode a file.

Decoder licences matter: pylibjpeg-libjpeg is GPL-3.0 and is never bundled; it is the only
decoder for 12-bit JPEG Extended (Process 2 and 4) and is offered as the optional extra
``radview[jpegext]``. python-gdcm, pylibjpeg-openjpeg, pyjpegls and pydicom's own RLE decoder are
permissive and ship with the viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydicom import uid as _uid
from pydicom.pixels import get_decoder

__all__ = ["CodecStatus", "codec_status", "describe_transfer_syntax", "installed_plugins"]

# Plugin name -> (pip package, licence, how the user gets it).
_PLUGIN_PACKAGES: dict[str, tuple[str, str, str]] = {
    "gdcm": ("python-gdcm", "BSD", "bundled"),
    "pylibjpeg": ("pylibjpeg + pylibjpeg-openjpeg", "MIT", "bundled"),
    "pyjpegls": ("pyjpegls", "MIT", "bundled"),
    "pillow": ("pillow", "MIT-CMU", "optional"),
    "pydicom": ("pydicom", "MIT", "bundled"),
}

_LIBJPEG_ADVICE = (
    "needs pylibjpeg-libjpeg (GPL-3.0, not bundled; install the optional extra "
    "`radview[jpegext]`, i.e. `pip install pylibjpeg-libjpeg`)"
)

# Transfer syntaxes whose missing decoder has a specific, known remedy.
_SPECIFIC_ADVICE: dict[str, str] = {
    _uid.JPEGExtended12Bit: _LIBJPEG_ADVICE,
}


@dataclass(frozen=True)
class CodecStatus:
    """Decoder availability for one (0002,0010) Transfer Syntax UID.

    Attributes
    ----------
    transfer_syntax, name
        The UID and its name ("" if unknown).
    native
        Uncompressed (no plugin needed).
    available
        Installed plugins that claim this syntax.
    missing
        pydicom's description of plugins that would decode it but lack a dependency.
    advice
        What to install when nothing is available (or for 12-bit JPEG Extended, which only
        pylibjpeg-libjpeg decodes); "" when decoding should work.
    """

    transfer_syntax: str
    name: str
    native: bool
    available: tuple[str, ...]
    missing: tuple[str, ...]
    advice: str

    @property
    def decodable(self) -> bool:
        return self.native or bool(self.available)


def describe_transfer_syntax(ts: str) -> str:
    """``"JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)"`` or the bare UID if unknown."""
    if not ts:
        return "no transfer syntax"
    name = _uid.UID(ts).name
    return f"{name} ({ts})" if name and name != ts else ts


@lru_cache(maxsize=64)
def codec_status(ts: str, bits_allocated: int = 16) -> CodecStatus:
    """Decoder availability and user advice for a transfer syntax.

    Parameters
    ----------
    ts
        (0002,0010) Transfer Syntax UID.
    bits_allocated
        (0028,0100) Bits Allocated; JPEG Extended with more than 8 bits is decoded only by
        pylibjpeg-libjpeg (gdcm and Pillow reject 12-bit lossy JPEG).
    """
    u = _uid.UID(ts) if ts else _uid.UID("")
    name = u.name if ts and u.name != ts else ""
    if not ts:
        return CodecStatus(ts, "", False, (), (), "the file meta has no (0002,0010) Transfer Syntax UID")
    if u in (_uid.ImplicitVRLittleEndian, _uid.ExplicitVRLittleEndian, _uid.ExplicitVRBigEndian,
             _uid.DeflatedExplicitVRLittleEndian):
        return CodecStatus(ts, name, True, (), (), "")
    try:
        decoder = get_decoder(u)
    except NotImplementedError:
        return CodecStatus(ts, name, False, (), (), f"no decoder exists for {describe_transfer_syntax(ts)}")
    available = tuple(decoder.available_plugins)
    missing = tuple(decoder.missing_dependencies)
    if u == _uid.JPEGExtended12Bit and bits_allocated > 8:
        available = tuple(p for p in available if p == "pylibjpeg")
    advice = ""
    if not available:
        advice = _SPECIFIC_ADVICE.get(u) or (
            "install a decoder: " + "; ".join(missing) if missing
            else f"no installed decoder handles {describe_transfer_syntax(ts)}"
        )
    return CodecStatus(ts, name, False, available, missing, advice)


def installed_plugins() -> dict[str, str]:
    """Decoder packages that import here, with their licence (for the About dialog)."""
    found: dict[str, str] = {}
    for mod, (pkg, licence, _) in _PLUGIN_PACKAGES.items():
        try:
            __import__({"pylibjpeg": "openjpeg", "pyjpegls": "jpeg_ls", "pillow": "PIL"}.get(mod, mod))
        except ImportError:
            continue
        found[pkg] = licence
    try:
        __import__("libjpeg")
        found["pylibjpeg-libjpeg"] = "GPL-3.0"
    except ImportError:
        pass
    return found

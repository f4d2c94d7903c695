"""Decoder availability and user-facing advice per transfer syntax."""

from __future__ import annotations

from pydicom import uid

from viewer.dicom.codecs import codec_status, describe_transfer_syntax, installed_plugins


def test_native_syntaxes_need_no_plugin():
    for ts in (uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.ExplicitVRBigEndian):
        status = codec_status(ts)
        assert status.native and status.decodable and status.advice == ""


def test_bundled_decoders_are_found():
    assert "pydicom" in codec_status(uid.RLELossless).available
    assert codec_status(uid.JPEG2000Lossless).decodable
    assert codec_status(uid.JPEGLSLossless).decodable
    assert codec_status(uid.JPEGLosslessSV1).decodable


def test_12_bit_jpeg_extended_names_the_gpl_decoder():
    status = codec_status(uid.JPEGExtended12Bit, 16)
    try:
        import libjpeg  # noqa: F401
    except ImportError:
        assert not status.decodable
        assert "pylibjpeg-libjpeg" in status.advice and "GPL" in status.advice
        assert "radview[jpegext]" in status.advice
    else:
        assert status.available == ("pylibjpeg",)


def test_unknown_and_missing_syntax():
    assert not codec_status("1.2.3.4").decodable
    assert "Transfer Syntax UID" in codec_status("").advice
    assert describe_transfer_syntax(uid.RLELossless) == f"RLE Lossless ({uid.RLELossless})"


def test_installed_plugins_lists_permissive_decoders():
    found = installed_plugins()
    assert found.get("python-gdcm") == "BSD"
    assert all(lic != "GPL-3.0" for pkg, lic in found.items() if pkg != "pylibjpeg-libjpeg")

"""Decoding generated DICOM files: photometrics, bit depths, LUTs, frames, damaged input."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import uid
from pydicom.pixels import convert_color_space

from tests import dicom_factory as fac
from viewer.core.windowing import apply_voi, display_image, modality_values
from viewer.dicom.load import LoadError, load_radiograph, read_header


def test_unsigned_12_bit_with_rescale_and_all_windows(make_dicom):
    px = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 30
    path = make_dicom("a.dcm", px, bits_stored=12, RescaleSlope="2", RescaleIntercept="-100",
                      WindowCenter=["500", "1500"], WindowWidth=["400", "1000"],
                      WindowCenterWidthExplanation=["SOFT", "BONE"], PixelSpacing=[0.2, 0.1])
    rg = load_radiograph(path)
    np.testing.assert_array_equal(rg.pixels, px)
    assert rg.bits_stored == 12 and not rg.signed and rg.photometric == "MONOCHROME2"
    np.testing.assert_array_equal(modality_values(rg), px * 2.0 - 100)
    assert [(v.center, v.width) for v in rg.vois] == [(500, 400), (1500, 1000)]
    assert rg.vois[0].explanation.startswith("SOFT") and rg.vois[1].explanation.startswith("BONE")
    assert rg.spacing_mm == (0.2, 0.1) and rg.spacing_kind == "PixelSpacing"


def test_signed_monochrome1(make_dicom):
    px = np.array([[-1000, -10], [0, 900]], dtype=np.int16)
    path = make_dicom("s.dcm", px, photometric="MONOCHROME1", WindowCenter="0", WindowWidth="1001",
                      ImagerPixelSpacing=[0.15, 0.15])
    rg = load_radiograph(path)
    assert rg.signed and rg.pixels.dtype == np.int16 and rg.photometric == "MONOCHROME1"
    np.testing.assert_array_equal(rg.pixels, px)
    out = display_image(rg)
    # -1000 is below the window -> 0 -> inverted to white; 900 above -> black
    assert out[0, 0] == 255 and out[1, 1] == 0
    assert rg.spacing_kind == "ImagerPixelSpacing"


def test_zero_pixel_spacing_is_unknown(make_dicom):
    rg = load_radiograph(make_dicom("z.dcm", np.zeros((4, 4), np.uint16), PixelSpacing=[0, 0]))
    assert rg.spacing_mm is None and rg.spacing_kind is None


def test_voi_lut_sequence_and_modality_lut_sequence(make_dicom):
    px = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    path = make_dicom("l.dcm", px,
                      ModalityLUTSequence=fac.sequence(fac.lut_item([100, 200, 300, 400], 0, 16)),
                      VOILUTSequence=fac.sequence(fac.lut_item(list(range(0, 4096, 16)), 100, 12, "CURVE")))
    rg = load_radiograph(path)
    np.testing.assert_array_equal(modality_values(rg), [[100, 200], [300, 400]])
    assert rg.vois[0].explanation == "CURVE" and rg.vois[0].first_mapped == 100
    # VOI LUT: index = value - 100 -> entries 0, 100, 200, 255 (clamped) * 16 / 4095
    expected = np.array([[0, 100 * 16], [200 * 16, 255 * 16]]) / 4095.0
    np.testing.assert_allclose(apply_voi(modality_values(rg), rg.vois[0]), expected, atol=1e-6)


def test_multi_frame_reads_the_requested_frame(make_dicom):
    frames = np.stack([np.full((6, 5), i * 100, np.uint16) for i in range(3)])
    path = make_dicom("mf.dcm", frames)
    rg = load_radiograph(path, frame=2)
    assert rg.frame_count == 3 and rg.frame_index == 2
    np.testing.assert_array_equal(rg.pixels, frames[2])
    with pytest.raises(LoadError, match="frame 4 does not exist"):
        load_radiograph(path, frame=3)


def test_rle_multi_frame(make_dicom):
    frames = np.stack([np.arange(20, dtype=np.uint16).reshape(4, 5) + i for i in range(2)])
    path = make_dicom("rle.dcm", frames, transfer_syntax=uid.RLELossless)
    np.testing.assert_array_equal(load_radiograph(path, frame=1).pixels, frames[1])


def test_rgb_and_ybr_become_rgb(make_dicom):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[4:, :, 2] = 120
    rg = load_radiograph(make_dicom("rgb.dcm", rgb, sop_class=fac.SC_STORAGE))
    assert rg.photometric == "RGB" and rg.is_colour
    np.testing.assert_array_equal(rg.pixels, rgb)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    rg2 = load_radiograph(make_dicom("ybr.dcm", ybr, photometric="YBR_FULL", sop_class=fac.SC_STORAGE))
    assert rg2.photometric == "RGB"
    assert np.abs(rg2.pixels.astype(int) - rgb).max() <= 2
    assert display_image(rg2).shape == (8, 8, 3)


def test_palette_colour_becomes_rgb(tmp_path):
    idx = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    red, green, blue = [0, 65535, 0, 65535], [0, 0, 65535, 65535], [0, 0, 0, 65535]
    header = {}
    for name, table in (("Red", red), ("Green", green), ("Blue", blue)):
        header[f"{name}PaletteColorLookupTableDescriptor"] = [4, 0, 16]
        header[f"{name}PaletteColorLookupTableData"] = np.asarray(table, "<u2").tobytes()
    path = fac.write_dicom(tmp_path / "pal.dcm", idx, photometric="PALETTE COLOR",
                           sop_class=fac.SC_STORAGE, **header)
    rg = load_radiograph(path)
    assert rg.photometric == "RGB"
    np.testing.assert_array_equal(rg.pixels[1, 1], [255, 255, 255])
    np.testing.assert_array_equal(rg.pixels[0, 1], [255, 0, 0])
    np.testing.assert_array_equal(rg.pixels[1, 0], [0, 255, 0])


def test_implicit_vr_and_big_endian(make_dicom):
    px = np.arange(30, dtype=np.uint16).reshape(5, 6)
    for ts in (uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian):
        path = make_dicom(f"{ts}.dcm", px, transfer_syntax=ts)
        np.testing.assert_array_equal(load_radiograph(path).pixels, px)


def test_missing_transfer_syntax_falls_back_to_the_parsed_encoding(make_dicom):
    import pydicom

    px = np.arange(16, dtype=np.uint16).reshape(4, 4)
    path = make_dicom("nots.dcm", px)
    ds = pydicom.dcmread(path)
    del ds.file_meta.TransferSyntaxUID
    ds.save_as(path, enforce_file_format=False)
    np.testing.assert_array_equal(load_radiograph(path).pixels, px)


def test_truncated_pixel_data_is_a_load_error(make_dicom, tmp_path):
    path = make_dicom("full.dcm", np.ones((64, 64), np.uint16))
    cut = fac.write_truncated(path, tmp_path / "cut.dcm", path.stat().st_size - 4000)
    with pytest.raises(LoadError) as info:
        load_radiograph(cut)
    assert info.value.transfer_syntax == uid.ExplicitVRLittleEndian
    assert "cut.dcm" in info.value.message


def test_non_image_and_non_dicom_are_load_errors(tmp_path):
    with pytest.raises(LoadError, match="no pixel data"):
        load_radiograph(fac.write_sr(tmp_path / "sr.dcm"))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(LoadError):
        load_radiograph(junk)
    with pytest.raises(LoadError, match="cannot read"):
        load_radiograph(tmp_path / "missing.dcm")


def test_read_header_tree(make_dicom):
    path = make_dicom("h.dcm", np.zeros((3, 4), np.uint16),
                      VOILUTSequence=fac.sequence(fac.lut_item([0, 1], 0, 16, "X")))
    nodes = read_header(path)
    by_tag = {n.tag: n for n in nodes}
    assert by_tag["(0028,0010)"].value == "3" and by_tag["(0028,0010)"].keyword == "Rows"
    assert by_tag["(0002,0010)"].vr == "UI" and "Explicit VR Little Endian" in by_tag["(0002,0010)"].value
    seq = by_tag["(0028,3010)"]
    assert seq.vr == "SQ" and seq.children[0].children
    assert "(7FE0,0010)" not in by_tag


def test_float_pixel_data_with_nan_is_a_clear_load_error(make_dicom, tmp_path):
    import pydicom

    path = make_dicom("float.dcm", np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    for kw in ("BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, kw)
    ds.BitsAllocated = 32
    values = np.linspace(-1.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    ds.FloatPixelData = values.tobytes()
    ds.save_as(tmp_path / "ok.dcm")
    rg = load_radiograph(tmp_path / "ok.dcm")  # finite float data displays
    assert rg.pixels.dtype.kind == "f" and display_image(rg).dtype == np.uint8
    values[3, 4] = np.nan
    ds.FloatPixelData = values.tobytes()
    ds.save_as(tmp_path / "nan.dcm")
    with pytest.raises(LoadError, match="not numbers"):
        load_radiograph(tmp_path / "nan.dcm")


def test_rescale_beyond_float_range_is_a_clear_load_error(make_dicom):
    path = make_dicom("slope.dcm", np.full((8, 8), 4000, np.uint16), bits_stored=12,
                      RescaleSlope="1e308", RescaleIntercept="0")
    with pytest.raises(LoadError, match="Rescale Slope"):
        load_radiograph(path)
    ok = make_dicom("slope-ok.dcm", np.full((8, 8), 4000, np.uint16), bits_stored=12,
                    RescaleSlope="1e30", RescaleIntercept="-1024")
    assert np.isfinite(modality_values(load_radiograph(ok))).all()

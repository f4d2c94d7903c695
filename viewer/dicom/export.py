"""DICOM exports of analysis overlays (highdicom): Segmentation (one segment per declared
segment, with its coded concepts) and heatmap Secondary Capture.

Both objects reference the source instance ((0008,1115) Referenced Series Sequence /
(0008,1140) Referenced Image Sequence via highdicom) and copy the patient and study modules from
it, so they file into the same study in a PACS. They are written under a temporary name in the
folder the user chose and renamed into place; the caller makes sure it is not a study folder.

Conformance (checked with dicom3tools' ``dciodvfy`` in ``tests/dicom/test_export_conformance.py``):

- The source's header is copied, never modified, and cleaned first (:func:`_reference_header`):
  a value that is invalid for its VR (a 56-character (0008,0050) Accession Number, a hash in
  (0010,0030) Patient's Birth Date, a (0010,0040) Patient's Sex outside M/F/O) is emptied when
  the attribute is Type 2 and left out otherwise; text decoded without a declared (0008,0005)
  Specific Character Set is decoded again with the project's guess and written as UTF-8.
- A source without the UIDs a reference needs ((0008,0016), (0008,0018), (0020,000D),
  (0020,000E)) is refused with :class:`DicomExportError`: a derived object must reference it.
- (0020,0020) Patient Orientation (Type 2C) is the source's when valid, else empty (unknown);
  the SC's (0020,0060) Laterality (Type 2C) is absent for an unpaired (0018,0015) Body Part
  Examined (copied), else the source's Laterality or Image Laterality when R or L, else empty.
- Pixel spacing of the SEG: see :func:`_pixel_measures`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from highdicom.seg import (
    SegmentAlgorithmTypeValues, SegmentationTypeValues, SegmentDescription,
)
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.datadict import dictionary_VR
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import validate_value

from viewer import __version__
from viewer.core.files import atomic_write
from viewer.dicom.deidentify import (
    UidMap, burned_in_annotation_warning, deidentify_dataset, mark_deidentified,
)
from viewer.dicom.fastheader import redecode_undeclared

__all__ = ["BurnedInAnnotationWarning", "DicomExportError", "DicomWriteError", "LUNG_CATEGORY",
           "LUNG_TYPE", "SegmentCode", "SegmentSpec", "UidMap", "atomic_save",
           "write_heatmap_capture", "write_lung_segmentation", "write_segmentation"]

_MANUFACTURER = "radview"
_RESEARCH = "Research use only - not for diagnosis"


class BurnedInAnnotationWarning(UserWarning):
    """The exported pixels may carry burnt-in identifying text ((0028,0301) YES or unknown)."""


class DicomWriteError(RuntimeError):
    """A DICOM export could not be written (disk full, read-only folder); message for the user."""


class DicomExportError(ValueError):
    """A DICOM export cannot be made from these inputs (no segments, a mask of the wrong shape,
    a segment without codes, a source that cannot be referenced); message for the user, free of
    patient data."""


@dataclass(frozen=True)
class SegmentCode:
    """A coded concept: (0008,0102) Coding Scheme Designator, (0008,0100) Code Value,
    (0008,0104) Code Meaning, e.g. ``SegmentCode("SCT", "39607008", "Lung")``."""

    scheme: str
    value: str
    meaning: str

    def concept(self) -> hd.sr.CodedConcept:
        return hd.sr.CodedConcept(value=self.value, scheme_designator=self.scheme,
                                  meaning=self.meaning)


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of a DICOM Segmentation: its label, its mask at the source's (0028,0010)
    Rows x (0028,0011) Columns (non-zero / True inside), its (0062,0003) Segmented Property
    Category and (0062,000F) Segmented Property Type, and the model that made it ((0062,0009)
    Segment Algorithm Name, stored with its version in the algorithm identification)."""

    label: str
    mask: np.ndarray
    category: SegmentCode
    type: SegmentCode
    algorithm_name: str
    algorithm_version: str


LUNG_CATEGORY = SegmentCode("SCT", "123037004", "Anatomical Structure")
LUNG_TYPE = SegmentCode("SCT", "39607008", "Lung")


def atomic_save(ds: Dataset, dest: Path) -> Path:
    """Save ``ds`` to a temporary file beside ``dest`` and rename it into place.

    Raises
    ------
    DicomWriteError
        When the folder cannot be written (no partial file is left under ``dest``'s name).
    """
    return atomic_write(Path(dest), lambda fh: ds.save_as(fh, enforce_file_format=True),
                        DicomWriteError)


# Type 2 attributes of the Patient and General Study modules (highdicom passes them to its
# constructor): present, empty when unknown or invalid.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")
# Type 1 attributes without which a derived object cannot reference the source.
_REFERENCE = {"SOPClassUID": "(0008,0016) SOP Class UID",
              "SOPInstanceUID": "(0008,0018) SOP Instance UID",
              "StudyInstanceUID": "(0020,000D) Study Instance UID",
              "SeriesInstanceUID": "(0020,000E) Series Instance UID"}
_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})
_STRING_VRS = _TEXT_VRS | {"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"}
_SEX = frozenset({"M", "F", "O"})
# (0020,0020) values: letters A P R L H F (biped) or quadruped terms, combined; PS3.3 C.7.6.1.1.1.
_ORIENTATION = re.compile(r"^(?:[APRLHF]{1,3}|[A-Z]{1,6})$")


def _valid(elem_vr: str, value: object) -> bool:
    """Whether every value of ``value`` (one or a list) is valid for the VR (pydicom's rules:
    lengths, characters, date and time formats)."""
    values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for item in values:
                if elem_vr in ("DS", "IS"):  # parsed numbers: check the text they came from
                    item = str(getattr(item, "original_string", None) or item)
                elif elem_vr not in _STRING_VRS:
                    continue  # binary VRs: nothing to check that pydicom has not checked
                validate_value(elem_vr, item, pydicom_config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


def _reference_header(source: Dataset, deidentify: UidMap | None) -> Dataset:
    """The source's header (no pixel data) made fit to be copied into a derived object.

    The source is not modified. Invalid values are emptied (Type 2) or left out; text decoded
    without a declared character set is decoded again (``fastheader.redecode_undeclared``) and
    the copy declares UTF-8 ((0008,0005) ``ISO_IR 192``) when any text is not ASCII.

    Raises
    ------
    DicomExportError
        When the source lacks a UID that a reference to it needs, or its (0028,0010) Rows /
        (0028,0011) Columns.
    """
    missing = [name for key, name in _REFERENCE.items() if not str(source.get(key, "") or "")]
    if missing:
        raise DicomExportError(
            "the source image lacks " + ", ".join(missing) + ": a DICOM export must reference "
            "its source and cannot; export a PNG instead")
    if not source.get("Rows") or not source.get("Columns"):
        raise DicomExportError("the source image lacks (0028,0010) Rows / (0028,0011) Columns")
    header = Dataset()
    with warnings.catch_warnings():  # pydicom's read-time checks; the cleaning below decides
        warnings.simplefilter("ignore")
        for elem in source:
            if elem.tag.group == 0x7FE0 or elem.tag.is_private:
                continue
            header.add(elem)
    meta = getattr(source, "file_meta", None)
    if meta is not None:
        header.file_meta = FileMetaDataset(meta)
    # Deep copy: the cleaning below replaces values and must not reach the caller's dataset.
    header = deidentify_dataset(header, deidentify) if deidentify is not None else copy.deepcopy(header)
    declared = bool(str(header.get("SpecificCharacterSet", "") or ""))
    codec = None if declared else _undeclared_codec(header)
    non_ascii = False
    for elem in list(header):
        if elem.VR == "SQ" or elem.tag.group == 0x0002:
            continue
        value = elem.value
        if elem.VR in _TEXT_VRS and value is not None:
            text = str(value) if elem.VM <= 1 else "\\".join(str(v) for v in value)
            if not text.isascii():
                if codec is not None:
                    text = _recode(text, codec)
                    elem.value = text if elem.VM <= 1 else text.split("\\")
                non_ascii = True
        ok = _valid(elem.VR, elem.value)
        if ok and elem.keyword == "PatientSex":
            ok = str(elem.value or "") in _SEX or not str(elem.value or "")
        if not ok:
            if elem.keyword in _TYPE2:
                elem.value = ""
            else:
                del header[elem.tag]
    if non_ascii and not declared:
        header.SpecificCharacterSet = "ISO_IR 192"
    for keyword in _TYPE2:
        if keyword not in header:
            header.add_new(keyword, dictionary_VR(keyword), "")
    if not str(header.get("Modality", "") or "").strip():
        header.Modality = "OT"  # (0008,0060) is Type 1; "OT" (other) when the source omits it
    return header


def _text_values(ds: Dataset) -> list[str]:
    out = []
    for elem in ds:
        if elem.VR in _TEXT_VRS and elem.value is not None and elem.tag.group != 0x0002:
            text = str(elem.value) if elem.VM <= 1 else "\\".join(str(v) for v in elem.value)
            if not text.isascii():
                out.append(text)
    return out


def _undeclared_codec(ds: Dataset) -> str | None:
    """The code page of a header without (0008,0005) whose text is not ASCII: the one
    ``fastheader.redecode_undeclared`` finds for most values (its rule is per value, and a
    short value alone can be misread, e.g. "No 11" with the Cyrillic numero sign), applied to
    every value; ``None`` when no value is recognised (Latin-1, as read)."""
    votes: dict[str, int] = {}
    for text in _text_values(ds):
        guess = redecode_undeclared(text)
        if guess == text:
            continue
        for codec in ("utf-8", "cp1251"):
            if _recode(text, codec) == guess:
                votes[codec] = votes.get(codec, 0) + 1
    return max(votes, key=lambda c: votes[c]) if votes else None


def _recode(text: str, codec: str) -> str:
    try:
        return text.encode("latin-1").decode(codec)
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _positive_pair(value: object) -> tuple[float, float] | None:
    try:
        pair = [float(v) for v in value]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    if len(pair) != 2 or not all(np.isfinite(pair)) or min(pair) <= 0:
        return None
    return (pair[0], pair[1])


def _pixel_measures(source: Dataset) -> hd.PixelMeasuresSequence | None:
    """(0028,9110) Pixel Measures for the SEG of a projection radiograph, or ``None``.

    PS3.3 Table A.51-2 requires Pixel Measures only when a Frame of Reference in the patient
    coordinate system is defined; a projection radiograph has none, and its SEG maps onto the
    source pixel for pixel (Derivation Image functional group), so the group is optional. When
    written, its (0028,0030) Pixel Spacing is a spacing *in the patient*:

    1. the source's (0028,0030) Pixel Spacing, when both values are > 0 (``0\\0``, seen in real
       CR files, is no spacing);
    2. else (0018,1164) Imager Pixel Spacing divided by (0018,1114) Estimated Radiographic
       Magnification Factor, when both are valid (PS3.3 C.8.11.7: the detector spacing
       corrected to the patient plane);
    3. else none: nominal Imager Pixel Spacing is measured at the detector and would overstate
       sizes in the patient by the unknown magnification (about 5-20 % for chest films), so it is
       not written as a patient spacing; a reader finds it in the referenced source.

    A projection radiograph has no slice; highdicom's reader needs (0018,0050) Slice Thickness
    in this sequence, so a nominal 1 mm is written with the spacing.
    """
    spacing = _positive_pair(source.get("PixelSpacing"))
    if spacing is None:
        imager = _positive_pair(source.get("ImagerPixelSpacing"))
        try:
            factor = float(source.get("EstimatedRadiographicMagnificationFactor") or 0)
        except (TypeError, ValueError):
            factor = 0.0
        if imager is not None and np.isfinite(factor) and factor > 0:
            spacing = (round(imager[0] / factor, 6), round(imager[1] / factor, 6))
    if spacing is None:
        return None
    return hd.PixelMeasuresSequence(pixel_spacing=list(spacing), slice_thickness=1.0)


def _orientation(source: Dataset) -> list[str]:
    """(0020,0020) Patient Orientation of the source when it is a valid pair, else empty."""
    value = source.get("PatientOrientation")
    try:
        pair = [str(v).strip() for v in (value or [])]
    except TypeError:
        return []
    if len(pair) == 2 and all(_ORIENTATION.match(v) for v in pair):
        return pair
    return []


# (0018,0015) Body Part Examined values (PS3.16 Annex L) of unpaired structures.
_UNPAIRED = frozenset({
    "ABDOMEN", "ABDOMENPELVIS", "CHEST", "CHESTABDOMEN", "CHESTABDPELVIS", "COCCYX", "CSPINE",
    "HEAD", "HEADNECK", "HEART", "LSPINE", "NECK", "PELVIS", "SACRUM", "SKULL", "SPINE",
    "SSPINE", "STERNUM", "THORAX", "TSPINE", "WHOLEBODY", "ESOPHAGUS", "LARYNX", "TRACHEA",
})


def _set_laterality(ds: Dataset, source: Dataset) -> None:
    """(0018,0015) Body Part Examined from the source and (0020,0060) Laterality (Type 2C in
    General Series, for paired structures): absent for an unpaired body part; else the source's
    Laterality, else its (0020,0062) Image Laterality, when R or L; else empty (unknown)."""
    part = str(source.get("BodyPartExamined", "") or "").strip().upper()
    if part and _valid("CS", part):
        ds.BodyPartExamined = part
    if part in _UNPAIRED:  # the condition is unsatisfied: Laterality may not be present
        if "Laterality" in ds:
            del ds.Laterality
        return
    for keyword in ("Laterality", "ImageLaterality"):
        value = str(source.get(keyword, "") or "").strip().upper()
        if value in ("R", "L"):
            ds.Laterality = value
            return
    ds.Laterality = ""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep highdicom's warnings and log records out of the user's logs while it builds an
    object: they quote header values (a patient's name that "is unlikely to represent the
    intended person name", a source's SOP Instance UID)."""
    log = logging.getLogger("highdicom")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _software(*parts: str) -> list[str]:
    return [f"radview {__version__}", *(p[:64] for p in parts)]


def _describe(head: str) -> str:
    """(0008,103E) Series Description (LO, 64): ``head`` shortened so the notice stays whole."""
    room = 64 - len(_RESEARCH) - 3
    if len(head) > room:
        head = head[: room - 1].rstrip() + "~"
    return f"{head} - {_RESEARCH}"


def _check_code(code: object, label: str, what: str) -> hd.sr.CodedConcept:
    if not isinstance(code, SegmentCode) or not (code.scheme and code.value and code.meaning):
        raise DicomExportError(
            f"segment {label!r} has no {what} code (scheme, value, meaning): declare it in the "
            "model's manifest to export it as DICOM SEG")
    try:
        return code.concept()
    except (ValueError, TypeError) as exc:
        raise DicomExportError(f"segment {label!r}: its {what} code is not valid DICOM ({exc})") from exc


def write_segmentation(
    source: Dataset,
    segments: Sequence[SegmentSpec],
    dest: Path,
    *,
    series_number: int = 9001,
    deidentify: UidMap | None = None,
) -> Path:
    """Write a BINARY DICOM Segmentation with one segment per spec, referencing ``source``.

    Parameters
    ----------
    source
        The analysed instance; its (0008,0018) SOP Instance UID is referenced and its patient
        and study modules copied (cleaned, see the module notes). It is not modified.
    segments
        One :class:`SegmentSpec` per segment, numbered 1..n in this order; each mask has the
        source's (0028,0010) Rows x (0028,0011) Columns. An empty mask is written as an empty
        frame (the segment was looked for and not found); segments may overlap.
    dest
        Output file path (``.dcm``).
    series_number
        (0020,0011) Series Number of the new series.
    deidentify
        A :class:`~viewer.dicom.deidentify.UidMap` (one per export) to write a de-identified
        object: the source's patient/study attributes are emptied, removed or replaced by dummy
        values and its UIDs replaced per PS3.15 Annex E (Basic Profile), consistently within
        the map.

    Raises
    ------
    DicomExportError
        No segments, a mask of the wrong shape, a segment without codes, or a source that cannot
        be referenced.
    DicomWriteError
        The file cannot be written.
    """
    if not segments:
        raise DicomExportError("no segments to export: the DICOM SEG needs at least one")
    header = _reference_header(source, deidentify)
    shape = (int(header.Rows), int(header.Columns))
    planes: list[np.ndarray] = []
    descriptions: list[SegmentDescription] = []
    for number, spec in enumerate(segments, start=1):
        label = str(spec.label or "").strip()
        if not label:
            raise DicomExportError(f"segment {number} has no label")
        mask = np.asarray(spec.mask)
        if mask.shape != shape:
            raise DicomExportError(
                f"segment {label!r}: mask {mask.shape} does not match the image "
                f"{shape[0]}x{shape[1]}")
        planes.append(mask > 0 if mask.dtype != np.bool_ else mask)
        category = _check_code(spec.category, label, "category")
        prop_type = _check_code(spec.type, label, "type")
        try:
            algorithm = hd.AlgorithmIdentificationSequence(
                name=str(spec.algorithm_name)[:64], version=str(spec.algorithm_version)[:64],
                family=codes.cid7162.ArtificialIntelligence)
            descriptions.append(SegmentDescription(
                segment_number=number, segment_label=label[:64],
                segmented_property_category=category, segmented_property_type=prop_type,
                algorithm_type=SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm))
        except (ValueError, TypeError) as exc:
            raise DicomExportError(f"segment {label!r} cannot be described in DICOM ({exc})") from exc
    pixels = np.stack(planes, axis=-1)[np.newaxis].astype(np.uint8)  # (1, rows, cols, segments)
    measures = _pixel_measures(header)
    if measures is None and "PixelSpacing" in header:
        del header.PixelSpacing  # e.g. 0\\0: highdicom would copy it into Pixel Measures
    algorithms = list(dict.fromkeys(f"{s.algorithm_name} {s.algorithm_version}" for s in segments))
    labels = ", ".join(dict.fromkeys(str(s.label) for s in segments))
    with _quiet():
        seg = hd.seg.Segmentation(
            source_images=[header],
            pixel_measures=measures,
            pixel_array=pixels,
            segmentation_type=SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=_MANUFACTURER,
            manufacturer_model_name=", ".join(dict.fromkeys(str(s.algorithm_name) for s in segments))[:64],
            software_versions=algorithms[0][:64],
            device_serial_number="0",
            series_description=_describe(f"Segmentation {labels} ({'; '.join(algorithms)})"),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            omit_empty_frames=False,
        )
    # (0018,1020) Software Versions: the program and the models that made the masks.
    seg.add_new(0x00181020, "LO", _software(*algorithms))
    # (0020,0020) Patient Orientation, Type 2C (no Image Orientation (Patient) here).
    seg.PatientOrientation = _orientation(header)
    if deidentify is not None:
        mark_deidentified(seg)
    return atomic_save(seg, dest)


def write_lung_segmentation(
    source: Dataset,
    mask: np.ndarray,
    dest: Path,
    *,
    algorithm_name: str,
    algorithm_version: str,
    series_number: int = 9001,
    deidentify: UidMap | None = None,
) -> Path:
    """A one-segment :func:`write_segmentation` of the lungs (SNOMED CT 39607008 "Lung",
    category 123037004 "Anatomical Structure"); non-zero in ``mask`` is lung.

    Kept for callers that have not moved to declared segments; a mask of the wrong shape raises
    :class:`DicomExportError` (a ``ValueError``).
    """
    spec = SegmentSpec(label="Lung", mask=np.asarray(mask) > 0, category=LUNG_CATEGORY,
                       type=LUNG_TYPE, algorithm_name=algorithm_name,
                       algorithm_version=algorithm_version)
    return write_segmentation(source, [spec], dest, series_number=series_number,
                              deidentify=deidentify)


def write_heatmap_capture(
    source: Dataset,
    rgb: np.ndarray,
    dest: Path,
    *,
    description: str,
    series_number: int = 9002,
    deidentify: UidMap | None = None,
) -> Path:
    """Write a DICOM Secondary Capture of a rendered heatmap view referencing ``source``.

    Parameters
    ----------
    source
        The analysed instance; patient/study modules are copied (cleaned, see the module
        notes), its SOP Instance referenced. It is not modified.
    rgb
        (H, W, 3) uint8 rendered view (heatmap blended over the image, notice burnt in).
    description
        (0008,103E) Series Description, e.g. "Grad-CAM++ pneumonia 1.0.0".
    deidentify
        As for :func:`write_segmentation`. The pixels are not scrubbed: when the source's
        (0028,0301) Burned In Annotation is YES or absent, a :class:`BurnedInAnnotationWarning`
        is issued (``warnings``) for the UI to show.

    Raises
    ------
    DicomExportError
        ``rgb`` is not an (H, W, 3) image, or the source cannot be referenced.
    """
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise DicomExportError("the secondary capture needs an (H, W, 3) uint8 RGB image")
    img = np.ascontiguousarray(img)
    header = _reference_header(source, deidentify)
    if deidentify is not None:
        note = burned_in_annotation_warning(source)
        if note:
            warnings.warn(note, BurnedInAnnotationWarning, stacklevel=2)
    orientation = _orientation(header)
    with _quiet():
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=header,
            pixel_array=img,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
                # highdicom insists on a pair of single letters for the PATIENT system; the
            # source's own value (or empty) replaces it below.
            patient_orientation=("L", "F"),
            series_instance_uid=hd.UID(),
            sop_instance_uid=hd.UID(),
            series_number=series_number,
            instance_number=1,
            manufacturer=_MANUFACTURER,
            series_description=_describe(description),
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
    # (0020,0020) Patient Orientation is Type 2C: empty means unknown, which is the truth.
    sc.PatientOrientation = orientation
    _set_laterality(sc, header)
    ref = Dataset()
    ref.ReferencedSOPClassUID = header.SOPClassUID
    ref.ReferencedSOPInstanceUID = header.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    sc.add_new(0x00181020, "LO", _software(description))
    # The research notice is text in the pixels (a strip under the image): (0028,0301) says so.
    sc.BurnedInAnnotation = "YES"
    if deidentify is not None:
        mark_deidentified(sc)
    return atomic_save(sc, dest)

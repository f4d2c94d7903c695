"""DICOM exports of analysis overlays (highdicom): lung Segmentation and heatmap Secondary Capture.

Both objects reference the source instance ((0008,1115) Referenced Series Sequence /
(0008,1140) Referenced Image Sequence via highdicom) and copy the patient and study modules from
it, so they file into the same study in a PACS. They are written under a temporary name in the
folder the user chose and renamed into place; the caller makes sure it is not a study folder.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
from highdicom.seg import (
    SegmentAlgorithmTypeValues, SegmentationTypeValues, SegmentDescription,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from viewer import __version__
from viewer.core.files import atomic_write
from viewer.dicom.deidentify import (
    UidMap, burned_in_annotation_warning, deidentify_dataset, mark_deidentified,
)

__all__ = ["BurnedInAnnotationWarning", "DicomWriteError", "UidMap", "write_lung_segmentation", "write_heatmap_capture", "atomic_save"]

_MANUFACTURER = "radview"
_RESEARCH = "Research use only - not for diagnosis"


class BurnedInAnnotationWarning(UserWarning):
    """The exported pixels may carry burnt-in identifying text ((0028,0301) YES or unknown)."""


class DicomWriteError(RuntimeError):
    """A DICOM export could not be written (disk full, read-only folder); message for the user."""


def atomic_save(ds: Dataset, dest: Path) -> Path:
    """Save ``ds`` to a temporary file beside ``dest`` and rename it into place.

    Raises
    ------
    DicomWriteError
        When the folder cannot be written (no partial file is left under ``dest``'s name).
    """
    return atomic_write(Path(dest), lambda fh: ds.save_as(fh, enforce_file_format=True),
                        DicomWriteError)


# Type 2 attributes highdicom copies from the source: present but empty when the source lacks them.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _completed(source: Dataset) -> Dataset:
    """A shallow copy of ``source`` with missing Type 2 patient/study attributes set empty."""
    missing = [k for k in _TYPE2 if k not in source]
    if not missing:
        return source
    ds = copy.copy(source)
    for keyword in missing:
        setattr(ds, keyword, "")
    return ds


def _pixel_measures(source: Dataset) -> hd.PixelMeasuresSequence:
    """Pixel Measures for a projection image.

    The spacing is (0028,0030) Pixel Spacing, else (0018,1164) Imager Pixel Spacing (detector
    plane), else 1 mm nominal. A projection radiograph has no slice; highdicom's reader needs
    (0018,0050) Slice Thickness in this sequence, so we write a nominal 1 mm.
    """
    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing") or [1.0, 1.0]
    return hd.PixelMeasuresSequence(
        pixel_spacing=[float(spacing[0]), float(spacing[1])], slice_thickness=1.0)


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
    """Write a BINARY DICOM Segmentation of the lungs referencing ``source``.

    Parameters
    ----------
    source
        The analysed instance (with pixel data); its (0008,0018) SOP Instance UID is referenced.
    mask
        Label mask at the source's (0028,0010) Rows x (0028,0011) Columns; non-zero is lung.
    dest
        Output file path (``.dcm``).
    algorithm_name, algorithm_version
        The model id and version, stored in the segment's algorithm identification.
    deidentify
        A :class:`~viewer.dicom.deidentify.UidMap` (one per export) to write a de-identified
        object: the source's patient/study attributes are emptied or removed and its UIDs
        replaced per PS3.15 Annex E (Basic Profile), consistently within the map.
    """
    m = (np.asarray(mask) > 0).astype(np.uint8)
    if m.shape != (int(source.Rows), int(source.Columns)):
        raise ValueError(f"mask {m.shape} does not match the image {source.Rows}x{source.Columns}")
    if deidentify is not None:
        source = deidentify_dataset(source, deidentify)
    source = _completed(source)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, version=algorithm_version,
        family=codes.cid7162.ArtificialIntelligence,
    )
    segment = SegmentDescription(
        segment_number=1,
        segment_label="Lung",
        segmented_property_category=codes.cid7150.AnatomicalStructure,
        segmented_property_type=codes.SCT.Lung,
        algorithm_type=SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_measures=_pixel_measures(source),
        pixel_array=m,
        segmentation_type=SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        manufacturer_model_name=algorithm_name,
        software_versions=algorithm_version,
        device_serial_number="0",
        series_description=f"Lung mask ({algorithm_name} {algorithm_version}) - {_RESEARCH}"[:64],
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    # (0018,1020) Software Versions: the program and the model that made the mask.
    seg.add_new(0x00181020, "LO", [f"radview {__version__}", f"{algorithm_name} {algorithm_version}"[:64]])
    if deidentify is not None:
        mark_deidentified(seg)
    return atomic_save(seg, dest)


def _orientation(source: Dataset) -> tuple[str, str] | None:
    """(0020,0020) Patient Orientation of the source, when it carries a valid pair."""
    value = source.get("PatientOrientation")
    if value is not None and len(value) == 2 and all(str(v) for v in value):
        return (str(value[0]), str(value[1]))
    return None


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
        The analysed instance; patient/study modules are copied, its SOP Instance referenced.
    rgb
        (H, W, 3) uint8 rendered view (heatmap blended over the image, notice burnt in).
    description
        (0008,103E) Series Description, e.g. "Grad-CAM++ pneumonia 1.0.0".
    deidentify
        As for :func:`write_lung_segmentation`. The pixels are not scrubbed: when the source's
        (0028,0301) Burned In Annotation is YES or absent, a :class:`BurnedInAnnotationWarning`
        is issued (``warnings``) for the UI to show.
    """
    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("the secondary capture needs an (H, W, 3) RGB image")
    if deidentify is not None:
        note = burned_in_annotation_warning(source)
        if note:
            warnings.warn(note, BurnedInAnnotationWarning, stacklevel=2)
        source = deidentify_dataset(source, deidentify)
    source = _completed(source)
    orientation = _orientation(source)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=img,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        # highdicom insists on a pair for the PATIENT system; see the reset below.
        patient_orientation=orientation or ("L", "F"),
        series_instance_uid=hd.UID(),
        sop_instance_uid=hd.UID(),
        series_number=series_number,
        instance_number=1,
        manufacturer=_MANUFACTURER,
        series_description=f"{description} - {_RESEARCH}"[:64],
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    if orientation is None:
        # (0020,0020) Patient Orientation is Type 2C: empty means unknown, which is the truth.
        sc.PatientOrientation = []  # zero-length value
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    sc.add_new(0x00181020, "LO", [f"radview {__version__}", description[:64]])
    # The research notice is text in the pixels (a strip under the image): (0028,0301) says so.
    sc.BurnedInAnnotation = "YES"
    if deidentify is not None:
        mark_deidentified(sc)
    return atomic_save(sc, dest)

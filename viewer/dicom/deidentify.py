"""De-identification for exports, after the DICOM Basic Application Level Confidentiality Profile
(PS3.15 Annex E, Table E.1-1, "Basic Profile" column), without its options.

What it does to a copy of a data set (the source is never modified):

- **Z** (zero length, Type 2 kept present): (0010,0030) Patient's Birth Date, (0010,0040)
  Patient's Sex, (0008,0020) Study Date, (0008,0030) Study Time, (0008,0050) Accession Number,
  (0008,0090) Referring Physician's Name, and the other dates and times in :data:`ZERO`.
- **Z with a dummy value** (the table allows "a non-zero length value that may be a dummy
  value"): (0010,0020) Patient ID, (0010,0010) Patient's Name and (0020,0010) Study ID get a
  pseudonym keyed by the :class:`UidMap`'s secret (:data:`DUMMY`), so an export still files
  into a patient and a study in a PACS or on media (a DICOMDIR needs them), the SEG and SC of
  one export agree, and nothing links them to the original or to another export. Dates stay
  empty: a made-up date would read as a real one.
- **X** (removed): other patient, institution, operator, device and free-text attributes
  (:data:`REMOVE`), every private attribute, and the overlay data/comments and curve groups
  (60xx,3000)/(60xx,4000), 50xx.
- **U** (UID replaced): every instance-level UID (:data:`UID_KEYWORDS`) is replaced by a new
  ``2.25.`` UID derived from the old one and a secret drawn per :class:`UidMap`, so references
  stay consistent *within one export* (a SEG still points at the source's new SOP Instance UID)
  and cannot be linked across exports. Well-known UIDs (SOP classes, transfer syntaxes, coding
  schemes) are not instance UIDs and are kept.
- Dates and times of acquisition/content are emptied (Z/X per the table); (0012,0062) Patient
  Identity Removed = YES, (0012,0063) De-identification Method and (0012,0064) its code
  sequence (DCM 113100 "Basic Application Confidentiality Profile") are set, and
  (0028,0303) Longitudinal Temporal Information Modified = REMOVED.

Pixel data is not scrubbed: text burnt into the pixels survives. :func:`burned_in_annotation_warning`
says when (0028,0301) Burned In Annotation is YES or absent, so the user can be warned.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

__all__ = ["BASIC_PROFILE_CODE", "DUMMY", "REMOVE", "UID_KEYWORDS", "UidMap", "ZERO",
           "burned_in_annotation_warning", "deidentify_dataset", "mark_deidentified"]

BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

# Table E.1-1 action Z or D on Type 1/2 attributes: kept present with an empty value.
ZERO: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "AccessionNumber", "ReferringPhysicianName", "StudyID", "ContentCreatorName",
    "SeriesDate", "SeriesTime", "ContentDate", "ContentTime", "AcquisitionDate",
    "AcquisitionTime", "AcquisitionDateTime", "InstanceCreationDate", "InstanceCreationTime",
)

# Table E.1-1 action X (or X/Z/D where removal is allowed): removed.
REMOVE: tuple[str, ...] = (
    # Patient
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName",
    "PatientBirthTime", "PatientAge", "PatientSize", "PatientWeight", "PatientAddress",
    "PatientMotherBirthName", "PatientTelephoneNumbers", "PatientInsurancePlanCodeSequence",
    "PatientReligiousPreference", "PatientComments", "EthnicGroup", "Occupation",
    "AdditionalPatientHistory", "MedicalRecordLocator", "MilitaryRank", "BranchOfService",
    "CountryOfResidence", "RegionOfResidence", "PregnancyStatus", "LastMenstrualDate",
    "SmokingStatus", "MedicalAlerts", "Allergies", "SpecialNeeds", "PatientState",
    "ResponsiblePerson", "ResponsibleOrganization", "PatientSexNeutered",
    "IssuerOfPatientID", "PatientBreedDescription", "PatientSpeciesDescription",
    # Study / visit / request
    "AdmissionID", "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence",
    "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "RequestingPhysician", "RequestingService",
    "RequestAttributesSequence", "RequestedProcedureDescription", "RequestedProcedureID",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "ScheduledProcedureStepID", "ScheduledPerformingPhysicianName", "StudyComments",
    "InterpretationAuthor", "ReasonForStudy", "ReasonForTheRequestedProcedure",
    "CurrentPatientLocation", "ServiceEpisodeID", "ServiceEpisodeDescription",
    "StudyDescription", "SeriesDescription", "ImageComments", "DerivationDescription",
    "ReferencedPatientSequence", "ReferencedStudySequence", "ReferencedPerformedProcedureStepSequence",
    "ProtocolName", "ContrastBolusAgent", "AcquisitionComments", "TextComments",
    "OverlayDate", "OverlayTime", "CurveDate", "CurveTime",
    # Institution, people, devices
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "InstitutionCodeSequence", "StationName", "OperatorsName", "OperatorIdentificationSequence",
    "PerformingPhysicianName", "PerformingPhysicianIdentificationSequence",
    "DeviceSerialNumber", "DetectorID", "PlateID", "CassetteID", "GantryID", "DeviceUID",
    "ModifiedAttributesSequence", "OriginalAttributesSequence", "DigitalSignaturesSequence",
    "FrameComments", "RequestedContrastAgent", "OrderEnteredBy", "OrderEntererLocation",
    "OrderCallbackPhoneNumber", "PersonName", "PersonAddress", "VerifyingObserverName",
    "VerifyingObserverSequence", "AuthorObserverSequence", "ParticipantSequence",
    "DistributionName", "DistributionAddress", "DischargeDiagnosisDescription",
    "ScheduledStudyLocation", "ScheduledStudyLocationAETitle", "PatientTransportArrangements",
)

# Table E.1-1 action U: instance UIDs replaced consistently.
UID_KEYWORDS: tuple[str, ...] = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "MediaStorageSOPInstanceUID",
    "ReferencedSOPInstanceUID", "FrameOfReferenceUID", "SynchronizationFrameOfReferenceUID",
    "ReferencedFrameOfReferenceUID", "RelatedFrameOfReferenceUID", "IrradiationEventUID",
    "ConcatenationUID", "DimensionOrganizationUID", "InstanceCreatorUID",
    "StorageMediaFileSetUID", "TransactionUID", "FiducialUID", "TargetUID",
    "SourceFrameOfReferenceUID", "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID",
    "UID", "RequestedSOPInstanceUID", "AffectedSOPInstanceUID", "PresentationDisplayCollectionUID",
    "PresentationSequenceCollectionUID", "ObservationUID", "TrackingUID",
)
# Type 2 identifiers replaced by a pseudonym (action Z with a dummy value): keyword -> the
# pseudonym's prefix, its length in hex digits, and the attributes of the original it is keyed on
# (the first one with a value: the same patient gets the same pseudonym within one export).
DUMMY: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "PatientID": ("ANON-", 12, ("PatientID", "PatientName", "StudyInstanceUID")),
    "PatientName": ("Anonymous^", 12, ("PatientID", "PatientName", "StudyInstanceUID")),
    "StudyID": ("S", 10, ("StudyInstanceUID", "StudyID")),
}
_UID_SET = frozenset(UID_KEYWORDS)
_ZERO_SET = frozenset(ZERO)
_REMOVE_SET = frozenset(REMOVE)


class UidMap:
    """Old UID -> new ``2.25.`` UID, the same within one map, unlinkable across maps.

    Use one map per export (or per export session) so that a SEG and an SC of the same image,
    written together, still reference the same (new) study, series and instance.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._map: dict[str, str] = {}

    def __call__(self, old: str) -> str:
        old = str(old)
        if not old:
            return old
        new = self._map.get(old)
        if new is None:
            digest = hashlib.sha256(self._secret + old.encode()).hexdigest()
            new = self._map[old] = str(generate_uid(prefix=None, entropy_srcs=[digest]))
        return new

    def __len__(self) -> int:
        return len(self._map)

    def pseudonym(self, kind: str, old: str, digits: int = 12) -> str:
        """``digits`` upper-case hex digits keyed by the secret, ``kind`` and ``old``: the same
        within this map, unlinkable across maps (does not count as a mapped UID)."""
        data = self._secret + kind.encode() + b"\0" + old.encode("utf-8", "surrogatepass")
        return hashlib.sha256(data).hexdigest()[:digits].upper()


def _dummy_key(ds: Dataset, keys: tuple[str, ...]) -> tuple[str, str]:
    """(attribute, value): the first of ``keys`` with a value in ``ds``, else ("", "")."""
    for key in keys:
        value = str(ds.get(key, "") or "").strip()
        if value:
            return key, value
    return "", ""


def _clean(ds: Dataset, uids: UidMap) -> None:
    """Apply the profile in place to ``ds`` and, recursively, to its sequence items."""
    for elem in list(ds):
        tag = elem.tag
        keyword = elem.keyword
        group = tag.group
        if tag.is_private or (0x5000 <= group <= 0x50FF) or (
                0x6000 <= group <= 0x60FF and tag.element in (0x3000, 0x4000)):
            del ds[tag]
        elif keyword in _REMOVE_SET:
            del ds[tag]
        elif keyword in _ZERO_SET:
            elem.value = None if elem.VR == "SQ" else ""
        elif keyword in _UID_SET and elem.VR == "UI":
            values = elem.value if elem.VM > 1 else [elem.value]
            mapped = [uids(v) for v in values if v]
            elem.value = mapped if elem.VM > 1 else (mapped[0] if mapped else "")
        elif elem.VR == "SQ":
            for item in elem.value:
                _clean(item, uids)
        elif elem.VR == "PN":
            elem.value = ""  # any other person name (Table E.1-1 lists them as X/Z/D)
        elif elem.VR in ("DA", "DT", "TM"):
            elem.value = ""  # every other date and time: Z (stricter than the table)


def mark_deidentified(ds: Dataset) -> None:
    """Set (0012,0062) Patient Identity Removed, (0012,0063)/(0012,0064) the method."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "PS3.15 Annex E Basic Profile (radview)"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = DicomSequence([code])
    ds.LongitudinalTemporalInformationModified = "REMOVED"


def deidentify_dataset(ds: Dataset, uids: UidMap, *, keep: Iterable[str] = ()) -> Dataset:
    """A de-identified deep copy of ``ds`` (file meta included); ``ds`` is not modified.

    ``keep``: keywords to leave untouched (e.g. none for exports; a caller with a reason to keep
    (0018,0015) Body Part Examined can; it is not on the profile's list anyway).
    """
    out = copy.deepcopy(ds)
    kept = {k: out[k] for k in keep if k in out}
    dummies = {keyword: prefix + uids.pseudonym(*_dummy_key(out, keys), digits)
               for keyword, (prefix, digits, keys) in DUMMY.items()}
    _clean(out, uids)
    for keyword, value in dummies.items():
        setattr(out, keyword, value)
    meta = getattr(out, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = uids(str(meta.MediaStorageSOPInstanceUID))
    for keyword, elem in kept.items():
        out[keyword] = elem
    mark_deidentified(out)
    return out


def burned_in_annotation_warning(ds: Dataset) -> str | None:
    """A warning for the user when pixels may carry identifying text, else ``None``.

    (0028,0301) Burned In Annotation = "NO" is the only value that clears the warning; "YES"
    and an absent or other value (unknown) warn. Pixel data is never scrubbed here.
    """
    value = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if value == "NO":
        return None
    state = "says YES" if value == "YES" else "is absent (unknown)"
    return ("(0028,0301) Burned In Annotation " + state + ": the exported pixels may show the "
            "patient's name or other identifying text; check the image before sharing it. "
            "De-identification removes attributes only, not text in the pixels.")

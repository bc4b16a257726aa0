"""Checks on a SEG/SR/RTSTRUCT that a member sends through a project's STOW-RS (a derived object).

Such an object is stored as sent (its UIDs must keep pointing at the images it annotates), so it is
checked here instead of de-identified: its patient and study attributes must be the stored study's
(or absent), the identity attributes of PS3.15 Table E.1-1 must be empty or the stored study's, every
text element must be left unchanged by the site's free-text cleaner (with the patient's own
identifiers where the workspace's vault holds them), and it may only add new series and instances.
Private, unknown, curve and overlay elements are removed, as the basic profile removes them.
A refusal names the attribute, never its value.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import pydicom
from pydicom.charset import encode_string
from pydicom.datadict import dictionary_has_tag, dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from curata.catalog import VIEWER_STOW, Instance, Provenance, Series, Study
from curata.collect.deid import Identifiers, clean_text
from curata.errors import InputError

STOW_STEP = VIEWER_STOW  # the provenance step of an object stored through a project's STOW-RS

# Patient, Clinical Trial Subject, General Study, Patient Study and Clinical Trial Study modules
# (PS3.3 C.7.1.1, C.7.1.3, C.7.2.1-3): the object's study is a stored one, so these are that study's.


def _keywords(text: str) -> frozenset[str]:
    """Keywords of the standard's data dictionary, as written one after another."""
    words = text.split()
    return frozenset(k for k in words if tag_for_keyword(k) is not None)


PATIENT_STUDY_KEYWORDS = _keywords(
    """
    PatientName PatientID IssuerOfPatientID IssuerOfPatientIDQualifiersSequence TypeOfPatientID
    PatientBirthDate PatientBirthTime PatientBirthDateInAlternativeCalendar
    PatientDeathDateInAlternativeCalendar PatientAlternativeCalendar PatientSex QualityControlSubject
    ReferencedPatientPhotoSequence ReferencedPatientSequence OtherPatientIDs OtherPatientIDsSequence
    OtherPatientNames EthnicGroup EthnicGroupCodeSequence PatientComments PatientSpeciesDescription
    PatientSpeciesCodeSequence PatientBreedDescription PatientBreedCodeSequence BreedRegistrationSequence
    StrainDescription StrainNomenclature StrainCodeSequence StrainAdditionalInformation
    StrainStockSequence GeneticModificationsSequence ResponsiblePerson ResponsiblePersonRole
    ResponsibleOrganization DeidentificationMethodCodeSequence SourcePatientGroupIdentificationSequence
    GroupOfPatientsIdentificationSequence PatientAddress PatientTelephoneNumbers
    PatientTelecomInformation PatientMotherBirthName PatientBirthName MilitaryRank BranchOfService
    MedicalRecordLocator PatientReligiousPreference CountryOfResidence RegionOfResidence
    PatientInsurancePlanCodeSequence PatientPrimaryLanguageCodeSequence
    ClinicalTrialSponsorName ClinicalTrialProtocolID ClinicalTrialProtocolName ClinicalTrialSiteID
    ClinicalTrialSiteName ClinicalTrialSubjectID ClinicalTrialSubjectReadingID
    StudyDate StudyTime ReferringPhysicianName ReferringPhysicianIdentificationSequence
    ConsultingPhysicianName ConsultingPhysicianIdentificationSequence StudyID AccessionNumber
    IssuerOfAccessionNumberSequence StudyDescription PhysiciansOfRecord
    PhysiciansOfRecordIdentificationSequence NameOfPhysiciansReadingStudy
    PhysiciansReadingStudyIdentificationSequence RequestingServiceCodeSequence ReferencedStudySequence
    ProcedureCodeSequence ReasonForPerformedProcedureCodeSequence
    AdmittingDiagnosesDescription AdmittingDiagnosesCodeSequence PatientAge PatientSize PatientWeight
    PatientBodyMassIndex MeasuredAPDimension MeasuredLateralDimension PatientSizeCodeSequence
    MedicalAlerts Allergies SmokingStatus PregnancyStatus LastMenstrualDate PatientState AdmissionID
    IssuerOfAdmissionIDSequence ServiceEpisodeID ServiceEpisodeDescription
    IssuerOfServiceEpisodeIDSequence PatientSexNeutered AdditionalPatientHistory ReasonForVisit
    ReasonForVisitCodeSequence Occupation
    ClinicalTrialTimePointID ClinicalTrialTimePointDescription ConsentForClinicalTrialUseSequence
    """
)
# What the derived object's own IOD has its author fill (who made it, with what): these Table E.1-1
# attributes are the object's, not the patient's or the hospital's (person names are checked by
# ``collect.deid.check_deidentified`` when the object is filed: a reader code or a pseudonym).
AUTHOR_FILLED = _keywords(
    """
    ContentCreatorName DeviceSerialNumber ReviewerName VerifyingObserverName
    """
)
# Set here, after the checks (the object is derived from de-identified images).
MARKING = frozenset({"PatientIdentityRemoved", "DeidentificationMethod"})
# Coded values: a code is no free text (SNOMED codes are digit runs the cleaner takes for IDs).
CODE_KEYWORDS = _keywords(
    """
    CodeValue CodingSchemeDesignator CodingSchemeVersion LongCodeValue URNCodeValue ContextIdentifier
    MappingResource SpecificCharacterSet ContextGroupExtensionCreatorUID TrackingUID
    """
)
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "CS"})


@cache
def identity_tags() -> frozenset[int]:
    """Table E.1-1 attributes whose basic-profile action removes or replaces a value (not U, not K),
    that the Clean Descriptors option does not turn into free text, and that are no date or time (the
    object's own dates say when it was made) or sequence (its items are checked as text)."""
    table = json.loads(
        resources.files("curata.collect.deid").joinpath("_standard/ps3.15-table-E.1-1.json").read_text()
    )
    out = set()
    for row in table:
        action = str(row.get("basicProfile", ""))
        if (
            row.get("cleanDescOpt")
            or action in ("U", "K", "")
            or not re.fullmatch("[0-9A-Fa-f]{8}", row["id"])
        ):
            continue
        tag = int(row["id"], 16)
        if dictionary_has_tag(tag) and dictionary_VR(tag) not in ("SQ", "DA", "TM", "DT", "UI"):
            out.add(tag)
    return frozenset(out)


@dataclass
class StoredStudy:
    """The study a derived object refers to, as the catalog and the site's vault know it."""

    id: int
    study_uid: str
    pseudonym: str
    site: str
    references: list[Dataset] = field(default_factory=list)  # one image header per series
    identities: Identifiers = field(default_factory=Identifiers)


def _refuse(message: str) -> InputError:
    return InputError(message, hint="the sender keeps its copy; send a corrected object")


def _norm(elem: Any) -> str:
    if elem is None or elem.value in (None, "", b""):
        return ""
    if elem.VR == "SQ":
        return json.dumps([item.to_json_dict(None, 0) for item in elem.value], sort_keys=True)
    values = elem.value if isinstance(elem.value, list | tuple) else [elem.value]
    return "\\".join(str(v).strip() for v in values)


def _stored_values(study: StoredStudy, keyword: str) -> set[str]:
    return {_norm(ref[keyword]) for ref in study.references if keyword in ref}


def strip_unsafe(ds: Dataset) -> None:
    """Private, unknown, curve (50xx) and overlay (60xx) elements removed at every depth."""
    for elem in list(ds):
        group = elem.tag.group
        if elem.tag.is_private or not dictionary_has_tag(elem.tag) or group & 0xFF00 in (0x5000, 0x6000):
            del ds[elem.tag]
        elif elem.VR == "SQ":
            for item in elem.value:
                strip_unsafe(item)


def check_study_attributes(ds: Dataset, study: StoredStudy) -> None:
    """Patient/study attributes equal to the stored study's (or empty); Table E.1-1 identity
    attributes empty or the stored study's; refused naming the attribute."""
    for elem in ds:
        keyword = elem.keyword
        if not keyword or keyword in MARKING or keyword == "StudyInstanceUID":
            continue
        value = _norm(elem)
        if not value:
            continue
        if keyword in ("PatientID", "PatientName") and value == study.pseudonym:
            continue
        is_study = keyword in PATIENT_STUDY_KEYWORDS
        if not is_study and (int(elem.tag) not in identity_tags() or keyword in AUTHOR_FILLED):
            continue
        if value not in _stored_values(study, keyword):
            what = "the stored study's" if is_study else "empty or the stored study's"
            raise _refuse(f"its {keyword} is not {what} (patient and study attributes come from the study)")


def _texts(ds: Dataset, path: str, top: bool) -> Iterable[tuple[str, str, str]]:
    for elem in ds:
        if top and (elem.keyword in PATIENT_STUDY_KEYWORDS or elem.keyword in MARKING):
            continue  # compared with the stored study's as a whole, above; set by the platform
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                yield from _texts(item, f"{path}{elem.keyword}[{i}].", False)
        elif elem.VR in _TEXT_VRS and elem.keyword not in CODE_KEYWORDS and elem.value not in (None, ""):
            values = elem.value if isinstance(elem.value, list | tuple) else [elem.value]
            for v in values:
                yield path + elem.keyword, elem.keyword, str(v)


def check_free_text(ds: Dataset, study: StoredStudy) -> None:
    """Every text value a fixed point of the site's free-text cleaner (generic identifier shapes and
    the patient's own identifiers), unless it is the stored study's own value of that attribute."""
    charsets = ds._character_set
    encodings = [charsets] if isinstance(charsets, str) else list(charsets)
    for where, keyword, text in _texts(ds, "", True):
        if clean_text(text, study.identities, generic=True) == text and _read_as_ascii_is_clean(
            text, encodings, study
        ):
            continue
        if text.strip() in _stored_values(study, keyword):
            # the site's de-identification left it so on the images: also where the object repeats
            # it in a sequence (a SEG names its source's equipment in ContributingEquipmentSequence)
            continue
        raise _refuse(f"its {where} holds what looks like an identifier (a name, date, ID or address)")


_ESCAPE = re.compile(rb"\x1b[\x20-\x2f]*[\x30-\x7e]")


def _read_as_ascii_is_clean(text: str, encodings: list[str], study: StoredStudy) -> bool:
    """Text stored in a code extension (ISO 2022 escapes) is stored as bytes that a reader ignoring the
    character set reads otherwise (``\x1b$B8675309\x1b(B`` is four kanji, and an ID in ASCII): those
    bytes, read so, must be clean too."""
    if text.isascii():
        return True
    try:
        raw = encode_string(text, encodings)
    except Exception:
        return False  # not writable in the declared character sets: not as the site's cleaner leaves it
    if b"\x1b" not in raw:
        return True
    view = _ESCAPE.sub(b" ", raw).decode("latin-1")
    return clean_text(view, study.identities, generic=True) == view


def referenced_series(ds: Dataset) -> list[str]:
    uids = {str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence", [])}
    for ev in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        uids |= {str(i.get("SeriesInstanceUID", "")) for i in ev.get("ReferencedSeriesSequence", [])}
    return sorted(u for u in uids if u)


def stowed_by(session: Session, digests: Iterable[str]) -> dict[str, set[tuple[str, str]]]:
    """Blob digest -> {(author, project)} of the objects stored through a project's STOW-RS."""
    wanted = set(digests)
    out: dict[str, set[tuple[str, str]]] = {}
    if not wanted:
        return out
    for params, output in session.execute(
        select(Provenance.parameters, Provenance.output).where(Provenance.step == STOW_STEP)
    ):
        blob = str((output or {}).get("blob", ""))
        if blob in wanted:
            who = (str(params.get("author", "")), str(params.get("project", "")))
            out.setdefault(blob, set()).add(who)
    return out


def check_uids(
    session: Session, ds: Dataset, study: StoredStudy, digest: str, author: str, project: str
) -> None:
    """The object only adds: its series is new, or one of the same study and modality that only this
    author stored through this project; its SOP Instance UID is new (or this very object again);
    no UID of another level is reused. Refused (409) otherwise, with nothing stored."""
    sop, series_uid = str(ds.get("SOPInstanceUID", "")), str(ds.get("SeriesInstanceUID", ""))
    if not sop or not series_uid or len({sop, series_uid, study.study_uid}) < 3:
        raise _refuse(
            "its SOP Instance, Series Instance and Study Instance UIDs must be three different UIDs"
        )
    if session.scalar(select(Study.id).where(Study.study_uid.in_([sop, series_uid])).limit(1)) is not None:
        raise _refuse("its SOPInstanceUID or SeriesInstanceUID is the UID of a stored study")
    if session.scalar(select(Series.id).where(Series.series_uid == sop).limit(1)) is not None:
        raise _refuse("its SOPInstanceUID is the UID of a stored series")
    if (
        session.scalar(select(Instance.id).where(Instance.sop_instance_uid == series_uid).limit(1))
        is not None
    ):
        raise _refuse("its SeriesInstanceUID is the UID of a stored instance")
    series = session.scalar(select(Series).where(Series.series_uid == series_uid))
    if series is not None:
        if series.study_id != study.id or (series.modality or "") != str(ds.get("Modality", "")):
            raise _refuse("its SeriesInstanceUID is already used by a series of another study or modality")
        digests = list(session.scalars(select(Instance.blob_digest).where(Instance.series_id == series.id)))
        senders = stowed_by(session, digests)
        if any(senders.get(d) != {(author, project)} for d in digests):
            raise _refuse("its SeriesInstanceUID is already used by a series someone else stored")
    existing = session.execute(
        select(Instance.blob_digest, Instance.series_id).where(Instance.sop_instance_uid == sop)
    ).first()
    if existing is not None and (series is None or existing[1] != series.id or existing[0] != digest):
        raise _refuse("its SOPInstanceUID is already used by another stored object")


def study_references(session: Session, store: Any, study_id: int, derived: Any) -> list[Dataset]:
    """One image header per series of the study (derived objects left out): what the site's
    de-identification left in the patient and study attributes."""
    refs: list[Dataset] = []
    for series_id, sop_class in session.execute(
        select(Series.id, Series.sop_class_uid).where(Series.study_id == study_id).order_by(Series.id)
    ):
        if derived(sop_class or ""):
            continue
        digest = session.scalar(
            select(Instance.blob_digest).where(Instance.series_id == series_id).order_by(Instance.id).limit(1)
        )
        if digest is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            refs.append(pydicom.dcmread(io.BytesIO(store.get_bytes(digest)), stop_before_pixels=True))
    return refs


def patient_identities(ws: Any, pseudonym: str) -> Identifiers:
    """The patient's own identifiers where this workspace holds the site's vault (a site-local
    install); empty on a platform fed by gateways (the identities stay on site)."""
    from curata.collect.deid import Vault
    from curata.errors import CurataError

    ids = Identifiers()
    try:
        if not ws.key_path.exists() or not ws.vault_path.exists():
            return ids
        records = Vault(ws.vault_path, ws.site_key()).lookup(pseudonym)
    except (CurataError, OSError):
        return ids
    for rec in records:
        if rec.get("kind") != "patient":
            continue
        if rec.get("patient_id"):
            ids.add_strong(str(rec["patient_id"]))
        if rec.get("patient_name"):
            ids.add_name(str(rec["patient_name"]))
            ids.add_strong(str(rec["patient_name"]))
    return ids


def fresh_file_meta(ds: Dataset) -> None:
    """The file meta group rebuilt from the object (a sender's meta may carry private information)."""
    old = getattr(ds, "file_meta", None)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = getattr(old, "TransferSyntaxUID", None) or pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta = meta

"""The planter really plants, and the scanner finds every planted value in every encoding it takes."""

from __future__ import annotations

import itertools
import random
import warnings
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from curata.demo.phi import (
    Identity,
    PlantedSet,
    load_manifest,
    make_planted_corpus,
    plant_identifiers,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, PlantedSet]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_planted_corpus(tmp_path_factory.mktemp("corpus"), 24, seed=3)


def _planted_ct(tmp_path: Path, identity: Identity | None = None, seed: int = 0) -> tuple[Path, PlantedSet]:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    planted = plant_identifiers(ds, random.Random(seed), identity=identity)
    path = tmp_path / "planted.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, planted


def _mueller(charset: str = "ISO_IR 192") -> Identity:
    base = Identity.random(random.Random(11), charset=charset)
    from dataclasses import replace

    return replace(base, family="Müllerhagen", given="Zoëlle")


def test_every_planted_value_is_found_in_raw_bytes_and_parsed_elements(corpus):
    assert len(corpus) == 24
    for path, planted in corpus:
        want = set(planted.distinct())
        assert len(want) > 40, path
        raw_found = PlantedSet.leaked_values(planted.scan(path.read_bytes()))
        assert want - raw_found == set(), f"{path}: not found in bytes: {want - raw_found}"
        parsed_found = PlantedSet.leaked_values(planted.scan_dataset(pydicom.dcmread(path)))
        assert want - parsed_found == set(), f"{path}: not found in elements: {want - parsed_found}"


def test_every_hiding_place_is_planted(tmp_path):
    path, planted = _planted_ct(tmp_path)
    ds = pydicom.dcmread(path)
    paths = {v.path for v in planted.values}
    for expected in (
        "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDsSequence[0].PatientID", "OtherPatientNames",
        "PatientBirthDate", "PatientAddress", "PatientTelephoneNumbers", "MilitaryRank", "Occupation",
        "MedicalRecordLocator", "AccessionNumber", "StudyID", "RequestAttributesSequence[0].AccessionNumber",
        "ReferencedPatientSequence[0].ReferencedSOPInstanceUID", "InstitutionName", "InstitutionAddress",
        "InstitutionalDepartmentName", "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
        "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord", "StationName", "DeviceSerialNumber",
        "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AcquisitionDateTime", "StudyInstanceUID",
        "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "file_meta.MediaStorageSOPInstanceUID",
        "StudyDescription", "SeriesDescription", "ImageComments", "AdditionalPatientHistory", "PatientComments",
        "RequestedProcedureDescription", "ProtocolName", "(6000,0022) OverlayDescription", "(6002,1500) OverlayLabel",
        "(5000,2500) CurveLabel", "IconImageSequence[0].PixelData", "DigitalSignaturesSequence[0].CertificateOfSigner",
        "DataSetTrailingPadding", "ContentSequence[0].ContentSequence[0].ContentSequence[0].PersonName",
        "ContentSequence[0].ContentSequence[0].ContentSequence[1].TextValue", "PatientBirthName",
        "PatientMotherBirthName", "PerformedProcedureStepID", "PerformedProcedureStepDescription",
        "AdmittingDiagnosesDescription", "file_meta.SourceApplicationEntityTitle",
    ):  # fmt: skip
        assert expected in paths, expected
    assert any(p.startswith("ACME PACS EXPORT") for p in paths)
    assert any(p.startswith("SIEMENS MR HEADER") for p in paths)
    # The written file holds the values where the planted set says.
    idt = planted.identity
    assert str(ds.PatientName) == idt.patient_name and len(ds.PatientName.components[0].split("^")) == 5
    assert ds.OtherPatientIDsSequence[1].PatientID == idt.other_ids[1]
    assert ds.ContentSequence[0].ContentSequence[0].ContentSequence[0].PersonName == idt.patient_name
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == planted.sop_instance_uid
    assert ds[0x0013, 0x0010].value == "ACME PACS EXPORT 2.1"
    assert idt.patient_id in ds[0x60001500].value
    assert idt.family in ds[0x50002500].value
    assert idt.patient_id.encode() in ds.IconImageSequence[0].PixelData
    assert path.read_bytes().rstrip(b"\x00").endswith(idt.patient_id.encode())  # trailing padding is last
    # Every date and UID originally in the file was replaced: only planted ones remain.
    planted_uids = {v.value for v in planted.values if v.kind == "uid"}
    planted_dates = {
        date.fromisoformat(v.value).strftime("%Y%m%d") for v in planted.values if v.kind == "date"
    }
    for elem in ds.iterall():
        if elem.VR == "DA" and elem.value:
            assert elem.value in planted_dates, elem
        if elem.VR == "UI" and elem.value and not str(elem.value).startswith("1.2.840.10008."):
            assert elem.value in planted_uids, elem


def test_clean_files_give_no_hits(corpus):
    """No false alarm on the unrelated, unplanted real files (and their pixel data)."""
    sets = [planted for _, planted in corpus[::6]]
    for name in (
        "CT_small.dcm",
        "MR_small.dcm",
        "rtplan.dcm",
        "JPEG2000.dcm",
        "US1_J2KR.dcm",
        "emri_small.dcm",
    ):
        raw = Path(get_testdata_file(name)).read_bytes()
        ds = pydicom.dcmread(get_testdata_file(name))
        for planted in sets:
            assert planted.scan(raw) == [], name
            assert planted.scan_dataset(ds) == [], name


@pytest.mark.parametrize("charset", ["ISO_IR 192", "ISO_IR 100"])
def test_non_ascii_names_are_written_and_found_in_their_encoding(tmp_path, charset):
    path, planted = _planted_ct(tmp_path, _mueller(charset))
    raw = path.read_bytes()
    codec = "utf-8" if charset == "ISO_IR 192" else "latin-1"
    assert "Müllerhagen^Zoëlle".encode(codec) in raw
    assert pydicom.dcmread(path).PatientName.family_name == "Müllerhagen"
    forms = {h.form for h in planted.scan(raw) if h.value.startswith("Müllerhagen")}
    assert any(f"({codec})" in f for f in forms)


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        ("MÜLLERHAGEN ZOËLLE", "utf-8"),  # upper case, space instead of ^
        ("zoëlle müllerhagen", "latin-1"),  # given first, another charset
        ("Muellerhagen? no: Mullerhagen, Zoelle", "ascii"),  # ASCII transliteration
        ("Müllerhagen^Zoëlle^^", "utf-16-le"),  # an encoding we do not try: found only when parsed
    ],
)
def test_name_forms_and_encodings(tmp_path, text, codec):
    _, planted = _planted_ct(tmp_path, _mueller())
    hits = planted.scan(b"\x00junk " + text.encode(codec) + b" junk\x00")
    names = {h.value for h in hits if h.kind == "name"}
    if codec == "utf-16-le":
        assert names == set()
    else:
        assert any(v.startswith("Müllerhagen") for v in names), hits


@pytest.mark.parametrize(
    "fmt", ["%Y%m%d", "%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%d %B %Y", "%B %d, %Y", "%d-%b-%Y"]
)
def test_dates_found_in_every_format_but_not_when_shifted(tmp_path, fmt):
    _, planted = _planted_ct(tmp_path)
    birth = planted.identity.birth_date
    assert {h.value for h in planted.scan(f"DOB {birth.strftime(fmt)}".encode())} == {birth.isoformat()}
    shifted = birth.replace(year=birth.year - 1)
    assert planted.scan(f"DOB {shifted.strftime(fmt)}".encode()) == []


def test_planted_dates_cannot_collide_under_a_shift():
    """A patient's dates are years apart, so a shifted date never equals another original one."""
    rng = random.Random(5)
    for _ in range(200):
        idt = Identity.random(rng)
        dates = sorted([idt.birth_date, *idt.study_dates])
        gaps = [(b - a).days for a, b in itertools.pairwise(dates)]
        assert min(gaps) > 14 * 365


def test_phone_id_and_uid_forms(tmp_path):
    _, planted = _planted_ct(tmp_path)
    idt = planted.identity
    digits = "".join(c for c in idt.phone if c.isdigit())
    assert {h.value for h in planted.scan(f"tel:{digits};".encode())} == {idt.phone}
    assert idt.patient_id in {h.value for h in planted.scan(idt.patient_id.lower().encode())}
    assert {h.kind for h in planted.scan(idt.study_uids[0].encode())} == {"uid"}
    assert planted.scan(b"2.25.1234567890") == []


def test_deflated_dataset_is_inflated_before_the_scan(tmp_path):
    path, planted = _planted_ct(tmp_path)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    out = tmp_path / "deflated.dcm"
    ds.save_as(out, enforce_file_format=True)
    raw = out.read_bytes()
    assert planted.identity.patient_id.encode() not in raw  # really compressed
    assert planted.identity.patient_id in {h.value for h in planted.scan(raw)}


def test_corpus_variety_groups_references_and_manifest(corpus):
    syntaxes = {pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID for p, _ in corpus}
    modalities = {pydicom.dcmread(p, stop_before_pixels=True).get("Modality") for p, _ in corpus}
    assert len(syntaxes) >= 5 and len(modalities) >= 5
    patients = {planted.identity.patient_id for _, planted in corpus}
    assert len(patients) == 6  # four files per patient
    by_uid = {planted.sop_instance_uid: path for path, planted in corpus}
    assert len(by_uid) == len(corpus)
    references = [(path, ref) for path, planted in corpus for ref in planted.references]
    assert references
    for path, ref in references:
        target = by_uid[ref.target_uid]
        src = pydicom.dcmread(path)
        item = src.ReferencedImageSequence[int(ref.path.split("[")[1].split("]")[0])]
        assert item.ReferencedSOPInstanceUID == pydicom.dcmread(target).SOPInstanceUID
        assert src.StudyInstanceUID == pydicom.dcmread(target).StudyInstanceUID
    for path, planted in corpus:  # input folder names carry the patient's identity, as hospital exports do
        assert planted.identity.patient_id in str(path)
    loaded = load_manifest(corpus[0][0].parents[2])
    assert [p for p, _ in loaded] == [p for p, _ in corpus]
    assert loaded[5][1].values == corpus[5][1].values


def test_same_seed_same_corpus(tmp_path):
    a = make_planted_corpus(tmp_path / "a", 3, seed=9)
    b = make_planted_corpus(tmp_path / "b", 3, seed=9)
    assert [s.values for _, s in a] == [s.values for _, s in b]
    assert [p.read_bytes() for p, _ in a] == [p.read_bytes() for p, _ in b]

"""Table E.1-1 as data, each action code and each option, on a real file."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from curata.collect.deid import Deidentifier, load_profile
from curata.collect.deid.profile import OPTIONS, PROFILES
from curata.collect.deid.table import (
    CURVE_GROUP,
    OVERLAY_DATA,
    PRIVATE,
    SUPPLEMENT,
    action_maps,
    iod_for,
    option_action,
    resolve,
    rules,
)
from curata.errors import ConfigError

from .conftest import KEY, read, to_bytes

CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def test_all_621_rows_load_with_repeating_groups_and_private() -> None:
    table = rules()
    assert len(table) == 621 + len(SUPPLEMENT)
    assert table[PRIVATE].basic == "X"
    assert table[CURVE_GROUP].basic == "X" and table[OVERLAY_DATA].basic == "X"
    assert {r.basic for r in table.values()} == {"X", "D", "U", "Z", "X/D", "X/Z", "X/Z/D", "Z/D", "X/Z/U*"}


@pytest.mark.parametrize(
    ("code", "attr_type", "expected"),
    [
        ("X/Z", "2", "Z"), ("X/Z", "3", "X"), ("X/Z", None, "Z"),
        ("X/D", "1", "D"), ("X/D", "3", "X"), ("X/D", None, "D"),
        ("X/Z/D", "1", "D"), ("X/Z/D", "2", "Z"), ("X/Z/D", "3", "X"),
        ("Z/D", "1", "D"), ("Z/D", "2", "Z"), ("Z/D", None, "D"),
        ("X/Z/U*", "1", "U"), ("X/Z/U*", "2", "U"), ("X/Z/U*", "3", "U"), ("X/Z/U*", None, "U"),
        ("K", "1", "K"), ("U", None, "U"),
    ],
)  # fmt: skip
def test_type_dependent_codes_resolve_by_type(code: str, attr_type: str | None, expected: str) -> None:
    assert resolve(code, attr_type) == expected


def test_types_come_from_the_objects_iod() -> None:
    assert iod_for(CT) == "ct-image" and iod_for(ENHANCED_CT) == "enhanced-ct-image"
    basic = load_profile("basic")
    ct_top, _ = action_maps(basic, CT)
    enh_top, _ = action_maps(basic, ENHANCED_CT)
    assert ct_top[0x00080023] == "Z"  # Content Date Z/D: type 2 in the CT image module
    assert enh_top[0x00080023] == "D"  # type 1 in enhanced CT
    assert ct_top[0x00181000] == "X"  # Device Serial Number X/Z/D: type 3 in CT
    assert enh_top[0x00181000] == "D"  # type 1 in Enhanced General Equipment
    unknown_top, _ = action_maps(basic, "1.2.3.4.5")
    assert unknown_top[0x00081140] == "U"  # Referenced Image Sequence X/Z/U*, unknown IOD: keep refs valid


@pytest.mark.parametrize("option", sorted(o for o, (col, _, _) in OPTIONS.items() if col))
def test_each_option_changes_the_rows_it_names(option: str) -> None:
    column = OPTIONS[option][0]
    on = load_profile("basic").__class__(name="t", options=frozenset({option}))
    off = load_profile("basic")
    touched = [r for r in rules().values() if any(o == option for o, _ in r.options)]
    assert touched
    for rule in touched:
        expected = dict(rule.options)[option]
        assert option_action(rule, on) in (expected, "K"), (column, rule.name)
        assert option_action(rule, off) == rule.basic


def _ct() -> Dataset:
    ds = read("CT_small.dcm")
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-778812"
    ds.StudyDate = "20190304"
    ds.AccessionNumber = "ACC99123"  # Z
    ds.PatientAddress = "12 Baker Street, London"  # X
    ds.ImageComments = "Lesion seen, compare to 2018-05-01 exam of Doe"  # X, or C under Clean Descriptors
    ds.ReferringPhysicianName = "Who^Dr"  # Z
    ds.PatientBirthDate = "19500101"
    return ds


def test_action_codes_on_a_real_file(basic, research) -> None:
    src = _ct()
    out = basic.deidentify_bytes(to_bytes(src)).dataset
    assert out.AccessionNumber == ""  # Z
    assert "PatientAddress" not in out  # X
    assert "ImageComments" not in out  # X (no Clean Descriptors)
    assert out.PatientID.startswith("CUR-") and out.PatientName == out.PatientID  # D (pseudonym)
    assert out.StudyInstanceUID.startswith("2.25.") and out.StudyInstanceUID != src.StudyInstanceUID  # U
    assert out.Modality == src.Modality and out.Rows == src.Rows  # K (not listed)
    assert out.StudyDate == ""  # Z under basic: dates go
    res = research.deidentify_bytes(to_bytes(src)).dataset
    assert res.ImageComments.startswith("Lesion seen, compare to") and "Doe" not in res.ImageComments  # C
    assert "2018-05-01" not in res.ImageComments
    assert res.StudyDate != "" and res.StudyDate != src.StudyDate  # C: shifted


def test_retain_uids_option_keeps_uids() -> None:
    src = _ct()
    prof = load_profile("basic").__class__(name="t", options=frozenset({"retain_uids"}))
    out = Deidentifier(KEY, prof, ocr=False).deidentify_bytes(to_bytes(src)).dataset
    assert out.SOPInstanceUID == src.SOPInstanceUID and out.StudyInstanceUID == src.StudyInstanceUID


def test_full_dates_option_keeps_dates() -> None:
    src = _ct()
    prof = load_profile("basic").__class__(name="t", options=frozenset({"retain_long_full_dates"}))
    out = Deidentifier(KEY, prof, ocr=False).deidentify_bytes(to_bytes(src)).dataset
    assert out.StudyDate == "20190304"
    assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"


def test_institution_option_keeps_institution() -> None:
    src = _ct()
    src.InstitutionName = "St Elsewhere Hospital"
    prof = load_profile("basic").__class__(name="t", options=frozenset({"retain_institution_identity"}))
    assert Deidentifier(KEY, prof, ocr=False).deidentify_bytes(to_bytes(src)).dataset.InstitutionName == (
        "St Elsewhere Hospital"
    )
    # X/Z/D resolved by type: removed, emptied or a dummy, never the value
    out = Deidentifier(KEY, load_profile("basic"), ocr=False).deidentify_bytes(to_bytes(src)).dataset
    assert str(out.get("InstitutionName", "")) in ("", "REMOVED")


def test_clean_structured_content_and_graphics_options() -> None:
    src = _ct()
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "Reported by Dr. Jekyll on 03/04/2019 for Doe: no acute findings"
    src.ContentSequence = Sequence([item])
    with_opt = load_profile("basic").__class__(name="t", options=frozenset({"clean_structured_content"}))
    out = Deidentifier(KEY, with_opt, ocr=False).deidentify_bytes(to_bytes(src)).dataset
    text = out.ContentSequence[0].TextValue
    assert (
        "no acute findings" in text
        and "Jekyll" not in text
        and "Doe" not in text
        and "03/04/2019" not in text
    )
    out_basic = Deidentifier(KEY, load_profile("basic"), ocr=False).deidentify_bytes(to_bytes(src)).dataset
    assert out_basic.ContentSequence[0].TextValue == "REMOVED"  # D: dummy, structure kept


def test_profiles_and_toml_overrides(tmp_path) -> None:
    assert load_profile("research").options == PROFILES["research"]
    assert load_profile("basic").options == frozenset()
    cfg = tmp_path / "site.toml"
    cfg.write_text(
        'profile = "basic"\nuid_root = "1.2.826.0.1.3680043.10.999"\npseudonym_prefix = "SITEA-"\n'
        'keep = ["StudyDescription"]\n[options]\nretain_patient_characteristics = true\n'
        '[actions]\n"(0008,0050)" = "X"\n'
    )
    prof = load_profile(None, cfg)
    assert prof.name == "basic" and prof.has("retain_patient_characteristics")
    src = _ct()
    src.StudyDescription = "CT THORAX"
    out = Deidentifier(KEY, prof, ocr=False).deidentify_bytes(to_bytes(src)).dataset
    assert out.StudyDescription == "CT THORAX"
    assert "AccessionNumber" not in out
    assert out.PatientID.startswith("SITEA-")
    assert out.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.999.") and len(out.SOPInstanceUID) <= 64
    with pytest.raises(ConfigError):
        load_profile("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[options]\nretain_everything = true\n")
    with pytest.raises(ConfigError):
        load_profile("research", bad)

"""The engine on real files: what must stay, what must go, references, dates, marks, errors, the gate."""

from __future__ import annotations

import datetime as dt
import io
import random

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from curata.collect.deid import Deidentifier, load_profile
from curata.collect.deid.engine import IMPLEMENTATION_VERSION
from curata.demo.phi import Identity
from curata.errors import DeidError, InputError

from .conftest import KEY, OTHER_KEY, dressed, read, to_bytes


def _date(s: str) -> dt.date:
    return dt.datetime.strptime(s, "%Y%m%d").date()


def test_geometry_sex_and_pixels_kept_under_research(research) -> None:
    src = read("CT_small.dcm")
    raw = to_bytes(src)
    out = research.deidentify_bytes(raw).dataset
    for kw in (
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PixelSpacing",
        "SliceThickness",
        "PatientSex",
        "Rows",
        "Columns",
        "RescaleSlope",
        "RescaleIntercept",
        "KVP",
    ):
        assert out.get(kw) == src.get(kw), kw
    assert out.PixelData == src.PixelData  # bit for bit, never decoded


def test_compressed_pixels_stay_bit_for_bit_and_readable(research) -> None:
    src = read("MR2_J2KR.dcm")
    res = research.deidentify_bytes(to_bytes(src))
    # the coded image is bit for bit; only the encoder's codestream comment ("Kakadu-2.2") is zeroed
    com = src.PixelData.index(b"\xff\x64") + 6
    size = int.from_bytes(src.PixelData[com - 4 : com - 2], "big") - 4
    assert src.PixelData[com : com + size] == b"Kakadu-2.2"
    out = res.dataset.PixelData
    assert len(out) == len(src.PixelData) and out[com : com + size] == bytes(size)
    assert out[:com] == src.PixelData[:com] and out[com + size :] == src.PixelData[com + size :]
    assert res.record.pixels == "kept" and res.record.transfer_syntax == src.file_meta.TransferSyntaxUID
    back = pydicom.dcmread(io.BytesIO(res.output_bytes))
    assert (back.pixel_array == src.pixel_array).all()


def test_age_derived_before_birth_date_goes(research, basic) -> None:
    src = read("CT_small.dcm")
    del src.PatientAge
    src.PatientBirthDate = "19600615"
    src.StudyDate = "20200614"
    out = research.deidentify_bytes(to_bytes(src)).dataset
    assert out.PatientAge == "059Y"
    assert "PatientAge" not in basic.deidentify_bytes(to_bytes(src)).dataset
    src.PatientBirthDate = "19200101"
    assert research.deidentify_bytes(to_bytes(src)).dataset.PatientAge == "090Y"  # capped


def test_one_date_shift_per_patient_keeps_intervals(research) -> None:
    idt = Identity.random(random.Random(5))
    a, _ = dressed("CT_small.dcm", 1, identity=idt, study=0)
    b, _ = dressed("MR_small.dcm", 2, identity=idt, study=1)
    da, db = research.deidentify_bytes(a).dataset, research.deidentify_bytes(b).dataset
    assert da.PatientID == db.PatientID  # same patient, same pseudonym in every study
    before = (idt.study_dates[1] - idt.study_dates[0]).days
    after = (_date(db.StudyDate) - _date(da.StudyDate)).days
    assert after == before
    assert _date(da.StudyDate) != idt.study_dates[0]
    assert da.PatientBirthDate == ""  # Z in every profile; the age carries what matters
    years = idt.study_dates[0].year - idt.birth_date.year
    assert int(da.PatientAge[:3]) in (years - 1, years)


def test_references_between_files_stay_consistent(research) -> None:
    """An SR or RT object pointing at an image points at the same image after both are remapped."""
    ct = read("CT_small.dcm")
    sr = read("reportsi.dcm")
    ref = Dataset()
    ref.ReferencedSOPClassUID = ct.SOPClassUID
    ref.ReferencedSOPInstanceUID = ct.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = ct.SeriesInstanceUID
    series.ReferencedSOPSequence = Sequence([ref])
    study = Dataset()
    study.StudyInstanceUID = ct.StudyInstanceUID
    study.ReferencedSeriesSequence = Sequence([series])
    sr.CurrentRequestedProcedureEvidenceSequence = Sequence([study])
    sr.ReferencedFrameOfReferenceUID = ct.FrameOfReferenceUID
    out_ct = research.deidentify_bytes(to_bytes(ct)).dataset
    out_sr = research.deidentify_bytes(to_bytes(sr)).dataset
    ev = out_sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert ev.StudyInstanceUID == out_ct.StudyInstanceUID
    assert ev.ReferencedSeriesSequence[0].SeriesInstanceUID == out_ct.SeriesInstanceUID
    r = ev.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert r.ReferencedSOPInstanceUID == out_ct.SOPInstanceUID
    assert r.ReferencedSOPClassUID == ct.SOPClassUID  # standard class UID kept
    assert out_sr.ReferencedFrameOfReferenceUID == out_ct.FrameOfReferenceUID != ct.FrameOfReferenceUID


def test_rt_plan_references_remapped_consistently(research) -> None:
    plan = read("rtplan.dcm")
    out = research.deidentify_bytes(to_bytes(plan)).dataset
    old_refs = [i.ReferencedSOPInstanceUID for i in plan.get("ReferencedStructureSetSequence", [])]
    new_refs = [i.ReferencedSOPInstanceUID for i in out.get("ReferencedStructureSetSequence", [])]
    assert len(old_refs) == len(new_refs)
    for o, n in zip(old_refs, new_refs, strict=True):
        assert n == research.pseudo.uid(o) and n != o


def test_deterministic_per_key(research) -> None:
    raw, _ = dressed("CT_small.dcm", 9)
    a, b = research.deidentify_bytes(raw), research.deidentify_bytes(raw)
    assert a.output_bytes == b.output_bytes and a.record.output_sha256 == b.record.output_sha256
    other = Deidentifier(OTHER_KEY, load_profile("research"), ocr=False).deidentify_bytes(raw)
    assert other.dataset.PatientID != a.dataset.PatientID
    assert other.dataset.SOPInstanceUID != a.dataset.SOPInstanceUID


def test_marked_as_deidentified_with_cid_7050_codes(research, basic) -> None:
    raw = to_bytes(read("CT_small.dcm"))
    out = pydicom.dcmread(io.BytesIO(research.deidentify_bytes(raw).output_bytes))  # as written
    assert out.PatientIdentityRemoved == "YES"
    codes = {i.CodeValue for i in out.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113101", "113103", "113104", "113105", "113107", "113108", "113109", "113111"}
    assert all(i.CodingSchemeDesignator == "DCM" for i in out.DeidentificationMethodCodeSequence)
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert "research" in str(out.DeidentificationMethod)
    out_b = basic.deidentify_bytes(raw).dataset
    assert {i.CodeValue for i in out_b.DeidentificationMethodCodeSequence} == {"113100"}
    assert out_b.LongitudinalTemporalInformationModified == "REMOVED"


def test_file_meta_rebuilt(research) -> None:
    src = read("CT_small.dcm")
    src.file_meta.SourceApplicationEntityTitle = "HOSPITAL_PACS"
    src.file_meta.ImplementationVersionName = "VENDOR_1"
    res = research.deidentify_bytes(to_bytes(src))
    back = pydicom.dcmread(io.BytesIO(res.output_bytes))
    meta = back.file_meta
    assert meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID != src.SOPInstanceUID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION
    assert "SourceApplicationEntityTitle" not in meta
    assert b"HOSPITAL_PACS" not in res.output_bytes


def test_private_blocks_unknown_removed_safe_kept(research, basic) -> None:
    src = read("MR_small.dcm")
    block = src.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "IS", "1000")  # B_value: on the safe list
    block.add_new(0x20, "LO", "Doe^Jane")  # not on the list
    other = src.private_block(0x0029, "ACME SECRET 1.0", create=True)
    other.add_new(0x10, "LO", "PID-12345678")
    raw = to_bytes(src)
    out = research.deidentify_bytes(raw).dataset
    kept = out.private_block(0x0019, "SIEMENS MR HEADER")
    assert kept[0x0C].value == 1000
    assert (kept.block_start + 0x20) not in out
    with pytest.raises(KeyError):
        out.private_block(0x0029, "ACME SECRET 1.0")
    assert not any(t.group & 1 for t in basic.deidentify_bytes(raw).dataset.keys())  # noqa: SIM118


def test_overlays_curves_icons_signatures_padding_removed_under_basic(basic) -> None:
    raw, _ = dressed("CT_small.dcm", 11)
    src = pydicom.dcmread(io.BytesIO(raw))
    assert any(0x6000 <= t.group <= 0x60FF for t in src.keys())  # the planter put them there  # noqa: SIM118
    assert any(0x5000 <= t.group <= 0x50FF for t in src.keys())  # noqa: SIM118
    out = basic.deidentify_bytes(raw).dataset
    groups = {t.group for t in out.keys()}  # noqa: SIM118
    assert not any(0x6000 <= g <= 0x60FF or 0x5000 <= g <= 0x50FF for g in groups)
    for kw in (
        "IconImageSequence",
        "DigitalSignaturesSequence",
        "DataSetTrailingPadding",
        "MACParametersSequence",
    ):
        assert kw not in out


def test_final_gate_catches_a_planted_leak() -> None:
    """A site override that keeps a private tag holding the patient ID must not get through."""
    src = read("CT_small.dcm")
    src.PatientID = "PID-55512345"
    blk = src.private_block(0x0033, "LEAKY VENDOR", create=True)
    blk.add_new(0x10, "LO", "copy of PID-55512345")
    tag = blk.get_tag(0x10)
    prof = load_profile("research")
    leaky = prof.__class__(
        name="research", options=prof.options, overrides=((int(tag), "K"), (0x00330010, "K"))
    )
    with pytest.raises(DeidError, match="final gate"):
        Deidentifier(KEY, leaky, ocr=False).deidentify_bytes(to_bytes(src))


def test_bad_inputs_raise_input_error(research) -> None:
    with pytest.raises(InputError, match="not a DICOM"):
        research.deidentify_bytes(b"hello, this is not an image" * 10)
    raw = to_bytes(read("CT_small.dcm"))
    with pytest.raises(InputError):
        research.deidentify_bytes(raw[: len(raw) // 3])
    ds = read("CT_small.dcm")
    del ds.StudyInstanceUID
    with pytest.raises(InputError, match="StudyInstanceUID"):
        research.deidentify_bytes(to_bytes(ds))


def test_dataset_entry_point_leaves_input_alone(research) -> None:
    ds = read("CT_small.dcm")
    name = str(ds.PatientName)
    res = research.deidentify_dataset(ds)
    assert str(ds.PatientName) == name
    assert res.dataset.PatientName != name and res.record.patient_pseudonym == res.dataset.PatientID


def test_record_is_pseudonymous_and_json_able(research) -> None:
    import json

    raw, planted = dressed("CT_small.dcm", 21)
    rec = research.deidentify_bytes(raw).record.as_dict()
    text = json.dumps(rec)
    assert not planted.scan(text.encode())
    assert rec["profile"] == "research" and len(rec["input_sha256"]) == 64 and rec["code_version"]


def test_seg_references_follow_the_source_images(research) -> None:
    """A real DICOM-SEG and the CT it segments, de-identified apart, still point at each other."""
    seg = read("liver.dcm")
    ref_series = seg.ReferencedSeriesSequence[0]
    ct = read("CT_small.dcm")
    ct.SOPInstanceUID = ref_series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    ct.SeriesInstanceUID = ref_series.SeriesInstanceUID
    ct.FrameOfReferenceUID = seg.FrameOfReferenceUID
    ct.StudyInstanceUID = seg.StudyInstanceUID
    ct.PatientID = seg.PatientID
    out_seg = research.deidentify_bytes(to_bytes(seg)).dataset
    out_ct = research.deidentify_bytes(to_bytes(ct)).dataset
    assert out_seg.ReferencedSeriesSequence[0].SeriesInstanceUID == out_ct.SeriesInstanceUID
    refs = {
        i.ReferencedSOPInstanceUID for i in out_seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert out_ct.SOPInstanceUID in refs
    assert out_seg.FrameOfReferenceUID == out_ct.FrameOfReferenceUID
    assert out_seg.StudyInstanceUID == out_ct.StudyInstanceUID and out_seg.PatientID == out_ct.PatientID
    derived = set()
    for frame in out_seg.PerFrameFunctionalGroupsSequence:
        for d in frame.DerivationImageSequence:
            derived |= {s.ReferencedSOPInstanceUID for s in d.SourceImageSequence}
    assert out_ct.SOPInstanceUID in derived
    src_pos = [f.PlanePositionSequence[0].ImagePositionPatient for f in seg.PerFrameFunctionalGroupsSequence]
    out_pos = [
        f.PlanePositionSequence[0].ImagePositionPatient for f in out_seg.PerFrameFunctionalGroupsSequence
    ]
    assert src_pos == out_pos  # geometry inside functional groups kept
    assert out_seg.PixelData == seg.PixelData
    assert [s.SegmentLabel for s in out_seg.SegmentSequence] == [s.SegmentLabel for s in seg.SegmentSequence]


def test_patient_characteristics_kept_only_with_the_option(research, basic) -> None:
    src = read("CT_small.dcm")
    src.PatientWeight = "71.5"
    src.PatientSize = "1.72"
    src.PatientSex = "F"
    src.SmokingStatus = "NO"
    r = research.deidentify_bytes(to_bytes(src)).dataset
    assert (r.PatientWeight, r.PatientSize, r.PatientSex, r.SmokingStatus) == (71.5, 1.72, "F", "NO")
    b = basic.deidentify_bytes(to_bytes(src)).dataset
    assert "PatientWeight" not in b and "SmokingStatus" not in b and b.PatientSex == ""


def test_vault_uid_map_on_request(tmp_path) -> None:
    from curata.collect.deid import Vault

    prof = load_profile("research")
    prof = prof.__class__(name=prof.name, options=prof.options, vault_uids=True)
    vault = Vault(tmp_path, KEY)
    src = read("CT_small.dcm")
    res = Deidentifier(KEY, prof, vault=vault, ocr=False).deidentify_bytes(to_bytes(src))
    uid_map = {r["original"]: r["new"] for r in vault.records() if r["kind"] == "uid"}
    assert uid_map[str(src.SOPInstanceUID)] == res.dataset.SOPInstanceUID
    assert str(src.SOPInstanceUID).encode() not in res.output_bytes


def test_deflated_input_stays_readable_and_the_gate_looks_inside(research) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    src = read("CT_small.dcm")
    src.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    res = research.deidentify_bytes(to_bytes(src))
    back = pydicom.dcmread(io.BytesIO(res.output_bytes))
    assert back.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert back.pixel_array.shape == (128, 128) and back.PatientID.startswith("CUR-")
    # the same leak as test_final_gate_catches_a_planted_leak, hidden by deflate: still caught
    src.PatientID = "PID-55512345"
    blk = src.private_block(0x0033, "LEAKY VENDOR", create=True)
    blk.add_new(0x10, "LO", "copy of PID-55512345")
    prof = load_profile("research")
    leaky = prof.__class__(name="research", options=prof.options,
                           overrides=((int(blk.get_tag(0x10)), "K"), (0x00330010, "K")))  # fmt: skip
    with pytest.raises(DeidError, match="final gate"):
        Deidentifier(KEY, leaky, ocr=False).deidentify_bytes(to_bytes(src))


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm", "reportsi.dcm"])
def test_lean_writer_matches_pydicom_byte_for_byte(name: str, research) -> None:
    """Untouched elements are copied raw; the result must be exactly what pydicom writes."""
    raw, _ = dressed(name, seed=5)
    res = research.deidentify_bytes(raw)
    ref = io.BytesIO()
    res.dataset.save_as(ref, enforce_file_format=True)
    assert res.output_bytes == ref.getvalue()


def test_standard_attributes_sent_as_un_are_still_cleaned(research) -> None:
    from pydicom.dataelem import DataElement

    ds = read("CT_small.dcm")
    ds.PatientName = "Doe^Jane"
    ds.add(DataElement(0x00081030, "UN", b"CT for Jane Doe 2019-03-04 "))  # Study Description
    ds.add(DataElement(0x00101040, "UN", b"12 Baker Street"))  # Patient's Address
    res = research.deidentify_bytes(to_bytes(ds))
    assert "PatientAddress" not in res.dataset
    assert res.dataset.StudyDescription.startswith("CT for") and "Jane" not in res.dataset.StudyDescription
    assert b"Baker" not in res.output_bytes and b"2019-03-04" not in res.output_bytes


def test_one_deidentifier_serves_several_threads(research) -> None:
    from concurrent.futures import ThreadPoolExecutor

    raws = [dressed(n, seed=i)[0] for i, n in enumerate(["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"] * 3)]
    serial = [research.deidentify_bytes(r).output_bytes for r in raws]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda r: research.deidentify_bytes(r).output_bytes, raws))
    assert threaded == serial


@pytest.mark.parametrize("name", ["chrKoreanMulti.dcm", "chrJapMulti.dcm", "chrGerm.dcm"])
def test_lean_writer_matches_pydicom_with_group_lengths_and_iso2022(name: str, basic) -> None:
    from pathlib import Path

    import pydicom.data

    path = next(p for p in pydicom.data.get_charset_files(name) if Path(p).name == name)
    res = basic.deidentify_bytes(Path(path).read_bytes())
    ref = io.BytesIO()
    res.dataset.save_as(ref, enforce_file_format=True)
    assert res.output_bytes == ref.getvalue()


def test_implicit_input_written_explicit_resolves_ambiguous_vrs() -> None:
    """After pixel cleaning an implicit-VR object is written explicit: curve data (OB or OW) must resolve."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from curata.collect.deid import _writer

    ds = read("CT_small.dcm")
    ds.add_new(0x50000005, "US", 2)
    ds.add_new(0x50000010, "US", 3)
    ds.add_new(0x50000103, "US", 0)
    ds.add_new(0x50003000, "OW", b"\x01\x00\x02\x00\x03\x00\x04\x00\x05\x00\x06\x00")
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
    implicit.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    back = pydicom.dcmread(io.BytesIO(_writer.encode(implicit)))
    assert back[0x50003000].VR in ("OB", "OW") and back[0x50003000].value == ds[0x50003000].value
    assert back.PixelData == ds.PixelData

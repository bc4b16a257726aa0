"""Names after "by" and after a role word (outside review, findings 6 and 7): a role word between "by"
and a name is skipped and the name removed whole (it took the role word for a given name and kept the
family name: "taken by nurse Philippa Dunsworth" became "taken * Dunsworth"); a role word before a
capitalised name removes the name without "by" too; and "by <term>" keeps clinical terms (acronyms,
terms followed by a score or version, eponyms of methods and classifications, departments and
specialties, lower-case words), which the rule removed ("Graded by Gleason 3+4=7" became
"Graded * 3+4=7", "seen by Oncology" dropped a clinical note)."""

from __future__ import annotations

import pydicom
import pytest

from curata.collect.clinical.deid import clean
from curata.collect.deid import Deidentifier, load_profile
from curata.collect.deid.text import Identifiers, clean_text

from .conftest import KEY, read, to_bytes

# (text, the name's parts, none of which may survive)
NAMED = [
    ("taken by nurse Philippa Dunsworth", ["Philippa", "Dunsworth"]),
    ("CT read by radiographer Philippa Dunsworth", ["Philippa", "Dunsworth"]),
    ("scanned by technologist Evander Pottinger", ["Evander", "Pottinger"]),
    ("performed by technician Ingrid Halvorsen-Brandt", ["Ingrid", "Halvorsen", "Brandt"]),
    ("images acquired by sonographer Tamsin Oyelaran", ["Tamsin", "Oyelaran"]),
    ("reviewed by doctor Ambrose Thistlewood", ["Ambrose", "Thistlewood"]),
    ("discussed by physician Odalys Ferreira-Quaresma", ["Odalys", "Ferreira", "Quaresma"]),
    ("seen by resident Kwabena Asante-Mensah", ["Kwabena", "Asante", "Mensah"]),
    ("supervised by fellow Lucinda Marchbanks", ["Lucinda", "Marchbanks"]),
    ("verified by consultant Rhodri Penhaligon", ["Rhodri", "Penhaligon"]),
    ("booked by registrar Aoife Kavanagh-Doyle", ["Aoife", "Kavanagh", "Doyle"]),
    ("operated by surgeon Bartholomew Quaintance", ["Bartholomew", "Quaintance"]),
    ("reported by radiologist Henrike Vosskuhler", ["Henrike", "Vosskuhler"]),
    ("signed by pathologist Leopold Szczepanik", ["Leopold", "Szczepanik"]),
    ("delivered by midwife Marguerite Delacroix-Pemberton", ["Marguerite", "Delacroix", "Pemberton"]),
    ("dispensed by pharmacist Yusuf Okonjo-Adebayo", ["Yusuf", "Okonjo", "Adebayo"]),
    ("seen by nurse practitioner Glenys Ashdown", ["Glenys", "Ashdown"]),
    ("reported by consultant radiologist Iain McCorquodale", ["Iain", "McCorquodale"]),
    ("cannulated by RN Philippa Dunsworth", ["Philippa", "Dunsworth"]),
    ("checked by Nurse Philippa Dunsworth", ["Philippa", "Dunsworth"]),
    ("READ BY RADIOGRAPHER PHILIPPA DUNSWORTH", ["PHILIPPA", "DUNSWORTH"]),
    ("Seen by Philippa Dunsworth", ["Philippa", "Dunsworth"]),
    ("checked by Evander Pottinger-Lyle, see note", ["Evander", "Pottinger", "Lyle"]),
    ("injected by tech Jolyon Featherstonehaugh", ["Jolyon", "Featherstonehaugh"]),
    ("reviewed by Maarten van der Wielen", ["Maarten", "Wielen"]),
    ("reported by Oberarzt Jürgen Hölzenbein", ["Jürgen", "Hölzenbein"]),
    ("scanned by sonographer Ólafur Þórðarson", ["Ólafur", "Þórðarson"]),
    ("seen by nurse Philippa", ["Philippa"]),
    ("reviewed by Sinéad O'Halloran at 14:30", ["Sinéad", "Halloran"]),
    ("seen by June Dunsworth", ["June", "Dunsworth"]),
    ("reported by the radiologist Evander Pottinger", ["Evander", "Pottinger"]),
    ("nurse Philippa Dunsworth-Yarrow attended", ["Philippa", "Dunsworth", "Yarrow"]),
    ("Dr. Evander Pottinger reviewed", ["Evander", "Pottinger"]),
    ("radiographer Tamsin Oyelaran repeated the scan", ["Tamsin", "Oyelaran"]),
    ("sonographer Kwabena Asante-Mensah noted fluid", ["Kwabena", "Asante", "Mensah"]),
    ("Technologist: Evander Pottinger", ["Evander", "Pottinger"]),
    ("Schwester Annegret Wöllner", ["Annegret", "Wöllner"]),
    ("infirmière Ségolène Pérignon", ["Ségolène", "Pérignon"]),
    ("enfermera Inmaculada Etxeberria", ["Inmaculada", "Etxeberria"]),
    ("midwife Marguerite Delacroix present", ["Marguerite", "Delacroix"]),
]

# Report phrasing that names no one: cleaned, it stays exactly as written.
CLEAN = [
    "Graded by Gleason 3+4=7",
    "measured by RECIST 1.1",
    "confirmed by PET CT",
    "reviewed by tumour board",
    "seen by Oncology",
    "staged by TNM 8th edition",
    "classified by WHO 2016 criteria",
    "Graded by ISUP grade group 2",
    "assessed by BI-RADS 4",
    "scored by PI-RADS v2.1 as 3",
    "staged by Lugano classification",
    "response assessed by RANO criteria",
    "confirmed by MRI",
    "followed by CT angiography",
    "enhanced by contrast agent",
    "seen by Radiology",
    "referred by GP",
    "reviewed by MDT",
    "reported by Pathology Department",
    "measured by Doppler ultrasound",
    "identified by Ultrasound",
    "demonstrated by Mammography",
    "performed by Interventional Radiology",
    "confirmed by Histology",
    "patient tolerated the procedure well",
    "patient positioned supine, arms up",
    "Name of protocol: chest",
    "by contrast, the left kidney enhances",
    "Standby mode",
    "reviewed by the radiologist",
    "performed by the nurse",
    "Images reviewed by Radiologist",
    "Signed by Consultant",
    "Resident on call informed",
    "graded by Fuhrman nuclear grade",
    "seen by Cardiology and Oncology teams",
    "assessed by PERCIST",
    "density measured by Hounsfield units",
    "reviewed by tumour board on Monday",
    "categorised by Lung-RADS 2",
    "classified by Bosniak criteria",
    "CT guided biopsy by IR",
    "Consultant Radiologist report",
    "radiographer comments: motion artefact",
    "access by Seldinger technique",
    "report due by Friday",
    "CONFIRMED BY PET CT",
    "graded by Gleason pattern 4",
]


@pytest.mark.parametrize(("text", "parts"), NAMED)
def test_a_name_after_by_or_a_role_word_is_removed_whole(text: str, parts: list[str]) -> None:
    out = clean_text(text, Identifiers())
    assert not [p for p in parts if p in out], out


@pytest.mark.parametrize("text", CLEAN)
def test_report_phrasing_naming_no_one_is_kept(text: str) -> None:
    assert clean_text(text, Identifiers()) == text


def test_the_role_word_is_kept_and_the_name_goes() -> None:
    assert clean_text("taken by nurse Philippa Dunsworth", Identifiers()) == "taken by nurse *"
    assert clean_text("nurse Philippa Dunsworth-Yarrow attended", Identifiers()) == "nurse * attended"


def test_the_patients_own_name_still_goes_after_any_word() -> None:
    ids = Identifiers()
    ids.add_name("GLEASON^ONCOLOGY")
    assert "Gleason" not in clean_text("Graded by Gleason 3+4=7", ids)
    assert "Oncology" not in clean_text("seen by Oncology", ids)


def _deid(texts: dict[str, str], *, whole: bool) -> pydicom.Dataset:
    ds = read("CT_small.dcm")
    for keyword, value in texts.items():
        setattr(ds, keyword, value)
    deid = Deidentifier(KEY, load_profile("research"), ocr=False)
    deid.raw_lane = deid.native_lane = not whole
    return deid.deidentify_bytes(to_bytes(ds)).dataset


@pytest.mark.parametrize("whole", [False, True])
def test_in_dicom_text(whole: bool) -> None:
    out = _deid(
        {
            "ImageComments": "taken by nurse Philippa Dunsworth",
            "StudyDescription": "CT read by radiographer Philippa Dunsworth",
            "SeriesDescription": "confirmed by PET CT",
            "ProtocolName": "measured by RECIST 1.1",
        },
        whole=whole,
    )
    assert "Dunsworth" not in str(out.ImageComments) and "Dunsworth" not in str(out.StudyDescription)
    assert str(out.SeriesDescription) == "confirmed by PET CT"
    assert str(out.ProtocolName) == "measured by RECIST 1.1"


def test_in_clinical_notes() -> None:
    empty = Identifiers()
    assert clean("seen by Oncology", empty) == "seen by Oncology"
    assert clean("reviewed by tumour board", empty) == "reviewed by tumour board"
    out = clean("taken by nurse Philippa Dunsworth", empty)
    assert out is not None and "Dunsworth" not in out and "Philippa" not in out

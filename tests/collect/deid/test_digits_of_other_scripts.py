"""Identifiers written in the digits of another script: the MRN 4417702 as ٤٤١٧٧٠٢ (Arabic-Indic) or
۴۴۱۷۷۰۲ (Persian), the birth date as ۱۳۴۸/۱۲/۲۴ in the Solar Hijri calendar, ๑๕ มี.ค. ๒๕๑๓ in the
Thai one, १९७०-०३-१५ in Devanagari, as sites in Iran, the Arab world, Thailand, India and Bangladesh
write them. Found by the session that checked the calendars' open items: all 240 such values were
released as written (every profile, through the lanes and the whole engine). ``_readings.fold`` now
reads a digit of any script as its ASCII digit, an identifier written so is also known by its ASCII
form, and ``find_identifier`` (slides, VCF, clinical rows) reads UTF-8 text's digits so too."""

from __future__ import annotations

import io

import pydicom
import pydicom.data
import pytest

from curata.collect.deid.text import Identifiers, find_identifier, identity_spans

from .conftest import ct_small, released_or_none

KEY = b"k" * 32
PROFILES = ("basic", "research", "research-strict")
ZEROS = {
    "arabic-indic": "\u0660",
    "persian": "\u06f0",
    "devanagari": "\u0966",
    "thai": "\u0e50",
    "bengali": "\u09e6",
}
# the patient below: MRN 4417702, other ID XK4471923, born 15 March 1970 (24 Esfand 1348, BE 2513, Showa 45)
FORMS = ("4417702", "XK4471923", "19700315", "1970-03-15", "15/03/1970", "1348/12/24", "15 มี.ค. 2513",
         "昭和45年3月15日")  # fmt: skip


def _in(script: str, text: str) -> str:
    zero = ord(ZEROS[script])
    return "".join(chr(zero + int(c)) if c.isascii() and c.isdigit() else c for c in text)


def _file(pid: str = "4417702", **values: str) -> bytes:
    return ct_small(pid, "19700315", OtherPatientIDs="XK4471923", **values)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("script", sorted(ZEROS))
def test_an_identifier_in_another_scripts_digits_never_survives(
    script: str, profile: str, whole: bool
) -> None:
    for form in FORMS:
        written = _in(script, form)
        data = _file(
            ImageComments=f"DOB {written} x",  # cleaned under research
            ContentDescription=f"born {written}",  # kept under research and basic
            Manufacturer=f"Site {written}",  # kept
        )
        out = released_or_none(data, profile, whole=whole, key=KEY)
        assert out is None or written.encode() not in out, (form, written)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize(
    "header", ["\u0664\u0664\u0661\u0667\u0667\u0660\u0662", "\u06f4\u06f4\u06f1\u06f7\u06f7\u06f0\u06f2"]
)
@pytest.mark.parametrize("written", ["GE 4417702", "GE \u0664\u0664\u0661\u0667\u0667\u0660\u0662"])
def test_an_id_sent_in_other_digits_is_known_in_ascii_digits_too(
    header: str, written: str, whole: bool
) -> None:
    """PatientID ٤٤١٧٧٠٢: the same MRN in ASCII (or Arabic-Indic for a Persian ID) in a cleaned element."""
    out = released_or_none(_file(header, Manufacturer=written), "research", whole=whole, key=KEY)
    assert out is None or (b"4417702" not in out and written.encode() not in out)


def test_other_digits_that_name_no_one_are_kept() -> None:
    """A control: a description with Arabic-Indic digits that are not the patient's stays as written."""
    text = "CT \u0663\u0660 mm \u0661\u0662\u0660 kV"
    out = released_or_none(_file(StudyDescription=text), "research", whole=False, key=KEY)
    assert out is not None
    assert pydicom.dcmread(io.BytesIO(out)).StudyDescription == text


@pytest.mark.parametrize(
    "written",
    ["MRN \u06f4\u06f4\u06f1\u06f7\u06f7\u06f0\u06f2", "DOB \u06f1\u06f9\u06f6\u06f1/\u06f0\u06f2/\u06f0\u06f3",
     "DOB \u0661\u0663\u0663\u0669/\u0661\u0661/\u0661\u0664", "BD=\u06f6\u06f1\u06f0\u06f2\u06f0\u06f3"],
)  # fmt: skip
def test_the_byte_gate_of_slides_vcf_and_tables_reads_other_digits(written: str) -> None:
    ids = Identifiers()
    ids.add_name("QUIXWORTH^ZELDA")
    ids.add_birth_date("19610203")
    ids.add_strong("4417702")
    ids.add_word("4417702")
    assert identity_spans(ids.matcher(), written)
    assert find_identifier(written.encode(), ids.gate_needles()) is not None
    assert find_identifier("CT \u0663\u0660 mm".encode(), ids.gate_needles()) is None

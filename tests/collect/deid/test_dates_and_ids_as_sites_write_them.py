"""What an outside reviewer found (seventeenth session) where the digits of other scripts and the
Japanese era's years 1 to 9 had just been covered: a date written as CLDR's Arabic short-date pattern
writes it (``١٥‏/٣‏/١٩٧٠``, a right-to-left mark before each slash), with the Arabic decimal separator
(``۱۳۴۸٫۱۲٫۲۴``) or full-width signs; an ID or a phone in groups of other digits (``٤٤١-٧٧٠٢``,
``۰۲۱ ۸۸۷۷ ۶۶۵۵``); and the era layouts Japanese forms and letters use (``平成 2年 3月 5日`` with the
numbers padded by a space, ``平成2.3.5`` with the era's whole name, ``H2. 3. 5``, ``R元年5月1日``,
``㍻2.3.5``, ``H2・3・5``, ``昭和36年 2月 3日``) were all released, every profile, lanes and whole engine.
``_readings.fold`` now drops invisible format marks and spaces beside kanji, and reads the Arabic
separators as ASCII; ``calendars._japanese`` writes the era's whole name and more separators; the
gate reads a grouped ID in other digits (``engine._grouped_otherwise``); ``find_identifier`` reads
UTF-8 text as folded."""

from __future__ import annotations

import io

import pydicom
import pydicom.data
import pytest

from curata.collect.deid.text import Identifiers, find_identifier

from .conftest import ct_small, released_or_none

KEY = b"k" * 32
PROFILES = ("basic", "research", "research-strict")
RLM, ALM = "\u200f", "\u061c"
# (birth date, written): the patient's birth date or the study date (20240305), as sites write them
DATES = [
    ("19700315", f"\u0661\u0665{RLM}/\u0663{RLM}/\u0661\u0669\u0667\u0660"),
    ("19700315", f"15{RLM}/3{RLM}/1970"),
    ("19700315", f"\u0665{RLM}/\u0663{RLM}/\u0662\u0660\u0662\u0664"),  # the study date
    ("19700315", f"15{ALM}/3{ALM}/1970"),
    ("19700315", "\u06f1\u06f3\u06f4\u06f8\u066b\u06f1\u06f2\u066b\u06f2\u06f4"),  # ۱۳۴۸٫۱۲٫۲۴
    ("19700315", "1348\u060d12\u060d24"),
    ("19900305", "平成 2年 3月 5日"),
    ("19900305", "平成 2年3月5日"),
    ("19900305", "平成2年 3月 5日"),
    ("19900305", "平成\u30002年3月5日"),
    ("19900305", "H2. 3. 5"),
    ("19900305", "H 2. 3. 5"),
    ("19900305", "平成2.3.5"),
    ("19900305", "平成2/3/5"),
    ("19900305", "平成02.03.05"),
    ("19900305", "\u337b2.3.5"),  # ㍻
    ("19900305", "H2・3・5"),
    ("19900305", "平成2・3・5"),
    ("20190501", "令和 元年 5月 1日"),
    ("20190501", "R 1. 5. 1"),
    ("20190501", "令和1.5.1"),
    ("20190501", "令和元.5.1"),
    ("20190501", "R元年5月1日"),
    ("20190501", "R元.5.1"),
    ("19700315", "R 6. 3. 5"),  # the study date
    ("19700315", "令和6/3/5"),
    ("20000305", "平成12.3.5"),
    ("20000305", "H12. 3. 5"),
    ("19610203", "昭和36年 2月 3日"),
    ("19610203", "S36. 2. 3"),
    # found by an eighth pass: a dot after the era's initial, the romaji name before 年月日
    ("19900305", "H.2.3.5"),
    ("19900305", "Heisei 2年3月5日"),
    ("20000305", "H.12.3.5"),
    ("19610203", "Showa 36年2月3日"),
]
# an ID (MRN 4417702) or the phone (021-88776655) in groups of another script's digits
GROUPED = [
    "\u0664\u0664\u0661-\u0667\u0667\u0660\u0662",
    "\u0664\u0664\u0661 \u0667\u0667\u0660\u0662",
    "\u06f0\u06f2\u06f1 \u06f8\u06f8\u06f7\u06f7 \u06f6\u06f6\u06f5\u06f5",
    "\u0966\u0968\u0967 \u096e\u096e\u096d\u096d \u096c\u096c\u096b\u096b",
    "\u06f4\u06f4\u06f1\uff0d\u06f7\u06f7\u06f0\u06f2",
]


def _file(born: str, **values: str) -> bytes:
    return ct_small("4417702", born, StudyDate="20240305", PatientTelephoneNumbers="021-88776655", **values)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("born", "written"), DATES)
def test_a_date_as_sites_write_it_never_survives(born: str, written: str, profile: str, whole: bool) -> None:
    data = _file(
        born,
        ImageComments=f"x {written} y",  # cleaned under research
        StudyDescription=f"x {written} y",
        ContentDescription=f"x {written} y",  # kept under research and basic
        Manufacturer=f"x {written} y",  # kept
    )
    out = released_or_none(data, profile, whole=whole, key=KEY)
    assert out is None or written.encode() not in out


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("written", GROUPED)
def test_an_id_in_groups_of_other_digits_never_survives(written: str, profile: str, whole: bool) -> None:
    data = _file("19700315", ContentDescription=f"x {written} y", Manufacturer=f"x {written} y")
    out = released_or_none(data, profile, whole=whole, key=KEY)
    assert out is None or written.encode() not in out


@pytest.mark.parametrize(
    "written",
    [
        "\uff11\uff19\uff17\uff10\uff0f\uff10\uff13\uff0f\uff11\uff15",
        f"15{RLM}/3{RLM}/1970",
        "1970\u066b03\u066b15",
    ],
)
def test_the_byte_gate_of_slides_vcf_and_tables_reads_full_width_and_marks(written: str) -> None:
    ids = Identifiers()
    ids.add_birth_date("19700315")
    assert find_identifier(f"note {written} seen".encode(), ids.gate_needles()) == "date"


@pytest.mark.parametrize(
    "text",
    [
        "CT \u0663\u0660 mm",
        "T2 weighted 3.5 mm",
        "R 1.5 T",
        "h2o 3.5",
        "\u0e51\u0e52\u0e50 \u0e20\u0e32\u0e1e",
        "平均 2.3.5",
        "H.264 3.5 mm",
        "pH 2.3 5 ml",
    ],
)
def test_text_that_names_no_one_is_kept(text: str) -> None:
    """Controls: other digits, era-like letters and kanji that are not this patient's."""
    out = released_or_none(_file("19900305", SeriesDescription=text), "research", whole=False, key=KEY)
    assert out is not None
    assert pydicom.dcmread(io.BytesIO(out)).SeriesDescription == text

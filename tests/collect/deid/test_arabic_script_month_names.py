"""A date with its month by name in Arabic script was released, every profile, lanes and whole engine:
the Gregorian months as Egypt and the Gulf (``15 مارس 1970``), the Levant and Iraq (``١٥ آذار ١٩٧٠``),
the Maghreb (``15 جوان 1970``), Iran (``15 ژوئن 1970``) and Pakistan (``15 جون 1970``) write them, with
the Arabic comma, the month first or ``م`` after the year; the Solar Hijri date with its Persian month
(``۲۴ اسفند ۱۳۴۸``) and the Hijri date with its Arabic month (``٧ محرم ١٣٩٠``, ``7 محرم 1390هـ``); in
Arabic-Indic, Persian or ASCII digits, and in ISO 8859-6 and cp1256 bytes too. ``calendars._arabic_script``
now writes these forms (month names folded as ``_readings.fold`` reads text: أ إ آ as ا, ة as ه, ى and
ی as ي), looked for in text that holds an Arabic letter where the date's keys (its years) are."""

from __future__ import annotations

import io

import pydicom
import pydicom.data
import pytest

from curata.collect.deid.text import Identifiers, find_identifier, readings

from .conftest import ct_small, ct_small_with_bytes, released_or_none

KEY = b"k" * 32
PROFILES = ("basic", "research", "research-strict")
# (birth date, written): 15 March 1970 is 24 Esfand 1348 and 7 Muharram 1390 (tabular: 8 Muharram)
DATES = [
    # found by an eighth pass: mixed separators, a tatweel carrying a vowel between the day and the
    # month, the month's other name in brackets first
    ("19700315", "15 مارس - 1970"),
    ("19700315", "15-مارس 1970"),
    ("19700315", "15 مارس/1970"),
    ("19700315", "\u0661\u0665 \u0640\u0650 مارس \u0661\u0669\u0667\u0660"),  # ١٥ ـِ مارس ١٩٧٠
    ("19700315", "15 (آذار) مارس 1970"),
    ("19700315", "15 (مارس) آذار 1970"),
    # found by an outside pass after the first version: "month" before or after the name, the Hijri
    # months' epithets, a space before the Arabic comma, no spaces, the year first, a Persian ordinal
    ("19700315", "15 شهر مارس 1970"),
    ("19700315", "15 من شهر مارس 1970"),
    ("19700315", "15 ماه مارس 1970"),
    ("19700315", "15 مارس ، 1970"),
    ("19700315", "15 مارس، سنة 1970"),
    ("19700315", "15 مارچ سنہ 1970"),
    ("19700315", "\u0661\u0665مارس\u0661\u0669\u0667\u0660"),  # ١٥مارس١٩٧٠
    ("19700315", "15مارس 1970"),
    ("19700315", "15.مارس.1970"),
    ("19700315", "1970 مارس 15"),
    ("19700315", "1970/مارس/15"),
    ("19700315", "7 محرم الحرام 1390"),
    ("19701109", "\u0661\u0660 رمضان المبارك \u0661\u0663\u0669\u0660 هـ"),
    ("19700412", "5 صفر المظفر 1390"),
    ("19701109", "10 من شهر رمضان 1390"),
    ("19700315", "\u06f2\u06f4 اسفندماه \u06f1\u06f3\u06f4\u06f8"),  # ۲۴ اسفندماه ۱۳۴۸
    ("19700315", "\u06f2\u06f4 اسفند\u200cماه \u06f1\u06f3\u06f4\u06f8"),  # with its non-joiner
    ("19700315", "\u06f2\u06f4 اسفند ماه \u06f4\u06f8"),  # ۲۴ اسفند ماه ۴۸
    ("19700315", "\u06f1\u06f3\u06f4\u06f8 اسفند \u06f2\u06f4"),  # ۱۳۴۸ اسفند ۲۴
    ("19700315", "\u06f2\u06f4ام اسفند \u06f1\u06f3\u06f4\u06f8"),  # ۲۴ام اسفند ۱۳۴۸
    ("19700315", "\u0661\u0665 مارس \u0661\u0669\u0667\u0660"),  # ١٥ مارس ١٩٧٠
    ("19700315", "15 مارس 1970"),
    ("19700315", "\u0661\u0665 آذار \u0661\u0669\u0667\u0660"),
    ("19700315", "15 آذار 1970"),
    ("19700315", "15 مارس، 1970"),
    ("19700315", "مارس 15, 1970"),
    ("19700315", "مارس \u0661\u0665\u060c \u0661\u0669\u0667\u0660"),  # مارس ١٥، ١٩٧٠
    ("19700315", "\u0661\u0665 مارس \u0661\u0669\u0667\u0660م"),  # ١٥ مارس ١٩٧٠م
    ("19700315", "15 مارس 1970م"),
    ("19700315", "15 مارس عام 1970"),
    ("19700315", "15 آذار/مارس 1970"),
    ("19700315", "15 آذار (مارس) 1970"),
    ("19700315", "15-مارس-1970"),
    ("19700315", "\u06f1\u06f5 مارس \u06f1\u06f9\u06f7\u06f0"),  # ۱۵ مارس ۱۹۷۰
    ("19700315", "15 مارچ 1970"),
    ("19700315", "15 مارس 70"),  # the year's last two digits
    ("19700315", "\u06f2\u06f4 اسفند \u06f4\u06f8"),  # ۲۴ اسفند ۴۸
    ("19700315", "\u0661\u0665 آذار\u060c \u0661\u0669\u0667\u0660"),
    ("19700315", "15 ﻣﺎﺭﺱ 1970"),  # presentation forms
    ("19700315", "\u06f2\u06f4 اسفند \u06f1\u06f3\u06f4\u06f8"),  # ۲۴ اسفند ۱۳۴۸
    ("19700315", "24 اسفند 1348"),
    ("19700315", "\u06f2\u06f4 اسفند ماه \u06f1\u06f3\u06f4\u06f8"),
    ("19700315", "\u0662\u0664 اسفند \u0661\u0663\u0664\u0668"),
    ("19700315", "24 حوت 1348"),  # Dari
    ("19700315", "\u0667 محرم \u0661\u0663\u0669\u0660"),  # ٧ محرم ١٣٩٠
    ("19700315", "7 محرم 1390هـ"),
    ("19700315", "\u0667 مُحَرَّم \u0661\u0663\u0669\u0660 هـ"),
    ("19700315", "8 محرم 1390"),
    ("19700315", "07 المحرم 1390"),
    ("19700315", "\u0665 مارس \u0662\u0660\u0662\u0664"),  # the study date, 5 March 2024
    ("19700315", "5 آذار 2024"),
    ("19700115", "15 يناير 1970"),
    ("19700115", "15 كانون الثاني 1970"),
    ("19700115", "15 جانفي 1970"),
    ("19700115", "15 ژانویه 1970"),
    ("19700115", "15 جنوری 1970"),
    ("19700215", "15 فبراير 1970"),
    ("19700215", "15 شباط 1970"),
    ("19700215", "15 فيفري 1970"),
    ("19700215", "15 فوریه 1970"),
    ("19700215", "15 فروری 1970"),
    ("19700415", "15 أبريل 1970"),
    ("19700415", "15 إبريل 1970"),
    ("19700415", "15 ابريل 1970"),
    ("19700415", "15 نيسان 1970"),
    ("19700415", "15 أفريل 1970"),
    ("19700415", "15 آوریل 1970"),
    ("19700415", "15 اپریل 1970"),
    ("19700515", "15 مايو 1970"),
    ("19700515", "15 مايس 1970"),
    ("19700515", "15 أيار 1970"),
    ("19700515", "15 ماي 1970"),
    ("19700515", "15 مه 1970"),
    ("19700515", "15 مئی 1970"),
    ("19700615", "15 يونيو 1970"),
    ("19700615", "15 يونيه 1970"),
    ("19700615", "15 حزيران 1970"),
    ("19700615", "15 جوان 1970"),
    ("19700615", "15 ژوئن 1970"),
    ("19700615", "15 جون 1970"),
    ("19700715", "15 يوليو 1970"),
    ("19700715", "15 يوليه 1970"),
    ("19700715", "15 تموز 1970"),
    ("19700715", "15 جويلية 1970"),
    ("19700715", "15 ژوئیه 1970"),
    ("19700715", "15 جولائی 1970"),
    ("19700815", "15 أغسطس 1970"),
    ("19700815", "15 اغسطس 1970"),
    ("19700815", "15 آب 1970"),
    ("19700815", "15 أوت 1970"),
    ("19700815", "15 اوت 1970"),
    ("19700815", "15 اگست 1970"),
    ("19700815", "15 غشت 1970"),
    ("19700915", "15 سبتمبر 1970"),
    ("19700915", "15 أيلول 1970"),
    ("19700915", "15 سپتامبر 1970"),
    ("19700915", "15 ستمبر 1970"),
    ("19701015", "15 أكتوبر 1970"),
    ("19701015", "15 تشرين الأول 1970"),
    ("19701015", "15 تشرين اول 1970"),
    ("19701015", "15 اکتبر 1970"),
    ("19701015", "15 اکتوبر 1970"),
    ("19701115", "15 نوفمبر 1970"),
    ("19701115", "15 تشرين الثاني 1970"),
    ("19701115", "15 نوامبر 1970"),
    ("19701115", "15 نومبر 1970"),
    ("19701215", "15 ديسمبر 1970"),
    ("19701215", "15 كانون الأول 1970"),
    ("19701215", "15 دسامبر 1970"),
    ("19701215", "15 دسمبر 1970"),
]


def _file(born: str, **values: str) -> bytes:
    return ct_small("4417702", born, StudyDate="20240305", **values)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("born", "written"), DATES)
def test_a_date_with_an_arabic_script_month_never_survives(
    born: str, written: str, profile: str, whole: bool
) -> None:
    data = _file(
        born,
        PatientComments=f"ولد في {written} في المستشفى",
        ImageComments=f"x {written} y",  # cleaned under research
        StudyDescription=f"x {written} y",
        ContentDescription=f"x {written} y",  # kept under research and basic
        Manufacturer=f"x {written} y",  # kept
    )
    out = released_or_none(data, profile, whole=whole, key=KEY)
    assert out is None or written.encode() not in out


# (declared character set, birth date, written, the text's codec): Arabic code pages, as declared
# (ISO_IR 127 is ISO 8859-6) or not (cp1256 text pasted from Windows into a UTF-8 or undeclared file)
CHARSETS = [
    ("ISO_IR 127", "19700315", "15 مارس 1970", "iso8859_6"),
    ("ISO_IR 127", "19700315", "15 آذار 1970", "iso8859_6"),
    ("ISO_IR 127", "19700315", "7 محرم 1390", "iso8859_6"),
    ("ISO_IR 127", "19700315", "24 اسفند 1348", "iso8859_6"),
    ("ISO_IR 127", "19700415", "15 أبريل 1970", "cp1256"),
    ("ISO_IR 127", "19700315", "15 مارس 1970", "utf-8"),
    ("ISO_IR 192", "19700515", "15 أيار 1970", "cp1256"),
    ("ISO_IR 192", "19700315", "15 مارس، 1970", "cp1256"),
    ("", "19700315", "15 مارس 1970", "cp1256"),
    ("", "19700615", "15 حزيران 1970", "iso8859_6"),
    # found by an eighth pass: the Arabic comma as a word, or after the month, and a month name of two
    # letters, in cp1256 bytes where no character set is declared
    ("", "19700315", "15 مارس ، 1970", "cp1256"),
    ("", "19700315", "15 مارس، 1970", "cp1256"),
    ("", "19700815", "15 آب 1970", "cp1256"),
    ("", "19700515", "15 مه 1970", "cp1256"),
]
ELEMENTS = ((0x00204000, "LT"), (0x0008103E, "LO"), (0x00081090, "LO"), (0x00181020, "LO"))


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("charset", "born", "written", "codec"), CHARSETS)
def test_in_arabic_code_pages_too(
    charset: str, born: str, written: str, codec: str, profile: str, whole: bool
) -> None:
    data = written.encode(codec)
    out = released_or_none(
        ct_small_with_bytes(charset, data, ELEMENTS, patient_id="4417702", born=born),
        profile,
        whole=whole,
        key=KEY,
    )
    assert out is None or data not in out


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("text", ["15 مم 1970", "قياس 15 مم ، 1970 مرة", "15 آب 1971", "15 مارس - 1971"])
def test_clean_arabic_text_in_cp1256_undeclared_is_released(text: str, whole: bool) -> None:
    """Controls: two letters between numbers (مم, mm) and another year, read from cp1256 bytes."""
    data = text.encode("cp1256")
    out = released_or_none(
        ct_small_with_bytes("", data, ELEMENTS, patient_id="4417702", born="19700315"),
        "research",
        whole=whole,
        key=KEY,
    )
    assert out is not None and data in out


@pytest.mark.parametrize(
    "text",
    [
        "مارس الطبيب المهنة 15 عاما",  # practised: no date
        "15 مارس 1971",  # another year
        "14 مارس 1970",  # another day
        "15 أبريل 1970",  # another month
        "ولد الأب في 15 آب 1971",
        "موعد المراجعة 12 يونيو 2025",
        "قياس 15 مم في مارس 1970 تقريبا",  # no day next to the month
        "\u06f2\u06f4 اسفند \u06f1\u06f3\u06f4\u06f9",  # another Solar Hijri year
        "7 محرم 1391",  # another Hijri year
        "صفر 15 مم، 1970 مرة",
        "CT \u0663\u0660 mm, 120 kV",
        "15 (آذار) مارس 1971",
        "\u0661\u0665 \u0640\u0650 مارس \u0661\u0669\u0667\u0661",
        "القياس 15 - 1970 مم",
    ],
)
@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
def test_arabic_text_that_names_no_one_is_kept(text: str, whole: bool) -> None:
    """Controls: the month names as words, and dates that are not this patient's."""
    out = released_or_none(_file("19700315", SeriesDescription=text), "research", whole=whole, key=KEY)
    assert out is not None
    assert pydicom.dcmread(io.BytesIO(out)).SeriesDescription == text


def test_the_month_names_are_found_as_any_writer_spells_them() -> None:
    """Hamza and madda on alif or not, ة or ه, ى or ي, tatweel and harakat: one form each."""
    ids = Identifiers()
    ids.add_birth_date("19700415")
    matcher = ids.matcher()
    for text in ("15 أبريل 1970", "15 إبريل 1970", "15 ابريل 1970", "15 أبريـل 1970", "15 أَبْرِيل 1970"):
        assert any(matcher.spans(r) for r in readings(text)), text


@pytest.mark.parametrize(
    "written", ["15 مارس 1970", "\u0661\u0665 آذار\u060c \u0661\u0669\u0667\u0660م", "۲۴ اسفند ۱۳۴۸"]
)
def test_the_byte_gate_of_slides_vcf_and_tables_finds_them(written: str) -> None:
    ids = Identifiers()
    ids.add_birth_date("19700315")
    assert find_identifier(f"note {written} seen".encode(), ids.gate_needles()) == "date"
    assert find_identifier("note 15 مارس 1971 seen".encode(), ids.gate_needles()) is None

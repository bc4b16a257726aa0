"""The patient's birth date in the calendars sites outside Europe and North America write it in, found
by an outside reviewer (third pass): Patient's Birth Date in Alternative Calendar (0010,0033), which
Curata's copy of PS3.15 Table E.1-1 did not list, was released as it came in every profile; and the
birth date written in the Japanese era, the Minguo calendar, the Thai Buddhist era, the Solar Hijri or
Islamic calendar, or as an ordinal date, survived in cleaned and kept text. None survives now, through
the lanes or the whole engine: each is removed, cleaned, or the object refused."""

from __future__ import annotations

import datetime as dt
import io

import pydicom
import pydicom.data
import pytest

from curata.collect.deid.calendars import japanese_era, solar_hijri, tabular_islamic

from .conftest import released_or_none

KEY = b"k" * 32
PROFILES = ("basic", "research", "research-strict")
# 15 March 1970 (Showa 45, Minguo 59, BE 2513, 24 Esfand 1348, 7 Muharram 1390, day 74)
FORMS = (
    "昭和45年3月15日", "昭和 45 年 3 月 15 日", "S45.03.15", "s45.3.15", "S 45.3.15", "S45-03-15",
    "しょうわ45ねん3がつ15にち", "民國59年3月15日", "民国059年03月15日", "059/03/15", "59/3/15",
    "15 มี.ค. 2513", "15 มีนาคม พ.ศ. 2513", "15/03/2513", "2513-03-15", "25130315",
    "1348/12/24", "24/12/1348", "13481224", "1390/01/07", "7 Muharram 1390", "8 Muharram 1390",
    "1970-074", "1970074", "S45年3月15日", "昭45.3.15", "Showa 45.3.15", "S450315", "3450315",
    "24 Esfand 1348",
)  # fmt: skip


def _file(**extra: tuple[str, str]) -> bytes:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "QUIXBORNE^ZELPHINA", "XK4471923", "19700315"
    for keyword, (vr, value) in extra.items():
        ds.add_new(pydicom.datadict.tag_for_keyword(keyword) or int(keyword, 16), vr, value)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _released(data: bytes, profile: str, whole: bool) -> bytes | None:
    return released_or_none(data, profile, whole=whole, key=KEY)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("value", ["S45.03.15", "25130315", "1348/12/24"])
def test_the_birth_date_in_an_alternative_calendar_element_goes(
    value: str, profile: str, whole: bool
) -> None:
    data = _file(**{"00100033": ("LO", value), "00100034": ("LO", value), "00100035": ("CS", "JAPANESE")})
    out = _released(data, profile, whole)
    assert out is not None  # removed (a row of its own), not refused
    assert value.encode() not in out
    ds = pydicom.dcmread(io.BytesIO(out))
    assert 0x00100033 not in ds and 0x00100034 not in ds and 0x00100035 not in ds


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("form", FORMS)
def test_the_birth_date_in_another_calendar_never_survives(form: str, profile: str, whole: bool) -> None:
    data = _file(
        ImageComments=("LT", f"DOB {form} x"),  # cleaned under research
        ContentDescription=("LO", f"born {form}"),  # kept under research and basic
        Manufacturer=("LO", f"Site {form}"),  # kept
    )
    out = _released(data, profile, whole)
    assert out is None or form.encode() not in out


def test_conversions_at_known_dates() -> None:
    """Independent of the code: published equivalents (Nowruz, the first of Ramadan, era changes)."""
    assert solar_hijri(dt.date(2024, 3, 20)) == (1403, 1, 1)  # Nowruz 1403
    assert solar_hijri(dt.date(2024, 3, 19)) == (1402, 12, 29)
    assert solar_hijri(dt.date(1979, 2, 11)) == (1357, 11, 22)  # 22 Bahman 1357
    assert tabular_islamic(dt.date(2024, 3, 11)) == (1445, 9, 1)  # 1 Ramadan 1445
    assert tabular_islamic(dt.date(1970, 3, 15)) == (1390, 1, 7)
    assert japanese_era(dt.date(1989, 1, 7))[1:] == ("s", "しょうわ", 64)  # the last day of Showa
    assert japanese_era(dt.date(1989, 1, 8))[1:] == ("h", "へいせい", 1)
    assert japanese_era(dt.date(2019, 4, 30))[1:] == ("h", "へいせい", 31)
    assert japanese_era(dt.date(2019, 5, 1))[1:] == ("r", "れいわ", 1)

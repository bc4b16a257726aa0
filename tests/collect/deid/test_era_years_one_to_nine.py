"""A Japanese era's years 1 to 9 written with no run of two digits: a child born 5 March 1990 as
H2.3.5 or 平成2年3月5日, one born 1 May 2019 as 令和元年5月1日 or R1.5.1. The era's forms were keyed by
runs of two digits alone (``text.DateNeedles``), so these were never looked for and were released in
cleaned and kept text, every profile (the sixteenth session's open item). They are keyed by the era's
marks now (``calendars.ERA_MARKS``: its first kanji, its initial before a digit, its romaji name or its
reading)."""

from __future__ import annotations

import pytest

from curata.collect.deid.text import DateNeedles, Identifiers, find_identifier

from .conftest import ct_small, released_or_none

KEY = b"k" * 32
PROFILES = ("basic", "research", "research-strict")
BORN = {
    "19900305": ("H2.3.5", "h 2.3.5", "平成2年3月5日", "平成 2 年 3 月 5 日", "平2.3.5", "Heisei 2.3.5", "H2年3月5日",
                 "へいせい2ねん3がつ5にち", "H2-3-5", "heisei2/3/5"),
    "20190501": ("令和元年5月1日", "R1.5.1", "令和1年5月1日", "れいわ元ねん5がつ1にち", "Reiwa 1.5.1", "令1.5.1"),
}  # fmt: skip


def _file(born: str, **values: str) -> bytes:
    return ct_small("XK4471923", born, **values)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("born", "form"), [(b, f) for b, forms in BORN.items() for f in forms])
def test_an_era_date_with_no_two_digit_run_never_survives(
    born: str, form: str, profile: str, whole: bool
) -> None:
    data = _file(
        born, ImageComments=f"DOB {form} x", ContentDescription=f"born {form}", Manufacturer=f"Site {form}"
    )
    out = released_or_none(data, profile, whole=whole, key=KEY)
    assert out is None or form.encode() not in out


@pytest.mark.parametrize(("born", "form"), [(b, f) for b, forms in BORN.items() for f in forms])
def test_the_era_forms_are_keyed_and_found(born: str, form: str) -> None:
    date = DateNeedles(born)
    assert form.lower() in date.forms
    ids = Identifiers()
    ids.add_birth_date(born)
    assert ids.matcher().spans(f"note {form} seen")
    if form.isascii():  # the gate of slides, VCF lines and tables: ASCII forms as bytes
        assert find_identifier(f"note {form} seen".encode(), ids.gate_needles()) == "date"


@pytest.mark.parametrize("text", ["H2.3.6", "T2 weighted 3.5 mm", "平均 2.3.5", "R2.5.1", "s2.3.5"])
def test_another_day_or_no_era_is_not_the_date(text: str) -> None:
    """Controls: another day of the era, and marks that are not this date's."""
    ids = Identifiers()
    ids.add_birth_date("19900305")
    assert not ids.matcher().spans(text)
    data = _file("19900305", SoftwareVersions=text)
    out = released_or_none(data, "research", whole=False, key=KEY)
    assert out is not None and text.encode() in out

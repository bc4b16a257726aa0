"""A date's written forms are looked for only where the date's keys are (``DateNeedles``): a text or
byte string that holds a standing form of a date always holds one of its keys, so the shortcut never
hides a date. Checked for every form of many dates, in text (cleaning), in bytes (the gate) and in
the probe that decides which raw values are decoded."""

from __future__ import annotations

import datetime as dt
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from curata.collect.deid.calendars import calendar_years
from curata.collect.deid.engine import _held_date
from curata.collect.deid.text import (
    ERA_MARKS_BYTES,
    KEY_RUNS,
    Identifiers,
    _date_forms,
    _date_needles,
    digit_keys,
    find_identifier,
    key_runs,
    key_runs_str,
)

dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)).map(
    lambda d: d.strftime("%Y%m%d")
)
# what may stand around a form in a header or a report: not a digit, nor a dot before it
around = st.sampled_from(["", " ", "^", "DOB ", "\\", "born: ", "(", "x", "\x00"])


def _ids(da: str) -> Identifiers:
    ids = Identifiers()
    ids.add_date(da)
    return ids


# 20 dates: each one writes every form of the date (well over a hundred, in several scripts and
# calendars) and looks for each three ways; 60 took two and a half minutes of the suite
@settings(max_examples=20, deadline=None)
@given(dates, around, around)
def test_every_form_of_a_date_meets_its_keys_and_is_found(da: str, before: str, after: str) -> None:
    needles = _date_needles(da)
    ids = _ids(da)
    matcher = ids.matcher()
    gate = ids.gate_needles()  # what slides, VCFs and clinical tables are checked with
    assert gate and not list(gate)  # the dates alone, kept apart: still something to look for
    forms = _date_forms(da)
    # the keys are written without the forms: the year, exactly the forms of digits alone, and the
    # years (and digits alone) of the date in other calendars
    other = calendar_years(dt.date(int(da[:4]), int(da[4:6]), int(da[6:])))
    assert needles.keys == {da[:4], da[2:4], *(f for f in forms if f.isdigit()), *other}
    for form in forms:
        text = f"{before}{form}{after}"
        assert not needles.keys.isdisjoint(digit_keys(key_runs_str(text.lower()))), form
        assert matcher.spans(text), form
        if not form.isascii():  # CJK and Korean forms: the decoded text's (spans, above)
            continue
        data = text.encode("ascii")
        low = data.lower()
        assert not needles.byte_keys.isdisjoint(digit_keys(key_runs(low))), form
        assert find_identifier(data, matcher.byte_needles()) == "date", form
        assert find_identifier(data, gate) == "date", form
        assert _held_date(low, matcher), form


def test_a_form_of_digits_alone_may_run_on_into_a_time() -> None:
    matcher = _ids("19480614").matcher()
    assert matcher.spans("acquired 19480614093000.000")
    assert _held_date(b"19480614093000.000", matcher)
    assert find_identifier(b"19480614093000.000", matcher.byte_needles()) == "date"


def test_other_dates_and_longer_numbers_are_not_taken_for_the_date() -> None:
    matcher = _ids("19480614").matcher()
    for text in (
        "14.06.1949",
        "2.14.6.1948.3",
        "1.2.840.10008.1948.6.14",
        "114/6/1948",
        "14/6/19481",
        "06141949",
    ):
        assert not matcher.spans(text), text
        assert find_identifier(text.encode(), matcher.byte_needles()) is None, text
        assert find_identifier(text.encode(), _ids("19480614").gate_needles()) is None, text
    # a text without the year's digits is not searched at all
    assert not _held_date(b"14 june", matcher)
    assert not _held_date(b"no digits here", matcher)


def test_the_digits_of_a_cjk_form_are_not_taken_for_another_date() -> None:
    # 2001年1月01日 is 2001101 in ASCII digits alone: that began 20011013, a shifted date of the same
    # file, and the gate refused it
    matcher = _ids("20010101").matcher()
    header = b"\x08\x00\x12\x00DA\x08\x0020011013\x08\x00\x13\x00TM"
    assert find_identifier(header, matcher.byte_needles()) is None
    assert not _held_date(header.lower(), matcher)
    assert not matcher.spans("created 20011013")
    assert matcher.spans("검사일 2001년 1월 1일") and matcher.spans("2001年1月01日")


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=120)
    | st.text("0123456789 \t\n\x0b\x0c\r\x1c./-:^ahsr\x00", max_size=120).map(str.encode)
)
def test_key_runs_are_the_regular_expressions_runs(data: bytes) -> None:
    """The gate's runs of digits, made by translate and split, are ``KEY_RUNS.findall``'s: every
    maximal run of two digits or more, in order, whatever bytes stand between them; then, where a
    digit stands alone, the Japanese era's marks (H2.3.5)."""
    runs = KEY_RUNS.findall(data)
    marks = set(ERA_MARKS_BYTES.findall(data)) if re.search(rb"(?<![0-9])[0-9](?![0-9])", data) else set()
    got = key_runs(data)
    assert got[: len(runs)] == runs
    assert sorted(got[len(runs) :]) == sorted(marks)


def test_an_era_year_one_with_two_digit_month_and_day_meets_its_keys() -> None:
    """H元-02-02 (2 February 1989) holds no lone digit: its era's marks key it all the same (the
    property test above drew such a date now and then, and failed)."""
    for da in ("19890202", "20191120"):
        needles = _date_needles(da)
        matcher = _ids(da).matcher()
        for form in _date_forms(da):
            assert not needles.keys.isdisjoint(digit_keys(key_runs_str(form.lower()))), form
            assert matcher.spans(form), form

"""The patient's birth date and ID as people write them in kept and cleaned text, found by an
outside reviewer: a month name with a two-digit year (15MAR70, Mar-15-70, March 15 '70), six digits
(700315), a two-digit year first (70-03-15), the month in another language (15. März 1970, 15 mars
1970), an ID's digits grouped (447-1923, 447 19 23) or without its leading zeros. None survives, in
any profile, through the lanes or the whole engine: each is cleaned, or the object is refused."""

from __future__ import annotations

import io

import pydicom
import pydicom.data
import pytest

from curata.collect.deid import Deidentifier, load_profile
from curata.collect.deid.text import DateNeedles, digit_keys, key_runs
from curata.errors import CurataError

KEY = b"k" * 32
DATE_FORMS = ("15 Mar 70", "15MAR70", "70-03-15", "15. März 1970", "15 mars 1970",
              "15 de marzo de 1970", "Mar-15-70", "March 15 '70", "15 março 1970")  # fmt: skip
ID_FORMS = (("4471923", "447-1923"), ("4471923", "447 19 23"), ("0004471923", "4471923"), ("4417702", "4.417.702"),
            ("4417702", "4,417,702"), ("4417702", "GT450 4,417,702"), ("S24-99871", "24-99871"))  # fmt: skip


def _released(
    profile: str, whole: bool, form: str, *, pid: str = "XK4471923", charset: str = "ISO_IR 192"
) -> bytes | None:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.SpecificCharacterSet = charset
    ds.PatientName = "QUIXBORNE^ZELPHINA"
    ds.PatientID = pid
    ds.PatientBirthDate = "19700315"
    ds.Manufacturer = f"Site {form}"
    ds.SoftwareVersions = form
    ds.StudyDescription = f"born {form}"
    buf = io.BytesIO()
    ds.save_as(buf)
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    deid.raw_lane = not whole
    try:
        return deid.deidentify_bytes(buf.getvalue()).output_bytes
    except CurataError:
        return None  # refused: nothing released


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", ["basic", "research", "research-strict"])
@pytest.mark.parametrize("form", DATE_FORMS)
def test_a_birth_date_as_written_never_survives(form: str, profile: str, whole: bool) -> None:
    out = _released(profile, whole, form)
    assert out is None or form.encode() not in out
    if out is not None:
        assert form not in out.decode("utf-8", "replace")


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", ["basic", "research", "research-strict"])
@pytest.mark.parametrize(("pid", "form"), ID_FORMS)
def test_an_id_as_written_never_survives(pid: str, form: str, profile: str, whole: bool) -> None:
    out = _released(profile, whole, form, pid=pid, charset="ISO_IR 100")
    assert out is None or form.encode() not in out


@pytest.mark.parametrize(
    "form", ["70-03-15", "70/3/15", "15mar70", "mar-15-70", "march 15 '70", "15. märz 1970"]
)
def test_the_date_keys_meet_every_new_form(form: str) -> None:
    """A form is looked for only where the date's keys meet the text's runs of digits: each new
    form is among the date's forms, and its own runs meet the keys."""
    date = DateNeedles("19700315")
    assert form in date.forms
    assert not digit_keys(key_runs(form.encode())).isdisjoint(date.byte_keys)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", ["basic", "research", "research-strict"])
@pytest.mark.parametrize("form", ["700315", "150370", "031570", "DOB150370", "dob:700315"])
def test_the_birth_date_in_six_digits_never_survives(form: str, profile: str, whole: bool) -> None:
    """The patient's own birth date with a two-digit year and no separator (YYMMDD, DDMMYY, MMDDYY),
    as notes write it: looked for as a whole number, like an ID's digits."""
    out = _released(profile, whole, form)
    digits = form[-6:]
    assert out is None or digits.encode() not in out


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
def test_a_time_that_reads_as_a_study_date_is_released(whole: bool) -> None:
    """Six-digit forms are the birth date's only: a file whose ContentTime (113008) is its StudyDate
    (20081130) written month first with a two-digit year is released, not refused."""
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "QUIXBORNE^ZELPHINA", "XK4471923", "19700315"
    ds.StudyDate = ds.ContentDate = "20081130"
    ds.ContentTime = "113008"
    buf = io.BytesIO()
    ds.save_as(buf)
    deid = Deidentifier(KEY, load_profile("research"), ocr=False)
    deid.raw_lane = not whole
    assert deid.deidentify_bytes(buf.getvalue()).output_bytes


def test_six_digits_alone_are_no_date_form() -> None:
    """113008 is 11:30:08 (a TM) as well as 30 Nov 2008 written month first: six digits alone would
    refuse every file whose time equals such a form of one of its dates (2 of the bench's 960)."""
    forms = DateNeedles("20081130").forms
    assert "113008" not in forms and "081130" not in forms and "301108" not in forms


ESCAPED = (  # (the patient's name, how a kept or cleaned value writes it)
    ("MÜLLER^JÖRG", "https://pacs.example/wado?patient=M%C3%9CLLER%2C%20J%C3%96RG"),  # UTF-8, percent-encoded
    ("MÜLLER^JÖRG", "M&#220;LLER J&#214;RG"),  # HTML, by number
    ("MÜLLER^JÖRG", "M&Uuml;LLER"),  # HTML, by name
    ("NGUYỄN^VAN", "Nguy&#7877;n"),
    ("山田^太郎", "%E5%B1%B1%E7%94%B0%E5%A4%AA%E9%83%8E"),  # 山田太郎
    ("QUIXBORNE^ZELPHINA", "&#x51;UIXBORNE"),  # an ASCII name with one letter escaped
    ("QUIXBORNE^ZELPHINA", "%51%55%49%58%42%4F%52%4E%45"),  # QUIXBORNE, every letter escaped
)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", ["basic", "research", "research-strict"])
@pytest.mark.parametrize(("name", "form"), ESCAPED)
def test_a_name_written_with_url_or_html_escapes_never_survives(
    name: str, form: str, profile: str, whole: bool
) -> None:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = name
    ds.PatientID = "XK4471923"
    ds.RetrieveURL = form if form.startswith("http") else f"https://pacs.example/wado?p={form}"
    ds.StudyDescription = form
    ds.ImageComments = form
    buf = io.BytesIO()
    ds.save_as(buf)
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    deid.raw_lane = not whole
    try:
        out = deid.deidentify_bytes(buf.getvalue()).output_bytes
    except CurataError:
        return  # refused: nothing released
    assert form.encode() not in out

"""Invisible format characters inside a name: a soft hyphen from a word processor, a zero-width
space or joiner from a web page, a bidirectional mark from an EHR export. No reader sees them, so
"Q<U+200B>WORTLE" reads as QWORTLE; they are dropped like separators when values are matched, in
every text element of every object, and by the gate."""

from __future__ import annotations

import io
import unicodedata
import warnings

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curata.collect.deid import Deidentifier, load_profile
from curata.collect.deid.text import FORMAT_CHARS, Identifiers, clean_text

from .conftest import KEY
from .planting import _datasets, corpus_files, release_of

FAMILY, GIVEN = "QWORTLE", "ZEPHYRINE"
_TEXT_VRS = ("LO", "SH", "ST", "LT", "UT", "UC")


def _hidden(word: str, chars: str, at: int) -> str:
    """``word`` with ``chars`` inserted after its ``at``-th letter (1 to len - 1)."""
    return word[:at] + chars + word[at:]


def _visible(text: str) -> str:
    return "".join(c for c in text if c not in FORMAT_CHARS).upper()


def test_the_format_characters_are_unicodes_own() -> None:
    planes = (*range(0x10000), *range(0xE0000, 0xE0080))
    assert set(FORMAT_CHARS) == {chr(c) for c in planes if unicodedata.category(chr(c)) == "Cf"}


@settings(max_examples=200, deadline=None)
@given(
    chars=st.text(alphabet=st.sampled_from(FORMAT_CHARS), min_size=1, max_size=3),
    at=st.integers(1, len(FAMILY) - 1),
    at_given=st.integers(1, len(GIVEN) - 1),
    form=st.sampled_from(["{f} {g}", "{g} {f}", "{f}^{g}", "{f}, {g}", "Mr {f}", "{f}{g}", "{f}"]),
    case=st.sampled_from([str.upper, str.title, str.lower]),
)
def test_a_name_with_invisible_characters_inside_is_removed(chars, at, at_given, form, case) -> None:
    ids = Identifiers()
    ids.add_name(f"{FAMILY}^{GIVEN}")
    name = form.format(f=_hidden(case(FAMILY), chars, at), g=_hidden(case(GIVEN), chars, at_given))
    cleaned = clean_text(f"reviewed with {name} today", ids, generic=False)
    assert FAMILY not in _visible(cleaned)
    assert GIVEN not in _visible(cleaned) or "{g}" not in form


def _plant(ds: pydicom.Dataset, n: int) -> int:
    """Every text element of every depth: the name with a different format character inside."""
    planted = 0
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = f"{FAMILY}^{GIVEN}"
    for sub, _ in _datasets(ds):
        for elem in list(sub):
            if elem.VR not in _TEXT_VRS or elem.tag >> 16 in (0x0002, 0xFFFE) or elem.tag == 0x00080005:
                continue
            cf = FORMAT_CHARS[(n + planted) % len(FORMAT_CHARS)]
            name = f"{_hidden(FAMILY, cf, 1 + planted % 6)} {_hidden(GIVEN, cf, 1 + planted % 8)}"
            text = name if elem.VR in ("LO", "SH") else f"seen by {name} today"
            elem.value = text[: 16 if elem.VR == "SH" else 64]
            planted += 1
    return planted


@pytest.mark.parametrize("profile", ["research", "basic"])
def test_invisible_characters_in_every_text_element_never_hide_a_name(profile: str) -> None:
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    files = corpus_files()
    files = files if profile == "research" else files[::3]
    planted = released = 0
    leaks: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n, path in enumerate(files):
            ds = pydicom.dcmread(path)
            planted += _plant(ds, n)
            buf = io.BytesIO()
            try:
                ds.save_as(buf, enforce_file_format=True)
            except Exception:
                continue
            res = release_of(deid, buf.getvalue())
            if res is None:
                continue
            released += 1
            out = pydicom.dcmread(io.BytesIO(res.output_bytes))
            for sub, _ in _datasets(out):
                for elem in sub:
                    if elem.VR in (*_TEXT_VRS, "PN") and elem.value:
                        text = _visible(str(elem.value)).replace(" ", "").replace("^", "")
                        if FAMILY in text or GIVEN in text:
                            leaks.append(f"{path.rsplit('/', 1)[-1]}: {elem.keyword or elem.tag}")
    assert planted > (1000 if profile == "research" else 300), planted
    assert leaks == []
    assert released >= len(files) // 2, (released, len(files))

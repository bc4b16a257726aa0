"""``MatchKeys``, the pre-filter readers put before the cleaner: it may let through text holding no
identifier, never the other way round: wherever the cleaner finds one, ``may_match`` is True."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from curata.collect.deid.text import Identifiers, MatchKeys, clean_text, find_identifier


def _ids() -> list[Identifiers]:
    a = Identifiers()
    a.add_name("SUZUKI^KENJI")
    a.add_word("MRN-4471923", min_len=2)
    a.add_word("+81 90 3344 5566")
    a.add_date("19610317")
    b = Identifiers()
    b.add_name("김민준")
    b.add_name("王^秀英")
    b.add_word("KR-700193", min_len=2)
    c = Identifiers()
    c.add_name("Müller^Hans-Jürgen")
    c.add_name("Nguyễn^Văn Thành")
    c.add_name("Li^Wu")
    c.add_word("Lindenstraße 12, Potsdam")
    c.add_date("19521009")
    return [a, b, c]


IDS = _ids()
KEYS = MatchKeys(IDS)
PIECES = [
    "SUZUKI", "ｓｕｚｕｋｉ", "Kenji", "kenjisuzuki", "様", "の検査", "MRN4471923", "4471923", "mrn 4471923",
    "+81-90-3344-5566", "17 March 1961", "17.03.61", "1961年3月17日", "March 17th, 1961",
    unicodedata.normalize("NFD", "김민준"), "김민준", "王", "女士", "秀英", "ＫＲ７００１９３",
    "Mueller", "MULLER", "Müller", "Jürgen", "Juergen", "Nguyen", "Thanh", "Thành", "Li", "Wu", "lipid",
    "Lindenstrasse", "Potsdam", "9 Oct 1952", "10/9/52", "M\ufffdller", "³",
    "cough", "lung", "2024-02-20", "stage IIIA", "EGFR", " ", "-", "^", "/", ".", ",", "1", "23",
    "SUZ\u200bUKI", "Ken\u00adji", "\u200b", "\u00ad", "\u2066", "\ufeff",  # invisible format characters
]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=3), min_size=1, max_size=8))
def test_where_the_cleaner_finds_an_identifier_the_keys_do(parts: list[str]) -> None:
    text = "".join(parts)
    if KEYS.may_match(text):
        return
    for ids in IDS:
        assert clean_text(text, ids, generic=False) == text, (text, ids.words)


def test_text_without_any_identifier_is_mostly_not_a_candidate() -> None:
    ordinary = ["lung adenocarcinoma, stage IIIA", "Hemoglobin 11.2 g/dL", "right upper lobe biopsy"]
    assert not any(KEYS.may_match(t) for t in ordinary)
    assert all(
        KEYS.may_match(t) for t in ("Suzuki様", "ＳＵＺＵＫＩ", unicodedata.normalize("NFD", "김민준"))
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text("0123456789", min_size=2, max_size=4), min_size=3, max_size=5),
    st.sampled_from([" ", "-", ".", "/"]),
    st.sampled_from([" ", "-", ".", "/", ""]),
    st.sampled_from(["", "+", "tel ", "ID:"]),
)
def test_a_number_is_found_with_other_separators(groups: list[str], sep: str, other: str, lead: str) -> None:
    """A phone or an ID of digit groups (``+81 90 3344 5566``) is found however its groups are
    separated (``+81-90-3344-5566``, ``81.90.3344.5566``, ``819033445566``), in text and in bytes."""
    ids = Identifiers()
    ids.add_word(sep.join(groups))
    written = lead + other.join(groups)
    assert clean_text(written, ids, generic=False) != written
    assert find_identifier(written.encode(), ids.gate_needles()) is not None

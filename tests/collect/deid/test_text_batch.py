"""The generic free-text cleaner run over many values at once gives what it gives one value at a time."""

from __future__ import annotations

import random

from curata.collect.deid.text import Identifiers, clean_generic_many, clean_text

TRICKY = [
    "seen by Dr Okonkwo on 2021-03-04, call +234 803 555 0199",
    "12",
    "March",  # a date split over two values must not be joined across them
    "4 March 2021 follow-up",
    "see https://example.org/a b",
    "Patient: Adaeze Bello",
    "Bello^Adaeze",
    "12 Marina Road",
    "ID A12345 and 0803-555-0199.",
    "no digits here",
    "",
    "   ",
    "stable; 1.5 cm",
    "mail a.b@example.com",
    "Nurse",
    "Adaeze",
    "0803",
    "555 0199",
    "tumour 2 cm\nseen 05/06/2022",
    "20210304",
]


def test_many_values_clean_as_one_at_a_time() -> None:
    rng = random.Random(3)
    values = TRICKY + ["".join(rng.choice("ab 1/-.:") for _ in range(12)) for _ in range(200)]
    rng.shuffle(values)
    empty = Identifiers()
    assert clean_generic_many(values) == [clean_text(v, empty, generic=True) for v in values]
    assert clean_generic_many(["a\x00b"] * 9) == ["a\x00b"] * 9  # a NUL in a value: one at a time

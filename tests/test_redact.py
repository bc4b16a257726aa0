"""``curata.console.redact``: what a parser's or decoder's message quotes never survives, whatever
the value holds (quote marks of any kind, brackets, escapes), in every way a message may quote it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from curata.console import redact
from curata.errors import sanitize

NAME = "QUIXBORNE"
_MARKY = st.sampled_from(list("'\"`<>[]\u2018\u2019\u201c\u201d\u00ab\u00bb\\ ^,.-"))
# a value holding the name among quote marks, brackets, escapes and letters
VALUES = st.lists(st.one_of(_MARKY, st.sampled_from(["O", "x", "DOE", NAME])), max_size=12).map(
    lambda parts: "".join(parts) if NAME in parts else "".join([*parts, NAME])
)
SHAPES = (
    "Invalid value for VR UI: {r}",
    "Unknown (0028,0004) {r} value",
    "invalid literal for int() with base 10: {r}",
    "bad '{v}' here",
    'bad "{v}" here',
    "the file's value `{v}` isn't read",
    "cannot decode [{v}]: <{v}>",
    "the file's value \u201c{v}\u201d isn't read",
)


@settings(max_examples=400, deadline=None)
@given(
    value=VALUES, shape=st.sampled_from(SHAPES), tail=st.sampled_from(["", " (it's the patient's)", " 'x'"])
)
def test_a_quoted_value_never_survives(value: str, shape: str, tail: str) -> None:
    message = shape.format(r=repr(value), v=value) + tail
    assert NAME not in redact(message)
    assert NAME not in sanitize(message)


def test_plain_words_and_tags_stay() -> None:
    assert redact("truncated: element (0010,0010) declares 12 bytes, 4 present") == (
        "truncated: element (0010,0010) declares 12 bytes, 4 present"
    )
    assert redact("the file's pixel data is damaged") == "the file's pixel data is damaged"
    assert (
        redact("Invalid value for VR UI: 'DOE^JANE' in (0020,000D)")
        == "Invalid value for VR UI: '…' in (0020,000D)"
    )
    # the spans of two marks that overlap are one
    assert redact("bad \"QUIX'AB\" isn't") == "bad '…'t"

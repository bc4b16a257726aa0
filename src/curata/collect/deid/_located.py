"""Which element of an output holds a given byte: the final gate's refusal names the element
(``(0020,0011) SeriesNumber``; nested, the path of tags) rather than a byte offset. A tag and its
keyword are no PHI; the value is never read into the name.

The walk reads the bytes the gate scanned (a deflated output already inflated): the file meta in
explicit VR little endian, the data set in the syntax the meta names, sequences and items of defined
or undefined length, encapsulated pixel data as one element. Bytes it cannot read end the walk: the
caller then names the offset as before.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Iterator

from pydicom.datadict import dictionary_VR, keyword_for_tag

_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
# explicit VR with a reserved pair and a 4-byte length (PS3.5 7.1.2)
_LONG = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_TRANSFER_SYNTAX = 0x00020010

# (name, first byte of the element, first byte of its value, end, whether it is a leaf)
_Span = tuple[str, int, int, int, bool]
# a walk yields the spans inside what it walks and returns where that ends (or its own span)
_Walk = Generator[_Span, None, int]


class _Unreadable(Exception):
    pass


def label(tag: int) -> str:
    """``(gggg,eeee) Keyword``; the tag alone where the dictionary has no keyword (a private tag)."""
    keyword = keyword_for_tag(tag)
    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return f"{text} {keyword}" if keyword else text


def element_at(data: bytes, pos: int) -> str:
    """The innermost element of the DICOM file ``data`` whose bytes hold offset ``pos``; "" where no
    element does (the preamble) or the walk cannot read that far."""
    if not 0 <= pos < len(data):
        return ""
    # the walk yields an element after the elements inside it: the first holding pos is innermost
    for name, start, _, end, _ in _spans(data):
        if start <= pos < end:
            return name
    return ""


def element_where(data: bytes, test: Callable[[bytes], bool]) -> str:
    """The first element without elements inside it whose value (lower-cased, a byte of context on
    each side, as the gate scans a span) passes ``test``; "" where none does."""
    for name, _, value, end, leaf in _spans(data):
        if leaf and end > value and test(data[max(0, value - 1) : end + 1].lower()):
            return name
    return ""


def _spans(data: bytes) -> Iterator[_Span]:
    try:
        if data[128:132] == b"DICM":
            i, implicit, little = 132, False, True
            ts = ""
            while i + 8 <= len(data) and struct.unpack_from("<H", data, i)[0] == 0x0002:
                span = yield from _element(data, i, False, True, "")
                if _tag(data, i, True) == _TRANSFER_SYNTAX:
                    ts = data[span[2] : span[3]].rstrip(b"\0 ").decode("ascii", "replace")
                i = span[3]
            implicit, little = ts == _IMPLICIT_LE, ts != _EXPLICIT_BE
        else:  # a bare data set (no preamble): as the gate's inputs are written, little endian
            i, implicit, little = 0, False, True
        yield from _dataset(data, i, len(data), implicit, little, "")
    except (_Unreadable, struct.error):
        return


def _dataset(data: bytes, i: int, stop: int | None, implicit: bool, little: bool, path: str) -> _Walk:
    """A data set's elements, to ``stop`` or (undefined length) its item delimiter; returns where it
    ends."""
    end = len(data) if stop is None else stop
    while i + 8 <= end:
        tag = _tag(data, i, little)
        if tag == _ITEM_END:
            if stop is not None:
                raise _Unreadable
            return i + 8
        span = yield from _element(data, i, implicit, little, path)
        i = span[3]
    if stop is None and i < len(data):
        raise _Unreadable
    return i


def _element(data: bytes, i: int, implicit: bool, little: bool, path: str) -> Generator[_Span, None, _Span]:
    """One element at ``i`` (the elements inside it first); returns its span."""
    order = "<" if little else ">"
    tag = _tag(data, i, little)
    if tag in (_ITEM, _ITEM_END, _SEQUENCE_END):
        raise _Unreadable
    if implicit:
        vr = _dictionary_vr(tag)
        (length,) = struct.unpack_from(order + "I", data, i + 4)
        value = i + 8
    else:
        vr = bytes(data[i + 4 : i + 6])
        if vr in _LONG:
            (length,) = struct.unpack_from(order + "I", data, i + 8)
            value = i + 12
        else:
            (length,) = struct.unpack_from(order + "H", data, i + 6)
            value = i + 8
    name = path + label(tag)
    if length == _UNDEFINED:
        if tag == _PIXEL_DATA or vr in (b"OB", b"OW"):  # encapsulated: fragments, one element
            end = _fragments(data, value, little)
            span = (name, i, value, end, True)
        else:  # a sequence (UN of undefined length is one in implicit VR little endian: PS3.5 6.2.2)
            if vr == b"UN":
                implicit, little = True, True
            end = yield from _items(data, value, None, implicit, little, name)
            span = (name, i, value, end, False)
    else:
        end = value + length
        if end > len(data):
            raise _Unreadable
        is_sequence = vr == b"SQ" or (vr == b"UN" and implicit and _looks_like_items(data, value, length))
        if is_sequence and length:
            yield from _items(data, value, end, implicit, little, name)
        span = (name, i, value, end, not is_sequence)
    yield span
    return span


def _items(data: bytes, j: int, stop: int | None, implicit: bool, little: bool, name: str) -> _Walk:
    """A sequence's items, to ``stop`` or (undefined length) its delimiter; returns where it ends."""
    order = "<" if little else ">"
    n = 0
    while stop is None or j < stop:
        tag = _tag(data, j, little)
        (length,) = struct.unpack_from(order + "I", data, j + 4)
        if tag == _SEQUENCE_END and stop is None:
            return j + 8
        if tag != _ITEM:
            raise _Unreadable
        where = f"{name}[{n}] > "
        if length == _UNDEFINED:
            j = yield from _dataset(data, j + 8, None, implicit, little, where)
        else:
            yield from _dataset(data, j + 8, j + 8 + length, implicit, little, where)
            j += 8 + length
        n += 1
    return j


def _fragments(data: bytes, j: int, little: bool) -> int:
    order = "<" if little else ">"
    while True:
        tag = _tag(data, j, little)
        (length,) = struct.unpack_from(order + "I", data, j + 4)
        if tag == _SEQUENCE_END:
            return j + 8
        if tag != _ITEM or length == _UNDEFINED:
            raise _Unreadable
        j += 8 + length


def _tag(data: bytes, i: int, little: bool) -> int:
    group, elem = struct.unpack_from("<HH" if little else ">HH", data, i)
    return (group << 16) | elem


def _dictionary_vr(tag: int) -> bytes:
    if (tag & 0xFFFF) == 0:  # a group length
        return b"UL"
    if (tag >> 16) & 1 and (tag & 0xFF00) == 0:  # a private creator
        return b"LO"
    try:
        return dictionary_VR(tag).encode("ascii")[:2]
    except (KeyError, UnicodeError):
        return b"UN"


def _looks_like_items(data: bytes, value: int, length: int) -> bool:
    """Whether an implicit-VR value of a tag the dictionary does not know starts with an item."""
    return length >= 8 and _tag(data, value, True) == _ITEM

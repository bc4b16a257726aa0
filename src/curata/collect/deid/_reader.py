"""A lean Part-10 reader for the common case: the same data set pydicom's ``dcmread`` builds, faster.

A struct walk over the bytes builds pydicom's own ``RawDataElement`` records (values stay raw bytes,
nothing is decoded; a defined-length sequence stays raw too and pydicom parses it when the engine
first looks inside, exactly as after ``dcmread``). Undefined-length elements (sequences,
encapsulated pixel data) are handed to pydicom's own functions, as ``dcmread`` does. It reads only
what is plain: a DICM file whose meta is explicit VR little endian, a data set in implicit or
explicit VR little endian (compressed syntaxes included) with every value present. Anything else
(big endian, deflate, private syntaxes, unknown VRs, undefined-length UN, a command group, a
truncated value, trailing bytes) returns None and the caller reads the file with ``dcmread``, so an
unusual file never sees this code.
"""

from __future__ import annotations

import io
import struct
from collections.abc import MutableSequence
from typing import cast

import pydicom.uid
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import _dictionary_vr_fast
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import read_sequence, read_undefined_length_value
from pydicom.tag import BaseTag, SequenceDelimiterTag
from pydicom.values import convert_string

_IMPLICIT_LE = "1.2.840.10008.1.2"
_NOT_PLAIN = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})  # big endian, deflate
# VRs with a 4-byte length in explicit VR (PS3.5 7.1.2), and every VR pydicom knows
_LONG = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_KNOWN = _LONG | frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH", "SL", "SS",
     "ST", "TM", "UI", "UL", "US"}
)  # fmt: skip
_SHORT = struct.Struct("<HH2sH").unpack_from
_U32 = struct.Struct("<I").unpack_from
_IMPLICIT = struct.Struct("<HHI").unpack_from
_EMPTY: dict[str | None, bytes | None] = {
    vr: cast(bytes | None, empty_value_for_VR(vr, raw=True)) for vr in (*_KNOWN, None)
}


def read(raw: bytes) -> FileDataset | None:
    """The data set ``dcmread(BytesIO(raw))`` would return, or None when the file is not plain."""
    head = header(raw)
    if head is None:
        return None
    meta, pos, implicit = head
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    if _walk(raw, pos, implicit, elements, meta_only=False) != len(raw):
        return None
    return file_dataset(raw, meta, elements, implicit)


def file_dataset(
    raw: bytes,
    meta: dict[BaseTag, RawDataElement | DataElement],
    elements: dict[BaseTag, RawDataElement | DataElement],
    implicit: bool,
) -> FileDataset:
    """A FileDataset of ``elements`` as ``dcmread`` builds it (preamble, file meta, encoding)."""
    file_meta = FileMetaDataset(meta)
    file_meta.set_original_encoding(is_implicit_vr=False, is_little_endian=True, character_encoding="iso8859")
    dataset = Dataset(elements)
    ds = FileDataset(io.BytesIO(raw), dataset, raw[:128], file_meta, implicit, True)
    ds.set_original_encoding(implicit, True, dataset._character_set)
    return ds


def header(raw: bytes) -> tuple[dict[BaseTag, RawDataElement | DataElement], int, bool] | None:
    """The file meta of a plain file, where its data set starts and whether that is implicit VR;
    None when the file is not plain (see the module's docstring)."""
    if len(raw) < 144 or raw[128:132] != b"DICM":
        return None
    meta: dict[BaseTag, RawDataElement | DataElement] = {}
    pos = _walk(raw, 132, False, meta, meta_only=True)
    if pos < 0 or not meta:
        return None
    ts_elem = meta.get(BaseTag(0x00020010))
    if ts_elem is None or ts_elem.value is None:
        return None
    ts = ts_elem.value.decode("ascii", "replace").strip("\0 ")
    if ts == _IMPLICIT_LE:
        implicit = True
    elif not ts or ts in _NOT_PLAIN or ts in pydicom.uid.PrivateTransferSyntaxes:
        return None
    else:  # explicit VR little endian, compressed pixel data included (as dcmread reads them)
        implicit = False
    if pos + 8 <= len(raw):
        group = int.from_bytes(raw[pos : pos + 2], "little")
        if group < 0x0008:  # a command group, or more group 2: pydicom's own reader decides
            return None
        # pydicom checks that the data set really is encoded as declared (its test: two upper-case
        # letters where an explicit VR would stand); a mismatch is not plain
        looks_explicit = all(0x40 < b < 0x5B for b in raw[pos + 4 : pos + 6])
        if looks_explicit == implicit:
            return None
    return meta, pos, implicit


def _walk(
    raw: bytes, pos: int, implicit: bool, out: dict[BaseTag, RawDataElement | DataElement], *, meta_only: bool
) -> int:
    """Elements from ``pos`` into ``out``; the end position, or -1 when something is not plain."""
    end = len(raw)
    encoding: str | MutableSequence[str] = default_encoding
    while pos + 8 <= end:
        if implicit:
            group, elem, length = _IMPLICIT(raw, pos)
            vr: str | None = None
            start = pos + 8
        else:
            group, elem, vr_bytes, length = _SHORT(raw, pos)
            if meta_only and group != 0x0002:
                return pos
            vr = vr_bytes.decode("latin-1")
            if vr not in _KNOWN:
                return -1
            if vr in _LONG:
                if pos + 12 > end:
                    return -1
                (length,) = _U32(raw, pos + 8)
                start = pos + 12
            else:
                start = pos + 8
        if group == 0xFFFE or (group == 0x0002) != meta_only:
            return -1
        number = group << 16 | elem
        tag = BaseTag(number)
        if tag in out:  # a repeated element (pydicom keeps the last): the engine refuses it
            return -1
        if length == 0xFFFFFFFF:
            if meta_only:
                return -1
            pos = _undefined(raw, tag, vr, start, implicit, out, encoding)
            if pos < 0:
                return -1
            continue
        if start + length > end:
            return -1
        value = raw[start : start + length] if length else _EMPTY[vr]
        out[tag] = RawDataElement(tag, vr, length, value, start, implicit, True)
        if number == 0x00080005:  # what pydicom hands to the sequences it reads from here on
            encoding = convert_encodings(convert_string(value or b"", True))
        pos = start + length
    return pos if pos == end or meta_only else -1


_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _undefined(
    raw: bytes,
    tag: BaseTag,
    vr: str | None,
    start: int,
    implicit: bool,
    out: dict[BaseTag, RawDataElement | DataElement],
    encoding: str | MutableSequence[str],
) -> int:
    """An undefined-length element read by pydicom's own functions, as ``dcmread`` reads it: a
    sequence parsed into items, any other value (encapsulated pixel data) kept raw. The end position,
    or -1 when it does not end on a sequence delimiter (truncated, or an odd encoding)."""
    if vr is None:
        try:
            vr = _dictionary_vr_fast(tag)
        except KeyError:
            return -1
    if vr == "UN":  # pydicom may read it as a sequence, depending on its settings: not plain
        return -1
    fp = io.BytesIO(raw)
    fp.seek(start)
    try:
        if vr == "SQ":
            seq = read_sequence(fp, implicit, True, 0xFFFFFFFF, encoding)
            elem: RawDataElement | DataElement = DataElement(tag, vr, seq, start, is_undefined_length=True)
        else:
            value = read_undefined_length_value(fp, True, SequenceDelimiterTag, None)
            elem = RawDataElement(tag, vr, 0xFFFFFFFF, value, start, implicit, True)
    except Exception:
        return -1
    pos = fp.tell()
    if pos > len(raw) or raw[pos - 8 : pos] != _SEQ_DELIMITER:
        return -1
    out[tag] = elem
    return pos

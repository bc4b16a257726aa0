"""A lean Part-10 serializer: elements the engine left untouched are copied as raw bytes.

pydicom's writer costs a few microseconds of Python per element even for raw, unchanged ones, which
is most of the work on small files. Here untouched elements of a little-endian data set go out as
``header + raw value`` and only changed elements go through pydicom's element writer. Anything
unusual (big endian, deflate, undefined-length raw values, odd lengths, nested character sets)
falls back to pydicom for the whole file, so the output is always what pydicom would write.
"""

from __future__ import annotations

import io
import struct

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import PersonName

_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_ITEM = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
_ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
_SEQ_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
_PACK_TAG = struct.Struct("<HH").pack
_PACK_SHORT = struct.Struct("<HH2sH").pack
_PACK_LONG = struct.Struct("<HH2s2xI").pack
_PACK_IMPLICIT = struct.Struct("<HHI").pack


class _Fallback(Exception):
    pass


def encode(ds: Dataset) -> bytes:
    """``ds`` (with ``file_meta``) as a Part-10 file."""
    ts = UID(ds.file_meta.TransferSyntaxUID)
    if not ts.is_little_endian or ts.is_deflated:
        return _pydicom(ds)
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    out.write(_file_meta(ds.file_meta))
    body: list[bytes] = []
    try:
        _dataset(ds, body, ts.is_implicit_VR, ds._character_set, top=True)
    except _Fallback:
        return _pydicom(ds)
    out.write(b"".join(body))
    return out.getvalue()


_META_UIDS = (0x00020002, 0x00020003, 0x00020010, 0x00020012)
_META_ALLOWED = frozenset({0x00020000, 0x00020001, *_META_UIDS, 0x00020013})


def _file_meta(meta: FileMetaDataset) -> bytes:
    """Group 0002 as pydicom writes it (version, group length), built directly for the usual keys."""
    keys = set(meta.keys())
    if not keys <= _META_ALLOWED or not set(_META_UIDS) <= keys:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_file_meta_info(fp, meta, enforce_standard=True)
        return fp.getvalue()
    version = str(meta[0x00020013].value) if 0x00020013 in keys else None
    return file_meta_bytes(*(str(meta[tag].value) for tag in _META_UIDS), version=version)


def file_meta_bytes(
    sop_class: str, sop_instance: str, transfer_syntax: str, implementation: str, *, version: str | None
) -> bytes:
    """Group 0002 with these values, as pydicom writes it (version, group length)."""
    parts = [_PACK_LONG(0x0002, 0x0001, b"OB", 2) + b"\x00\x01"]
    for tag, text in zip(_META_UIDS, (sop_class, sop_instance, transfer_syntax, implementation), strict=True):
        value = text.encode("ascii")
        if len(value) & 1:
            value += b"\0"
        parts.append(_PACK_SHORT(0x0002, tag & 0xFFFF, b"UI", len(value)) + value)
    if version is not None:
        value = version.encode("ascii")
        if len(value) & 1:
            value += b" "
        parts.append(_PACK_SHORT(0x0002, 0x0013, b"SH", len(value)) + value)
    body = b"".join(parts)
    return _PACK_SHORT(0x0002, 0x0000, b"UL", 4) + len(body).to_bytes(4, "little") + body


def _pydicom(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _dataset(
    ds: Dataset, body: list[bytes], implicit: bool, encodings: str | list[str], *, top: bool
) -> None:
    if not top and "SpecificCharacterSet" in ds:
        raise _Fallback
    items = ds._dict
    for tag in sorted(items):
        if (
            tag >> 16 == 0x0002 or not tag & 0xFFFF
        ):  # group lengths: stale once elements go (pydicom drops them)
            continue
        _element(ds, tag, items[tag], body, implicit, encodings)


def _element(
    ds: Dataset,
    tag: int,
    elem: DataElement | RawDataElement,
    body: list[bytes],
    implicit: bool,
    encodings: str | list[str],
) -> None:
    if isinstance(elem, RawDataElement):
        if not _raw(tag, elem, body, implicit):
            body.append(_pydicom_element(_resolved(ds, ds[tag]), implicit, encodings))
    elif elem.VR == "SQ":
        _sequence(tag, elem, body, implicit, encodings)
    else:
        body.append(_pydicom_element(_resolved(ds, elem), implicit, encodings))


def encode_merged(ds: Dataset, raw: bytes, copied: list[tuple[int, int, int]]) -> bytes | None:
    """``ds`` (with ``file_meta``) as a Part-10 file, merged in tag order with elements copied as they
    came: ``copied`` holds (tag, start, end) of whole elements (header and value) of the little-endian
    input ``raw``, in ascending tag order, none of them in ``ds``. Each element of ``ds`` is written as
    ``encode`` writes it; runs of copied elements that lie side by side in the input go out as one slice.
    None where ``encode`` would fall back to pydicom for the whole file."""
    ts = UID(ds.file_meta.TransferSyntaxUID)
    if not ts.is_little_endian or ts.is_deflated:
        return None
    implicit = ts.is_implicit_VR
    encodings = ds._character_set
    items = ds._dict
    own = [t for t in sorted(map(int, items)) if t >> 16 != 0x0002 and t & 0xFFFF]
    body: list[bytes] = [b"\0" * 128 + b"DICM", _file_meta(ds.file_meta)]
    n, k, i = len(copied), len(own), 0
    try:
        for j in range(k + 1):
            limit = own[j] if j < k else 0x100000000
            while i < n and copied[i][0] < limit:
                start, end = copied[i][1], copied[i][2]
                i += 1
                while i < n and copied[i][1] == end and copied[i][0] < limit:
                    end = copied[i][2]
                    i += 1
                body.append(raw[start:end])
            if j < k:
                tag = own[j]
                _element(ds, tag, items[BaseTag(tag)], body, implicit, encodings)
    except _Fallback:
        return None
    return b"".join(body)


def _resolved(ds: Dataset, elem: DataElement) -> DataElement | RawDataElement:
    """An ambiguous dictionary VR (OB or OW, US or SS...) made definite from the data set, as pydicom does
    (it happens when an implicit-VR input is written explicit, after pixel cleaning)."""
    out: DataElement | RawDataElement = elem
    if " or " in elem.VR:
        out = correct_ambiguous_vr_element(elem, ds, True)
    if isinstance(out, DataElement) and " or " in out.VR:
        # pydicom leaves some (curve data): implicit VR data of this kind is OW (PS3.5 A.1)
        out.VR = "OW" if "OW" in out.VR else out.VR.split(" or ")[0]
    return out


def _raw(tag: int, elem: RawDataElement, body: list[bytes], implicit: bool) -> bool:
    """Copy an untouched element as it came; False when it needs pydicom (odd, undefined length...)."""
    value = elem.value
    vr = elem.VR or ""
    if (
        elem.is_implicit_VR != implicit
        or not elem.is_little_endian
        or elem.length == 0xFFFFFFFF
        or value is None
        or len(value) & 1
        or (not implicit and len(vr) != 2)
    ):
        return False
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        body.append(_PACK_IMPLICIT(group, element, len(value)))
    elif vr in _LONG_VRS:
        body.append(_PACK_LONG(group, element, vr.encode(), len(value)))
    elif len(value) > 0xFFFF:
        raise _Fallback
    else:
        body.append(_PACK_SHORT(group, element, vr.encode(), len(value)))
    body.append(value)
    return True


def _sequence(
    tag: int, elem: DataElement, body: list[bytes], implicit: bool, encodings: str | list[str]
) -> None:
    """Sequences and items keep the length style they were read with (defined or undefined), as pydicom."""
    group, element = tag >> 16, tag & 0xFFFF
    inner: list[bytes] = []
    for item in elem.value or ():
        content: list[bytes] = []
        _dataset(item, content, implicit, encodings, top=False)
        if getattr(item, "is_undefined_length_sequence_item", False):
            inner += [_ITEM, *content, _ITEM_END]
        else:
            inner += [_PACK_IMPLICIT(0xFFFE, 0xE000, sum(map(len, content))), *content]
    if elem.is_undefined_length:
        length, tail = 0xFFFFFFFF, [_SEQ_END]
    else:
        length, tail = sum(map(len, inner)), []
    if implicit:
        body.append(_PACK_IMPLICIT(group, element, length))
    else:
        body.append(_PACK_LONG(group, element, b"SQ", length))
    body += inner
    body += tail


_PAD_NUL = frozenset({"UI"})
_STRING_VRS = frozenset({"UI", "CS", "DA", "TM", "DT", "AS", "AE", "SH", "LO", "ST", "LT", "UT", "UC", "PN"})
_SINGLE_VALUED = frozenset({"ST", "LT", "UT"})  # a backslash is text here, not a separator


def _fast_string(elem: DataElement, implicit: bool) -> bytes | None:
    """Header + value of a plain ASCII string element, as pydicom writes it; None when not plain."""
    vr = elem.VR
    if vr not in _STRING_VRS:
        return None
    value = elem.value
    if value is None:
        text = ""
    elif isinstance(value, str | PersonName):  # str and UID are str; PersonName prints as written
        text = str(value)
    elif isinstance(value, MultiValue | list | tuple) and vr not in _SINGLE_VALUED:
        if not all(isinstance(v, str | PersonName) for v in value):
            return None
        text = "\\".join(str(v) for v in value)
    else:
        return None
    if not isinstance(text, str) or not text.isascii():
        return None
    data = text.encode("ascii")
    if len(data) & 1:
        data += b"\0" if vr in _PAD_NUL else b" "
    tag = elem.tag
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        return _PACK_IMPLICIT(group, element, len(data)) + data
    if vr in _LONG_VRS:
        return _PACK_LONG(group, element, vr.encode(), len(data)) + data
    if len(data) > 0xFFFF:
        return None
    return _PACK_SHORT(group, element, vr.encode(), len(data)) + data


def _pydicom_element(elem: DataElement | RawDataElement, implicit: bool, encodings: str | list[str]) -> bytes:
    if isinstance(elem, DataElement) and type(elem.value) is not bytes:
        fast = _fast_string(elem, implicit)
        if fast is not None:
            return fast
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_data_element(fp, elem, encodings)
    return fp.getvalue()


# Used by the engine to pre-encode its marking elements.
sequence = _sequence
element = _pydicom_element

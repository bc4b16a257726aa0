"""The engine's raw lane: one walk over the input's bytes, most elements copied without being parsed.

Of a small CT's 250 elements, about 40 can change or say who the patient is: UIDs, dates, names,
text, coded strings, sequences, the attributes the engine reads. Only those become pydicom elements,
gathered in a small data set that the engine's own steps (``_patient``, ``_collect``, ``_clean``, the
text cleaning, the marking and the gate) process exactly as they would process the whole file. Every
other element's fate depends only on its tag and VR under the profile and SOP class: it is dropped
(private, removed by the table, group lengths) or copied byte for byte, and that decision is compiled
once per SOP class into a table. The output is the engine's own data set merged in tag order with
the copied bytes (``_writer.encode_merged``): the same bytes the engine writes for the whole file.

Whatever this lane does not handle exactly returns None and the caller runs the full engine, which
also gives every refusal its reason: files the lean reader declines, elements out of tag order,
overlays and curves, encapsulated documents, pixels that may carry burned-in text, private or unknown
elements that the engine would read (PN, CS, SQ), an element sent as UN, a kept text value whose bytes
may hold one of the input's identifiers, a reviewer's decision, any error. No state is shared
between the two runs, and nothing is written (vault) before the lane has succeeded.
``tests/collect/deid/test_fast_path.py`` holds both lanes to the same bytes, record and vault rows.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from pydicom.charset import convert_encodings
from pydicom.datadict import private_dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import BaseTag
from pydicom.values import convert_string

from curata.collect.deid import _reader, _writer, pixels
from curata.collect.deid.table import iod_allowed_tags
from curata.errors import DeidError

if TYPE_CHECKING:
    from curata.collect.deid.engine import Deidentifier, DeidResult

# What the walk decides per element (compiled per SOP class and raw VR)
_COPY, _CHECK, _ENGINE, _DROP, _PRIVATE, _DECLINE, _CODED_CHECK, _CODED_DROP = range(8)
_SHORT = struct.Struct("<HH2sH").unpack_from
_U32 = struct.Struct("<I").unpack_from
_IMPLICIT = struct.Struct("<HHI").unpack_from
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_CHARSET = 0x00080005
_DOCUMENT = 0x00420011
# Attributes the engine's steps read by keyword whatever their action (the patient key, the age,
# the burned-in text test, the required UIDs, the character set, the file meta, the marking).
_READ_BY_ENGINE = frozenset(
    {0x00080005, 0x00080016, 0x00080018, 0x00080060, 0x00100010, 0x00100020, 0x00100021,
     0x00100030, 0x00101010, 0x0020000D, 0x0020000E, 0x00280301, 0x00080020, 0x00080021, 0x00080022,
     0x00080023, 0x00120062, 0x00120063, 0x00120064, 0x00280303,
     0x00282000}  # the ICC profile: its text is zeroed by the engine's step
)  # fmt: skip
_DATE_VRS = frozenset({"DA", "DT"})
_KEPT_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "AE", "UR"})
_ENGINE_VRS = frozenset({"SQ", "CS", "PN"})  # what the collecting pass reads at any tag
_LONG = _reader._LONG
_KNOWN = _reader._KNOWN
_VR_INFO = {vr.encode("latin-1"): (vr, vr in _LONG) for vr in _KNOWN}  # raw VR -> (VR, long form)


class _Plan:
    """One profile and SOP class compiled: (tag, raw VR) -> what the walk does with the element."""

    def __init__(self, engine: Deidentifier, sop_class: str) -> None:
        from curata.collect.deid import engine as eng

        self.engine = engine
        self.eng = eng
        profile = engine.profile
        self.top, _ = eng.action_maps(profile, sop_class)
        self.allowed = iod_allowed_tags(sop_class) if profile.allow_list else None
        self.sources = engine._sources
        self.ctx = eng._Ctx(profile, engine.pseudo, sop_class)  # flags only, for _unlisted_action
        self.codes: dict[tuple[int, str | None], int] = {}

    def code(self, tag: int, vr: str | None) -> int:
        key = (tag, vr)
        found = self.codes.get(key)
        if found is None:
            found = self.codes[key] = self._decide(tag, vr)
        return found

    def _decide(self, tag: int, raw_vr: str | None) -> int:
        """The engine's ``_collect`` / ``_clean`` / ``_apply`` read for one top-level element."""
        eng = self.eng
        group = tag >> 16
        known = eng._vr_of(tag)
        if group & 1:  # the engine reads a private PN, CS or SQ while collecting: not here
            return _DECLINE if raw_vr in _ENGINE_VRS else _PRIVATE
        if 0x6000 <= group <= 0x60FF or 0x5000 <= group <= 0x50FF or tag == _DOCUMENT:
            return _DECLINE  # overlays, curves (OCR, bit planes), encapsulated documents
        if raw_vr == "UN":
            return _DECLINE
        vr = raw_vr or known
        read = tag in self.sources or tag in _READ_BY_ENGINE
        if vr == "CS" and not read:
            # a coded string: its terms are collected from the raw bytes (as the engine's _collect
            # does), then it is dropped, or kept while its bytes hold no identifier
            fate = self._fate(tag, vr, known)
            if fate == _DROP:
                return _CODED_DROP
            return _CODED_CHECK if fate in (_COPY, _CHECK) else _ENGINE
        if vr in _ENGINE_VRS or read:
            return _ENGINE
        return self._fate(tag, vr, known)

    def _fate(self, tag: int, vr: str | None, known: str | None) -> int:
        """What the engine's ``_clean`` and ``_apply`` do with an element the collecting pass ignores."""
        eng = self.eng
        if not tag & 0xFFFF or tag in eng._ALWAYS_REMOVE:
            return _DROP  # group lengths are never written
        if self.allowed is not None and tag not in self.allowed:
            return _DROP
        action = self.top.get(tag)
        if action is None:
            action = self.engine._unlisted_action(tag, vr or "UN", self.ctx, False)
            if vr is None or known is None:
                action = "X"
        if action == "X":
            return _DROP
        if vr in _DATE_VRS:
            return _ENGINE
        if action == "K" or (action == "C" and vr not in eng.TEXT_VRS and vr != "UI"):
            # kept as it is; text only while its bytes hold none of the identifiers (checked once
            # they are all known: the engine would clean it, and its gate decode it)
            return _CHECK if vr in _KEPT_TEXT_VRS else _COPY
        return _ENGINE


def deidentify(engine: Deidentifier, raw: bytes, input_sha: str) -> DeidResult | None:
    """``engine``'s result for ``raw`` through the raw lane, or None: run the full engine instead."""
    head = _reader.header(raw)
    if head is None:
        return None
    meta, pos, implicit = head
    walked = _walk(raw, pos, implicit)
    if walked is None:
        return None
    sop_class = _sop_class(raw, walked)
    if not sop_class:
        return None
    plan = engine._plans.get(sop_class)
    if plan is None:
        plan = engine._plans[sop_class] = _Plan(engine, sop_class)
    try:
        done = _run(engine, plan, raw, meta, walked, implicit, input_sha, sop_class, frozenset())
        if isinstance(done, frozenset):  # kept text that holds an identifier: the engine cleans it
            done = _run(engine, plan, raw, meta, walked, implicit, input_sha, sop_class, done)
        return done if not isinstance(done, frozenset) else None
    except Exception:  # anything unforeseen: the full engine decides, and says why
        return None


def _walk(
    raw: bytes, pos: int, implicit: bool, sequences: dict[int, DataElement] | None = None
) -> list[tuple[int, str | None, int, int, int]] | None:
    """(tag, raw VR, element start, value start, value length) of each top-level element in order;
    None when an element is out of order, has an unknown VR or a reserved field that is not zero,
    or the bytes do not end with the last element (undefined lengths are found by pydicom later).

    With ``sequences``, a sequence of undefined length (as many scanners write them) is read by
    pydicom's own functions, as ``dcmread`` reads it (``_reader._undefined``), and put there by tag;
    its entry's length then spans its items and its delimiter. Any other undefined length (a UN
    value, encapsulated pixel data before the end) is not plain."""
    end = len(raw)
    out: list[tuple[int, str | None, int, int, int]] = []
    last = -1
    vr_info = _VR_INFO.get
    encoding: str | list[str] = "iso8859"  # what the lean reader hands the sequences it reads
    while pos + 8 <= end:
        if implicit:
            group, elem, length = _IMPLICIT(raw, pos)
            vr: str | None = None
            start = pos + 8
        else:
            group, elem, vr_bytes, length = _SHORT(raw, pos)
            info = vr_info(vr_bytes)
            if info is None:
                return None
            vr, long = info
            if long:
                if length or pos + 12 > end:  # reserved bytes must be zero to be copied as they are
                    return None
                (length,) = _U32(raw, pos + 8)
                start = pos + 12
            else:
                start = pos + 8
        tag = group << 16 | elem
        if tag <= last or group == 0xFFFE:
            return None
        last = tag
        if length == 0xFFFFFFFF and sequences is not None and tag not in _PIXEL_TAGS:
            found: dict[BaseTag, RawDataElement | DataElement] = {}
            stop = _reader._undefined(raw, BaseTag(tag), vr, start, implicit, found, encoding)
            parsed = found.get(BaseTag(tag))
            if stop < 0 or not isinstance(parsed, DataElement) or parsed.VR != "SQ":
                return None
            sequences[tag] = parsed
            length = stop - start
        elif tag == _CHARSET and sequences is not None and start + length <= end:
            try:  # as the lean reader: the data set's character set, from here on
                encoding = convert_encodings(convert_string(raw[start : start + length], True))
            except Exception:
                return None
        out.append((tag, vr, pos, start, length))
        if length == 0xFFFFFFFF:
            return out if _undefined_tail(raw, out, implicit) else None
        if start + length > end:
            return None
        pos = start + length
    return out if pos == end else None


def _undefined_tail(raw: bytes, out: list[tuple[int, str | None, int, int, int]], implicit: bool) -> bool:
    """An undefined-length element ends the walk: the lane takes it only as the last element
    (encapsulated pixel data), whose end the reader finds; anything after it is declined."""
    tag, vr, _, start, _ = out[-1]
    found: dict[BaseTag, RawDataElement | DataElement] = {}
    stop = _reader._undefined(raw, BaseTag(tag), vr, start, implicit, found, "iso8859")
    return stop == len(raw) and tag in _PIXEL_TAGS


_BITS = (0x00280100, 0x00280101, 0x00280102, 0x00280103)  # Bits Allocated, Stored, High Bit, Pixel Rep.
_SIZE = (0x00280002, 0x00280010, 0x00280011)  # Samples per Pixel, Rows, Columns
_LAYOUT = frozenset(_BITS + _SIZE)  # both, looked up once per element walked (a set: no scan)
_FRAMES, _PHOTOMETRIC = 0x00280008, 0x00280004


def _outside_image(raw: bytes, walked: list[tuple[int, str | None, int, int, int]]) -> bool:
    """Whether native Pixel Data holds something outside the image (``pixels.clear_outside_image``:
    bytes after the last frame, bits outside Bits Stored), or less than the image: the engine clears
    the one and refuses the other, the lanes that copy pixels decline. A layout that cannot be read here is the engine's too."""
    layout: dict[int, int] = {}
    pixel = None
    frames: int | None = 1
    ybr422 = False
    for tag, _, _, start, length in walked:
        if tag in _LAYOUT:
            if length != 2:
                return True
            layout[tag] = raw[start] | raw[start + 1] << 8
        elif tag == _FRAMES:
            frames = pixels.frame_count(raw[start : start + length].decode("latin-1").strip(" \0"))
        elif tag == _PHOTOMETRIC:
            ybr422 = raw[start : start + length].strip(b" \0") == b"YBR_FULL_422"
        elif tag == 0x7FE00010:
            pixel = (start, length)
    if pixel is None or pixel[1] == 0xFFFFFFFF:
        return False  # none, or encapsulated (its codestreams are the engine's)
    allocated = layout.get(0x00280100)
    if allocated is None:
        return False
    if any(t not in layout for t in _SIZE[1:]):
        return True
    rows, columns, samples = layout[0x00280010], layout[0x00280011], layout.get(0x00280002, 1)
    expected = pixels.image_bytes(rows, columns, frames, samples, allocated, pixel[1], ybr422)
    if pixel[1] < expected:
        return True  # truncated: the engine refuses it
    if pixel[1] > expected + (expected & 1) and raw[pixel[0] + expected : pixel[0] + pixel[1]].strip(b"\0"):
        return True
    stored = layout.get(0x00280101) or allocated
    if stored >= allocated:
        return False  # the common 16-in-16: no bit to read
    high_bit = layout.get(0x00280102, stored - 1)
    try:
        data = memoryview(raw)[pixel[0] : pixel[0] + pixel[1]]  # no copy: a fresh 512 KiB costs page faults
        return pixels.unused_bits(data, allocated, stored, high_bit, layout.get(0x00280103) == 1) is not None
    except DeidError:
        return True


def _sop_class(raw: bytes, walked: list[tuple[int, str | None, int, int, int]]) -> str:
    for tag, _, _, start, length in walked:
        if tag == 0x00080016:
            return raw[start : start + length].decode("ascii", "replace").strip("\0 ")
        if tag > 0x00080016:
            break
    return ""


def _run(
    engine: Deidentifier,
    plan: _Plan,
    raw: bytes,
    meta: dict[BaseTag, RawDataElement | DataElement],
    walked: list[tuple[int, str | None, int, int, int]],
    implicit: bool,
    input_sha: str,
    sop_class: str,
    engine_tags: frozenset[int],
) -> DeidResult | frozenset[int] | None:
    """The lane's result, None (decline), or the kept text elements whose bytes hold an identifier:
    run again with those in the engine's small data set (``engine_tags``)."""
    code_of = plan.code
    side: dict[BaseTag, RawDataElement | DataElement] = {}
    copied: list[tuple[int, int, int]] = []
    checked: list[tuple[int, bytes]] = []
    coded: list[bytes] = []  # raw values of coded strings not in the small data set
    private: list[tuple[int, str | None, int, int, int]] = []
    pixel: RawDataElement | None = None
    for entry in walked:
        tag, vr, head, start, length = entry
        code = code_of(tag, vr)
        if code == _DROP:
            continue
        if code == _DECLINE:
            return None
        if code == _PRIVATE:
            private.append(entry)
            continue
        if length == 0xFFFFFFFF:  # encapsulated pixel data: its codestreams' metadata is the engine's
            return None  # (codestream.py zeroes comment and application segments; the gate reads what stays)
        if code == _CODED_DROP:
            coded.append(raw[start : start + length])
            continue
        if code == _CODED_CHECK:
            coded.append(raw[start : start + length])
            code = _CHECK
        if code == _CHECK and tag in engine_tags:
            code = _ENGINE
        if code != _ENGINE and length & 1:
            code = _ENGINE  # an odd length is rewritten by pydicom, as in the engine
        if code == _ENGINE:
            btag = BaseTag(tag)
            value = raw[start : start + length] if length else _reader._EMPTY[vr]
            side[btag] = RawDataElement(btag, vr, length, value, start, implicit, True)
            continue
        end = start + length
        copied.append((tag, head, end))
        if code == _CHECK and length:
            checked.append((tag, raw[start:end]))
        elif tag in _PIXEL_TAGS:
            btag = BaseTag(tag)
            pixel = RawDataElement(btag, vr, length, raw[start:end], start, implicit, True)
    kept = _private_kept(engine, raw, private, implicit)
    if kept is None:
        return None
    if kept:
        copied = sorted(copied + kept)
    if pixel is not None and _outside_image(raw, walked):
        return None  # the engine clears it
    ds = _reader.file_dataset(raw, meta, side, implicit)
    return _finish(engine, ds, raw, copied, checked, coded, pixel, input_sha, sop_class, plan)


def _private_kept(
    engine: Deidentifier, raw: bytes, private: list[tuple[int, str | None, int, int, int]], implicit: bool
) -> list[tuple[int, int, int]] | None:
    """The engine's ``_private`` on raw elements: (tag, start, end) of those kept (numeric elements on
    the safe list under Retain Safe Private, site overrides that keep); None: let the engine decide."""
    from curata.collect.deid import engine as eng

    if not private:
        return []
    profile = engine.profile
    keep: set[int] = {t for t, a in profile.overrides if a == "K"}
    by_tag = {e[0]: e for e in private}
    if profile.has("retain_safe_private"):
        safe = eng._safe_private()
        creators: dict[int, str] = {}
        for tag, vr, _, _, _ in private:
            group, elem = tag >> 16, tag & 0xFFFF
            if elem < 0x1000:
                continue
            creator_tag = (group << 16) | (elem >> 8)
            creator = creators.get(creator_tag)
            if creator is None:
                found = by_tag.get(creator_tag)
                value = raw[found[3] : found[3] + found[4]] if found else b""
                creator = creators[creator_tag] = value.decode("latin-1").strip(" \0").upper()
            if (creator, group, elem & 0xFF) not in safe:
                continue
            if implicit:  # the engine asks pydicom's private dictionary for the VR
                vr = _implicit_private_vr(raw, tag, by_tag.get(creator_tag))
                if vr is None:
                    return None
            if vr in eng.SAFE_PRIVATE_VRS:
                keep.add(tag)
                keep.add(creator_tag)
    out = []
    for tag in sorted(keep):
        found = by_tag.get(tag)
        if found is None:
            continue
        _, _, head, start, length = found
        if length & 1 or length == 0xFFFFFFFF:
            return None
        out.append((tag, head, start + length))
    return out


def _implicit_private_vr(
    raw: bytes, tag: int, creator: tuple[int, str | None, int, int, int] | None
) -> str | None:
    """The VR pydicom gives an implicit-VR private element (``hooks._private_vr_for_tag``): its
    private dictionary's, looked up by the creator as pydicom reads it (one LO value, right-stripped),
    else UN. None where the creator is not that plain (the engine reads it)."""
    if creator is None:
        return None
    value = raw[creator[3] : creator[3] + creator[4]]
    if not value.isascii() or value.find(b"\\") >= 0 or value.find(b"\x1b") >= 0:
        return None
    name = value.decode("ascii").rstrip("\0 ")
    if not name:
        return None
    try:
        return str(private_dictionary_VR(tag, name))
    except KeyError:
        return "UN"


def _finish(
    engine: Deidentifier,
    ds: object,
    raw: bytes,
    copied: list[tuple[int, int, int]],
    checked: list[tuple[int, bytes]],
    coded: list[bytes],
    pixel: RawDataElement | None,
    input_sha: str,
    sop_class: str,
    plan: _Plan,
) -> DeidResult | frozenset[int] | None:
    """The engine's ``_run`` on the small data set, then the merge and the gate."""
    from pydicom.dataset import FileDataset

    from curata.collect.deid import engine as e

    assert isinstance(ds, FileDataset)
    if any(not str(ds.get(k, "") or "").strip() for k in e._REQUIRED):
        return None
    ctx = e._Ctx(engine.profile, engine.pseudo, sop_class)
    ctx.allowed = plan.allowed
    if engine.profile.allow_list and ctx.allowed is None:
        return None
    ctx.encodings = e._encodings(ds)
    # collected first, while the names are still the input's bytes: reading PatientName for the
    # pseudonym converts it, and its bytes in another character set would no longer be read
    engine._collect(ds, ctx, top=True)
    engine._patient(ds, ctx)
    for value in coded:  # as _collect reads a raw coded string
        ctx.coded.update(v.strip(" \0").upper() for v in value.decode("latin-1").split("\\"))
    age = engine._age_before(ds, ctx)
    has_pixels = pixel is not None or any(t in ds for t in _PIXEL_TAGS)
    if has_pixels and pixels.may_carry_burned_in_text(ds):
        return None  # OCR, templates, review: the engine's own
    engine._clean(ds, ctx, top=True, structured=False)
    for target, tag, generic in ctx.later:
        engine._clean_text_elem(target, tag, ctx, generic=generic)
    held = frozenset(tag for tag, value in checked if ctx.holds_identifier(value))
    if held:
        return held  # kept text that may hold an identifier: the engine's steps clean and check it
    if age is not None:
        ds.PatientAge = age
    engine._file_meta(ds, ctx)
    engine._mark(ds, ctx)
    output = _writer.encode_merged(ds, raw, copied)
    if output is None:
        return None
    if pixel is not None:
        ds[pixel.tag] = pixel  # for the gate: the pixel value's place in the output is not scanned
    try:
        engine._gate(output, ds, ctx, has_pixels)
    except e.DeidError:
        return None  # the full engine refuses it with its own reason
    state = "kept" if has_pixels else "none"
    return engine._result(output, ds, ctx, input_sha, sop_class, state, "", whole=False)

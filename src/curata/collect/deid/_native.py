"""The engine's native lane: the common file de-identified from its bytes, with no pydicom data set.

The raw lane (``_rawpath``) still hands the 40 or so elements that change or identify to pydicom
and the engine's own steps. Here those steps are done on the bytes for the values a small CT or MR
carries: plain ASCII UIDs, dates, names, IDs and text, coded strings, the patient's age, removed
sequences (read for the identifiers they hold). Every value is read as pydicom reads it (``_read``:
the same splitting and stripping) and written as the engine's writer writes a changed element
(``_write``), and each action is the engine's own function on that value (``Pseudonymizer.uid``,
``shift_date``, ``clean_text``, ``cap_age``...), so the bytes are the engine's bytes. A sequence
the profile keeps (a scanner's referenced images, anatomic region, procedure code...) is handed,
alone, to the engine's own steps and writer (``_Run.sequence``), as the raw lane hands its elements.

Whatever is not plain returns None and the raw lane (then the whole engine) takes the file: any
non-ASCII value that would be read (in a kept sequence's items too), a multi-valued value where
the engine reads it as one string, numeric values that an action changes, a text element whose
bytes may hold one of the input's identifiers (written into a kept sequence's items too; a UID
remapped after the sequence is found by the gate), the gate's slightest doubt. ``tests/collect/deid/test_fast_path.py`` holds
all lanes to the same bytes, record and vault rows.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.values import convert_PN, convert_single_string, convert_text

from curata.collect.deid import _rawpath, _reader, _writer, codestream, pixels
from curata.collect.deid.identities import REMEMBERED_TAGS
from curata.collect.deid.pseudonyms import age_between, cap_age, is_standard_uid, shift_date, shift_datetime
from curata.collect.deid.text import clean_text, identity_spans, other_readings

if TYPE_CHECKING:
    from curata.collect.deid.engine import Deidentifier, DeidResult, _Ctx

_PACK_SHORT = struct.Struct("<HH2sH").pack
_PACK_LONG = struct.Struct("<HH2s2xI").pack
_PACK_IMPLICIT = struct.Struct("<HHI").pack
_SHORT = struct.Struct("<HH2sH").unpack_from
_U32 = struct.Struct("<I").unpack_from
_IMPLICIT = struct.Struct("<HHI").unpack_from
_LONG = _reader._LONG

_MULTI_STRING = frozenset({"UI", "CS", "AS", "DA", "DT", "TM"})  # pydicom's multi_string
_TEXT = frozenset({"SH", "LO", "UC"})  # convert_text: each value right-stripped
_SINGLE = frozenset({"ST", "LT", "UT"})  # one value, right-stripped
_GATE_TEXT = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE", "UR"})
# text VRs whose one value the lane writes beyond ASCII: the engine converts them to a str, which
# pydicom's writer encodes. Not PN (a converted name keeps its input's bytes and writes them when
# unchanged) nor coded strings: the raw lane takes those.
_WRITTEN_BEYOND_ASCII = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_SOP_CLASS, _SOP_UID, _STUDY_UID, _SERIES_UID = 0x00080016, 0x00080018, 0x0020000D, 0x0020000E
_CHARSET, _MODALITY, _ISSUER = 0x00080005, 0x00080060, 0x00100021
_AGE_DATE_TAGS = (0x00080020, 0x00080021, 0x00080022, 0x00080023)
# what the engine's steps read of compressed Pixel Data besides its value: the bit layout, the frames
_PIXEL_MODULE = (0x00280100, 0x00280101, 0x00280102, 0x00280103, 0x00280008)
_RLE = "1.2.840.10008.1.2.5"  # always decoded and encoded again (pixels._encapsulated): the engine's
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # (FFFE,E0DD), length 0: ends encapsulated data


# Elements the engine always reads by keyword (so writes back as read, when it keeps them)
_ALWAYS_READ = frozenset(
    {_CHARSET, _ISSUER, 0x00100010, 0x00100020, _SOP_CLASS, _SOP_UID, _STUDY_UID, _SERIES_UID}
)
_RAW = object()  # act(): the element is written as it came


class _Written:
    """act(): the whole element, written (a kept sequence)."""

    __slots__ = ("data", "texts")

    def __init__(self, data: bytes, texts: list[bytes]) -> None:
        self.data = data
        self.texts = texts


def _joined(values: list[bytes]) -> bytes:
    """Values probed as one by ``holds_identifier``: the joining byte (\\x01) is no separator, so
    the joined bytes hold an identifier when one of the values does (a value beyond ASCII makes both
    answers yes); a needle holding that byte could only add a yes, which reads each value or declines."""
    return values[0] if len(values) == 1 else b"\x01".join(values)


def _holding(ctx: _Ctx, values: list[bytes]) -> set[int]:
    """Which of ``values`` may hold an identifier (``holds_identifier``): all probed as one, and
    the halves of a group that holds one probed again, down to single values. In the common file
    none does (one probe); where one does, a few probes find it instead of one per value."""
    found: set[int] = set()

    def probe(lo: int, hi: int) -> None:
        if not ctx.holds_identifier(_joined(values[lo:hi])):
            return
        if hi - lo == 1:
            found.add(lo)
            return
        mid = (lo + hi) // 2
        probe(lo, mid)
        probe(mid, hi)

    if values:
        probe(0, len(values))
    return found


class _Decline(Exception):
    """Not plain enough here: the raw lane takes the file."""


def _read(vr: str, data: bytes, encodings: list[str] | None = None) -> str | list[str]:
    """The value pydicom reads from these bytes (a list where it reads several). Text beyond ASCII
    (names, IDs, descriptions in the declared character set) is read by pydicom's own functions;
    any other value beyond ASCII, and ISO 2022 escapes, are not plain."""
    if data.find(b"\x1b") >= 0:
        raise _Decline
    if not data.isascii():
        if encodings is None or (vr not in _TEXT and vr not in _SINGLE and vr != "PN"):
            raise _Decline
        return _decoded(vr, data, encodings)
    text = data.decode("ascii")
    if vr in _MULTI_STRING:
        parts = text.rstrip(" \0").split("\\")
    elif vr in _TEXT:
        parts = [p.rstrip("\0 ") for p in text.split("\\")]
    elif vr in _SINGLE:
        return text.rstrip("\0 ")
    elif vr == "PN":
        parts = data.rstrip(b"\0 ").decode("ascii").split("\\")
    else:
        raise _Decline
    return parts[0] if len(parts) == 1 else parts


def _decoded(vr: str, data: bytes, encodings: list[str]) -> str | list[str]:
    if vr == "PN":
        names = convert_PN(data, encodings)
        parts = [str(n) for n in names] if isinstance(names, MultiValue) else [str(names)]
        return parts[0] if len(parts) == 1 else parts
    if vr in _SINGLE:
        return convert_single_string(data, encodings)
    text = convert_text(data, encodings)
    return text if isinstance(text, str) else list(text)


def _one(vr: str, data: bytes, encodings: list[str] | None = None) -> str:
    """A value the engine reads as one string (``str(ds.get(...))``): several values are not plain."""
    value = _read(vr, data, encodings)
    if isinstance(value, list):
        raise _Decline
    return value


def _write(
    tag: int, vr: str, value: str | list[str], implicit: bool, encodings: list[str] | None = None
) -> bytes:
    """A changed element as the engine's writer writes it: ASCII as ``_writer._fast_string`` does;
    text beyond ASCII (one value of a text VR) as pydicom's writer encodes the element the engine
    converted, in the data set's one declared character set (``encodings``; None: not plain here)."""
    text = value if isinstance(value, str) else "\\".join(value)
    if not text.isascii():
        if encodings is None or not isinstance(value, str) or vr not in _WRITTEN_BEYOND_ASCII:
            raise _Decline
        try:
            text.encode(encodings[0])  # what pydicom would only write with replacements: not plain
        except (UnicodeError, LookupError):
            raise _Decline from None
        return _writer._pydicom_element(DataElement(BaseTag(tag), vr, value), implicit, encodings)
    data = text.encode("ascii")
    if len(data) & 1:
        data += b"\0" if vr == "UI" else b" "
    return _header(tag, vr, len(data), implicit) + data


def _header(tag: int, vr: str, length: int, implicit: bool) -> bytes:
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        return _PACK_IMPLICIT(group, element, length)
    if vr in _LONG:
        return _PACK_LONG(group, element, vr.encode(), length)
    if length > 0xFFFF:
        raise _Decline
    return _PACK_SHORT(group, element, vr.encode(), length)


def deidentify(engine: Deidentifier, raw: bytes, input_sha: str) -> DeidResult | None:
    """``engine``'s result for ``raw`` from its bytes alone, or None: the raw lane takes it."""
    head = _reader.header(raw)
    if head is None:
        return None
    meta, pos, implicit = head
    sequences: dict[int, DataElement] = {}  # those of undefined length, read by pydicom
    walked = _rawpath._walk(raw, pos, implicit, sequences)
    if walked is None or (walked and walked[-1][4] == 0xFFFFFFFF and walked[-1][0] != 0x7FE00010):
        return None  # an undefined length that is not compressed Pixel Data ending the file
    sop_class = _rawpath._sop_class(raw, walked)
    if not sop_class:
        return None
    plan = engine._plans.get(sop_class)
    if plan is None:
        plan = engine._plans[sop_class] = _rawpath._Plan(engine, sop_class)
    ts_elem = meta.get(0x00020010)  # type: ignore[call-overload]
    try:
        return _Run(
            engine, plan, raw, walked, implicit, input_sha, sop_class, ts_elem.value, sequences
        ).result()
    except _Decline:
        return None
    except Exception:  # anything unforeseen: the other lanes decide, and say why
        return None


class _Run:
    """One file through the native lane."""

    def __init__(
        self,
        engine: Deidentifier,
        plan: _rawpath._Plan,
        raw: bytes,
        walked: list[tuple[int, str | None, int, int, int]],
        implicit: bool,
        input_sha: str,
        sop_class: str,
        ts_raw: bytes,
        sequences: dict[int, DataElement] | None = None,
    ) -> None:
        from curata.collect.deid import engine as eng

        self.engine, self.plan, self.eng = engine, plan, eng
        self.raw, self.walked, self.implicit = raw, walked, implicit
        self.input_sha, self.sop_class = input_sha, sop_class
        self.ts = _one("UI", ts_raw)
        self.profile = engine.profile
        self.encodings: list[str] | None = None  # known once the character set is read
        self.vrs: dict[int, str] = {}
        self.values: dict[int, bytes] = {}  # top-level raw values by tag (ASCII checked on reading)
        self.read: dict[int, str] = {}  # get()'s answers
        self.pixel: memoryview | None = None  # the Pixel Data value
        self.encapsulated: tuple[int, int] | None = None  # compressed: (its header, its value) offsets
        self.pixel_piece: bytes | tuple[int, int] = (0, 0)  # compressed: as written (encapsulated_pixels)
        # top-level sequences of undefined length, as pydicom read them (``_rawpath._walk``)
        self.sequences: dict[int, DataElement] = sequences or {}
        codes: list[int] = []
        known, decide = plan.codes.get, plan.code  # the plan's table, then its decision once
        vrs, values, vr_of = self.vrs, self.values, eng._vr_of
        for tag, vr, head, start, length in walked:
            code = known((tag, vr))
            codes.append(decide(tag, vr) if code is None else code)
            if vr is None:
                vr = vr_of(tag)
            if vr is not None:
                vrs[tag] = vr
            if tag == 0x7FE00010:  # copied by the output's join, never read here: not sliced (a
                # fresh copy of a 512x512 CT's 512 KiB costs as much as all the rest of the lane)
                if length == 0xFFFFFFFF:  # its items, then the delimiter that ends the file (_walk)
                    self.encapsulated = (head, start)
                    self.pixel = memoryview(raw)[start : len(raw) - 8]
                else:
                    self.pixel = memoryview(raw)[start : start + length]
                values[tag] = b""
            else:
                values[tag] = raw[start : start + length]
        self.codes = codes

    def get(self, tag: int) -> str:
        """``str(ds.get(keyword, "") or "")`` for a single-valued string element."""
        found = self.read.get(tag)
        if found is None:
            data = self.values.get(tag)
            if data is None:
                return ""
            found = _one(self.vrs.get(tag, "UN"), data, self.encodings)
            if self.encodings is not None:  # what text beyond ASCII reads as is known
                self.read[tag] = found
        return found

    # ------------------------------------------------------------------ the engine's _run
    def result(self) -> DeidResult | None:
        eng, engine, profile = self.eng, self.engine, self.profile
        for tag in (_SOP_CLASS, _SOP_UID, _STUDY_UID, _SERIES_UID):
            if not self.get(tag).strip():
                raise _Decline
        ctx = eng._Ctx(profile, engine.pseudo, self.sop_class)
        ctx.allowed = self.plan.allowed
        if profile.allow_list and ctx.allowed is None:
            raise _Decline
        charset = self.values.get(_CHARSET)
        value = _read("CS", charset) if charset is not None else ""
        if value:  # as the engine's _encodings
            try:
                ctx.encodings = list(convert_encodings(value if isinstance(value, list) else [value]))
            except Exception:
                ctx.encodings = []
            if not ctx.encodings:
                raise _Decline
        # how pydicom reads text beyond ASCII here (the data set's character set, or its default)
        self.encodings = ctx.encodings or ["iso8859"]
        # and writes it: only in one declared character set without code extensions
        declared = ctx.encodings
        self.write_encodings = declared if len(declared) == 1 and "2022" not in declared[0] else None
        # text elements written: (tag, VR, value, value's bytes), for the gate's decoded reading
        self.written: list[tuple[int, str, str | list[str], bytes]] = []
        self.patient(ctx)
        self.collect(ctx)
        age = self.age_before(ctx)
        self.has_pixels = has_pixels = any(t in self.values for t in _PIXEL_TAGS)
        if has_pixels and (self.may_carry_burned_in_text() or _rawpath._outside_image(self.raw, self.walked)):
            raise _Decline
        written_pixel: bytes | memoryview | None = self.pixel if has_pixels else None
        cleared_by = ""
        if self.encapsulated is not None:
            written_pixel, cleared_by = self.encapsulated_pixels(ctx)
        pieces, items_text = self.clean(ctx, age)
        if items_text and ctx.holds_identifier(_joined(items_text)):
            raise _Decline  # the gate would read the items decoded: let the engine's gate say
        if self.decoded_hit(ctx):
            raise _Decline  # the engine's gate refuses it, or its other lanes clean it otherwise
        if age is not None:
            pieces.append((eng._AGE, _write(eng._AGE, "AS", age, self.implicit)))
        temporal = "UNMODIFIED" if ctx.full_dates else ("MODIFIED" if ctx.mod_dates else "REMOVED")
        for elem in eng._marking_raw(profile, temporal, self.implicit):
            data = elem.value or b""
            pieces.append(
                (int(elem.tag), _header(int(elem.tag), elem.VR or "", len(data), self.implicit) + data)
            )
        pieces.sort(key=lambda p: p[0])
        sop_class, study, series, sop = self.uids
        if not (sop_class and study and series and sop):
            raise _Decline
        meta = _writer.file_meta_bytes(
            sop_class, sop, self.ts, eng.IMPLEMENTATION_CLASS_UID, version=eng.IMPLEMENTATION_VERSION
        )
        output = self.assemble(meta, pieces)
        spans = eng._header_spans(output, written_pixel, ctx.codestream_kept)
        if not engine._byte_gate(output, ctx, spans):
            raise _Decline
        state = ("cleaned" if cleared_by else "kept") if has_pixels else "none"
        names = (study, series, sop, self.ts)
        return engine._result(
            output, None, ctx, self.input_sha, self.sop_class, state, cleared_by, whole=False, names=names
        )

    def encapsulated_pixels(self, ctx: _Ctx) -> tuple[bytes | memoryview, str]:
        """Compressed Pixel Data through the engine's own steps, on a data set of its pixel module
        alone: ``pixels.clear_outside_image`` (a Basic Offset Table that is not one is emptied), then
        ``Deidentifier._redact_codestream`` (comment and application segments zeroed; the metadata
        kept is noted for the gate). The value as it is written, and what was cleared. RLE (always
        encoded again), frames that would be decoded to check their unused bits, and anything else
        cleared are the engine's."""
        assert self.encapsulated is not None and self.pixel is not None
        if self.raw[-8:] != _SEQUENCE_DELIMITER or self.ts == _RLE or not codestream.is_compressed(self.ts):
            raise _Decline
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = UID(self.ts)
        for tag in _PIXEL_MODULE:
            data = self.values.get(tag)
            if data is not None:
                btag = BaseTag(tag)
                ds[btag] = RawDataElement(btag, self.vrs.get(tag), len(data), data, 0, self.implicit, True)
        value = bytes(self.pixel)
        pixel_tag = BaseTag(0x7FE00010)
        ds[pixel_tag] = RawDataElement(pixel_tag, "OB", 0xFFFFFFFF, value, 0, self.implicit, True)
        if ds.get("BitsAllocated") is not None:
            try:
                allocated, stored, high_bit, _ = pixels._bit_layout(ds)
            except (TypeError, ValueError):
                pass  # the engine reads no layout either: it clears the table alone
            else:
                table = codestream.offset_table_cleared(value)
                if pixels.decoded_for_unused_bits(table or value, allocated, stored, high_bit):
                    raise _Decline
        cleared = pixels.clear_outside_image(ds)
        if cleared not in ([], ["offset-table"]):
            raise _Decline
        self.engine._redact_codestream(ds, ctx)
        written = ds.PixelData
        head, start = self.encapsulated
        if written is value or written == value:
            self.pixel_piece = (head, len(self.raw))  # copied as it came, its delimiter with it
            return self.pixel, "+".join(cleared)
        if not isinstance(written, bytes | bytearray):
            raise _Decline
        self.pixel_piece = bytes(self.raw[head:start]) + bytes(written) + _SEQUENCE_DELIMITER
        return bytes(written), "+".join(cleared)

    def assemble(self, meta: bytes, pieces: list[tuple[int, bytes | tuple[int, int]]]) -> bytes:
        body: list[bytes | memoryview] = [b"\0" * 128 + b"DICM", meta]
        raw = memoryview(self.raw)  # the copied runs (the pixel data) are copied once, by the join
        run_start = run_end = -1
        for _, piece in pieces:
            if isinstance(piece, tuple):
                start, end = piece
                if start == run_end:
                    run_end = end
                    continue
                if run_end >= 0:
                    body.append(raw[run_start:run_end])
                run_start, run_end = start, end
                continue
            if run_end >= 0:
                body.append(raw[run_start:run_end])
                run_start = run_end = -1
            body.append(piece)
        if run_end >= 0:
            body.append(raw[run_start:run_end])
        return b"".join(body)

    def patient(self, ctx: _Ctx) -> None:
        pid = self.get(self.eng._PATIENT_ID).strip()
        name = self.get(self.eng._PATIENT_NAME).strip()
        issuer = self.get(_ISSUER).strip()
        if pid:
            key = f"id:{issuer}|{pid}"
        elif name:
            key = f"name:{name}|{self.get(self.eng._BIRTH_DATE).strip()}"
        else:
            key = f"study:{self.get(_STUDY_UID)}"
        ctx.patient_id, ctx.patient_name = pid, name
        ctx.pseudonym = self.engine.pseudo.patient(key)
        ctx.shift = self.engine.pseudo.date_shift(key)

    def collect(self, ctx: _Ctx) -> None:
        """The engine's ``_collect`` at the top level and inside sequences (which go: see ``clean``)."""
        read = (_rawpath._ENGINE, _rawpath._CODED_CHECK, _rawpath._CODED_DROP)
        for (tag, _, _, start, length), code in zip(self.walked, self.codes, strict=True):
            if code not in read:  # the plan sends every element the engine collects from to these
                if code == _rawpath._DECLINE:
                    raise _Decline
                continue
            vr = self.vrs.get(tag)
            if tag in self.sequences:
                self.collect_read(ctx, self.sequences[tag])
            elif vr == "SQ":
                self.collect_items(ctx, start, start + length)
            else:
                self.collect_one(ctx, tag, vr, self.values[tag])
        if not ctx.full_dates:
            for tag in (*_AGE_DATE_TAGS, self.eng._BIRTH_DATE):
                ctx.ids.add_date(self.get(tag))

    def collect_one(self, ctx: _Ctx, tag: int, vr: str | None, data: bytes) -> None:
        eng = self.eng
        sources = self.engine._sources
        if vr == "CS" and tag not in sources and tag not in eng._NAME_TAGS:  # as the engine's
            ctx.coded.update(v.strip(" \0").upper() for v in data.decode("latin-1").split("\\"))
            return
        if tag not in sources and vr != "PN" and tag not in eng._NAME_TAGS:
            return
        if tag == eng._TIMEZONE_OFFSET or vr is None:
            return
        value = _read(vr, data, self.encodings)
        if value == "":
            return
        ids, addresses = ctx.ids, eng._address_tags()
        values = value if isinstance(value, list) else [value]
        if not data.isascii():  # as the engine: matched in every plausible decoding, and as bytes
            ids.add_raw(data)
            values = [*values, *(v for alt in other_readings(data) for v in alt.split("\\"))]
        for v in values:
            text = v.strip(" \0")
            if not text:
                continue
            if tag in REMEMBERED_TAGS:
                ctx.remembered.append((tag, text))
            if tag in eng._STRONG_TAGS:
                ids.add_strong(text)
            if vr == "PN" or tag in eng._NAME_TAGS:  # as the engine: a name whatever its VR
                ids.add_name(text)
            elif vr in ("DA", "DT"):
                if not ctx.full_dates or tag == eng._BIRTH_DATE:
                    ids.add_date(text)
            elif tag in eng._PERSON_ADDRESSES:
                ids.add_address(text)
            elif tag in addresses:
                ids.add_word(text)
            else:
                ids.add_value(text)

    def collect_items(self, ctx: _Ctx, pos: int, end: int) -> None:
        """Items of a defined-length sequence: their elements collected like the top level's."""
        raw = self.raw
        while pos < end:
            group, elem, length = _IMPLICIT(raw, pos)
            if (group, elem) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF or pos + 8 + length > end:
                raise _Decline
            self.collect_item(ctx, pos + 8, pos + 8 + length)
            pos += 8 + length
        if pos != end:
            raise _Decline

    def collect_item(self, ctx: _Ctx, pos: int, end: int) -> None:
        raw, implicit = self.raw, self.implicit
        while pos < end:
            if implicit:
                group, elem, length = _IMPLICIT(raw, pos)
                vr = self.eng._vr_of(group << 16 | elem)
                start = pos + 8
            else:
                group, elem, vr_bytes, length = _SHORT(raw, pos)
                vr = vr_bytes.decode("latin-1")
                if vr not in _reader._KNOWN or vr == "UN":
                    raise _Decline
                if vr in _LONG:
                    (length,) = _U32(raw, pos + 8)
                    start = pos + 12
                else:
                    start = pos + 8
            tag = group << 16 | elem
            if length == 0xFFFFFFFF or start + length > end or tag == _CHARSET:
                raise _Decline
            if vr == "SQ":
                self.collect_items(ctx, start, start + length)
            else:
                self.collect_one(ctx, tag, vr, raw[start : start + length])
            pos = start + length

    def collect_read(self, ctx: _Ctx, sequence: DataElement) -> None:
        """A sequence of undefined length as pydicom read it: its items' elements collected as
        ``collect_item`` collects them (raw values; nested sequences of defined length walked from
        their bytes, those of undefined length as pydicom read them)."""
        for item in sequence.value or ():
            for elem in item._dict.values():
                tag = int(elem.tag)
                if not isinstance(elem, RawDataElement):
                    if elem.VR != "SQ":
                        raise _Decline
                    self.collect_read(ctx, elem)
                    continue
                if self.implicit:
                    vr = self.eng._vr_of(tag)
                else:
                    vr = elem.VR
                    if vr not in _reader._KNOWN or vr == "UN":
                        raise _Decline
                length = elem.length
                if length == 0xFFFFFFFF or tag == _CHARSET or not isinstance(elem.value, bytes | None):
                    raise _Decline
                if vr == "SQ":
                    start = elem.value_tell
                    if start is None or self.raw[start : start + length] != (elem.value or b""):
                        raise _Decline  # not where the bytes say: not plain
                    self.collect_items(ctx, start, start + length)
                else:
                    self.collect_one(ctx, tag, vr, elem.value or b"")

    def age_before(self, ctx: _Ctx) -> str | None:
        eng, profile = self.eng, self.profile
        if not profile.has("retain_patient_characteristics") or ctx.top.get(eng._AGE) != "K":
            return None
        current = self.get(eng._AGE).strip()
        if current:
            return cap_age(current, profile.cap_age_years)
        birth = self.get(eng._BIRTH_DATE)
        for tag in _AGE_DATE_TAGS:
            on = self.get(tag)
            if birth and on:
                age = age_between(birth, on)
                if age:
                    return cap_age(age, profile.cap_age_years)
        return None

    def may_carry_burned_in_text(self) -> bool:
        flag = self.get(0x00280301).upper()
        if flag == "YES":
            return True
        if self.get(_SOP_CLASS) in pixels.BURNED_IN_CLASSES:
            return True
        return flag != "NO" and self.get(_MODALITY).upper() in pixels.BURNED_IN_MODALITIES

    # ------------------------------------------------------------------ the engine's _clean
    def clean(
        self, ctx: _Ctx, age: str | None
    ) -> tuple[list[tuple[int, bytes | tuple[int, int]]], list[bytes]]:
        """(tag, bytes written or (start, end) copied) in tag order, and the text values written
        (the gate reads them decoded)."""
        eng, implicit, values = self.eng, self.implicit, self.values
        pieces: list[tuple[int, bytes | tuple[int, int]]] = []
        kept_text: list[tuple[int, int, str, bytes]] = []  # (piece, tag, VR, value): the later pass
        changed: list[bytes] = []  # the text written in kept sequences' items
        private = []
        marking = eng._MARKING_TAGS
        self.uids = ["", "", "", ""]  # SOP class, study, series, SOP instance as written
        copy = _rawpath._COPY
        for entry, code in zip(self.walked, self.codes, strict=True):
            tag, _, head, start, length = entry
            if tag == 0x7FE00010 and self.encapsulated is not None:
                pieces.append((tag, self.pixel_piece))
                continue
            end = start + length
            if code == copy and not length & 1:  # most elements (never read, marked or the age)
                pieces.append((tag, (head, end)))
                continue
            if code == _rawpath._DECLINE:
                raise _Decline
            if code == _rawpath._PRIVATE:
                private.append(entry)
                continue
            if code in (_rawpath._DROP, _rawpath._CODED_DROP) or (tag == eng._AGE and age is not None):
                continue
            if tag in marking:
                continue  # the marking elements are written anew
            data = values[tag]
            vr = self.vrs.get(tag)
            if code == _rawpath._COPY and not length & 1:
                pieces.append((tag, (head, end)))
                continue
            if vr is None:
                raise _Decline
            out = _RAW if code in (_rawpath._CHECK, _rawpath._CODED_CHECK) else self.act(ctx, tag, vr, data)
            if out is None:
                continue
            if isinstance(out, _Written):  # a kept sequence, written by the engine's writer
                changed += out.texts
                pieces.append((tag, out.data))
                continue
            if not isinstance(out, str | list):  # _RAW: kept as it came, the engine never read it
                if vr in _GATE_TEXT:
                    kept_text.append((len(pieces), tag, vr, data))
                elif length & 1:
                    raise _Decline
                pieces.append((tag, (head, end)))
                continue
            written = _write(tag, vr, out, implicit, self.write_encodings)
            if vr in _GATE_TEXT:
                self.note_written(tag, written, vr, out)
            pieces.append((tag, written))
        holding = _holding(ctx, [k[3] for k in kept_text])
        for n, (index, tag, vr, data) in enumerate(kept_text):
            new = self.kept_text(ctx, vr, data, n not in holding)
            if new is not None:
                written = _write(tag, vr, new, implicit, self.write_encodings)
                self.note_written(tag, written, vr, new)
                pieces[index] = (tag, written)
        kept = _rawpath._private_kept(self.engine, self.raw, private, implicit)
        if kept is None:
            raise _Decline
        if kept:
            pieces += [(t, (s, e)) for t, s, e in kept]
            pieces.sort(key=lambda p: p[0])
        return pieces, changed

    def note_written(self, tag: int, written: bytes, vr: str, value: str | list[str]) -> None:
        """A text element written, for the gate's decoded reading (``decoded_hit``)."""
        data = written[8 if self.implicit or vr not in _LONG else 12 :]
        self.written.append((tag, vr, value, data))

    def decoded_hit(self, ctx: _Ctx) -> bool:
        """The engine's gate on decoded text (``engine._text_hit``, as ``_decoded_hit`` applies it)
        for the text elements written. Text beyond ASCII is always read (the byte probe cannot: case beyond ASCII, other
        scripts, single CJK names); ASCII text only where the probe, which may over-approximate
        (a name part of two letters inside a longer word), finds one of the identifiers."""
        written = self.written
        ascii_data = [data for _, _, _, data in written if data.isascii()]
        if not ascii_data or not ctx.holds_identifier(_joined(ascii_data)):
            written = [w for w in written if not w[3].isascii()]
        if not written:
            return False
        matcher = self.engine._gate_matcher(ctx)
        return any(
            self.eng._text_hit(
                matcher,
                ctx,
                tag,
                vr,
                [
                    *(value if isinstance(value, list) else [value]),
                    *(other_readings(data) if self.eng._read_otherwise(data) else ()),
                ],
            )
            for tag, vr, value, data in written
        )

    def read_otherwise_hit(self, ctx: _Ctx, data: bytes) -> bool:
        """Whether a text value read in another character set than the declared one
        (``other_readings``) holds an identifier, as the engine's gate reads it."""
        matcher = self.engine._gate_matcher(ctx)
        return any(identity_spans(matcher, text) for text in other_readings(data))

    def kept_text(self, ctx: _Ctx, vr: str, data: bytes, clear: bool = False) -> str | list[str] | None:
        """The engine's later pass on kept text (``_clean_text_elem``, not generic): None while its
        bytes hold none of the identifiers and it has an even length (copied as it came); else the
        value written: read (an odd length is rewritten from the value read), the patient's own
        identifiers removed. ``clear``: already known to hold none."""
        if not clear and self.eng._read_otherwise(data) and self.read_otherwise_hit(ctx, data):
            raise _Decline  # written in another character set than the declared one: the engine's gate
        if clear or not ctx.holds_identifier(data):
            if len(data) & 1:
                return _read(vr, data, self.encodings)
            return None
        if vr in ("CS", "AE", "UR"):
            raise _Decline  # coded strings holding an identifier: the engine's own rules
        value = _read(vr, data, self.encodings)
        if value == "":
            return value
        out = [clean_text(v, ctx.ids, generic=False) for v in (value if isinstance(value, list) else [value])]
        return out if isinstance(value, list) else out[0]

    def age_set(self, ctx: _Ctx) -> bool:
        return self.profile.has("retain_patient_characteristics") and ctx.top.get(self.eng._AGE) == "K"

    def act(self, ctx: _Ctx, tag: int, vr: str, data: bytes) -> str | list[str] | object | None:
        """The engine's ``_clean`` / ``_apply`` for one element it converts: the value written, or
        None when the element goes."""
        eng = self.eng
        if (
            ctx.allowed is not None
            and tag not in ctx.allowed
            and tag not in (eng._PATIENT_ID, eng._PATIENT_NAME)
        ):
            return None
        action = ctx.top.get(tag)
        if action is None:
            action = self.engine._unlisted_action(tag, vr, ctx, False)
            if eng._vr_of(tag) is None:
                action = "X"
        if tag in (eng._PATIENT_ID, eng._PATIENT_NAME):
            _read(vr, data, self.encodings)
            return ctx.pseudonym
        if action == "X":
            return None
        if vr == "SQ":
            return self.sequence(ctx, tag, data, action)
        value = _read(vr, data, self.encodings)
        if action == "Z":
            return ""
        if action == "S":
            if isinstance(value, list):
                raise _Decline
            if not (is_standard_uid(value) or value.startswith(eng._HL7_ROOT)):
                value = self.remap(ctx, value)
            return self.note_uid(tag, value)
        if action == "U" or (vr == "UI" and action in ("D", "C")):
            if ctx.retain_uids:
                raise _Decline  # kept unread by the engine: not a converted value
            return self.note_uid(tag, self.remap(ctx, value))
        if action == "D":
            return self.dummy(vr)
        if action == "C":
            if vr in ("DA", "DT"):
                return self.shift(ctx, vr, value)
            if vr == "PN":
                return self.dummy(vr)
            if vr in eng.TEXT_VRS:
                return self.clean_text(ctx, vr, value)
            raise _Decline  # the plan copies these
        if vr in ("DA", "DT") and not ctx.full_dates:
            if isinstance(value, list):
                raise _Decline
            if any(v.strip()[:8] in ctx.ids.dates for v in value.split("\\")):
                return self.shift(ctx, vr, value)
            return value
        # kept: as the engine read it where it read it (and so converted it), else as it came
        if tag in _ALWAYS_READ or (tag == eng._AGE and self.age_set(ctx)):
            return self.note_uid(tag, value)
        if tag in (_MODALITY, 0x00280301) and self.has_pixels:
            return value
        if tag in _AGE_DATE_TAGS or tag == eng._BIRTH_DATE:
            raise _Decline  # read by the engine or not, depending on the profile
        return _RAW

    def sequence(self, ctx: _Ctx, tag: int, data: bytes, action: str) -> _Written:
        """A sequence the profile keeps, through the engine's own steps: its items cleaned
        (``_apply``, then the later pass on their text) and the element written by the engine's
        writer (``_writer._sequence``), as the raw lane does for the elements it hands to pydicom.
        The rest of the file stays in this lane."""
        engine = self.engine
        if data.find(b"\x1b") >= 0:
            raise _Decline  # ISO 2022 escapes: the engine reads them
        elements: dict[BaseTag, RawDataElement | DataElement] = {}
        charset = self.values.get(_CHARSET)
        if charset is not None:  # the items' text is read in the data set's character set
            elements[BaseTag(_CHARSET)] = RawDataElement(
                BaseTag(_CHARSET),
                None if self.implicit else "CS",
                len(charset),
                charset,
                0,
                self.implicit,
                True,
            )
        key = BaseTag(tag)
        # one of undefined length is the element the lean reader makes of it (pydicom read its items
        # in the same character set), written back with undefined lengths as the engine's writer does
        elements[key] = self.sequences.get(tag) or RawDataElement(
            key, None if self.implicit else "SQ", len(data), data, 0, self.implicit, True
        )
        mini = Dataset(elements)
        mini.set_original_encoding(self.implicit, True, mini._character_set)
        later = len(ctx.later)
        engine._apply(mini, tag, "SQ", action, ctx, top=True, structured=False)
        for target, inner, generic in ctx.later[later:]:
            engine._clean_text_elem(target, inner, ctx, generic=generic)
        del ctx.later[later:]
        body: list[bytes] = []
        try:
            _writer._sequence(tag, mini[key], body, self.implicit, mini._character_set)
        except _writer._Fallback:
            raise _Decline from None
        texts: list[bytes] = []  # the items' text the engine wrote, for the check on what was written
        self.item_texts(mini[key].value, texts)
        return _Written(b"".join(body), texts)

    def item_texts(self, items: Any, texts: list[bytes]) -> None:
        """The text values the engine converted in these items (``texts``), read without converting
        the others: those went out as they came, left by the engine's later pass or never text.
        Text beyond ASCII, converted or not, is not plain here (the engine's gate reads it decoded)."""
        vr_of = self.eng._vr_of
        for item in items or ():
            for elem in item._dict.values():
                vr = elem.VR or vr_of(int(elem.tag))
                if isinstance(elem, RawDataElement):
                    if vr in _GATE_TEXT and elem.value and not elem.value.isascii():
                        raise _Decline
                    continue
                value = elem.value
                if vr == "SQ":
                    self.item_texts(value, texts)
                    continue
                if vr not in _GATE_TEXT or value is None:
                    continue
                text = value if isinstance(value, str) else "\\".join(map(str, value))
                if not text.isascii():
                    raise _Decline
                if text:
                    texts.append(text.encode("ascii"))

    def note_uid(self, tag: int, value: str | list[str]) -> str | list[str]:
        slot = {_SOP_CLASS: 0, _STUDY_UID: 1, _SERIES_UID: 2, _SOP_UID: 3}.get(tag)
        if slot is not None:
            if isinstance(value, list):
                raise _Decline
            self.uids[slot] = value
        return value

    def remap(self, ctx: _Ctx, value: str | list[str]) -> str | list[str]:
        if not value:
            return value
        out = []
        for v in value if isinstance(value, list) else [value]:
            old = v.strip("\0 ")
            new = ctx.pseudo.uid(old)
            if new != old:
                ctx.uid_map[old] = new
                ctx.ids.add_uid(old)
            out.append(new)
        return out if isinstance(value, list) else out[0]

    def dummy(self, vr: str) -> str:
        eng = self.eng
        if vr in ("LO", "SH", "ST", "LT", "UT", "UC"):
            return str(eng.DUMMY_TEXT)
        if vr in eng.DUMMY_BY_VR and isinstance(eng.DUMMY_BY_VR[vr], str):
            return str(eng.DUMMY_BY_VR[vr])
        raise _Decline

    def shift(self, ctx: _Ctx, vr: str, value: str | list[str]) -> str | list[str]:
        if not value:
            return value
        fn = shift_date if vr == "DA" else shift_datetime
        out: list[str] = []
        for v in value if isinstance(value, list) else [value]:
            text = v.strip()
            if not text:
                out.append(text)
                continue
            shifted = fn(text, ctx.shift)
            out.append(shifted if shifted is not None else str(self.eng.DUMMY_BY_VR[vr]))
        return out if isinstance(value, list) else out[0]

    def clean_text(self, ctx: _Ctx, vr: str, value: str | list[str]) -> str | list[str]:
        """Descriptors (Clean Descriptors): the engine's later pass, generic shapes included."""
        if value == "":
            return value
        if vr == "PN":
            raise _Decline
        out = [clean_text(v, ctx.ids, generic=True) for v in (value if isinstance(value, list) else [value])]
        return out if isinstance(value, list) else out[0]

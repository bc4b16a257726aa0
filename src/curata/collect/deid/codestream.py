"""Text hidden inside compressed pixel data: comment and application segments of the codestreams.

A JPEG frame can carry a comment (``COM``), EXIF or XMP (``APP1``), and any vendor's ``APPn`` block; a
JPEG 2000 codestream can carry ``COM`` segments in its main and tile-part headers; a JP2 or JPEG XL
container can carry ``xml``, ``uuid``, ``Exif`` boxes. Scanners and ultrasound carts write the patient's
name and the study date there. None of it is image: the decoder does not need it, and it is not seen
by OCR nor by a check that skips pixel data as "image, not text".

:func:`redact` overwrites the payload of every such segment with zero bytes, in place. Lengths are kept,
so every offset stays valid (the Basic and Extended Offset Tables, JPEG 2000 ``Psot`` and ``TLM``), the
image samples are bit for bit the same, and no frame needs to be re-encoded. What is kept: the JFIF
header (its thumbnail zeroed), the Adobe ``APP14`` colour-transform flag, ``ICC_PROFILE`` (the colour
profile the decoder needs); the final gate scans those (:func:`text_spans`). Bytes after a frame's end
of image, except one padding byte, are zeroed too.

A codestream that cannot be walked, or a kind whose metadata cannot be checked here (video), raises
:class:`CodestreamError`: the object is refused, never released unchecked.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from itertools import pairwise

from pydicom.uid import UID

# transfer syntaxes whose frames hold no metadata segments at all
_PLAIN = {
    "1.2.840.10008.1.2.5",  # RLE Lossless: a 64-byte header of offsets, then runs
    "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression: deflated samples
}
_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}
_VIDEO_PREFIXES = ("1.2.840.10008.1.2.4.10",)  # MPEG-2, MPEG-4 AVC/H.264, HEVC/H.265 (.100-.108)

_JPEG_SOI = b"\xff\xd8"
_JPEG_MARKER = re.compile(rb"\xff[\x80-\xcf\xd8-\xfe]")  # a marker after entropy-coded data
_RIFF = b"RIFF"
_J2K_SOC = b"\xff\x4f\xff\x51"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_JXL_NAKED = b"\xff\x0a"
_JXL_SIGNATURE = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
# container boxes that are image or structure; any other box's payload is zeroed
_JP2_KEEP = {b"jP  ", b"ftyp", b"jp2h", b"ihdr", b"colr", b"bpcc", b"pclr", b"cmap", b"cdef", b"res "}
# (not jbrd: JPEG XL's JPEG-reconstruction box carries the original JPEG's COM and APPn payloads)
_JP2_KEEP |= {b"JXL ", b"resc", b"resd", b"rreq", b"jxlc", b"jxlp", b"jxll", b"jxli"}


class CodestreamError(ValueError):
    """The pixel data's codestream cannot be checked for hidden text."""


@dataclass
class Redaction:
    """What :func:`redact` did to one pixel data value."""

    segments: int = 0  # metadata segments (or boxes, or trailing runs) whose bytes were zeroed
    kept: list[tuple[int, int]] = field(default_factory=list)  # kept metadata payloads, value offsets


def _fragments(value: bytes | bytearray) -> list[tuple[int, int]]:
    """(offset, length) of each fragment of an encapsulated value, the Basic Offset Table item left out."""
    out = []
    pos, n, first = 0, len(value), True
    while pos + 8 <= n:
        group, elem, length = struct.unpack_from("<HHI", value, pos)
        if (group, elem) == (0xFFFE, 0xE0DD):
            break
        if (group, elem) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF or pos + 8 + length > n:
            raise CodestreamError("encapsulated pixel data has a malformed item")
        if not first:
            out.append((pos + 8, length))
        first = False
        pos += 8 + length
    return out


class _Stream:
    """One codestream spread over several fragments: frame positions map back to the value."""

    def __init__(self, value: bytes | bytearray, frags: list[tuple[int, int]]) -> None:
        self.value = value
        self.frags = frags
        self.data = b"".join(bytes(value[o : o + n]) for o, n in frags)

    def spans(self, start: int, end: int) -> list[tuple[int, int]]:
        """Value offsets of the stream bytes ``[start, end)``."""
        out, base = [], 0
        for off, n in self.frags:
            a, b = max(start, base), min(end, base + n)
            if a < b:
                out.append((off + a - base, off + b - base))
            base += n
        return out


def _jpeg_segments(d: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(zero, keep): stream ranges to zero and metadata payloads kept, for a JPEG or JPEG-LS frame. An
    embedded ICC profile is kept for its colour transform, less its text (``_icc_chunks_text``)."""
    zero: list[tuple[int, int]] = []
    keep: list[tuple[int, int]] = []
    icc: list[tuple[int, int, int]] = []  # (sequence number, payload start, payload end) of ICC chunks
    i, n = 2, len(d)
    while i < n:
        if d[i] != 0xFF:
            raise CodestreamError("JPEG frame: a marker was expected")
        while i + 1 < n and d[i + 1] == 0xFF:  # fill bytes
            i += 1
        if i + 1 >= n:
            raise CodestreamError("JPEG frame: truncated marker")
        m = d[i + 1]
        i += 2
        if m == 0xD9:  # end of image: anything after it but one padding byte is not image
            if n - i > 1:
                zero.append((i, n))
            break
        if 0xD0 <= m <= 0xD7 or m == 0x01:  # stand-alone markers
            continue
        if i + 2 > n:
            raise CodestreamError("JPEG frame: truncated segment")
        length = int.from_bytes(d[i : i + 2], "big")
        if length < 2 or i + length > n:
            raise CodestreamError("JPEG frame: a segment runs past the frame")
        payload = (i + 2, i + length)
        body = d[payload[0] : payload[1]]
        if m == 0xFE or (0xE0 <= m <= 0xEF and not _jpeg_app_kept(m, body)):
            zero.append(payload)
        elif 0xE0 <= m <= 0xEF:
            keep.append(payload)
            if m == 0xE0 and len(body) > 14:  # JFIF thumbnail pixels
                zero.append((payload[0] + 14, payload[1]))
            if m == 0xEE and len(body) > 11:  # Adobe: the flags are free bytes, and a version past 255 is
                # text (decoders read the transform, and a non-zero version: a small one stays)
                zero.append((payload[0] + (5 if body[5] else 7), payload[0] + 11))
            if m == 0xE2 and len(body) > 14:  # ICC_PROFILE\0, chunk number, chunk count, data
                icc.append((body[12], payload[0] + 14, payload[1]))
        i += length
        if m == 0xDA:  # start of scan: entropy-coded data runs to the next real marker
            # JPEG stuffs 0x00 after 0xFF, JPEG-LS a zero bit (next byte < 0x80); RSTn stay in the scan
            found = _JPEG_MARKER.search(d, i)
            if found is None:  # no end of image: the scan runs to the end of the frame
                break
            i = found.start()
    return zero + _icc_chunks_text(d, icc), keep


def _icc_chunks_text(d: bytes, chunks: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """The text and date spans (``icc_text_spans``) of an ICC profile held in APP2 chunks, as ranges of
    the stream: the chunks are joined in their sequence order and each span mapped back to them."""
    if not chunks:
        return []
    ordered = sorted(chunks)
    profile = b"".join(d[a:b] for _, a, b in ordered)
    out: list[tuple[int, int]] = []
    for lo, hi in icc_text_spans(profile):
        pos = 0
        for _, a, b in ordered:  # the part of [lo, hi) of the joined profile that each chunk holds
            s, e = max(lo, pos), min(hi, pos + b - a)
            if s < e:
                out.append((a + s - pos, a + e - pos))
            pos += b - a
    return out


# ICC tag element types that are colour data (numbers the transform reads: ICC.1:2022 10.x, and the
# ``vcgt``/``ndin`` calibration tables displays carry); every other element (text, dates, ``data``,
# named colours, colorant names, dictionaries, unknown and private types) is free for a writer's text
_ICC_COLOUR_TYPES = {
    b"chrm", b"clro", b"curv", b"para", b"mft1", b"mft2", b"mAB ", b"mBA ", b"mpet", b"meas", b"sf32",
    b"sig ", b"XYZ ", b"uf32", b"ui08", b"ui16", b"ui32", b"ui64", b"view", b"cicp", b"vcgt", b"ndin",
}  # fmt: skip


def icc_text_spans(profile: bytes) -> list[tuple[int, int]]:
    """Byte spans of an ICC profile that are not colour data: the header's creation date and profile ID
    (zero is "not computed"), the payload of every element not of a colour type (text, dates, ``data``,
    private types) after its 8-byte type signature, and every byte no tag points at (gaps between the
    elements, data after the last). Zeroed, each element stays a valid empty one (a count of zero) and
    the transform is the same. A profile that does not parse gives its whole body past the header (its
    tags cannot be told apart)."""
    if len(profile) < 132:
        return [(0, len(profile))] if profile else []
    spans = [(24, 36), (84, 100)]
    (count,) = struct.unpack_from(">I", profile, 128)
    if 132 + 12 * count > len(profile):
        return [*spans, (128, len(profile))]
    kept = [(0, 132 + 12 * count)]
    for i in range(count):
        _sig, off, size = struct.unpack_from(">4sII", profile, 132 + 12 * i)
        if off + size > len(profile) or size < 8:
            return [*spans, (128, len(profile))]
        colour = profile[off : off + 4] in _ICC_COLOUR_TYPES
        kept.append((off, off + size) if colour else (off, off + 8))
    pos = 0
    for start, end in [*sorted(kept), (len(profile), len(profile))]:
        if start > pos:
            spans.append((pos, start))
        pos = max(pos, end)
    return spans


def _jpeg_app_kept(marker: int, body: bytes) -> bool:
    if marker == 0xE0:
        return body.startswith(b"JFIF\x00")
    if marker == 0xE2:
        return body.startswith(b"ICC_PROFILE\x00")
    if marker == 0xEE:
        return body.startswith(b"Adobe") and len(body) <= 12
    return False


def _j2k_segments(d: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Stream ranges of every COM payload of a JPEG 2000 (or HTJ2K) codestream in ``d[start:end]``."""
    zero: list[tuple[int, int]] = []
    end = len(d) if end is None else end
    i = start + 2  # after SOC
    in_tile_header = False
    tile_end = end
    while i + 2 <= end:
        m = int.from_bytes(d[i : i + 2], "big")
        if m == 0xFFD9:  # end of codestream
            if end - (i + 2) > 1:
                zero.append((i + 2, end))
            return zero
        if m == 0xFF93:  # start of data: skip the tile-part's bit stream
            if not in_tile_header:
                raise CodestreamError("JPEG 2000: start of data outside a tile-part")
            i = tile_end
            in_tile_header = False
            continue
        if m >> 8 != 0xFF or i + 4 > end:
            raise CodestreamError("JPEG 2000: a marker was expected")
        length = int.from_bytes(d[i + 2 : i + 4], "big")
        if length < 2 or i + 2 + length > end:
            raise CodestreamError("JPEG 2000: a segment runs past the codestream")
        if m == 0xFF90:  # start of tile-part: Psot is its whole length (0: up to the end of codestream)
            psot = int.from_bytes(d[i + 6 : i + 10], "big")
            tile_end = end - 2 if psot == 0 else i + psot
            if tile_end > end or tile_end <= i:
                raise CodestreamError("JPEG 2000: a tile-part runs past the codestream")
            in_tile_header = True
        elif m == 0xFF64:  # comment
            zero.append((i + 6, i + 2 + length))  # the text after Rcom (its registration: 0 binary, 1 Latin)
        i += 2 + length
    return zero  # no end of codestream marker: every header up to the end was walked


def _box_segments(d: bytes) -> list[tuple[int, int]]:
    """JP2 / JPEG XL container: zero every box that is not image or structure; scrub codestreams."""
    zero: list[tuple[int, int]] = []
    i, n = 0, len(d)
    while i + 8 <= n:
        size = int.from_bytes(d[i : i + 4], "big")
        kind = d[i + 4 : i + 8]
        head = 8
        if size == 1:
            if i + 16 > n:
                raise CodestreamError("container: truncated box")
            size, head = int.from_bytes(d[i + 8 : i + 16], "big"), 16
        elif size == 0:
            size = n - i
        if size < head or i + size > n:
            if n - i <= 1:  # one padding byte
                break
            raise CodestreamError("container: a box runs past the frame")
        body = (i + head, i + size)
        if kind == b"jp2c":
            if d[body[0] : body[0] + 4] != _J2K_SOC:
                raise CodestreamError("JP2: the codestream box holds no codestream")
            zero += _j2k_segments(d, body[0], body[1])
        elif kind not in _JP2_KEEP:
            zero.append(body)
        i += size
    return zero


def _riff_segments(d: bytes) -> list[tuple[int, int]]:
    """WebP (RIFF): zero every chunk but the image's own (``VP8 ``, ``VP8L``, ``VP8X``, ``ALPH``, ``ICCP``)."""
    zero: list[tuple[int, int]] = []
    i, n = 12, len(d)
    while i + 8 <= n:
        kind, size = d[i : i + 4], int.from_bytes(d[i + 4 : i + 8], "little")
        if i + 8 + size > n:
            raise CodestreamError("WebP: a chunk runs past the frame")
        if kind not in (b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ICCP"):
            zero.append((i + 8, i + 8 + size))
        i += 8 + size + (size & 1)
    return zero


def metadata_spans(d: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(to zero, kept) byte ranges of one codestream's metadata: JPEG / JPEG-LS, JPEG 2000 (or HTJ2K), a
    JP2 or JPEG XL container, a bare JPEG XL codestream, WebP. Raises CodestreamError for another kind."""
    if d.startswith(_JPEG_SOI):
        return _jpeg_segments(d)
    if d.startswith(_J2K_SOC):
        return _j2k_segments(d), []
    if d.startswith(_JP2_SIGNATURE) or d.startswith(_JXL_SIGNATURE):
        return _box_segments(d), []
    if d.startswith(_JXL_NAKED):
        return [], []  # a bare JPEG XL codestream has no text-bearing part
    if d.startswith(_RIFF) and d[8:12] == b"WEBP":
        return _riff_segments(d), []
    raise CodestreamError("a compressed frame of an unknown kind")


def is_compressed(transfer_syntax: str) -> bool:
    """Whether pixel data in this transfer syntax is encapsulated (a syntax pydicom does not know yet,
    JPEG XL say, counts as compressed unless it is one of the native ones)."""
    try:
        return bool(UID(transfer_syntax).is_compressed)
    except ValueError:
        return str(transfer_syntax) not in _NATIVE


def redact(value: bytes | bytearray, transfer_syntax: str) -> tuple[bytes | bytearray, Redaction]:
    """Zero every metadata segment of the encapsulated pixel data ``value``; return it and what was done.

    ``value`` is returned unchanged (the same object) when nothing needed zeroing.
    """
    ts = UID(transfer_syntax)
    done = Redaction()
    if not is_compressed(ts) or str(ts) in _PLAIN:
        return value, done
    if str(ts).startswith(_VIDEO_PREFIXES):
        raise CodestreamError("video pixel data: its stream's metadata cannot be checked here")
    frags = _fragments(value)
    streams: list[list[tuple[int, int]]] = []
    for off, length in frags:
        head = bytes(value[off : off + 12])
        starts = (
            head.startswith((_JPEG_SOI, _J2K_SOC, _JXL_NAKED))
            or head.startswith(_JP2_SIGNATURE)
            or head.startswith(_JXL_SIGNATURE)
        )
        if starts or not streams:
            streams.append([(off, length)])
        else:
            streams[-1].append((off, length))
    out: bytearray | None = None
    for frags_of in streams:
        stream = _Stream(value, frags_of)
        d = stream.data
        try:
            zero, keep = metadata_spans(d)
        except CodestreamError as exc:
            raise CodestreamError(f"{exc} (transfer syntax {ts})") from None
        for a, b in keep:
            done.kept += stream.spans(a, b)
        for a, b in zero:
            spans = stream.spans(a, b)
            if any(value[s:e].strip(b"\x00") for s, e in spans):
                if out is None:
                    out = bytearray(value)
                for s, e in spans:
                    out[s:e] = bytes(e - s)
                done.segments += 1
    return (value if out is None else out), done


__all__ = ["CodestreamError", "Redaction", "is_compressed", "metadata_spans", "redact"]


_SOF = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7})


def _frame_precision(head: bytes) -> int | None:
    """The sample precision a JPEG, JPEG-LS (``SOFn``) or JPEG 2000 (``SIZ``, every component) frame
    declares in its header, or None where it is not found in ``head``."""
    if head.startswith(_J2K_SOC):
        if len(head) < 42:
            return None
        components = struct.unpack_from(">H", head, 40)[0]
        ssiz = head[42 : 42 + 3 * components : 3]
        return max((s & 0x7F) + 1 for s in ssiz) if len(ssiz) == components and components else None
    if not head.startswith(_JPEG_SOI):
        return None
    pos = 2
    while pos + 5 <= len(head) and head[pos] == 0xFF:
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF:
            return head[pos + 4]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        pos += 2 + struct.unpack_from(">H", head, pos + 2)[0]
    return None


def precision(value: bytes | bytearray) -> int | None:
    """The largest sample precision any frame of the encapsulated ``value`` declares (JPEG, JPEG-LS,
    JPEG 2000 codestreams): a decoder gives no sample more bits. None when a frame's header does not
    say (RLE, a JP2 or JPEG XL container, a header beyond the first 64 KiB): decode to know."""
    found: int | None = None
    for off, length in _fragments(value):
        head = bytes(value[off : off + min(length, 65536)])
        if not head.startswith((_JPEG_SOI, _J2K_SOC)):
            if found is None:
                return None  # the first fragment of a frame of another kind
            continue  # a frame's later fragment
        bits = _frame_precision(head)
        if bits is None:
            return None
        found = bits if found is None else max(found, bits)
    return found


_EMPTY_TABLE = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"


def offset_table_cleared(value: bytes | bytearray) -> bytes | None:
    """``value`` with its Basic Offset Table emptied when the table is not one (its length a
    multiple of 4, offsets from 0, increasing, each at the start of one of the fragments' items):
    anything else written there is carried by no reader and checked by nobody. None when the table
    is empty or valid. An empty table is always valid: readers then find the frames by walking."""
    if len(value) < 8:
        raise CodestreamError("encapsulated pixel data has no item")
    group, elem, length = struct.unpack_from("<HHI", value, 0)
    if (group, elem) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF or 8 + length > len(value):
        raise CodestreamError("encapsulated pixel data has a malformed item")
    if length == 0:
        return None
    base = 8 + length
    starts = {off - 8 - base for off, _ in _fragments(value)}
    if length % 4 == 0:
        offsets = struct.unpack_from(f"<{length // 4}I", value, 8)
        increasing = all(a < b for a, b in pairwise(offsets))
        if offsets[0] == 0 and increasing and all(o in starts for o in offsets):
            return None
    return _EMPTY_TABLE + bytes(value[base:])

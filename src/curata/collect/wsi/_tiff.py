"""A small in-place TIFF editor: walk IFDs (classic, BigTIFF, NDPI) and rewrite tags without touching tiles.

Slide de-identification must keep level pixels bit for bit, so it never decodes or re-encodes image
data. It edits the file the way OpenSlide's ``anonymize-slide`` does: tag values are rewritten in
place (or appended at the end of the file when longer), entries are dropped by compacting the IFD's
entry block, and whole images (label, macro) are unlinked from the IFD chain with every byte they
owned overwritten with zeros.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from curata.errors import InputError

# TIFF field type -> bytes per value
TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}
INT_FORMATS = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}

STRIP_OFFSETS, STRIP_BYTE_COUNTS = 273, 279
TILE_OFFSETS, TILE_BYTE_COUNTS = 324, 325
SUB_IFDS = 330
NDPI_FILE_FORMAT = 65420


@dataclass
class Entry:
    tag: int
    dtype: int
    count: int
    pos: int  # where the 12/20-byte entry starts
    value_pos: int  # where the value bytes are (inline in the entry, or elsewhere in the file)
    inline: bool

    @property
    def size(self) -> int:
        return TYPE_SIZES.get(self.dtype, 1) * self.count


@dataclass
class Ifd:
    offset: int
    entries: list[Entry]
    next_pos: int
    next_offset: int
    index: int
    parent: int | None = None  # offset of the IFD whose SubIFDs hold this one
    removed: bool = False
    _cache: dict[int, object] = field(default_factory=dict)

    def get(self, tag: int) -> Entry | None:
        for e in self.entries:
            if e.tag == tag:
                return e
        return None


class TiffEditor:
    """A TIFF held as a mutable byte buffer, with its IFDs parsed once."""

    def __init__(self, data: bytes | bytearray, *, source: str | None = None) -> None:
        self.buf = bytearray(data)
        self.source = source
        if len(self.buf) < 8 or self.buf[:2] not in (b"II", b"MM"):
            raise InputError("not a TIFF file (no II/MM byte-order mark)", path=source)
        self.bo = "<" if self.buf[:2] == b"II" else ">"
        version = self._unpack("H", 2)
        if version == 42:
            self.big, self.off_size, self.entry_size, self.count_size = False, 4, 12, 2
            first = self._unpack("I", 4)
            self.header_pos = 4
        elif version == 43:
            self.big, self.off_size, self.entry_size, self.count_size = True, 8, 20, 8
            first = self._unpack("Q", 8)
            self.header_pos = 8
        else:
            raise InputError(f"not a TIFF file (version {version})", path=source)
        self.ndpi = False
        self.ifds: list[Ifd] = []
        self.sub_ifds: list[Ifd] = []
        self._walk(first)

    # ------------------------------------------------------------------ parsing
    def _unpack(self, fmt: str, pos: int) -> int:
        try:
            return struct.unpack_from(self.bo + fmt, self.buf, pos)[0]
        except struct.error as exc:
            raise InputError(f"truncated TIFF (offset {pos} past the end)", path=self.source) from exc

    def _read_ifd(self, offset: int, index: int) -> Ifd:
        if offset <= 0 or offset + self.count_size > len(self.buf):
            raise InputError(f"IFD offset {offset} outside the file (truncated TIFF)", path=self.source)
        n = self._unpack("Q" if self.big else "H", offset)
        if n == 0 or n > 4096:
            raise InputError(f"corrupt IFD at offset {offset} ({n} entries)", path=self.source)
        entries: list[Entry] = []
        pos = offset + self.count_size
        inline_size = 8 if self.big else 4
        for _ in range(n):
            tag = self._unpack("H", pos)
            dtype = self._unpack("H", pos + 2)
            count = self._unpack("Q" if self.big else "I", pos + 4)
            vpos = pos + (12 if self.big else 8)
            size = TYPE_SIZES.get(dtype, 1) * count
            inline = size <= inline_size
            value_pos = vpos if inline else self._unpack("Q" if self.big else "I", vpos)
            entries.append(Entry(tag, dtype, count, pos, value_pos, inline))
            pos += self.entry_size
        if index == 0 and not self.big and any(e.tag == NDPI_FILE_FORMAT for e in entries):
            self.ndpi = True
        if self.ndpi:  # NDPI: a 64-bit next-IFD pointer after classic entries
            nxt = self._unpack("Q", pos)
        else:
            nxt = self._unpack("Q" if self.big else "I", pos)
        for e in entries:
            if not e.inline and e.value_pos + e.size > len(self.buf):
                raise InputError(
                    f"tag {e.tag} of IFD {index} points past the end of the file (truncated TIFF)",
                    path=self.source,
                )
        return Ifd(offset, entries, pos, nxt, index)

    def _walk(self, first: int) -> None:
        seen: set[int] = set()
        offset, index = first, 0
        while offset:
            if offset in seen:
                raise InputError("IFD chain loops back on itself (corrupt TIFF)", path=self.source)
            seen.add(offset)
            ifd = self._read_ifd(offset, index)
            self.ifds.append(ifd)
            for sub in self.values(ifd, SUB_IFDS):
                if sub and sub not in seen:
                    seen.add(sub)
                    child = self._read_ifd(sub, index)
                    child.parent = ifd.offset
                    self.sub_ifds.append(child)
            offset, index = ifd.next_offset, index + 1

    # ------------------------------------------------------------------ reading values
    def values(self, ifd: Ifd, tag: int) -> list[int]:
        e = ifd.get(tag)
        if e is None:
            return []
        fmt = INT_FORMATS.get(e.dtype)
        if fmt is None:
            return []
        return list(struct.unpack_from(f"{self.bo}{e.count}{fmt}", self.buf, e.value_pos))

    def text(self, ifd: Ifd, tag: int) -> str | None:
        e = ifd.get(tag)
        if e is None or e.dtype not in (1, 2, 7):
            return None
        raw = bytes(self.buf[e.value_pos : e.value_pos + e.size])
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace") if e.dtype == 2 else raw.decode("latin-1")

    def raw_value(self, e: Entry) -> bytes:
        return bytes(self.buf[e.value_pos : e.value_pos + e.size])

    def data_ranges(self, ifd: Ifd) -> list[tuple[int, int]]:
        """(start, end) of every strip or tile of one image."""
        offsets = self.values(ifd, TILE_OFFSETS) or self.values(ifd, STRIP_OFFSETS)
        counts = self.values(ifd, TILE_BYTE_COUNTS) or self.values(ifd, STRIP_BYTE_COUNTS)
        return [(o, o + c) for o, c in zip(offsets, counts, strict=False) if c]

    # ------------------------------------------------------------------ editing
    def _pack_into(self, fmt: str, pos: int, value: int) -> None:
        struct.pack_into(self.bo + fmt, self.buf, pos, value)

    def zero(self, start: int, end: int) -> None:
        start, end = max(0, start), min(len(self.buf), end)
        if end > start:
            self.buf[start:end] = bytes(end - start)

    def set_bytes(self, ifd: Ifd, tag: int, value: bytes, dtype: int | None = None) -> None:
        """Replace a tag's value: in place when it fits (rest zeroed), else appended at the end."""
        e = ifd.get(tag)
        if e is None:
            raise KeyError(tag)
        dtype = dtype or e.dtype
        unit = TYPE_SIZES.get(dtype, 1)
        count = len(value) // unit
        inline_size = 8 if self.big else 4
        old_size = e.size
        shared = self.shared(e, ifd)
        if len(value) <= inline_size:
            if not e.inline and not shared:
                self.zero(e.value_pos, e.value_pos + old_size)
            vpos = e.pos + (12 if self.big else 8)
            self.buf[vpos : vpos + inline_size] = value.ljust(inline_size, b"\0")
            e.value_pos, e.inline = vpos, True
        elif not shared and not e.inline and len(value) <= old_size:
            self.buf[e.value_pos : e.value_pos + old_size] = value.ljust(old_size, b"\0")
            count = e.count if dtype == 2 else count  # ASCII: keep the count, trailing NULs
        else:
            if self.ndpi and len(self.buf) + len(value) > 0xFFFFFFFF:
                raise InputError("NDPI rewrite would pass 4 GB; not supported", path=self.source)
            if not e.inline and not shared:
                self.zero(e.value_pos, e.value_pos + old_size)
            if len(self.buf) % 2:
                self.buf.append(0)
            new_pos = len(self.buf)
            self.buf += value
            self._pack_into("Q" if self.big else "I", e.pos + (12 if self.big else 8), new_pos)
            e.value_pos, e.inline = new_pos, False
        self._pack_into("H", e.pos + 2, dtype)
        self._pack_into("Q" if self.big else "I", e.pos + 4, count)
        e.dtype, e.count = dtype, count

    def set_text(self, ifd: Ifd, tag: int, text: str) -> None:
        self.set_bytes(ifd, tag, text.encode("utf-8", "replace") + b"\0", dtype=2)

    def drop_tags(self, ifd: Ifd, tags: set[int]) -> list[int]:
        """Remove entries from an IFD: compact its entry block in place, zero the freed bytes and values."""
        gone = [e for e in ifd.entries if e.tag in tags]
        if not gone:
            return []
        keep = [e for e in ifd.entries if e.tag not in tags]
        if not keep:
            raise ValueError("an IFD cannot lose all of its entries")
        for e in gone:
            self._zero_value(e, ifd)
        entries = [bytes(self.buf[e.pos : e.pos + self.entry_size]) for e in keep]
        start = ifd.offset + self.count_size
        next_bytes = bytes(self.buf[ifd.next_pos : ifd.next_pos + (8 if (self.big or self.ndpi) else 4)])
        block = b"".join(entries) + next_bytes
        old_end = ifd.next_pos + len(next_bytes)
        self.buf[start : start + len(block)] = block
        self.zero(start + len(block), old_end)
        self._pack_into("Q" if self.big else "H", ifd.offset, len(keep))
        pos = start
        for e in keep:
            shift = pos - e.pos
            e.pos = pos
            if e.inline:
                e.value_pos += shift
            pos += self.entry_size
        ifd.entries, ifd.next_pos = keep, pos
        return [e.tag for e in gone]

    def remove_image(self, ifd: Ifd) -> None:
        """Unlink a top-level IFD from the chain and zero everything it owned (entries, values, pixels)."""
        idx = self.ifds.index(ifd)
        live = [i for i in self.ifds if not i.removed]
        pos_in_live = live.index(ifd)
        nxt = ifd.next_offset
        if pos_in_live == 0:
            self._pack_into("Q" if self.big else "I", self.header_pos, nxt)
        else:
            prev = live[pos_in_live - 1]
            self._write_next(prev, nxt)
        for sub in [s for s in self.sub_ifds if s.parent == ifd.offset]:
            self._erase(sub)
            sub.removed = True
        self._erase(ifd)
        ifd.removed = True
        self.ifds[idx] = ifd

    def _write_next(self, ifd: Ifd, value: int) -> None:
        if self.ndpi:
            self._pack_into("Q", ifd.next_pos, value)
        else:
            self._pack_into("Q" if self.big else "I", ifd.next_pos, value)
        ifd.next_offset = value

    def _erase(self, ifd: Ifd) -> None:
        for start, end in self.data_ranges(ifd):
            self.zero(start, end)
        for e in ifd.entries:
            self._zero_value(e, ifd)
        self.zero(ifd.offset, ifd.next_pos + (8 if (self.big or self.ndpi) else 4))

    def shared(self, e: Entry, owner: Ifd) -> bool:
        """Whether another live IFD points at the same value bytes (NDPI writes shared strings once)."""
        if e.inline:
            return False
        return any(
            o.value_pos == e.value_pos and not o.inline
            for ifd in self.live_ifds()
            if ifd is not owner
            for o in ifd.entries
        )

    def _zero_value(self, e: Entry, owner: Ifd) -> None:
        if not e.inline and not self.shared(e, owner):
            self.zero(e.value_pos, e.value_pos + e.size)

    def owned_ranges(self) -> list[tuple[int, int]]:
        """Every byte range the kept structure points at: the header, each live IFD's entry block (with
        its next pointer, and NDPI's high-bytes extension), every out-of-line value and every strip or
        tile. Whatever else the file holds is reached by no reader through the kept IFDs."""
        ranges = [(0, self.header_pos + self.off_size)]
        for ifd in self.live_ifds():
            end = ifd.next_pos + (8 if (self.big or self.ndpi) else 4)
            if self.ndpi:
                end += 4 * len(ifd.entries)
            ranges.append((ifd.offset, end))
            ranges += [(e.value_pos, e.value_pos + e.size) for e in ifd.entries if not e.inline]
            ranges += self.data_ranges(ifd)
        return ranges

    def zero_unreferenced(self) -> int:
        """Overwrite with zeros every byte no live IFD references (what dropped tags pointed at: EXIF,
        GPS and private directories and their values; gaps, slack and data after the last structure).
        Returns how many bytes were not zero. An NDPI file past 4 GB keeps offsets' high bytes in tags
        this editor does not read: its ranges cannot be told, and nothing is zeroed."""
        if self.ndpi and len(self.buf) > 0xFFFFFFFF:
            return 0
        cleared, pos = 0, 0
        for start, end in [*sorted(self.owned_ranges()), (len(self.buf), len(self.buf))]:
            if start > pos:
                cleared += start - pos - self.buf.count(0, pos, start)
                self.zero(pos, start)
            pos = max(pos, end)
        return cleared

    def live_ifds(self) -> list[Ifd]:
        return [i for i in self.ifds if not i.removed] + [s for s in self.sub_ifds if not s.removed]

    def append_image(self, pixels: bytes, width: int, height: int, description: str) -> int:
        """Append a stripped RGB image (one deflate strip) as a new top-level IFD at the end of the file,
        linked after the last live IFD. Returns the IFD's offset. Used for the generated label."""
        import zlib

        strip = zlib.compress(pixels, 6)
        desc = description.encode("ascii", "replace") + b"\0"
        word = 8 if self.big else 4
        off_type = 16 if self.big else 4  # LONG8 / LONG

        def short(*vals: int) -> bytes:
            return struct.pack(f"{self.bo}{len(vals)}H", *vals)

        def off(v: int) -> bytes:
            return struct.pack(self.bo + ("Q" if self.big else "I"), v)

        if len(self.buf) % 2:
            self.buf.append(0)
        # layout: strip, description, bits-per-sample, then the IFD itself
        strip_pos = len(self.buf)
        self.buf += strip
        if len(self.buf) % 2:
            self.buf.append(0)
        if self.ndpi and len(self.buf) + len(desc) + 512 > 0xFFFFFFFF:
            raise InputError("NDPI rewrite would pass 4 GB; not supported", path=self.source)
        entries: list[tuple[int, int, int, bytes]] = [  # tag, type, count, value bytes
            (254, 4, 1, struct.pack(self.bo + "I", 1)),
            (256, 4, 1, struct.pack(self.bo + "I", width)),
            (257, 4, 1, struct.pack(self.bo + "I", height)),
            (258, 3, 3, short(8, 8, 8)),
            (259, 3, 1, short(8)),
            (262, 3, 1, short(2)),
            (270, 2, len(desc), desc),
            (273, off_type, 1, off(strip_pos)),
            (277, 3, 1, short(3)),
            (278, 4, 1, struct.pack(self.bo + "I", height)),
            (279, off_type, 1, off(len(strip))),
            (284, 3, 1, short(1)),
        ]
        # out-of-line values first
        placed: list[tuple[int, int, int, bytes, bool]] = []
        for tag, dtype, count, value in entries:
            if len(value) <= word:
                placed.append((tag, dtype, count, value.ljust(word, b"\0"), True))
            else:
                pos = len(self.buf)
                self.buf += value
                if len(self.buf) % 2:
                    self.buf.append(0)
                placed.append((tag, dtype, count, off(pos), False))
        ifd_pos = len(self.buf)
        block = bytearray(struct.pack(self.bo + ("Q" if self.big else "H"), len(placed)))
        for tag, dtype, count, value, _inline in placed:
            block += struct.pack(self.bo + "HH", tag, dtype)
            block += struct.pack(self.bo + ("Q" if self.big else "I"), count) + value
        next_size = 8 if (self.big or self.ndpi) else 4
        block += bytes(next_size)
        self.buf += block
        last = [i for i in self.ifds if not i.removed][-1]
        self._write_next(last, ifd_pos)
        new = self._read_ifd(ifd_pos, len(self.ifds))
        self.ifds.append(new)
        return ifd_pos

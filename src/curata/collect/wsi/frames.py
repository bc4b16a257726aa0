"""Frames of a stored multi-frame instance read by byte range: WADO-RS ``frames`` for a whole-slide
level answers one tile without loading or copying the level's other frames.

The header is parsed up to Pixel Data; the frame table is the Basic Offset Table (or one fragment per
frame) for encapsulated syntaxes, and fixed-size slices for native ones. Anything unusual (implicit
VR, big endian, frames spanning fragments without an offset table) answers ``None``: the caller then
reads the instance whole, as before.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, overload

import numpy as np
import pydicom

from curata.collect.wsi.formats import positive_number
from curata.errors import DecodeError, decoding

_PIXEL_TAG = b"\xe0\x7f\x10\x00"
_ITEM, _SEQ_END = 0xE000FFFE, 0xE0DDFFFE


def frame_ranges(fp: BinaryIO) -> tuple[str, list[tuple[int, int]]] | None:
    """(transfer syntax UID, [(offset, length)] of each frame in the file), or None when unsure."""
    ds = pydicom.dcmread(fp, stop_before_pixels=True)
    ts = ds.file_meta.TransferSyntaxUID
    if not ts.is_little_endian or ts.is_implicit_VR:
        return None
    n = int(ds.get("NumberOfFrames", 1) or 1)
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 12 or head[:4] != _PIXEL_TAG or head[4:6] not in (b"OB", b"OW"):
        return None
    length = struct.unpack("<I", head[8:12])[0]
    pos = start + 12
    if not ts.is_encapsulated:
        if length == 0xFFFFFFFF:
            return None
        size = length // n
        if size * n != length:
            return None
        return str(ts), [(pos + i * size, size) for i in range(n)]
    items: list[tuple[int, int]] = []
    while True:  # the item headers only: a seek past each value
        fp.seek(pos)
        tag_len = fp.read(8)
        if len(tag_len) < 8:
            return None
        tag, ilen = struct.unpack("<II", tag_len)
        if tag == _SEQ_END:
            break
        if tag != _ITEM or ilen == 0xFFFFFFFF:
            return None
        items.append((pos + 8, ilen))
        pos += 8 + ilen
    if not items:
        return None
    bot, fragments = items[0], items[1:]
    if len(fragments) == n:
        return str(ts), fragments
    if bot[1] == 4 * n:  # several fragments per frame: the Basic Offset Table groups them
        fp.seek(bot[0])
        offsets = list(struct.unpack(f"<{n}I", fp.read(4 * n)))
        first = fragments[0][0] - 8 if fragments else 0
        bounds = [first + o for o in offsets] + [pos]
        out = []
        for i in range(n):
            parts = [(o, ln) for o, ln in fragments if bounds[i] <= o - 8 < bounds[i + 1]]
            if len(parts) != 1:
                return None  # a frame of several fragments: not a single byte range
            out.append(parts[0])
        return str(ts), out
    return None


def read_frames(fp: BinaryIO, wanted: list[int]) -> tuple[str, int, list[bytes]] | None:
    """(transfer syntax, number of frames, the bytes of the 1-based ``wanted`` frames) or None."""
    got = frame_ranges(fp)
    if got is None:
        return None
    ts, ranges = got
    out = []
    for f in wanted:
        if not 1 <= f <= len(ranges):
            return ts, len(ranges), []
        offset, length = ranges[f - 1]
        fp.seek(offset)
        out.append(fp.read(length))
    return ts, len(ranges), out


class LazyFrames(Sequence[bytes]):
    """The frames of one stored instance, each read from the file when asked (one seek, one read):
    slide QC and tiling hold one frame's bytes at a time, never the instance's Pixel Data."""

    def __init__(self, fp: BinaryIO, ranges: list[tuple[int, int]]) -> None:
        self._fp, self._ranges = fp, ranges

    def __len__(self) -> int:
        return len(self._ranges)

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        offset, length = self._ranges[i]
        self._fp.seek(offset)
        return self._fp.read(length)


def open_frames(src: str | Path | BinaryIO) -> tuple[Any, Sequence[bytes]]:
    """(the instance's header, its frames read on demand) for a path or a seekable file object.

    Where the frame table cannot be found by byte ranges (see :func:`frame_ranges`), the instance is
    read whole as before: (the full dataset, its frames in memory)."""
    from pydicom.encaps import generate_frames

    fp: BinaryIO = open(src, "rb") if isinstance(src, str | Path) else src  # noqa: SIM115 - kept open
    start = fp.tell()
    ds = pydicom.dcmread(fp, stop_before_pixels=True)
    fp.seek(start)
    got = frame_ranges(fp)
    if got is not None:
        return ds, LazyFrames(fp, got[1])
    fp.seek(start)
    ds = pydicom.dcmread(fp)
    if "PixelData" not in ds:
        return ds, []
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return ds, list(generate_frames(ds.PixelData, number_of_frames=n))
    size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
    return ds, [ds.PixelData[i * size : (i + 1) * size] for i in range(n)]


def pixel_spacing_um(ds: Any) -> float | None:
    """A DICOM-WSI level's pixel size in micrometres from its shared PixelSpacing, or None where it is
    missing or not a positive finite number (``0``, ``-0.0005``, ``abc``, ``nan``, ``1e400``: a site's
    file, not ours): QC and tiling treat such a slide's pixel size as unknown instead of failing on it
    or measuring with it."""
    try:
        value = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing[0]
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None
    mm = positive_number(value)
    return positive_number(mm * 1000) if mm is not None else None


def decode_tile(data: bytes, *, encapsulated: bool, tile_w: int, tile_h: int, what: str) -> np.ndarray:
    """One stored frame of a DICOM-WSI level as RGB (rows, columns, 3): JPEG by libjpeg, another
    codestream (JPEG 2000...) by imagecodecs' detection, native frames as they are.

    A frame that is empty, of the wrong size or that the codec refuses raises :class:`DecodeError`
    naming ``what`` (the frame, its level: never the data) and the codec's error type only. An empty
    frame is refused before any codec sees it: ``imagecodecs.imread(b"")`` crashes the process."""
    if not encapsulated:
        if len(data) != tile_w * tile_h * 3:
            raise DecodeError(
                f"cannot decode {what}: {len(data)} bytes where a native frame holds {tile_w * tile_h * 3}",
                hint="the file's pixel data is damaged; send it again from the source",
            )
        return np.frombuffer(data, np.uint8).reshape(tile_h, tile_w, 3)
    if len(data) < 4:
        raise DecodeError(
            f"cannot decode {what}: the frame is empty ({len(data)} bytes)",
            hint="the file's pixel data is damaged; send it again from the source",
        )
    import imagecodecs

    with decoding(what, corrupt=(RuntimeError, ValueError, TypeError)):
        arr = imagecodecs.jpeg8_decode(data) if data[:2] == b"\xff\xd8" else imagecodecs.imread(data)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DecodeError(f"cannot decode {what}: it decodes to an array of shape {arr.shape}, not an image")
    return np.asarray(arr[..., :3])

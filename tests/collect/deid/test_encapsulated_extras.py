"""What compressed pixel data carries besides its frames: a Basic Offset Table that is not one,
fragments after the last frame, and in RLE frames the header's unused offsets and bytes after the
last segment. No reader shows them and the gate does not read pixel data as text, so each is planted
in every encapsulated object of pydicom-data (RLE, JPEG, JPEG-LS, JPEG 2000, every class there)."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.encaps import generate_frames
from pydicom.uid import RLELossless

from curata.collect.deid import Deidentifier, load_profile, pixels
from curata.collect.deid.codestream import _fragments
from curata.errors import CurataError

from .conftest import KEY
from .planting import corpus_files, release_of

TEXT = b"QWORTLE^ZEPHYRINE MRN8834127 19610417 "
NEEDLES = (b"QWORTLE", b"ZEPHYRINE", b"8834127", b"19610417")


def _item(data: bytes) -> bytes:
    data += b"\0" * (len(data) & 1)
    return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(data)) + data


def _encapsulated() -> list[str]:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in corpus_files():
            ds = pydicom.dcmread(path, defer_size=1024)
            if "PixelData" in ds and ds["PixelData"].is_undefined_length:
                out.append(path)
    return out


ENCAPSULATED = _encapsulated()


def _table(value: bytes) -> bytes:
    """The value with the offset table replaced by the text."""
    first = _fragments(value)[0][0] - 8
    return _item(TEXT * 2) + value[first:]


def _extra_fragment(value: bytes) -> bytes:
    """The value with one more fragment, after the last frame's, holding the text."""
    return value + _item(TEXT * 2)


def _rle_inside(value: bytes) -> bytes:
    """RLE: the text in the header's unused offset slots and after the last segment of each frame."""
    out = bytearray(value[: _fragments(value)[0][0] - 8])
    for off, n in _fragments(value):
        frame = bytearray(value[off : off + n])
        segments = struct.unpack_from("<I", frame, 0)[0]
        slot = 4 + 4 * segments
        frame[slot:64] = (TEXT * 2)[: 64 - slot]  # offsets of segments that do not exist
        out += _item(bytes(frame) + TEXT * 2)
    return bytes(out)


PLANTS = {
    "offset table": _table,
    "fragment after the frames": _extra_fragment,
    "inside RLE frames": _rle_inside,
}


@pytest.mark.parametrize("place", list(PLANTS))
@pytest.mark.parametrize("profile", ["research", "basic"])
def test_identifiers_beside_the_frames_never_survive(place: str, profile: str) -> None:
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    files = ENCAPSULATED if profile == "research" else ENCAPSULATED[::3]
    tried = released = same_image = 0
    leaks: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            ds = pydicom.dcmread(path)
            if place == "inside RLE frames" and ds.file_meta.TransferSyntaxUID != RLELossless:
                continue
            buf = io.BytesIO()
            try:
                before = ds.pixel_array.copy()
                value = bytes(ds.PixelData)
                ds.PixelData = PLANTS[place](value)
                ds.save_as(buf, enforce_file_format=True)
            except Exception:
                continue  # a frame pydicom cannot decode, or a file it cannot write, as it came
            tried += 1
            res = release_of(deid, buf.getvalue())
            if res is None:
                continue
            released += 1
            name = path.rsplit("/", 1)[-1]
            if any(n in res.output_bytes for n in NEEDLES):
                leaks.append(name)
            out = pydicom.dcmread(io.BytesIO(res.output_bytes))
            if out.get("BurnedInAnnotation") != "NO" or res.record.pixels_cleared_by in ("", "offset-table"):
                same_image += np.array_equal(out.pixel_array, before)  # no mask: the image as it was
    assert tried >= (4 if place == "inside RLE frames" else 10), tried
    assert leaks == []
    assert released >= tried // 3, (released, tried)
    assert same_image >= 1


def test_valid_offset_tables_and_frames_are_left_alone() -> None:
    """pydicom-data's encapsulated objects that are not RLE: not one byte of their pixel data changes
    (RLE frames are always encoded again, with the same samples)."""
    checked, changed, rle = 0, [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in ENCAPSULATED:
            ds = pydicom.dcmread(path)
            before = bytes(ds.PixelData)
            if ds.file_meta.TransferSyntaxUID == RLELossless:
                try:
                    image = ds.pixel_array.copy()
                except Exception:
                    continue
                assert "re-encoded" in pixels.clear_outside_image(ds)
                assert np.array_equal(ds.pixel_array, image), path
                rle += 1
                continue
            checked += 1
            try:
                done = pixels.clear_outside_image(ds)
            except CurataError:
                continue  # a frame that cannot be decoded: refused, as before
            if done or bytes(ds.PixelData) != before:
                changed.append(path.rsplit("/", 1)[-1])
    assert checked >= 20 and rle >= 4
    assert changed == []


def test_rle_frames_planted_decode_to_the_same_samples(research) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small_RLE.dcm"))
        before = ds.pixel_array.copy()
        ds.PixelData = _rle_inside(bytes(ds.PixelData))
        assert np.array_equal(ds.pixel_array, before)  # the plant is invisible to a reader
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        res = research.deidentify_bytes(buf.getvalue())
        out = pydicom.dcmread(io.BytesIO(res.output_bytes))
        frames = list(generate_frames(out.PixelData, number_of_frames=1))
    assert not any(n in res.output_bytes for n in NEEDLES)
    assert res.record.pixels == "cleaned" and "re-encoded" in res.record.pixels_cleared_by
    assert out.file_meta.TransferSyntaxUID == RLELossless and len(frames) == 1
    assert np.array_equal(out.pixel_array, before)

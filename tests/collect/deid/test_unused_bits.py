"""What native Pixel Data holds outside the image. Bits outside Bits Stored: the retired embedded overlays lived there (Overlay Bit Position), so a
name drawn in them survives every header rule, and the byte gate cannot read a bitmap. The engine
clears them in every lane and profile; the image a conformant reader shows never changes. Bytes after
the last frame: no reader shows them, and the gate does not read image bytes as text."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from curata.collect.deid import Deidentifier, load_profile, pixels
from curata.errors import DeidError

from .conftest import KEY, released_or_none
from .planting import corpus_files, corpus_where, release_of

NAME = "QWORTLE ZEPHYRINE"


def _reading(values: np.ndarray, stored: int, high_bit: int, signed: bool) -> np.ndarray:
    """What a conformant reader takes from each sample: the stored bits, sign-extended when signed."""
    v = (values.astype(np.int64) >> (high_bit - stored + 1)) & ((1 << stored) - 1)
    if signed:
        v = np.where(v & (1 << (stored - 1)), v - (1 << stored), v)
    return v


def _unused(values: np.ndarray, allocated: int, stored: int, high_bit: int, signed: bool) -> np.ndarray:
    """Per sample, whether the bits outside the stored ones carry anything: the bits below the stored
    ones are not all zero, or those above are neither zero nor (signed data) the sign repeated."""
    v = values.astype(np.int64)
    low = high_bit - stored + 1
    above = ((1 << allocated) - 1) & ~((1 << (high_bit + 1)) - 1)
    bits_above = v & above
    sign = (v >> high_bit) & 1
    empty = ((v & ((1 << low) - 1)) == 0) & (
        (bits_above == 0) | (signed & (sign == 1) & (bits_above == above))
    )
    return ~empty


@settings(max_examples=300, deadline=None)
@given(
    allocated=st.sampled_from([8, 16, 32]),
    data=st.data(),
    signed=st.booleans(),
)
def test_clearing_keeps_the_image_and_leaves_nothing_outside(allocated: int, data, signed: bool) -> None:
    stored = data.draw(st.integers(1, allocated - 1))
    high_bit = data.draw(st.integers(stored - 1, allocated - 1))
    n = data.draw(st.integers(0, 64))
    dtype = np.dtype(f"<u{allocated // 8}")
    values = np.array(
        data.draw(st.lists(st.integers(0, (1 << allocated) - 1), min_size=n, max_size=n)), dtype
    )
    out = pixels.unused_bits(values.tobytes(), allocated, stored, high_bit, signed)
    dirty = _unused(values, allocated, stored, high_bit, signed)
    if out is None:
        assert not dirty.any()  # nothing was there
        return
    assert dirty.any()
    cleared = np.frombuffer(out, dtype)
    assert np.array_equal(
        _reading(cleared, stored, high_bit, signed), _reading(values, stored, high_bit, signed)
    )
    assert not _unused(cleared, allocated, stored, high_bit, signed).any()
    assert pixels.unused_bits(out, allocated, stored, high_bit, signed) is None  # idempotent


def test_a_layout_that_does_not_fit_is_refused() -> None:
    with pytest.raises(DeidError, match="High Bit"):
        pixels.unused_bits(b"\0\0" * 4, 16, 12, 16, False)
    with pytest.raises(DeidError, match="High Bit"):
        pixels.unused_bits(b"\0\0" * 4, 16, 12, 9, False)


def _name_bitmap(rows: int, cols: int) -> np.ndarray:
    img = Image.new("1", (cols, rows), 0)
    draw = ImageDraw.Draw(img)
    for y in range(0, rows, 12):
        draw.text((1, y), NAME, fill=1)
    return np.array(img, dtype=bool)


def _plant_in_unused_bits(ds: Dataset) -> tuple[int, int, bool]:
    """The name drawn into every bit plane outside the stored bits of every frame (as an embedded
    overlay would be); a 16-in-16 or 8-in-8 object first gets 4 or 2 unused bits (its values masked to
    the new Bits Stored, so the input is conformant apart from the plane). (stored, high bit, whether
    any bit of the name fits in the image)."""
    allocated = int(ds.BitsAllocated)
    stored = int(ds.BitsStored)
    if stored == allocated:
        stored = allocated - (4 if allocated > 8 else 2)
    high_bit = stored - 1
    dtype = np.dtype(f"<u{allocated // 8}")
    values = np.frombuffer(ds.PixelData, dtype, count=len(ds.PixelData) // dtype.itemsize).copy()
    signed = int(ds.PixelRepresentation) == 1
    reading = _reading(values, stored, high_bit, signed)
    values = (reading.astype(np.int64) & ((1 << stored) - 1)).astype(dtype)  # conformant, zero-filled
    rows, cols = int(ds.Rows), int(ds.Columns)
    per_frame = rows * cols * int(ds.get("SamplesPerPixel", 1))
    plane = np.resize(
        np.repeat(_name_bitmap(rows, cols).ravel(), int(ds.get("SamplesPerPixel", 1))), per_frame
    )
    planted = np.resize(plane, values.size).astype(dtype)
    for bit in range(stored, allocated):
        values |= (planted << bit).astype(dtype)
    ds.BitsStored, ds.HighBit = stored, high_bit
    ds.PixelData = values.tobytes() + bytes(len(ds.PixelData) % dtype.itemsize)
    return stored, high_bit, bool(planted.any())


def _native(ds: Dataset) -> bool:
    ts = ds.file_meta.get("TransferSyntaxUID")
    return (
        int(ds.get("BitsAllocated", 0) or 0) in (8, 16, 32)
        and ts is not None
        and not ts.is_compressed
        and ts.is_little_endian
        and "FloatPixelData" not in ds
    )


NATIVE = corpus_where(_native)


@pytest.mark.parametrize("profile", ["research", "basic", "research-strict"])
def test_a_name_in_the_unused_bits_of_any_native_object_never_survives(profile: str) -> None:
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    files = NATIVE if profile == "research" else NATIVE[:: 3 if profile == "basic" else 4]
    released = compared = 0
    leaks: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            ds = pydicom.dcmread(path)
            try:
                stored, high_bit, planted = _plant_in_unused_bits(ds)
                before = ds.pixel_array.copy()
            except (AttributeError, ValueError):
                continue  # no pixel layout to plant in (an empty or short Pixel Data)
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            res = release_of(deid, buf.getvalue())
            if res is None:
                continue  # refused: nothing released
            released += 1
            out = pydicom.dcmread(io.BytesIO(res.output_bytes))
            allocated = int(out.BitsAllocated)
            dtype = np.dtype(f"<u{allocated // 8}")
            values = np.frombuffer(out.PixelData, dtype, count=len(out.PixelData) // dtype.itemsize)
            signed = int(out.PixelRepresentation) == 1
            name = path.rsplit("/", 1)[-1]
            if _unused(values, allocated, int(out.BitsStored), int(out.HighBit), signed).any():
                leaks.append(name)
            if res.record.pixels_cleared_by == "unused-bits":  # no burned-in text masked as well
                assert (int(out.BitsStored), int(out.HighBit)) == (stored, high_bit), name
                assert np.array_equal(out.pixel_array, before), name  # the image as shown is the same
                compared += 1
            assert not planted or "unused-bits" in res.record.pixels_cleared_by, name
    assert leaks == []
    assert released >= len(files) // 2, (released, len(files))
    assert compared >= (10 if profile == "research" else 3), (compared, released)


def test_clean_objects_keep_their_pixel_bytes() -> None:
    """Real files whose unused bits are zero or the sign and whose pixel data ends with the image or
    with zeros (all of pydicom-data): not one byte changes."""
    cleared = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in NATIVE:
            ds = pydicom.dcmread(path)
            if "PixelData" not in ds or path.endswith("MR_truncated.dcm"):  # cut short: refused, below
                continue
            pixel = bytes(ds.PixelData)
            if pixels.clear_outside_image(ds) or ds.PixelData != pixel:
                cleared.append(path.rsplit("/", 1)[-1])
    assert len(NATIVE) > 30
    assert cleared == []


@pytest.mark.parametrize("profile", ["research", "basic", "research-strict"])
def test_identifiers_after_the_last_frame_never_survive(profile: str) -> None:
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    files = NATIVE if profile == "research" else NATIVE[:: 3 if profile == "basic" else 4]
    tail = b"QWORTLE^ZEPHYRINE MRN8834127 19610417 " * 8
    released = 0
    leaks: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            ds = pydicom.dcmread(path)
            if "PixelData" not in ds or not ds.PixelData:
                continue
            try:
                before = ds.pixel_array.copy()
            except (AttributeError, ValueError):
                continue
            ds.PixelData = bytes(ds.PixelData) + tail
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            res = release_of(deid, buf.getvalue())
            if res is None:
                continue
            released += 1
            name = path.rsplit("/", 1)[-1]
            if any(n in res.output_bytes for n in (b"QWORTLE", b"ZEPHYRINE", b"8834127", b"19610417")):
                leaks.append(name)
            if res.record.pixels_cleared_by == "trailing-bytes":
                assert np.array_equal(pydicom.dcmread(io.BytesIO(res.output_bytes)).pixel_array, before), name
            assert "trailing-bytes" in res.record.pixels_cleared_by or res.record.pixels == "cleaned", name
    assert leaks == []
    assert released >= len(files) // 2, (released, len(files))


def _compressed_with_plane(syntax: str) -> tuple[bytes, np.ndarray, int, int]:
    """A 12-in-16 CT whose unused bits spell the name, compressed in ``syntax`` as a 16-bit image
    (so the codestream carries the plane) and then labelled 12 bits stored again. (bytes, the
    conformant reading, stored, high bit)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
        stored, high_bit, planted = _plant_in_unused_bits(ds)
        assert planted
        dtype = np.dtype("<u2")
        values = np.frombuffer(ds.PixelData, dtype)
        reading = _reading(values, stored, high_bit, int(ds.PixelRepresentation) == 1)
        ds.BitsStored, ds.HighBit = 16, 15
        ds.compress(syntax, generate_instance_uid=False)
        ds.BitsStored, ds.HighBit = stored, high_bit
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), reading.reshape(int(ds.Rows), int(ds.Columns)), stored, high_bit


@pytest.mark.parametrize("profile", ["research", "basic"])
@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_a_name_in_the_unused_bits_of_compressed_frames_never_survives(syntax: str, profile: str) -> None:
    raw, reading, stored, high_bit = _compressed_with_plane(syntax)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coded = pixel_array(io.BytesIO(raw), raw=True, correct_unused_bits=False)
        assert _unused(coded, 16, stored, high_bit, True).any()  # the codestream carries the plane
        res = Deidentifier(KEY, load_profile(profile), ocr=False).deidentify_bytes(raw)
        out = pydicom.dcmread(io.BytesIO(res.output_bytes))
        decoded = pixel_array(io.BytesIO(res.output_bytes), raw=True, correct_unused_bits=False)
    assert (int(out.BitsStored), int(out.HighBit)) == (stored, high_bit)
    assert not _unused(decoded, 16, stored, high_bit, True).any()
    assert np.array_equal(_reading(decoded, stored, high_bit, True), reading)  # the image, unchanged
    by = "re-encoded" if syntax == RLELossless else "unused-bits"  # every RLE object is encoded again
    assert res.record.pixels == "cleaned" and res.record.pixels_cleared_by == by
    assert out.file_meta.TransferSyntaxUID == RLELossless  # compressed it came, compressed it stays


def test_compressed_objects_whose_unused_bits_are_clean_keep_their_bytes() -> None:
    """pydicom-data's compressed objects with fewer bits stored than allocated (JPEG, JPEG-LS,
    JPEG 2000; some declare 16 bits of precision for 12 stored, so they are decoded to know):
    not one byte changes."""
    checked, changed = 0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in corpus_files():
            ds = pydicom.dcmread(path)
            if "PixelData" not in ds or not ds["PixelData"].is_undefined_length:
                continue
            if int(ds.get("BitsStored") or ds.BitsAllocated) >= int(ds.BitsAllocated):
                continue
            if ds.file_meta.TransferSyntaxUID == RLELossless:
                continue  # always encoded again (test_encapsulated_extras: the same samples)
            checked += 1
            before = bytes(ds.PixelData)
            if pixels.clear_outside_image(ds) or bytes(ds.PixelData) != before:
                changed.append(path.rsplit("/", 1)[-1])
    assert checked >= 10
    assert changed == []


def _shortened(name: str, keep: int | None = None, frames: int | None = None) -> bytes:
    """pydicom-data's ``name`` whose Pixel Data keeps ``keep`` bytes (or ``frames`` whole frames) and
    declares that length, as a sender or a spool that rewrites a cut value's length would write it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(pydicom.data.get_testdata_file(name))
        data = bytes(ds.PixelData)
        if frames is not None:
            data = data[: len(data) // int(ds.NumberOfFrames) * frames]
        ds.PixelData = data[:keep] if keep is not None else data
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", ["research", "basic", "research-strict"])
def test_native_pixel_data_shorter_than_its_image_is_refused(profile: str, whole: bool) -> None:
    """Pixel Data whose length is consistent but shorter than its rows, columns, samples, bits and
    frames (dcmtk's spool writes a cut value so; pydicom-data's MR_truncated is one) is not the image it
    declares: refused with its reason, never released, in every lane. Before, it was released."""
    cut = {
        "a few bytes short": _shortened("CT_small.dcm", keep=-862),
        "one sample short": _shortened("CT_small.dcm", keep=-2),
        "a frame missing": _shortened("emri_small.dcm", frames=9),
        "MR_truncated": Path(str(pydicom.data.get_testdata_file("MR_truncated.dcm"))).read_bytes(),
    }
    released = []
    for label, data in cut.items():
        if released_or_none(data, profile, whole=whole) is not None:
            released.append(label)
    assert released == []
    with pytest.raises(DeidError, match="truncated"):
        Deidentifier(KEY, load_profile(profile), ocr=False).deidentify_bytes(cut["a frame missing"])
    # the whole image, and the same with a pad byte, are released
    for whole_image in (_shortened("CT_small.dcm"), _shortened("emri_small.dcm", frames=10)):
        assert released_or_none(whole_image, profile, whole=whole) is not None

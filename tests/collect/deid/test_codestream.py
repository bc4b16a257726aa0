"""Text hidden inside compressed pixel data: JPEG ``COM`` / ``APPn``, JPEG 2000 ``COM`` in the main and
tile-part headers, bytes after the end of image. Planted into EVERY compressed object of pydicom-data
(JPEG baseline, extended, lossless, JPEG-LS, JPEG 2000, RLE): none survives anywhere in the output, the
image decodes to the same samples, and what the codestream keeps is scanned by the final gate."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import UID

from curata.collect.deid import Deidentifier, load_profile
from curata.collect.deid.codestream import CodestreamError, redact
from curata.errors import CurataError

from .conftest import KEY
from .planting import corpus_files

TEXT = b"SUZUKI^KENJI PX40417 19610314"
NEEDLES = (b"SUZUKI", b"KENJI", b"PX40417", b"19610314")


def _com_jpeg(payload: bytes, marker: int = 0xFE) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _plant_jpeg(frame: bytes) -> bytes:
    assert frame[:2] == b"\xff\xd8"
    end = frame.rfind(b"\xff\xd9")
    head = _com_jpeg(TEXT) + _com_jpeg(b"Exif\x00\x00" + TEXT, 0xE1) + _com_jpeg(b"ACME\x00" + TEXT, 0xEB)
    return frame[:2] + head + frame[2 : end + 2] + TEXT


def _plant_j2k(frame: bytes) -> bytes:
    assert frame[:4] == b"\xff\x4f\xff\x51"
    com = b"\xff\x64" + struct.pack(">H", len(TEXT) + 4) + b"\x00\x01" + TEXT
    siz_end = 4 + int.from_bytes(frame[4:6], "big")
    out = bytearray(frame[:siz_end] + com + frame[siz_end:])
    sot = out.find(b"\xff\x90\x00\x0a", siz_end)
    assert sot > 0
    psot = int.from_bytes(out[sot + 6 : sot + 10], "big")
    if psot:
        out[sot + 6 : sot + 10] = (psot + len(com)).to_bytes(4, "big")
    out[sot + 12 : sot + 12] = com  # a comment in the first tile-part header
    end = out.rfind(b"\xff\xd9")
    return bytes(out[: end + 2]) + TEXT


def _compressed_files() -> list[str]:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in corpus_files():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            ts = ds.file_meta.get("TransferSyntaxUID")
            if ts and UID(ts).is_compressed and "PixelData" in pydicom.dcmread(path):
                out.append(path)
    return out


def _planted(path: str, table: str = "valid") -> tuple[bytes, int, np.ndarray | None] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        try:
            before = ds.pixel_array.copy()
        except Exception:
            before = None
        n = int(ds.get("NumberOfFrames", 1) or 1)
        frames, planted = [], 0
        for frame in generate_frames(ds.PixelData, number_of_frames=n):
            if frame[:2] == b"\xff\xd8":
                frame, planted = _plant_jpeg(frame), planted + 1
            elif frame[:4] == b"\xff\x4f\xff\x51":
                frame, planted = _plant_j2k(frame), planted + 1
            frames.append(frame)
        ds.PixelData = encapsulate(frames)
        if table == "text":  # a Basic Offset Table that is not one: emptied, and the frames kept
            value = encapsulate(frames, has_bot=False)
            bot = TEXT + bytes(-len(TEXT) % 4)
            ds.PixelData = struct.pack("<HHI", 0xFFFE, 0xE000, len(bot)) + bot + value[8:]
        ds["PixelData"].is_undefined_length = True
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "SUZUKI^KENJI", "PX40417", "19610314"
        buf = io.BytesIO()
        try:
            ds.save_as(buf, enforce_file_format=True)
        except TypeError:  # an implicit VR data set in a file that says explicit: pydicom cannot re-write it
            return None
    return buf.getvalue(), planted, before


FILES = _compressed_files()


def test_the_corpus_has_every_compressed_kind() -> None:
    kinds = set()
    for path in FILES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kinds.add(str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID))
    assert {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80"} <= kinds
    assert {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5"} <= kinds


@pytest.mark.parametrize("table", ["valid", "text"])
def test_text_planted_in_codestreams_never_survives_and_the_image_is_unchanged(table: str) -> None:
    """Comments and application segments in every compressed kind, with a valid Basic Offset Table
    and with one that is not (text there): emptying such a table used to mark the pixels "cleaned",
    and the codestreams' segments were then released as they came (the gate skips pixel data)."""
    deid = Deidentifier(KEY, load_profile("research"), ocr=False)
    released = planted_frames = same_pixels = 0
    leaks, refusals = [], []
    unwritable = 0
    for path in FILES:
        dressed = _planted(path, table)
        if dressed is None:
            unwritable += 1
            continue
        raw, planted, before = dressed
        planted_frames += planted
        try:
            res = deid.deidentify_bytes(raw)
        except CurataError as exc:
            if "needs review" not in str(exc):
                refusals.append(f"{path.rsplit('/', 1)[-1]}: {exc}")
                continue
            try:
                res = deid.deidentify_bytes(raw, pixel_decision="accept")  # a reviewer kept the image
            except CurataError as refused:
                refusals.append(f"{path.rsplit('/', 1)[-1]}: {refused}")
                continue
        released += 1
        leaks += [f"{path.rsplit('/', 1)[-1]}: {n!r}" for n in NEEDLES if n in res.output_bytes]
        unmasked = res.record.pixels == "kept" or res.record.pixels_cleared_by == "offset-table"
        if before is not None and planted and unmasked:  # not masked by a template, not re-encoded
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                after = pydicom.dcmread(io.BytesIO(res.output_bytes)).pixel_array
            assert np.array_equal(before, after), path
            same_pixels += 1
    assert leaks == []
    assert unwritable <= 2
    assert planted_frames >= 40, planted_frames
    assert same_pixels >= 15, same_pixels
    print(refusals)
    assert released == len(FILES) - len(refusals) - unwritable and len(refusals) <= 3, refusals


def _one_fragment(*frames: bytes) -> bytes:
    return encapsulate(list(frames))


JPEG_MIN = (
    b"\xff\xd8"
    + _com_jpeg(b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x01\x01" + b"\x7f\x7f\x7f", 0xE0)  # 1x1 thumbnail
    + _com_jpeg(b"Adobe\x00\x64\x00\x00\x00\x00\x01", 0xEE)
    + _com_jpeg(TEXT)
    + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    + b"\x12\xff\x00\x34\xff\xd0\x56"  # entropy-coded data: a stuffed 0xFF and a restart marker
    + b"\xff\xd9"
)


def test_redact_zeroes_payloads_in_place_and_keeps_what_decoders_need() -> None:
    value = _one_fragment(JPEG_MIN)
    out, done = redact(value, "1.2.840.10008.1.2.4.50")
    assert len(out) == len(value) and TEXT not in out
    assert done.segments == 2  # the comment and the JFIF thumbnail
    assert b"JFIF\x00" in out and b"Adobe\x00\x64" in out  # kept, and listed for the gate
    assert len(done.kept) == 2
    assert b"\x12\xff\x00\x34\xff\xd0\x56\xff\xd9" in out  # scan data untouched
    again, done2 = redact(out, "1.2.840.10008.1.2.4.50")
    assert again is out and done2.segments == 0  # nothing left to zero: the value is returned as is


def test_a_comment_split_across_fragments_is_zeroed_in_both() -> None:
    cut = JPEG_MIN.index(TEXT) + 10
    value = b"".join(
        [
            b"\xfe\xff\x00\xe0\x00\x00\x00\x00",
            b"\xfe\xff\x00\xe0" + struct.pack("<I", cut) + JPEG_MIN[:cut],
            b"\xfe\xff\x00\xe0" + struct.pack("<I", len(JPEG_MIN) - cut) + JPEG_MIN[cut:],
        ]
    )
    out, done = redact(value, "1.2.840.10008.1.2.4.50")
    assert not any(n in bytes(out) for n in (b"SUZUKI", b"PX40417", b"19610314"))
    assert len(out) == len(value) and done.segments == 2  # the comment and the JFIF thumbnail


def test_video_and_unknown_frames_are_refused_not_passed() -> None:
    with pytest.raises(CodestreamError, match="video"):
        redact(_one_fragment(b"\x00\x00\x01\xb3" + TEXT), "1.2.840.10008.1.2.4.102")
    with pytest.raises(CodestreamError, match="unknown kind"):
        redact(_one_fragment(b"GIF89a" + TEXT), "1.2.840.10008.1.2.4.50")
    with pytest.raises(CodestreamError, match="runs past"):
        redact(_one_fragment(b"\xff\xd8\xff\xfe\x40\x00" + TEXT), "1.2.840.10008.1.2.4.50")


def test_a_name_inside_a_kept_icc_profile_is_zeroed() -> None:
    """An ICC profile is kept (decoders need it) less its text: a profile that does not parse is kept
    as a header only (was: kept whole, the name in it, and the gate refused the object)."""
    path = next(p for p in FILES if p.endswith("SC_rgb_jpeg_dcmtk.dcm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        icc = _com_jpeg(b"ICC_PROFILE\x00\x01\x01" + b"desc" + TEXT, 0xE2)
        ds.PixelData = encapsulate([frame[:2] + icc + frame[2:]])
        ds["PixelData"].is_undefined_length = True
        ds.PatientName, ds.PatientID = "SUZUKI^KENJI", "PX40417"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    deid = Deidentifier(KEY, load_profile("research"), ocr=False)
    out = deid.deidentify_bytes(buf.getvalue(), pixel_decision="accept").output_bytes
    assert TEXT.lower() in buf.getvalue().lower() and b"suzuki" not in out.lower()
    assert b"ICC_PROFILE\x00\x01\x01" in out  # the segment stays, its body zeroed


def _box(kind: bytes, payload: bytes) -> bytes:
    return (len(payload) + 8).to_bytes(4, "big") + kind + payload


def test_container_boxes_and_tile_part_comments_are_zeroed() -> None:
    """A JP2 file (not the bare codestream DICOM asks for) with an XML box and a JPEG XL container with
    EXIF and JPEG-reconstruction boxes: every text-bearing box and the codestream's comment go."""
    com = b"\xff\x64" + (len(TEXT) + 4).to_bytes(2, "big") + b"\x00\x01" + TEXT
    data = b"\x00\x01\x02\x03"
    sot = b"\xff\x90\x00\x0a\x00\x00" + (12 + 2 + len(data)).to_bytes(4, "big") + b"\x00\x01"
    codestream = b"\xff\x4f\xff\x51\x00\x29" + bytes(39) + com + sot + b"\xff\x93" + data + b"\xff\xd9"
    jp2 = (
        b"\x00\x00\x00\x0cjP  \r\n\x87\n"
        + _box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
        + _box(b"xml ", b"<patient>" + TEXT + b"</patient>")
        + _box(b"jp2c", codestream)
    )
    jxl = (
        b"\x00\x00\x00\x0cJXL \r\n\x87\n"
        + _box(b"Exif", b"\x00\x00\x00\x00" + TEXT)
        + _box(b"jbrd", TEXT)
        + _box(b"jxlc", b"\xff\x0a\x00\x00")
    )
    for frame, ts in ((jp2, "1.2.840.10008.1.2.4.90"), (jxl, "1.2.840.10008.1.2.4.110")):
        value = _one_fragment(frame)
        out, done = redact(value, ts)
        assert len(out) == len(value) and not any(n in bytes(out) for n in NEEDLES)
        assert done.segments == 2
        assert frame[:12] in bytes(out)  # the signature box is kept
    assert data + b"\xff\xd9" in bytes(redact(_one_fragment(jp2), "1.2.840.10008.1.2.4.90")[0])

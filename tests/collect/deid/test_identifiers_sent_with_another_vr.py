"""An identifying element sent with a VR other than its own (PatientName as LO, UT or CS, PatientID
as CS) is still the patient's: its parts are looked for on their own in everything kept, and a value
sent as CS is never taken for a coded term (which the gate would exempt). Found by an outside
reviewer: the family name survived in Manufacturer and the given name in BodyPartExamined."""

from __future__ import annotations

import io
import struct
import zlib

import pydicom
import pydicom.data
import pytest

from curata.collect.deid import Deidentifier, load_profile
from curata.errors import CurataError

KEY = b"k" * 32
FAMILY, GIVEN, PID = "QUIXBORNE", "ZELPHINA", "XK4471923"
WRONG = ("LO", "SH", "ST", "LT", "UT", "UC", "CS", "UN")


def _with_vr(tag: int, vr: str, value: str) -> bytes:
    """CT_small (explicit VR little endian) with a patient named and planted in kept elements, and
    ``tag`` written with ``vr``."""
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.PatientName = f"{FAMILY}^{GIVEN}"
    ds.PatientID = PID
    ds.Manufacturer = f"{FAMILY} home scan {PID}"
    ds.BodyPartExamined = GIVEN
    ds.StudyDescription = f"{GIVEN} follow up"
    buf = io.BytesIO()
    ds.save_as(buf)
    raw = buf.getvalue()
    group, element = tag >> 16, tag & 0xFFFF
    at = raw.index(struct.pack("<HH", group, element), 132)
    old_len = struct.unpack_from("<H", raw, at + 6)[0]
    data = value.encode()
    data += b" " * (len(data) % 2)
    if vr in ("UT", "UC", "UN"):  # the long header: 2 reserved bytes, a 4-byte length
        head = struct.pack("<HH2s2xI", group, element, vr.encode(), len(data))
    else:
        head = struct.pack("<HH2sH", group, element, vr.encode(), len(data))
    return raw[:at] + head + data + raw[at + 8 + old_len :]


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", ["basic", "research", "research-strict"])
@pytest.mark.parametrize(
    ("tag", "vr"), [(0x00100010, vr) for vr in WRONG] + [(0x00100020, "CS"), (0x00100020, "PN")]
)
def test_an_identifier_sent_with_another_vr_never_survives(
    tag: int, vr: str, profile: str, whole: bool
) -> None:
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    deid.raw_lane = not whole
    value = f"{FAMILY}^{GIVEN}" if tag == 0x00100010 else PID
    raw = _with_vr(tag, vr, value)
    try:
        out = deid.deidentify_bytes(raw).output_bytes
    except CurataError:
        return  # refused: nothing released
    upper = out.upper()
    assert [v for v in (FAMILY, GIVEN, PID) if v.encode() in upper] == []


def _encoded(ds: pydicom.Dataset, syntax: str) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", ["basic", "research", "research-strict"])
@pytest.mark.parametrize(
    "syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"]
)
@pytest.mark.parametrize("real_first", [True, False], ids=["real-first", "real-last"])
def test_a_repeated_patient_name_is_refused(syntax: str, real_first: bool, profile: str, whole: bool) -> None:
    """PatientName twice (a merge tool's output): pydicom keeps the last value, so a real name
    followed by another would never be looked for elsewhere. Whichever comes first, nothing of the
    real name is released: the object is refused, in every transfer syntax."""
    big = syntax == "1.2.840.10008.1.2.2"  # pydicom writes big endian only as a file was read
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small_bigendian.dcm" if big else "CT_small.dcm"))
    ds.PatientID = PID
    ds.Manufacturer = f"{FAMILY} home scan"
    ds.StudyDescription = f"{GIVEN} follow up"
    ds.PatientName = "DOE^JOHN"
    raw = _encoded(ds, syntax)
    implicit, little = syntax == "1.2.840.10008.1.2", syntax != "1.2.840.10008.1.2.2"
    order = "<" if little else ">"
    meta_end = 144 + int.from_bytes(raw[140:144], "little")
    body = raw[meta_end:]
    if syntax.endswith(".99"):
        body = zlib.decompress(body, -zlib.MAX_WBITS)
    head = struct.pack(f"{order}HH", 0x0010, 0x0010)
    at = body.index(head)
    real = f"{FAMILY}^{GIVEN}".encode()
    real += b" " * (len(real) % 2)
    if implicit:
        element = head + struct.pack("<I", len(real)) + real
    else:
        element = head + b"PN" + struct.pack(f"{order}H", len(real)) + real
    decoy_len = 8 + len(b"DOE^JOHN")  # its header (implicit, or explicit with a short VR), its value
    body = (
        body[:at] + element + body[at:]
        if real_first
        else body[: at + decoy_len] + element + body[at + decoy_len :]
    )
    if syntax.endswith(".99"):
        packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = packer.compress(body) + packer.flush()
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    deid.raw_lane = not whole
    with pytest.raises(CurataError, match="appears twice"):
        deid.deidentify_bytes(raw[:meta_end] + body)

"""Per-licensee fingerprints: a keyed, invisible mark that names who received a copy. No voxel changes.

- The *mark* is HMAC-SHA256(site secret, release ref and licensee), 80 bits in hex. Only the site can make
  or recognise one.
- DICOM: every instance UID (SOP Instance UID, the file meta copy and every Referenced SOP Instance UID,
  so SEG -> image references still resolve) is remapped to ``2.25.<HMAC(mark key, uid)>``, and the mark
  is written as a private attribute (creator ``CURATA FINGERPRINT``, group 0x0011). Pixel Data is
  re-emitted byte for byte.
- NIfTI: the mark goes into the header's ``aux_file`` field (24 bytes, unused by readers); the image
  bytes after the header are untouched. Files are re-gzipped deterministically (no time stamp).
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
from collections.abc import Callable

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

MARK_HEX = 20
PRIVATE_GROUP = 0x0011
PRIVATE_CREATOR = "CURATA FINGERPRINT"
NIFTI_PREFIX = b"cm:"
AUX_FILE = slice(228, 252)  # nifti-1 header: char aux_file[24]
UID_TAGS = ("SOPInstanceUID", "ReferencedSOPInstanceUID", "ReferencedSOPInstanceUIDInFile")
_UID_TAGS = {Tag(keyword) for keyword in UID_TAGS}
_PIXEL_DATA = Tag("PixelData")


def make_mark(site_key: bytes, ref: str, licensee: str) -> str:
    mac = hmac.new(site_key, f"curata/fingerprint/v1\n{ref}\n{licensee}".encode(), "sha256")
    return mac.hexdigest()[:MARK_HEX]


def uid_mapper(site_key: bytes, mark: str) -> Callable[[str], str]:
    key = hmac.new(site_key, f"curata/fingerprint-uid/v1\n{mark}".encode(), "sha256").digest()

    def remap(uid: str) -> str:
        digest = hmac.new(key, uid.encode(), "sha256").digest()
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    return remap


def _vr(ds: Dataset, tag: BaseTag) -> str | None:
    raw = ds.get_item(tag)  # the raw element where still unparsed: no value conversion
    vr = getattr(raw, "VR", None)
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return None
    return str(vr)


def _remap_dataset(ds: Dataset, remap: Callable[[str], str]) -> None:
    """Remap instance UIDs wherever they are, converting only sequences and those elements (most of a
    file stays as raw bytes, which pydicom writes back untouched)."""
    for tag in list(ds.keys()):
        if tag in _UID_TAGS:
            elem = ds[tag]
            if elem.value:
                elem.value = remap(str(elem.value))
        elif not tag.is_private and tag != _PIXEL_DATA and _vr(ds, tag) == "SQ":
            for item in ds[tag].value:
                _remap_dataset(item, remap)


def fingerprint_dicom(data: bytes, mark: str, remap: Callable[[str], str]) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    _remap_dataset(ds, remap)
    if "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", mark)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom_mark(ds: Dataset) -> str | None:
    try:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
        return str(block[0x01].value)
    except KeyError:
        return None


def _gunzip(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def fingerprint_nifti(data: bytes, mark: str) -> bytes:
    raw = bytearray(_gunzip(data))
    if len(raw) < 348 or int.from_bytes(raw[:4], "little") != 348:
        raise ValueError("not a little-endian NIfTI-1 file")
    field = (NIFTI_PREFIX + mark.encode()).ljust(AUX_FILE.stop - AUX_FILE.start, b"\x00")
    raw[AUX_FILE] = field
    return gzip.compress(bytes(raw), compresslevel=6, mtime=0)


def nifti_mark(data: bytes) -> str | None:
    raw = _gunzip(data)[:348]
    aux = raw[AUX_FILE].rstrip(b"\x00")
    if aux.startswith(NIFTI_PREFIX):
        return aux[len(NIFTI_PREFIX) :].decode("ascii", "replace")
    return None


def voxel_bytes_nifti(data: bytes) -> bytes:
    """Everything after the header (the image data), for checking that a mark changed no voxel."""
    import struct

    raw = _gunzip(data)
    (vox_offset,) = struct.unpack_from("<f", raw, 108)
    return raw[int(vox_offset) :]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""Fixtures: real vendor files from pydicom-data, dressed with planted identifiers."""

from __future__ import annotations

import io
import random
import warnings
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from curata.collect.deid import Deidentifier, load_profile
from curata.demo.phi import Identity, PlantedSet, plant_identifiers

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))

# Real files of several vendors, modalities and transfer syntaxes (none needs OCR).
HEADER_FILES = [
    "CT_small.dcm",  # GE CT, explicit little endian
    "MR_small.dcm",  # MR, explicit little endian
    "MR_small_implicit.dcm",  # implicit VR
    "MR_small_bigendian.dcm",  # explicit big endian
    "MR_small_RLE.dcm",  # encapsulated RLE
    "MR2_J2KR.dcm",  # JPEG 2000 lossless
    "emri_small_jpeg_2k_lossless.dcm",  # multi-frame
    "rtplan.dcm",  # RT plan: references
    "rtdose.dcm",  # RT dose
    "reportsi.dcm",  # SR: content tree
]


def vendor_file(name: str) -> Path:
    return Path(pydicom.data.get_testdata_file(name))


def read(name: str) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(vendor_file(name))


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dressed(
    name: str, seed: int = 0, *, identity: Identity | None = None, study: int = 0, uid_map: dict | None = None
) -> tuple[bytes, PlantedSet]:
    """A real file with one patient's identifiers planted in every place they hide."""
    ds = read(name)
    planted = plant_identifiers(ds, random.Random(seed), identity=identity, study=study, uid_map=uid_map)
    return to_bytes(ds), planted


@pytest.fixture(scope="session")
def research() -> Deidentifier:
    return Deidentifier(KEY, load_profile("research"), ocr=False)


@pytest.fixture(scope="session")
def basic() -> Deidentifier:
    return Deidentifier(KEY, load_profile("basic"), ocr=False)


def released_or_none(data: bytes, profile: str, *, whole: bool, key: bytes = KEY) -> bytes | None:
    """The bytes ``profile`` releases for ``data``, through the lanes or the whole engine alone
    (``whole``); None where it refuses the object (nothing released)."""
    from curata.collect.deid import load_profile
    from curata.errors import CurataError

    deid = Deidentifier(key, load_profile(profile), ocr=False)
    deid.raw_lane = deid.native_lane = not whole
    try:
        return deid.deidentify_bytes(data).output_bytes
    except CurataError:
        return None


def ct_small(patient_id: str, born: str, **values: str) -> bytes:
    """pydicom-data's CT_small in UTF-8 for the patient QUIXBORNE^ZELPHINA with ``patient_id`` and
    birth date ``born``, and ``values`` set by keyword (where a test plants a written form)."""
    ds = read("CT_small.dcm")
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "QUIXBORNE^ZELPHINA", patient_id, born
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def ct_small_with_bytes(
    charset: str,
    text: bytes,
    elements: tuple[tuple[int, str], ...],
    *,
    patient_id: str,
    born: str,
    name: bytes = b"QUIXBORNE^ZELPHINA",
) -> bytes:
    """pydicom-data's CT_small declaring ``charset`` ("" for none; several parted by a backslash), the
    patient's name as these bytes, and ``Pt <text> ok`` written as its bytes are (in whatever code page,
    declared or not) into each of ``elements`` ((tag, VR)): text pasted from another system."""
    ds = read("CT_small.dcm")
    if charset:
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    else:
        del ds.SpecificCharacterSet
    ds.PatientID, ds.PatientBirthDate = patient_id, born
    ds.add(DataElement(0x00100010, "PN", name))
    value = b"Pt " + text + b" ok"
    value += b" " * (len(value) % 2)
    for tag, vr in elements:
        ds.add(DataElement(tag, vr, value))
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()

"""A big-endian (retired) object whose pixels are masked is written little endian. pydicom keeps the
values of OW, OF, OL, OD and OV elements as their bytes, so those were written in the input's byte
order and read swapped: a palette's colours came out wrong (dciodvfy: "LUT Descriptor number of bits
= 16 but maximum LUT Data value is 0xff"). Every such value is now swapped with the file."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut

from curata.collect.deid import Deidentifier, load_profile

from .conftest import KEY
from .planting import corpus_files, release_of

_WORDS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


@pytest.fixture(scope="module")
def research() -> Deidentifier:
    return Deidentifier(KEY, load_profile("research"), ocr=False)


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def test_every_word_value_of_a_big_endian_object_keeps_its_numbers(research) -> None:
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in corpus_files():
            raw = Path(path).read_bytes()
            src = _read(raw)
            if src.file_meta.TransferSyntaxUID.is_little_endian:
                continue
            result = release_of(research, raw)
            if result is None:
                continue
            out = _read(result.output_bytes)
            if not out.file_meta.TransferSyntaxUID.is_little_endian:
                continue  # written big endian, as it came: nothing to swap
            for elem in src:
                size = _WORDS.get(elem.VR)
                if not size or elem.tag == 0x7FE00010 or elem.tag not in out:
                    continue
                before = np.frombuffer(elem.value, f">u{size}")
                after = np.frombuffer(out[elem.tag].value, f"<u{size}")
                assert np.array_equal(before, after), (path, elem.keyword)
                checked += 1
    assert checked >= 3  # OBXXXX1A_expb's three palette LUTs at least


def test_a_big_endian_palette_image_shows_the_colours_of_its_little_endian_twin(research) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rgb = []
        for name in ("OBXXXX1A.dcm", "OBXXXX1A_expb.dcm"):
            raw = Path(get_testdata_file(name)).read_bytes()
            out = _read(research.deidentify_bytes(raw).output_bytes)
            assert out.file_meta.TransferSyntaxUID.is_little_endian
            rgb.append(apply_color_lut(out.pixel_array, out))
    assert np.array_equal(rgb[0], rgb[1])

"""Clean Pixel Data with real OCR (tesseract): burned-in text found, blacked out, confirmed gone."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from curata.collect.deid import Deidentifier, load_profile
from curata.collect.deid.pixels import find_text, ocr_available
from curata.errors import DeidError
from tests.conftest import require_peer

from .conftest import KEY, read, to_bytes

pytestmark = [pytest.mark.integration]
require_peer(ocr_available(), "tesseract")


def _sc_with_text(text: str | None, *, burned_flag: str | None = None) -> Dataset:
    """A real Secondary Capture object: a body-like gradient with a white text banner on top."""
    rows, cols = 256, 384
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = (60 + 60 * np.exp(-((xx - 190) ** 2 + (yy - 150) ** 2) / 4000.0)).astype(np.uint8)
    pil = Image.fromarray(img)
    if text:
        ImageDraw.Draw(pil).text((10, 8), text, fill=255, font=ImageFont.load_default(size=22))
    arr = np.asarray(pil).copy()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Mustermann^Erika"
    ds.PatientID = "K123456789"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    if burned_flag:
        ds.BurnedInAnnotation = burned_flag
    ds.set_pixel_data(arr, "MONOCHROME2", 8, generate_instance_uid=False)
    return ds


def test_burned_in_text_is_masked_and_confirmed_gone() -> None:
    src = _sc_with_text("MUSTERMANN ERIKA 1961", burned_flag="YES")
    before = find_text(src.pixel_array)
    assert any("MUSTERMANN" in b.text.upper() for b in before)  # OCR reads it in the input
    deid = Deidentifier(KEY, load_profile("research"))
    res = deid.deidentify_bytes(to_bytes(src))
    assert res.record.pixels == "cleaned"
    out = res.dataset
    assert out.BurnedInAnnotation == "NO"
    after = out.pixel_array
    assert not [b for b in find_text(after) if len(b.text) >= 3]
    assert src.pixel_array[8:35, 10:200].max() == 255 and after[8:35, 10:200].max() < 100  # text gone
    assert np.array_equal(after[120:200, 120:260], src.pixel_array[120:200, 120:260])  # anatomy untouched


def test_clean_image_of_a_text_prone_class_is_verified_and_kept() -> None:
    src = _sc_with_text(None)
    res = Deidentifier(KEY, load_profile("research")).deidentify_bytes(to_bytes(src))
    assert res.record.pixels == "verified"
    assert res.dataset.PixelData == src.PixelData


def test_burned_in_flag_without_clean_pixel_option_is_refused() -> None:
    src = _sc_with_text("SECRET NAME", burned_flag="YES")
    with pytest.raises(DeidError, match="Clean Pixel Data"):
        Deidentifier(KEY, load_profile("basic")).deidentify_bytes(to_bytes(src))


def test_ct_pixels_never_decoded() -> None:
    src = read("CT_small.dcm")
    res = Deidentifier(KEY, load_profile("research")).deidentify_bytes(to_bytes(src))
    assert res.record.pixels == "kept" and res.dataset.PixelData == src.PixelData


def test_real_ultrasound_is_checked(tmp_path) -> None:
    src = read("US1_UNCR.dcm")
    res = Deidentifier(KEY, load_profile("research")).deidentify_bytes(to_bytes(src))
    assert res.record.pixels in ("verified", "cleaned")
    assert res.dataset.BurnedInAnnotation == "NO"
    assert not [b for b in find_text(res.dataset.pixel_array, 60, 3)]


def _with_overlay(text: str | None) -> Dataset:
    """CT_small with an overlay plane: either text (a name) or a plain ROI rectangle."""
    from pydicom.pixels import pack_bits

    ds = read("CT_small.dcm")
    rows, cols = int(ds.Rows), int(ds.Columns)
    pil = Image.new("L", (cols, rows), 0)
    draw = ImageDraw.Draw(pil)
    if text:
        draw.text((4, 40), text, fill=255, font=ImageFont.load_default(size=18))
    else:
        draw.rectangle((30, 30, 90, 90), outline=255, width=2)
    bits = (np.asarray(pil) > 127).astype(np.uint8)
    ds.add_new(0x60000010, "US", rows)
    ds.add_new(0x60000011, "US", cols)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", pack_bits(bits.ravel()))
    return ds


def test_clean_graphics_keeps_overlays_without_text_and_drops_text() -> None:
    deid = Deidentifier(KEY, load_profile("research"))
    with_text = deid.deidentify_bytes(to_bytes(_with_overlay("DOE JANE 1961"))).dataset
    assert 0x60003000 not in with_text and not any(t.group == 0x6000 for t in with_text.keys())  # noqa: SIM118
    roi = _with_overlay(None)
    kept = deid.deidentify_bytes(to_bytes(roi)).dataset
    assert kept[0x60003000].value == roi[0x60003000].value
    basic = Deidentifier(KEY, load_profile("basic"), ocr=False).deidentify_bytes(to_bytes(roi)).dataset
    assert 0x60003000 not in basic

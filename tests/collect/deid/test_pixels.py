"""Clean Pixel Data with real OCR (tesseract): burned-in text found, blacked out, confirmed gone."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from curata.collect.deid import Deidentifier, load_profile
from curata.collect.deid.pixels import ReviewNeeded, find_text, ocr_available
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
    assert res.record.pixels == "cleaned" and res.record.pixels_cleared_by == "ocr+template"
    out = res.dataset
    assert out.BurnedInAnnotation == "NO"
    after = out.pixel_array
    assert not [b for b in find_text(after) if len(b.text) >= 3]
    assert src.pixel_array[8:35, 10:200].max() == 255 and after[8:35, 10:200].max() < 100  # text gone
    assert np.array_equal(after[120:200, 120:260], src.pixel_array[120:200, 120:260])  # anatomy untouched


def test_ocr_finding_nothing_is_not_verification(tmp_path) -> None:
    """A text-prone object where OCR reads nothing: masked by the region template, or reviewed."""
    src = _sc_with_text(None)
    res = Deidentifier(KEY, load_profile("research")).deidentify_bytes(to_bytes(src))
    assert res.record.pixels == "cleaned" and res.record.pixels_cleared_by == "template"
    out = res.dataset.pixel_array
    fill = src.pixel_array.min()
    assert (out[:26] == fill).all() and (out[-21:] == fill).all()  # header and footer bands (10%, 8%)
    assert np.array_equal(out[120:200], src.pixel_array[120:200])  # the rest untouched
    cfg = tmp_path / "site.toml"
    cfg.write_text('[pixels]\npolicy = "review"\n')
    strict = Deidentifier(KEY, load_profile("research", cfg))
    with pytest.raises(ReviewNeeded):
        strict.deidentify_bytes(to_bytes(src))
    accepted = strict.deidentify_bytes(to_bytes(src), pixel_decision="accept")
    assert accepted.record.pixels_cleared_by == "review" and accepted.dataset.PixelData == src.PixelData
    masked = strict.deidentify_bytes(to_bytes(src), pixel_decision="mask")
    assert (
        masked.record.pixels_cleared_by == "review+mask" and (masked.dataset.pixel_array[:30] == fill).all()
    )


def test_site_region_template_for_a_vendor(tmp_path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text(
        '[pixels]\ndefault_regions = false\n[[pixels.regions]]\nname = "acme corner"\n'
        'modalities = ["OT"]\nmanufacturer = "acme"\nboxes = [[0.0, 0.0, 0.5, 0.2]]\n'
    )
    deid = Deidentifier(KEY, load_profile("research", cfg), ocr=False)
    src = _sc_with_text(None)
    with pytest.raises(ReviewNeeded):  # not Acme's: no template, and OCR is off
        deid.deidentify_bytes(to_bytes(src))
    src.Manufacturer = "ACME Imaging"
    out = deid.deidentify_bytes(to_bytes(src)).dataset.pixel_array
    fill = src.pixel_array.min()
    assert (out[:51, :192] == fill).all() and np.array_equal(out[60:], src.pixel_array[60:])


@pytest.mark.parametrize(
    ("size", "where", "modality"),
    [(12, "top", "US"), (16, "middle", "OT"), (30, "middle", "US")],
)
def test_burned_in_text_at_several_sizes_and_positions_is_gone(size: int, where: str, modality: str) -> None:
    """Text burned into SC and US pixels, small to large, in the bands and in the middle of the image."""
    name = "OKONKWO CHIDINMA"
    if True:
        src = _sc_with_text(None)
        src.Modality = modality
        rows, cols = src.Rows, src.Columns
        pil = Image.fromarray(src.pixel_array)
        y = {"top": 4, "bottom": rows - size - 6}.get(where, rows // 2)
        x = cols // 2 - 20 if where == "middle-right" else 8
        ImageDraw.Draw(pil).text((x, y), name, fill=255, font=ImageFont.load_default(size=size))
        src.set_pixel_data(np.asarray(pil).copy(), "MONOCHROME2", 8, generate_instance_uid=False)
        assert any("OKONKWO" in b.text.upper() for b in find_text(src.pixel_array))  # legible before
        res = Deidentifier(KEY, load_profile("research")).deidentify_bytes(to_bytes(src))
        after = find_text(res.dataset.pixel_array, 30, 3)
        assert not [b for b in after if "OKON" in b.text.upper() or "CHIDI" in b.text.upper()], (
            modality,
            after,
        )


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
    assert res.record.pixels == "cleaned" and "template" in res.record.pixels_cleared_by
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

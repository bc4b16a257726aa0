"""Slide de-identification: identity planted everywhere a vendor file hides it, zero survivors in bytes."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import openslide
import pytest
import tifffile

from curata.collect.wsi import SlideDeidentifier, SlideIdentity, deidentify_slide
from curata.collect.wsi import synthetic as syn
from curata.collect.wsi._tiff import TiffEditor
from curata.collect.wsi.service import SlideSettings
from curata.errors import DeidError, InputError
from tests.collect.wsi.conftest import scan_hits

KEY = b"k" * 32
WHO = syn.PlantedIdentity()
IDENTITY = SlideIdentity(patient_id=WHO.patient_id, patient_name=WHO.patient_name, accession=WHO.accession)
WRITERS = {
    "svs": (syn.write_svs, "Okonkwo_Adaeze_BC-55190341.svs"),
    "generic": (syn.write_generic_tiff, "Okonkwo_LAG-4471023.tiff"),
    "philips": (syn.write_philips_tiff, "ACC-88412377_philips.tiff"),
    "ome": (syn.write_ome_tiff, "Adaeze_Okonkwo.ome.tiff"),
}


def _tile_bytes(path: Path) -> list[bytes]:
    """Every compressed tile of every tiled level, as stored."""
    out = []
    with tifffile.TiffFile(path) as tf:
        pages = list(tf.pages) + [p for s in tf.series for lv in s.levels for p in lv.pages]
        for page in pages:
            if page is None or not page.is_tiled:
                continue
            fh = tf.filehandle
            for off, n in zip(page.dataoffsets, page.databytecounts, strict=True):
                fh.seek(off)
                out.append(fh.read(n))
    return out


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_planted_identity_leaves_no_trace(kind: str, tmp_path: Path) -> None:
    writer, name = WRITERS[kind]
    src = tmp_path / name
    planted = writer(src, WHO)
    raw = src.read_bytes()
    assert scan_hits([raw], planted), "the fixture must carry the planted identity"
    res = deidentify_slide(raw, key=KEY, source=str(src), identity=IDENTITY)
    blobs = [res.deid.output_bytes, *res.instances, res.deid.file_name.encode()]
    assert scan_hits(blobs, [*planted, src.stem]) == []
    assert res.deid.record.removed_images, "label/macro must be removed"
    # level pixels bit for bit: every stored tile of the output is a tile of the input
    out = tmp_path / f"out.{res.deid.format.value}"
    out.write_bytes(res.deid.output_bytes)
    before, after = set(_tile_bytes(src)), _tile_bytes(out)
    assert after and all(t in before for t in after)
    assert len(res.instances) >= 1
    assert res.deid.file_name.startswith("CUR-") and "SLD-" in res.deid.file_name


def test_an_aperio_page_second_is_kept_as_the_thumbnail_only_when_it_is_the_slide_scaled_down(
    tmp_path: Path,
) -> None:
    """Aperio writes its thumbnail second; a label written there instead, its description without the
    word 'label', was kept as the thumbnail by its place alone, the patient's name in its pixels."""
    import numpy as np

    levels = syn._pyramid(syn.tissue_image(1024, 1024, 0), 3)
    label = np.frombuffer(WHO.label_bytes(96 * 64 * 3), np.uint8).reshape(64, 96, 3)
    thumb = np.ascontiguousarray(levels[-1][::2, ::2])  # the slide scaled down: a thumbnail
    head = "Aperio Image Library v12.0.5 \r\n1024x1024 [0,0 1024x1024] (256x256) JPEG/RGB Q=80|AppMag = 20"
    for second, kept in ((label, False), (thumb, True)):
        src = tmp_path / f"second-{kept}.svs"
        with tifffile.TiffWriter(src) as tw:
            tw.write(levels[0], tile=(256, 256), compression="jpeg", photometric="rgb", description=head,
                     metadata=None)  # fmt: skip
            tw.write(second, photometric="rgb", description="Aperio Image Library v12.0.5 \r\n", metadata=None)
            for lv in levels[1:]:
                tw.write(lv, tile=(256, 256), compression="jpeg", photometric="rgb", metadata=None,
                         description=f"Aperio Image Library v12.0.5 \r\n{lv.shape[1]}x{lv.shape[0]} -> ")  # fmt: skip
        res = SlideDeidentifier(KEY).deidentify_bytes(src.read_bytes(), source=str(src), identity=IDENTITY)
        assert (res.record.removed_images == []) is kept, res.record.removed_images
        assert (second.tobytes() in res.output_bytes) is kept


def test_aperio_fields_and_tags(tmp_path: Path) -> None:
    src = tmp_path / "a.svs"
    syn.write_svs(src, WHO)
    res = SlideDeidentifier(KEY).deidentify_bytes(src.read_bytes(), source=str(src), identity=IDENTITY)
    out = tmp_path / "o.svs"
    out.write_bytes(res.output_bytes)
    slide = openslide.OpenSlide(out)
    props = dict(slide.properties)
    assert props["openslide.vendor"] == "aperio"
    assert set(slide.associated_images) <= {"thumbnail"}
    assert props["aperio.Filename"] == res.slide_id
    for field in ("Title", "User", "Time", "DSR ID", "ScanScope ID", "ImageID", "Barcode", "Patient"):
        assert f"aperio.{field}" not in props
    assert props["aperio.Date"] != "03/14/21" and props["aperio.AppMag"] == "20"
    with tifffile.TiffFile(out) as tf:
        for page in tf.pages:
            names = {t.name for t in page.tags.values()}
            assert not names & {
                "Artist",
                "HostComputer",
                "Copyright",
                "DocumentName",
                "PageName",
                "ImageUniqueID",
            }
            assert 65000 not in page.tags
            if "DateTime" in names:
                assert page.tags["DateTime"].value != "2021:03:14 10:11:12"


def test_same_patient_key_as_radiology() -> None:
    """A slide's patient pseudonym equals the DICOM engine's for the same PatientID."""
    import pydicom

    from curata.collect.deid import Deidentifier
    from tests.conftest import make_ct

    ct = make_ct(patient_id=WHO.patient_id, patient_name=WHO.patient_name)
    ct_out = Deidentifier(key=KEY).deidentify_dataset(ct)
    assert isinstance(ct_out.dataset, pydicom.Dataset)
    import io

    from curata.collect.wsi.synthetic import write_svs

    buf = io.BytesIO()
    write_svs(buf, WHO, size=512)  # type: ignore[arg-type]
    res = SlideDeidentifier(KEY).deidentify_bytes(
        buf.getvalue(), identity=SlideIdentity(patient_id=WHO.patient_id)
    )
    assert res.patient_pseudonym == ct_out.record.patient_pseudonym


def test_real_svs_loses_label_macro_and_metadata(shared_wsi: Path) -> None:
    src = shared_wsi / "CMU-1-Small-Region.svs"
    raw = src.read_bytes()
    secrets = [
        "CMU-1",
        "b414003d-95c6-48b0-9369-8010ed517ba7",
        "CPAPERIOCS",
        "09:59:15",
        "12/29/09",
        "1004486",
    ]
    assert scan_hits([raw], secrets) == sorted(secrets)
    res = deidentify_slide(raw, key=KEY, source=str(src), identity=None)
    assert scan_hits([res.deid.output_bytes, *res.instances], secrets) == []
    assert sorted(r.split()[0] for r in res.deid.record.removed_images) == ["label", "macro"]
    assert res.info.vendor == "aperio" and res.info.mpp == pytest.approx(0.499)
    # the label's and macro's bytes are gone, the level's tiles are untouched
    ed = TiffEditor(raw)
    for ifd in ed.ifds[2:4]:
        for start, end in ed.data_ranges(ifd):
            assert res.deid.output_bytes[start:end] == bytes(end - start)
    for start, end in ed.data_ranges(ed.ifds[0]):
        assert res.deid.output_bytes[start:end] == raw[start:end]


def test_real_ndpi_loses_macro_map_and_properties(shared_wsi: Path) -> None:
    src = shared_wsi / "test3-DAPI-2-387.ndpi"
    raw = src.read_bytes()
    secrets = ["2011/05/23", "2017/01/27", "950291", "950410", "2017:02:07 13:06:43"]
    assert scan_hits([raw], secrets) == sorted(secrets)
    res = deidentify_slide(raw, key=KEY, source=str(src), identity=None)
    assert scan_hits([res.deid.output_bytes, *res.instances], secrets) == []
    assert sorted(r.split()[0] for r in res.deid.record.removed_images) == ["macro", "map"]
    assert res.info.vendor == "hamamatsu" and res.info.levels == 7
    out_path = Path(res.deid.file_name).name
    assert out_path.endswith(".ndpi") and "DAPI" not in out_path


def test_ndpi_planted_property_map(shared_wsi: Path, tmp_path: Path) -> None:
    """Identity planted in the NDPI property map, serial tag and macro bytes of a real NDPI."""
    raw = (shared_wsi / "test3-DAPI-2-387.ndpi").read_bytes()
    ed = TiffEditor(raw)
    planted = [WHO.patient_name, WHO.barcode, WHO.accession, WHO.institution]
    props = ed.text(ed.ifds[0], 65449) or ""
    props += f"\r\nBarcode={WHO.barcode}\r\nSlideName={WHO.patient_name}\r\nCustom={WHO.accession}"
    for ifd in ed.ifds:
        ed.set_text(ifd, 65449, props)
        ed.set_text(ifd, 65442, f"SN {WHO.institution}")
    start, _end = ed.data_ranges(ed.ifds[4])[0]
    ed.buf[start + 100 : start + 100 + len(WHO.label_bytes(200))] = WHO.label_bytes(200)
    planted_raw = bytes(ed.buf)
    assert scan_hits([planted_raw], planted) == sorted(planted)
    res = deidentify_slide(planted_raw, key=KEY, source="x.ndpi", identity=None)
    assert scan_hits([res.deid.output_bytes, *res.instances], planted) == []


def test_identity_in_a_kept_field_is_removed_and_the_gate_still_refuses_it(tmp_path: Path) -> None:
    """Identity in a kept technical field (Make) under keep_make_model: the value is removed (``unknown``,
    the record says why) and the slide stored; it used to be left to the gate, which refused the whole
    slide. The gate still refuses the identity wherever a rule would have missed it."""
    from curata.collect.wsi.deid import _gate

    src = tmp_path / "g.tiff"
    import numpy as np

    tifffile.imwrite(
        src, np.zeros((256, 256, 3), np.uint8), tile=(128, 128), photometric="rgb",
        extratags=[(271, "s", 0, f"Scanner of {WHO.patient_name}", True)], metadata=None,
    )  # fmt: skip
    res = SlideDeidentifier(KEY).deidentify_bytes(src.read_bytes(), source=str(src), identity=IDENTITY)
    with tifffile.TiffFile(io.BytesIO(res.output_bytes)) as tf:
        assert tf.pages[0].tags["Make"].value == "unknown"
    assert "Make (held the patient's identity: unknown)" in res.record.rewritten
    leaked = b"header " + f"Scanner of {WHO.patient_name}".encode() + b" tail"
    with pytest.raises(DeidError, match="final gate"):
        _gate(leaked, [], set(), [], ids=IDENTITY.identifiers())


def test_broken_slides_are_refused_with_a_reason(shared_wsi: Path) -> None:
    for name, words in (("unreadable.svs", "cannot be decoded"), ("unopenable.tiff", "cannot be opened")):
        with pytest.raises(InputError, match=words):
            deidentify_slide((shared_wsi / name).read_bytes(), key=KEY, source=name, identity=None)
    with pytest.raises(InputError, match=r"truncated|outside the file"):
        SlideDeidentifier(KEY).deidentify_bytes((shared_wsi / "small.svs").read_bytes()[:300])
    with pytest.raises(InputError, match="not a TIFF"):
        SlideDeidentifier(KEY).deidentify_bytes(b"GIF89a" + bytes(100))


def test_sidecar_identity_parsing() -> None:
    ident = SlideIdentity.from_mapping(
        json.loads('{"patient_id": "1", "stain": "H&E", "organ": "lung", "MRN2": "X-777-ABC"}')
    )
    assert ident.patient_id == "1" and ident.organ == "lung" and "X-777-ABC" in ident.secrets()


def test_a_dicom_file_whose_preamble_holds_a_tiff_header_is_not_a_slide() -> None:
    from pydicom.data import get_testdata_file

    from curata.collect.wsi import looks_like_slide

    raw = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    assert raw[:4] == b"II*\0" and not looks_like_slide("mr.dcm", raw[:132])
    assert looks_like_slide("x.svs", b"II*\0" + bytes(200))


@pytest.mark.integration
def test_converted_levels_pass_dciodvfy(shared_wsi: Path, tmp_path: Path) -> None:
    """dicom3tools' validator finds no error in the DICOM-WSI made from a real SVS, NDPI and a tiled TIFF."""
    import os
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy (dicom3tools) is missing; scripts/system-deps.sh installs it")
        pytest.skip("dciodvfy not installed")
    for name in ("CMU-1-Small-Region.svs", "test3-DAPI-2-387.ndpi", "boxes.tiff"):
        settings = SlideSettings(label="generated")  # the generated LABEL instance is checked too
        res = deidentify_slide(
            (shared_wsi / name).read_bytes(), key=KEY, source=name, identity=None, settings=settings
        )
        assert "LABEL" in res.datasets[-1].ImageType
        for i, blob in enumerate([*res.instances[:2], res.instances[-1]]):
            path = tmp_path / f"{name}.{i}.dcm"
            path.write_bytes(blob)
            out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
            errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
            assert errors == [], (name, i, errors)


def test_a_plain_file_name_is_not_a_leak_but_a_composite_one_is(tmp_path: Path) -> None:
    src = tmp_path / "slide.svs"
    syn.write_svs(src, size=512)
    res = deidentify_slide(src.read_bytes(), key=KEY, source=str(src), identity=None)  # "whole slide" is fine
    assert res.instances and "slide" not in res.deid.needles
    named = deidentify_slide(
        src.read_bytes(), key=KEY, source=str(tmp_path / "Doe_Jane_77.svs"), identity=None
    )
    assert "Doe_Jane_77" in named.deid.needles


def _plant_in_tiles(path: Path, text: bytes) -> int:
    """Put ``text`` in a comment and an EXIF segment of every JPEG tile and of the shared JPEG tables:
    the planted tiles are appended and the offsets and byte counts patched. Returns the tiles planted."""
    data = bytearray(path.read_bytes())

    def seg(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    planted = 0
    with tifffile.TiffFile(path) as tf:
        bo = tf.byteorder
        big = tf.is_bigtiff
        for page in tf.pages:
            if not page.is_tiled or page.compression != 7:
                continue
            offsets, counts = page.tags["TileOffsets"], page.tags["TileByteCounts"]
            width = {3: "H", 4: "I", 16: "Q"}
            for i, (off, n) in enumerate(zip(page.dataoffsets, page.databytecounts, strict=True)):
                tile = bytes(data[off : off + n])
                new = tile[:2] + seg(0xFE, text) + seg(0xE1, b"Exif\x00\x00" + text) + tile[2:]
                data += b"\x00" * (len(data) & 1)
                pos = len(data)
                data += new
                for tag, value in ((offsets, pos), (counts, len(new))):
                    fmt = bo + width[int(tag.dtype)]
                    size = struct.calcsize(fmt)
                    struct.pack_into(fmt, data, tag.valueoffset + i * size, value)
                planted += 1
            tables = page.tags.get("JPEGTables")
            if tables is not None:
                new = bytes(tables.value[:2]) + seg(0xFE, text) + bytes(tables.value[2:])
                data += b"\x00" * (len(data) & 1)
                pos = len(data)
                data += new
                entry = tables.offset
                if big:
                    struct.pack_into(bo + "QQ", data, entry + 4, len(new), pos)
                else:
                    struct.pack_into(bo + "II", data, entry + 4, len(new), pos)
    path.write_bytes(bytes(data))
    return planted


def test_text_inside_tiles_and_jpeg_tables_is_zeroed_and_pixels_unchanged(tmp_path: Path) -> None:
    """A scanner's comment or EXIF block inside each JPEG tile (and the shared tables) is not image:
    zeroed in place, never released, and every tile decodes to the same pixels."""
    src = tmp_path / "Okonkwo_Adaeze_BC-55190341.svs"
    planted = syn.write_svs(src, WHO)
    text = f"{WHO.patient_name} {WHO.patient_id} {WHO.accession}".encode()
    assert _plant_in_tiles(src, text) > 4
    with tifffile.TiffFile(src) as tf:
        before = [p.asarray() for p in tf.pages if p.is_tiled]
    res = deidentify_slide(src.read_bytes(), key=KEY, source=str(src), identity=IDENTITY)
    assert scan_hits([res.deid.output_bytes, *res.instances], [*planted, WHO.patient_id]) == []
    assert WHO.patient_id.encode() not in res.deid.output_bytes
    out = tmp_path / "out.svs"
    out.write_bytes(res.deid.output_bytes)
    with tifffile.TiffFile(out) as tf:
        after = [p.asarray() for p in tf.pages if p.is_tiled]
    assert len(after) == len(before) and all((a == b).all() for a, b in zip(after, before, strict=True))

"""An ICC profile's text (description, copyright, device descriptions, any text element, dates) names
whoever the site or the scanner wrote there: every text element of the profile, in every slide format
that carries one, with the patient's identity in it, and no sidecar to name the patient. The slide is
stored with the profile's colour data unchanged and none of its text."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
import tifffile

from curata.collect.deid.codestream import icc_text_spans
from curata.collect.wsi import deidentify_slide
from curata.collect.wsi import synthetic as syn

KEY = b"k" * 32
PLANT = "ZWOLINSKA^JADWIGA MRN-4417702 1961-08-23"
NEEDLES = [b"zwolinska", b"jadwiga", b"4417702", b"1961-08-23"]


def _text(kind: bytes, text: str) -> bytes:
    if kind == b"desc":  # v2 textDescriptionType: ASCII, then empty Unicode and ScriptCode parts
        return b"desc" + bytes(4) + struct.pack(">I", len(text) + 1) + text.encode() + bytes(1 + 8 + 3 + 67)
    if kind == b"text":
        return b"text" + bytes(4) + text.encode() + b"\0"
    if kind == b"mluc":
        u = text.encode("utf-16-be")
        return b"mluc" + bytes(4) + struct.pack(">II", 1, 12) + b"enUS" + struct.pack(">II", len(u), 28) + u
    return b"dtim" + bytes(4) + struct.pack(">6H", 1961, 8, 23, 10, 11, 12)


def icc_profile(where: str) -> bytes:
    """A v2 RGB profile (white point and TRC besides): the planted text in the element ``where``."""
    xyz = b"XYZ " + bytes(4) + struct.pack(">3i", 63190, 65536, 54061)
    curv = b"curv" + bytes(4) + struct.pack(">IH", 1, 0x0233) + bytes(2)
    elems = {
        b"desc": _text(b"desc", PLANT if where == "desc" else "sRGB"),
        b"cprt": _text(b"text", PLANT if where == "cprt" else "none"),
        b"dmnd": _text(b"mluc", PLANT if where == "dmnd" else "vendor"),
        b"dmdd": _text(b"desc", PLANT if where == "dmdd" else "model"),
        b"calt": _text(b"dtim", ""),
        b"wtpt": xyz,
        b"rTRC": curv,
    }
    off = 132 + 12 * len(elems)
    table, data = b"", b""
    for sig, body in elems.items():
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", off + len(data), len(body))
        data += body
    size = off + len(data)
    created = struct.pack(">6H", 1961, 8, 23, 0, 0, 0)
    header = (
        struct.pack(">I", size) + b"none" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + created + b"acsp"
        + bytes(128 - 40)
    )  # fmt: skip
    return header + struct.pack(">I", len(elems)) + table + data


WRITERS = {
    "svs": syn.write_svs,
    "generic.tiff": syn.write_generic_tiff,
    "ome.tiff": syn.write_ome_tiff,
    "philips.tiff": syn.write_philips_tiff,
}


def _found(data: bytes) -> list[bytes]:
    low = data.lower()
    wide = data.decode("utf-16-be", "ignore").lower().encode()
    return [n for n in NEEDLES if n in low or n in wide] + (
        [b"19610823"] if struct.pack(">3H", 1961, 8, 23) in data else []
    )


@pytest.mark.parametrize("fmt", list(WRITERS))
@pytest.mark.parametrize("where", ["desc", "cprt", "dmnd", "dmdd", "calt"])
def test_every_icc_text_element_is_cleared(tmp_path: Path, monkeypatch, fmt: str, where: str) -> None:  # type: ignore[no-untyped-def]
    profile = icc_profile(where)
    # the slide's other tags are clean: only the profile carries the identity
    monkeypatch.setattr(syn, "_extratags", lambda who, datetime=True: [(34675, "B", 0, profile, True)])
    path = tmp_path / f"slide.{fmt}"
    WRITERS[fmt](
        path, syn.PlantedIdentity(patient_name="Doe^Jane", patient_id="X1", accession="A1"), size=512
    )
    raw = path.read_bytes()
    assert _found(raw), "the fixture must carry the identity"
    res = deidentify_slide(raw, key=KEY, source="slide", identity=None)
    out = res.deid.output_bytes
    assert _found(out) == [] and all(_found(i) == [] for i in res.instances)
    with tifffile.TiffFile(io.BytesIO(out)) as tf:
        kept = [p.tags[34675].value for p in tf.pages if 34675 in p.tags]
    assert kept
    for icc in kept:  # the colour data stays byte for byte; only text and dates are gone
        spans = icc_text_spans(profile)
        assert len(icc) == len(profile)
        mask = [any(a <= i < b for a, b in spans) for i in range(len(profile))]
        assert all(icc[i] == profile[i] for i in range(len(profile)) if not mask[i])
        assert all(icc[i] == 0 for i in range(len(profile)) if mask[i])


def _jpeg_with_icc(profile: bytes, chunks: int) -> bytes:
    """A baseline JPEG with ``profile`` in ``chunks`` APP2 segments (ICC.1 B.4), right after SOI."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 120, 40)).save(buf, "JPEG", quality=90)
    plain = buf.getvalue()
    step = -(-len(profile) // chunks)
    parts = [profile[k : k + step] for k in range(0, len(profile), step)]
    segments = b"".join(
        b"\xff\xe2" + struct.pack(">H", 2 + 14 + len(p)) + b"ICC_PROFILE\x00" + bytes([n + 1, len(parts)]) + p
        for n, p in reversed(list(enumerate(parts)))  # out of order: the sequence numbers order them
    )
    return plain[:2] + segments + plain[2:]


@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize("where", ["desc", "cprt", "dmnd", "dmdd"])
def test_an_icc_profile_inside_a_jpeg_tile_loses_its_text(where: str, chunks: int) -> None:
    """Tiles (and DICOM JPEG frames) carry their own ICC profile in APP2 chunks: kept for colour, its
    text and dates zeroed like the TIFF tag's, across chunk boundaries; the image decodes the same."""
    from PIL import Image

    from curata.collect.deid.codestream import metadata_spans

    profile = icc_profile(where)
    jpeg = _jpeg_with_icc(profile, chunks)
    zero, keep = metadata_spans(jpeg)
    out = bytearray(jpeg)
    for a, b in zero:
        out[a:b] = bytes(b - a)
    forms = [*NEEDLES, *(n.decode().encode("utf-16-be") for n in NEEDLES)]  # mluc text is UTF-16
    planted = [f for f in forms if f in jpeg.lower()]
    assert planted and not [f for f in planted if f in bytes(out).lower()]
    assert len(out) == len(jpeg)  # lengths kept, and the chunks:
    assert sum(jpeg[a : a + 12] == b"ICC_PROFILE\x00" for a, _ in keep) == chunks
    before, after = Image.open(io.BytesIO(jpeg)), Image.open(io.BytesIO(bytes(out)))
    assert before.tobytes() == after.tobytes()
    kept = after.info["icc_profile"]
    assert len(kept) == len(profile) and kept[:24] == profile[:24]  # the transform's data stays
    assert kept.find(b"XYZ ") == profile.find(b"XYZ ") and b"curv" in kept

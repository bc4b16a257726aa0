"""``[wsi] label = "generated"``: the glass label is replaced by a generated one that shows only the
slide pseudonym (text, QR code), same size, in the SVS in place and as a DICOM-WSI LABEL instance.
Level tiles stay bit for bit; the planted identity is nowhere in the stored bytes."""

from __future__ import annotations

import io
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import openslide
import pydicom
import pytest
import tifffile
from sqlalchemy import select

from curata.collect.ingest import Ingestor
from curata.collect.wsi import Slide
from curata.collect.wsi import synthetic as syn
from curata.collect.wsi.labels import DEFAULT_SIZE, render_label
from curata.collect.wsi.service import SlideSettings
from curata.errors import InputError
from tests.collect.wsi.conftest import scan_hits

WHO = syn.PlantedIdentity()


def _ocr(rgb: np.ndarray) -> str:
    from tests.conftest import require_peer

    require_peer(bool(shutil.which("tesseract")), "tesseract")
    from PIL import Image

    big = Image.fromarray(rgb).resize((rgb.shape[1] * 2, rgb.shape[0] * 2))
    buf = io.BytesIO()
    big.save(buf, "PNG")
    out = subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", "11"], input=buf.getvalue(), capture_output=True, timeout=60
    )
    return _fold(out.stdout.decode("utf-8", "replace"))


def _fold(text: str) -> str:
    """OCR's usual confusions folded (O/0, B/8, I/L/1, S/5, Z/2, G/6), so a match is about the text."""
    return text.upper().translate(str.maketrans("OBILSZG", "0811526"))


def _generated(workspace, inbox: Path) -> None:  # type: ignore[no-untyped-def]
    workspace.config.setdefault("wsi", {})["label"] = "generated"
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    assert not problems and summary.counts["ingested"] >= 1


def test_generated_label_replaces_the_svs_label(workspace, shared_wsi: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "in"
    inbox.mkdir()
    src = inbox / "CMU-1-Small-Region.svs"
    shutil.copy(shared_wsi / src.name, src)
    (inbox / (src.name + ".json")).write_text(
        json.dumps(
            {"patient_id": WHO.patient_id, "patient_name": WHO.patient_name, "accession": WHO.accession}
        )
    )
    with openslide.OpenSlide(src) as orig:
        label_size = orig.associated_images["label"].size
    _generated(workspace, inbox)
    with workspace.catalog.session() as s:
        slide = s.scalars(select(Slide)).one()
        slide_id, vendor_digest = slide.slide_id, slide.vendor_blob_digest
    vendor = workspace.store.get_bytes(vendor_digest)
    out = tmp_path / "out.svs"
    out.write_bytes(vendor)
    with openslide.OpenSlide(out) as cleaned:
        assert set(cleaned.associated_images) == {"label", "thumbnail"}  # macro gone, label generated
        label = np.asarray(cleaned.associated_images["label"].convert("RGB"))
    assert (label.shape[1], label.shape[0]) == label_size
    assert np.array_equal(label, render_label(slide_id, *label_size))
    # OCR reads the pseudonym (allowing for a character or two of OCR noise), and nothing else long
    import difflib

    words = _ocr(label).split()
    # the ID may wrap onto two lines: a word, or two words in a row, is a candidate
    lines = [w for w in [*words, *(a + b for a, b in itertools.pairwise(words))] if len(w) >= 6]
    best = max((difflib.SequenceMatcher(None, _fold(slide_id), _fold(w)).ratio() for w in lines), default=0.0)
    assert best >= 0.85, (slide_id, lines)
    # level 0 tiles are the vendor's bytes, bit for bit
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(out) as b:
        pa, pb = a.pages[0], b.pages[0]
        raw_a, raw_b = src.read_bytes(), out.read_bytes()
        tiles_a = [raw_a[o : o + c] for o, c in zip(pa.dataoffsets, pa.databytecounts, strict=True)]
        tiles_b = [raw_b[o : o + c] for o, c in zip(pb.dataoffsets, pb.databytecounts, strict=True)]
        assert tiles_a == tiles_b
    # the DICOM-WSI series has a LABEL instance with the same image
    labels = []
    for digest in workspace.store.digests():
        blob = workspace.store.get_bytes(digest)
        if blob[128:132] == b"DICM":
            ds = pydicom.dcmread(io.BytesIO(blob))
            if "LABEL" in ds.ImageType:
                labels.append(ds)
    assert len(labels) == 1
    lab = labels[0]
    assert (lab.Columns, lab.Rows, lab.ContainerIdentifier) == (*label_size, slide_id)
    assert np.array_equal(lab.pixel_array, label)
    secrets = ["CMU-1", "b414003d-95c6-48b0-9369-8010ed517ba7", "12/29/09", WHO.patient_id, WHO.patient_name,
               WHO.accession]  # fmt: skip
    assert scan_hits([workspace.store.get_bytes(d) for d in workspace.store.digests()], secrets) == []


def test_ndpi_gets_a_generated_dicom_label_only(workspace, shared_wsi: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """NDPI has no label image of its own (the glass label is inside the macro, which is removed)."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    shutil.copy(shared_wsi / "test3-DAPI-2-387.ndpi", inbox / "test3-DAPI-2-387.ndpi")
    _generated(workspace, inbox)
    with workspace.catalog.session() as s:
        slide = s.scalars(select(Slide)).one()
        slide_id, vendor_digest, removed = slide.slide_id, slide.vendor_blob_digest, slide.removed_images
    assert any(r.startswith("macro") for r in removed)
    out = tmp_path / "out.ndpi"
    out.write_bytes(workspace.store.get_bytes(vendor_digest))
    with openslide.OpenSlide(out) as cleaned:
        assert "macro" not in cleaned.associated_images and "label" not in cleaned.associated_images
    kinds = []
    for digest in workspace.store.digests():
        blob = workspace.store.get_bytes(digest)
        if blob[128:132] == b"DICM":
            ds = pydicom.dcmread(io.BytesIO(blob))
            kinds.append(ds.ImageType[2])
            if ds.ImageType[2] == "LABEL":
                assert (ds.Columns, ds.Rows) == DEFAULT_SIZE
                assert np.array_equal(ds.pixel_array, render_label(slide_id, *DEFAULT_SIZE))
    assert kinds.count("LABEL") == 1 and kinds.count("VOLUME") >= 1


def test_label_setting_is_checked() -> None:
    assert SlideSettings.from_config({}).generated_label is False
    assert SlideSettings.from_config({"label": "Generated"}).generated_label is True
    with pytest.raises(InputError, match=re.escape("[wsi] label")):
        SlideSettings.from_config({"label": "photo"})

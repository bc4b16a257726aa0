"""The sidecar's stain and organ are the two values a slide keeps from it (the slide row, the DICOM-WSI
SeriesDescription, SpecimenShortDescription and BodyPartExamined): free text a site types, which can
carry the patient's name or ID ("HE stain for SUZUKI", "liver (MRN4417702)") or another person's
("H&E, read by Dr. Okafor"). The patient's identity is cut from them and what is left is kept only when
every word is a stain's or an organ's; the slide is stored either way."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from curata.collect.ingest import Ingestor
from curata.collect.wsi import Slide
from tests.collect.wsi.test_slide_planted_spellings import HEADER, write_slide

PATIENT = {"patient_id": "MRN4417702", "patient_name": "SUZUKI^KENJI", "birth_date": "1961-04-12",
           "accession": "S26-12345"}  # fmt: skip
# (field, value, the words that must not be stored)
PLANTS = [
    ("stain", "HE stain for SUZUKI", ["suzuki"]),
    ("stain", "H&E (MRN4417702)", ["4417702"]),
    ("stain", "H&E, read by Dr. Okafor", ["okafor"]),
    ("stain", "PAS - Pathologist: Yetunde Okafor", ["okafor", "yetunde"]),
    ("stain", "signed OKAFOR^YETUNDE", ["okafor", "yetunde"]),
    ("stain", "Ki-67 12.04.1961", ["12041961", "19610412"]),
    ("organ", "liver (MRN4417702)", ["4417702"]),
    ("organ", "lung, Kenji Suzuki", ["suzuki", "kenji"]),
    ("organ", "breast S26-12345", ["s2612345"]),
    ("organ", "colon biopsy for Dr Okafor", ["okafor"]),
    ("organ", "skin 4417702", ["4417702"]),
    ("organ", "kidney 19610412", ["19610412"]),
]
KEPT = [("stain", "H&E"), ("stain", "Ki-67"), ("stain", "PAS"), ("organ", "lung"), ("organ", "left upper lobe"),
        ("organ", "lymph node")]  # fmt: skip


def _squeezed(data: bytes) -> bytes:
    return re.sub(rb"[\s^,.\-_'/\\\x00:|;+=\[\]()\"]+", b"", data.lower())


def _ingest(workspace, tmp_path: Path, plants: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    inbox = tmp_path / "in"
    inbox.mkdir()
    for n, (field, value) in enumerate(plants):
        write_slide(inbox / f"slide{n}.svs", HEADER)
        side = {**PATIENT, "accession": f"S26-1234{n}", field: value}
        (inbox / f"slide{n}.svs.json").write_text(json.dumps(side))
    return Ingestor(workspace, workers=1).ingest_paths([inbox])


def test_identity_and_other_names_in_sidecar_stain_and_organ_are_not_stored(
    workspace, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _summary, problems = _ingest(workspace, tmp_path, [(f, v) for f, v, _ in PLANTS])
    refused = [(PLANTS[int(Path(p.source).stem[5:])][1], p.reason) for p in problems]
    blobs = [workspace.store.get_bytes(d) for d in workspace.store.digests()]
    blobs.append(Path(str(workspace.catalog.url).removeprefix("sqlite:///")).read_bytes())
    hay = [_squeezed(b) for b in blobs]
    leaked = [(v, w) for _f, v, words in PLANTS for w in words if any(w.encode() in h for h in hay)]
    assert (refused, leaked) == ([], []), (
        f"{len(refused)} refused, {len(leaked)} leaked of {len(PLANTS)}: {refused} {leaked}"
    )
    with workspace.catalog.session() as s:
        rows = s.scalars(select(Slide)).all()
        assert len(rows) == len(PLANTS)
        stains, organs = {r.stain for r in rows}, {r.organ for r in rows}
    # what is left once the patient's identity is cut; a value with another word is unknown
    assert stains == {None, "H&E", "Ki-67"} and organs == {None, "liver", "lung", "skin", "kidney"}


def test_stain_and_organ_words_are_kept(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _summary, problems = _ingest(workspace, tmp_path, KEPT)
    assert not problems
    with workspace.catalog.session() as s:
        rows = s.scalars(select(Slide)).all()
        got = sorted((r.stain or r.organ) for r in rows)
    assert got == sorted(v for _f, v in KEPT)
    for digest in workspace.store.digests():
        blob = workspace.store.get_bytes(digest)
        if blob[128:132] == b"DICM":
            ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
            assert ds.SeriesDescription in {v for _f, v in KEPT}


@pytest.mark.parametrize("value", ["Okafor", "Dr. Smith", "MRN4417702", "19610412", "for SUZUKI"])
def test_a_value_of_no_stain_or_organ_words_is_unknown(value: str) -> None:
    from curata.collect.wsi.deid import SlideIdentity, sidecar_organ, sidecar_stain

    ident = SlideIdentity.from_mapping(PATIENT)
    assert sidecar_stain(value, ident) is None and sidecar_organ(value, ident) is None

"""Real slides with one damaged tile: the reader, ingest and slide QC each name the tile (level, column,
row) in a clear DecodeError or reason, never the data, and go on with the other slides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from curata.catalog import QuarantineItem, Series
from curata.collect.ingest import Ingestor
from curata.collect.wsi import SlideReader
from curata.errors import DecodeError
from curata.select import explain, run_qc
from tests.collect.wsi.conftest import corrupt_tile

PLANTED = "ZEBEDIAH^QUIRINUS"  # a patient's name in the sidecar: never in a reason
SIDECAR = {"patient_id": "PAT-ZQX-7731", "patient_name": PLANTED, "accession": "ACC-7731"}


@pytest.mark.parametrize(
    ("name", "tile", "how", "codec"),
    [
        ("boxes.tiff", 5, "garbage", "ZlibError"),
        ("boxes.tiff", 5, "zeros", "ZlibError"),
        ("CMU-1-Small-Region.svs", 65, "garbage", "Jpeg8Error"),
        ("CMU-1-Small-Region.svs", 65, "sof", "Jpeg8Error"),
    ],
)
def test_reader_names_the_damaged_tile(shared_wsi: Path, tmp_path: Path, name: str, tile: int, how: str, codec: str) -> None:  # fmt: skip
    slide = tmp_path / f"{PLANTED}-{name}"  # a folder or file name may hold a patient's name
    corrupt_tile(shared_wsi / name, slide, page=0, tile=tile, how=how)
    with SlideReader(slide) as reader:
        cols = reader.grid(0)[0]
        col, row = tile % cols, tile // cols
        assert reader.tile(0, col + 1, row).shape[-1] == 3  # its neighbour decodes
        with pytest.raises(DecodeError) as caught:
            reader.tile(0, col, row)
    err = caught.value
    assert err.reason == (
        f"cannot decode tile {tile} (column {col}, row {row}) of level 0: "
        f"the decoder failed on corrupt data ({codec})"
    )
    assert PLANTED not in err.reason and err.hint


def test_an_empty_frame_is_refused_before_a_codec_sees_it() -> None:
    """``imagecodecs.imread(b"")`` ends the process (SIGSEGV): the guard must come first."""
    from curata.collect.wsi import decode_tile

    for data in (b"", b"\xff\xd8"):
        with pytest.raises(DecodeError, match=r"frame 3 of level 1: the frame is empty"):
            decode_tile(data, encapsulated=True, tile_w=8, tile_h=8, what="frame 3 of level 1")
    with pytest.raises(DecodeError, match="191 bytes where a native frame holds 192"):
        decode_tile(bytes(191), encapsulated=False, tile_w=8, tile_h=8, what="frame 1 of level 0")


def test_ingest_quarantines_each_slide_with_an_unreadable_tile_and_files_the_rest(  # type: ignore[no-untyped-def]
    workspace, shared_wsi: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "boxes.tiff").write_bytes((shared_wsi / "boxes.tiff").read_bytes())
    corrupt_tile(shared_wsi / "boxes.tiff", inbox / "boxes-torn.tiff", page=0, tile=5, how="zeros")
    corrupt_tile(shared_wsi / "test3-DAPI-2-387.ndpi", inbox / "dapi.ndpi", page=0, tile=300, how="garbage")
    corrupt_tile(shared_wsi / "CMU-1-Small-Region.svs", inbox / "cmu.svs", page=0, tile=65, how="garbage")
    for slide in ("boxes-torn.tiff", "dapi.ndpi", "cmu.svs"):
        (inbox / f"{slide}.json").write_text(json.dumps(SIDECAR))
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    reasons = {Path(p.source).name: p.reason for p in problems}
    assert summary.counts["quarantined"] == 3 and summary.counts["ingested"] == 1, reasons
    decoder = "the decoder failed on corrupt data"
    assert reasons == {
        # deflate tiles are decoded to native frames: the torn one refuses the slide
        "boxes-torn.tiff": f"cannot decode tile 5 (column 0, row 1) of level 0: {decoder} (DeflateError)",
        # an NDPI stripe that is no JPEG: opentile cannot cut the tile holding it
        "dapi.ndpi": f"cannot decode tile 32 (column 0, row 4) of level 0: {decoder} (JpegTagNotFound)",
        # an SVS tile that is no codestream: refused while its metadata segments are scrubbed
        "cmu.svs": "tile 65 of image 0 cannot be decoded (a compressed frame of an unknown kind)",
    }
    assert not any(PLANTED in r or "PAT-ZQX" in r or "ACC-7731" in r for r in reasons.values())
    with workspace.catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(QuarantineItem)) == 3
        assert s.scalar(select(func.count()).select_from(Series).where(Series.modality == "SM")) == 1


def test_qc_excludes_a_slide_whose_tile_does_not_decode_and_measures_the_others(  # type: ignore[no-untyped-def]
    workspace, shared_wsi: Path, tmp_path: Path
) -> None:
    """A tile whose JPEG markers are whole but whose frame header no decoder takes passes ingest (tiles
    are copied, not decoded); slide QC decodes it, counts it and says which it is."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "boxes.tiff").write_bytes((shared_wsi / "boxes.tiff").read_bytes())
    corrupt_tile(shared_wsi / "CMU-1-Small-Region.svs", inbox / "cmu.svs", page=0, tile=65, how="sof")
    (inbox / "cmu.svs.json").write_text(json.dumps(SIDECAR))
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    assert summary.counts["ingested"] == 2 and not problems, [p.reason for p in problems]

    qc = run_qc(workspace, workers=1)
    assert (qc.counts["measured"], qc.counts["failed"], qc.counts["excluded"]) == (2, 0, 1)
    with workspace.catalog.session() as s:
        slides = {
            w: u
            for u, w in s.execute(select(Series.series_uid, Series.columns).where(Series.modality == "SM"))
        }
    damaged, intact = explain(workspace, slides[240]), explain(workspace, slides[64])
    metrics = {m.metric: m.value for m in damaged.metrics}
    assert metrics["corrupted_tiles"] == 1
    assert metrics["corrupted_tile"] == (
        "cannot decode frame 66 (column 5, row 6) of level 0: the decoder failed on corrupt data (Jpeg8Error)"
    )
    assert damaged.verdict is not None and not damaged.verdict.passed
    assert [r["rule"] for r in damaged.verdict.reasons] == ["slide_corrupted_tiles"]
    assert intact.verdict is not None and intact.verdict.passed
    assert {m.metric: m.value for m in intact.metrics}["corrupted_tile"] is None

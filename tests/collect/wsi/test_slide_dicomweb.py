"""Converted slides are served by Curata's DICOMweb: QIDO finds the SM series, WADO returns each frame
as the vendor file stored it (the tile bytes, not a re-encoding); DICOM-WSI arrives by STOW too."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import tifffile
from PIL import Image

from curata.collect.dicomweb import _multipart
from curata.collect.ingest import Ingestor
from curata.collect.wsi import synthetic as syn
from curata.server import create_app
from tests.server.conftest import ServerThread

TOKEN = "wsi-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_slide_frames_served_in_stored_transfer_syntax(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "site" / "s.svs"
    src.parent.mkdir()
    syn.write_svs(src, size=768)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([src.parent])
    assert summary.counts["ingested"] == 1 and not problems
    with ServerThread(create_app(workspace, token=TOKEN)) as server:
        base = f"{server.url}/dicomweb"
        series = httpx.get(f"{base}/series", params={"Modality": "SM"}, headers=AUTH, timeout=30).json()
        assert len(series) == 1
        study_uid = series[0]["0020000D"]["Value"][0]
        series_uid = series[0]["0020000E"]["Value"][0]
        insts = httpx.get(
            f"{base}/studies/{study_uid}/series/{series_uid}/instances", headers=AUTH, timeout=30
        ).json()
        assert len(insts) == 3  # three pyramid levels
        sop = insts[0]["00080018"]["Value"][0]
        meta = httpx.get(
            f"{base}/studies/{study_uid}/series/{series_uid}/instances/{sop}/metadata",
            headers=AUTH,
            timeout=30,
        ).json()[0]
        assert meta["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.77.1.6"]
        assert meta["00209311"]["Value"] == ["TILED_FULL"]
        r = httpx.get(
            f"{base}/studies/{study_uid}/series/{series_uid}/instances/{sop}/frames/5",
            headers=AUTH,
            timeout=30,
        )
        assert r.status_code == 200
        parts = _multipart.decode(r.content, r.headers["content-type"])
        frame = parts[0][1]
    assert frame[:2] == b"\xff\xd8"  # a JPEG, as stored
    from opentile import OpenTile

    with OpenTile.open(src, 256) as tiler:  # the vendor file's own tile (1, 1), JPEG tables merged
        assert frame == tiler.levels[0].get_tile((1, 1))
    tile = np.asarray(Image.open(io.BytesIO(frame)))
    level0 = tifffile.imread(src, key=0)
    assert tile.shape == (256, 256, 3) and tile.std() > 5
    assert np.abs(tile.astype(int) - level0[256:512, 256:512].astype(int)).mean() < 1.0


def test_dicom_wsi_by_stow_keeps_the_pseudonym_path(workspace, shared_wsi: Path) -> None:  # type: ignore[no-untyped-def]
    raws = [(shared_wsi / n).read_bytes() for n in ("boxes_0.dcm", "boxes_1.dcm")]
    with ServerThread(create_app(workspace, token=TOKEN)) as server:
        body, ctype = _multipart.encode([({}, r) for r in raws])
        r = httpx.post(
            f"{server.url}/dicomweb/studies",
            content=body,
            headers={**AUTH, "Content-Type": ctype},
            timeout=60,
        )
        assert r.status_code == 200, r.text
    stored = [workspace.store.get_bytes(d) for d in workspace.store.digests()]
    assert len(stored) == 2
    for raw in stored:
        ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
        assert (
            ds.ContainerIdentifier.startswith("SLD-") and b"SLIDE_1" not in raw and b"CPAPERIOCS" not in raw
        )


def test_dicom_wsi_by_c_store_label_dropped_with_a_warning(
    workspace, shared_wsi: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from pydicom.uid import generate_uid

    from curata.collect.net.config import GatewayConfig
    from curata.collect.net.scp import GatewayServer
    from tests.collect.net.conftest import need

    need("storescu")
    folder = tmp_path / "send"
    folder.mkdir()
    for name in ("boxes_0.dcm", "boxes_1.dcm"):
        (folder / name).write_bytes((shared_wsi / name).read_bytes())
    label = pydicom.dcmread(shared_wsi / "boxes_0.dcm")
    label.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
    label.SOPInstanceUID = label.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    label.save_as(folder / "label.dcm")
    config = GatewayConfig(ae_title="CURATA", port=0, bind="127.0.0.1", workers=1, allow=[])
    with GatewayServer(workspace, config) as server:
        for name in ("boxes_0.dcm", "label.dcm", "boxes_1.dcm"):
            ts = pydicom.dcmread(folder / name, stop_before_pixels=True).file_meta.TransferSyntaxUID
            option = "-xy" if ts == "1.2.840.10008.1.2.4.50" else "-xe"  # propose the file's own syntax
            cmd = [
                "storescu",
                "-R",
                option,
                "-aec",
                "CURATA",
                "127.0.0.1",
                str(server.port),
                str(folder / name),
            ]
            sent = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            assert sent.returncode == 0, sent.stderr
        assert server.counts.stored == 2 and server.counts.dropped == 1
    stored = [workspace.store.get_bytes(d) for d in workspace.store.digests()]
    assert len(stored) == 2
    for raw in stored:
        ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
        assert "LABEL" not in ds.ImageType and ds.ContainerIdentifier.startswith("SLD-")


def test_frames_read_by_byte_range_match_the_parsed_pixel_data(shared_wsi: Path, tmp_path: Path) -> None:
    """WADO-RS frames come from byte ranges of the stored file (a level is not loaded whole): the same
    bytes as pydicom's parse, for encapsulated JPEG levels, a native LABEL and a real DICOM-WSI file."""
    from pydicom.encaps import generate_frames

    from curata.collect.wsi import deidentify_slide, read_frames
    from curata.collect.wsi.service import SlideSettings

    res = deidentify_slide(
        (shared_wsi / "CMU-1-Small-Region.svs").read_bytes(),
        key=b"frames-test-key-0123456789abcdef",
        source="x.svs",
        identity=None,
        settings=SlideSettings(label="generated"),
    )
    blobs = [*res.instances, (shared_wsi / "boxes_0.dcm").read_bytes()]
    for blob in blobs:
        ds = pydicom.dcmread(io.BytesIO(blob))
        n = int(ds.get("NumberOfFrames", 1))
        if ds.file_meta.TransferSyntaxUID.is_encapsulated:
            want = list(generate_frames(ds.PixelData, number_of_frames=n))
        else:
            size = len(ds.PixelData) // n
            want = [ds.PixelData[i * size : (i + 1) * size] for i in range(n)]
        got = read_frames(io.BytesIO(blob), list(range(1, n + 1)))
        assert got is not None and got[0] == ds.file_meta.TransferSyntaxUID and got[1] == n
        assert got[2] == want
        assert read_frames(io.BytesIO(blob), [n + 1])[2] == []  # out of range: the caller answers 404

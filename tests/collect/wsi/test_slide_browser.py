"""A converted real slide in OHIF's microscopy mode (dicom-microscopy-viewer) from Curata's DICOMweb,
in Debian's chromium through Selenium: tiles are fetched by WADO-RS frames (answered 200, in the
stored transfer syntax) and drawn (the viewport is not blank and shows the slide's H&E colours)."""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from curata.server.app import create_app
from curata.server.ohif import find_ohif
from tests.server.conftest import PASSWORD, serve  # noqa: F401  (fixture)
from tests.server.test_browser import _login, _need, _shots, _wait, browser  # noqa: F401  (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_REQUESTS_JS = """
return performance.getEntriesByType('resource')
  .filter(e => e.name.includes('/frames/'))
  .map(e => ({url: e.name, status: e.responseStatus || 0, size: e.encodedBodySize || 0}));
"""

_VIEWPORT_JS = """
const el = document.querySelector('.DicomMicroscopyViewer') || document.querySelector('.ol-viewport');
if (!el) return null;
const r = el.getBoundingClientRect();
return {x: r.left, y: r.top, w: r.width, h: r.height, dpr: window.devicePixelRatio,
        canvases: el.querySelectorAll('canvas').length};
"""


SLIDES = {
    "svs": "CMU-1-Small-Region.svs",
    "ndpi": "test3-DAPI-2-387.ndpi",
}  # H&E brightfield; DAPI fluorescence


@pytest.fixture(params=sorted(SLIDES))
def slide_platform(
    request: pytest.FixtureRequest, tmp_path: Path, shared_wsi: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    from curata.collect.ingest import Ingestor
    from curata.server import service
    from curata.workspace import Workspace

    monkeypatch.delenv("CURATA_DATABASE_URL", raising=False)
    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    ws = Workspace.init(tmp_path / "ws", site="test-site")
    inbox = tmp_path / "in"
    inbox.mkdir()
    name = SLIDES[request.param]
    shutil.copy(shared_wsi / name, inbox / name)
    summary, problems = Ingestor(ws, site="path-a", workers=1).ingest_paths([inbox])
    assert summary.counts["ingested"] == 1 and not problems
    service.create_project(ws, "path", title="Pathology")
    service.add_resource(ws, "path", "site", "path-a")
    service.create_user(ws, "cur", PASSWORD)
    service.set_role(ws, "cur", "path", "curator")
    return ws, request.param


def test_converted_real_slide_opens_in_ohif_microscopy_mode(
    slide_platform: Any,
    browser: Any,  # noqa: F811
    serve: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    from sqlalchemy import select

    from curata.catalog import Series, Study

    ohif = _need("the OHIF viewer (.ohif/dist)", find_ohif())
    (ws, kind), d = slide_platform, browser
    with ws.catalog.session() as s:
        study_uid, series_uid = s.execute(
            select(Study.study_uid, Series.series_uid)
            .join(Series, Series.study_id == Study.id)
            .where(Series.modality == "SM")
        ).one()
    server = serve(create_app(ws, ohif_dir=ohif))
    _login(d, server.url, "cur")
    d.get(f"{server.url}/microscopy/path?StudyInstanceUIDs={study_uid}")

    def frames_done() -> list[dict[str, Any]] | None:
        got = d.execute_script(_REQUESTS_JS) or []
        return got if len(got) >= 4 else None

    requests = _wait(frames_done, timeout=120)
    time.sleep(3)  # let the last tiles land and draw
    requests = d.execute_script(_REQUESTS_JS)
    assert requests and all(r["status"] == 200 for r in requests), requests
    assert all(
        f"/projects/path/dicomweb/studies/{study_uid}/series/{series_uid}/" in r["url"] for r in requests
    )
    errors = d.find_elements("css selector", "[role=alert], .text-red-500")
    assert not [e.text for e in errors if "error" in e.text.lower()]
    box = _wait(lambda: d.execute_script(_VIEWPORT_JS))
    assert box["canvases"] >= 1 and box["w"] > 200 and box["h"] > 200
    png = d.get_screenshot_as_png()
    for folder in (_shots(tmp_path), Path(__file__).resolve().parents[3] / "docs" / "screenshots"):
        if folder.name == "screenshots" and "docs" in folder.parts and not os.environ.get("CURATA_DOC_SHOTS"):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ("ohif-microscopy.png" if kind == "svs" else f"ohif-microscopy-{kind}.png")).write_bytes(
            png
        )
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    k = box["dpr"]
    crop = img[
        int(box["y"] * k) : int((box["y"] + box["h"]) * k), int(box["x"] * k) : int((box["x"] + box["w"]) * k)
    ]
    assert crop.size and crop.std() > 10, "the microscopy viewport is blank"
    r, g, b = crop[..., 0], crop[..., 1], crop[..., 2]
    if kind == "svs":
        pinkish = (r > 120) & (r - g > 25) & (b - g > 10)  # eosin/haematoxylin-stained tissue, not UI chrome
        assert pinkish.mean() > 0.02, "no stained tissue drawn in the viewport"
    else:  # DAPI: nuclei drawn bright on a dark field
        lit = np.maximum(np.maximum(r, g), b) > 60
        assert 0.002 < lit.mean() < 0.9, f"no fluorescent nuclei drawn in the viewport ({lit.mean():.4f})"

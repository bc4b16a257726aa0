"""`curata demo` end to end on a small export, checked against the generator's ground truth.

The manifest is the hospitals' side of the story: which files are broken, which series carry which
planted defect, every true identity. The demo's results must agree with it exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from curata.catalog import Series


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from curata.demo.runner import run_demo

    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, patients=4, sites=3, size="small", seed=7, workers=2)


@pytest.mark.slow
def test_every_step_succeeds(demo) -> None:  # type: ignore[no-untyped-def]
    assert {k: v["status"] for k, v in demo.results.items()} == {k: "ok" for k in demo.results}
    summary = json.loads((demo.out / "demo-summary.json").read_text())
    assert set(summary) >= {"generate", "ingest", "leak check", "qc", "preprocess", "release", "ledger"}
    assert summary["clinical cohort"]["matches_truth"] is True and summary["clinical cohort"]["patients"] >= 1


@pytest.mark.slow
def test_ingest_quarantines_exactly_the_broken_files(demo) -> None:  # type: ignore[no-untyped-def]
    ingest = demo.results["ingest"]
    broken = demo.manifest.broken_files
    assert ingest["quarantined"] + ingest["skipped"] == len(broken)
    assert ingest["failed"] == 0
    good_files = len(demo.manifest.files)
    # every DICOM file, and every clinical export file (CSV, FHIR NDJSON, VCF) of the demo hospitals
    assert ingest["ingested"] == good_files + demo.results["generate"]["clinical_files"]


@pytest.mark.slow
def test_nothing_identifying_reaches_the_store_or_catalog(demo) -> None:  # type: ignore[no-untyped-def]
    leak = demo.results["leak check"]
    assert leak["blobs"] == demo.results["ingest"]["ingested"]
    assert leak["values_checked"] > 100
    assert leak["hit_count"] == 0, leak["hits"]


@pytest.mark.slow
def test_qc_excludes_the_planted_defects_and_nothing_clean(demo) -> None:  # type: ignore[no-untyped-def]
    """The site key maps each true series UID to its pseudonymous UID, so verdicts compare exactly."""
    from curata.collect.deid.pseudonyms import Pseudonymizer
    from curata.select.models import QcVerdict

    ws = demo.ws
    to_catalog = Pseudonymizer(ws.site_key()).uid
    expected = {to_catalog(s.series_uid): s for s in demo.manifest.series}
    with ws.catalog.session() as s:
        verdicts = dict(
            s.execute(
                select(Series.series_uid, QcVerdict.passed).join(QcVerdict, QcVerdict.series_id == Series.id)
            ).all()
        )
    assert set(verdicts) == set(expected)
    wrong = {
        f"{rec.kind} {rec.description} defects={rec.defects}": verdicts[uid]
        for uid, rec in expected.items()
        if verdicts[uid] != (not rec.defects and rec.kind != "ct_localizer")
    }
    assert wrong == {}, f"QC verdicts that disagree with the planted ground truth: {wrong}"


@pytest.mark.slow
def test_release_export_verifies_and_the_log_holds(demo) -> None:  # type: ignore[no-untyped-def]
    release = demo.results["release"]
    assert release["verify_release.py"] == "OK"
    export = Path(release["export"])
    assert (export / "verify_release.py").exists()
    ledger = demo.results["ledger"]
    assert ledger["verified"] is True and ledger["size"] >= demo.results["ingest"]["ingested"]


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


def _render(browser: str, page: Path, out: Path) -> tuple[str, Path]:
    """The page as a real browser sees it: its DOM after load, and a full screenshot."""
    import subprocess

    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={out.parent / 'chromium-profile'}",
        "--hide-scrollbars",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
    ]
    url = page.resolve().as_uri()
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    subprocess.run(
        [browser, *flags, "--window-size=1280,2400", f"--screenshot={out}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return dom, out


def _distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as im:
        return len(im.convert("RGB").resize((320, 600)).getcolors(1 << 20) or [])


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("which", ["qc report", "dataset card"])
def test_reports_open_in_a_real_browser(demo, which: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    browser = _chromium()
    if browser is None:
        pytest.fail("chromium is not installed (scripts/system-deps.sh installs it)")
    page = (
        Path(demo.results["qc"]["report"]) if which == "qc report" else Path(demo.results["release"]["card"])
    )
    dom, shot = _render(browser, page, tmp_path / "page.png")
    images = dom.count("<img")
    assert images >= 3, f"{which}: only {images} images in the rendered page"
    if which == "qc report":
        assert "data:image/png;base64," in dom  # self-contained: plots inline, nothing fetched
        assert "excluded" in dom.lower()
    else:  # the card is a folder: card.html with its plots beside it
        assert all((page.parent / name).exists() for name in ("sex.png", "age.png", "site.png"))
    # plots really drawn: a blank or broken page has a handful of colours, rendered plots hundreds
    assert _distinct_colours(shot) > 50

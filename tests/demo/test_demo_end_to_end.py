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


def test_pathology_site(demo) -> None:  # type: ignore[no-untyped-def]
    """Planted slides: no leak, the planted pen/blur defects caught, a tiled normalised release."""
    path = demo.results["pathology"]
    assert path["status"] == "ok" and path["leak_hits"] == 0 and path["slides"] == 6
    assert path["qc_excluded"] == 1 and path["qc_warned"] >= 1  # blur excludes, pen warns
    assert path["cohort_slides"] == 5 and path["tiles"] > 0 and path["release_problems"] == []


@pytest.mark.slow
def test_every_step_succeeds(demo) -> None:  # type: ignore[no-untyped-def]
    assert {k: v["status"] for k, v in demo.results.items()} == {k: "ok" for k in demo.results}
    summary = json.loads((demo.out / "demo-summary.json").read_text())
    assert set(summary) >= {
        "generate",
        "ingest",
        "leak check",
        "qc",
        "preprocess",
        "release",
        "platform",
        "ledger",
    }
    platform = demo.results["platform"]
    assert (
        len(platform["accounts"]) == 6 and oct(Path(platform["passwords"]).stat().st_mode & 0o777) == "0o600"
    )
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
    import sqlalchemy as sa

    from curata.collect.clinical import clinical_source, clinical_table
    from curata.collect.genomics import genomic_file

    leak = demo.results["leak check"]
    # every stored object was scanned: one per DICOM file; per clinical input its manifest and Parquet
    # tables, per VCF the VCF and its variant table
    with demo.ws.catalog.session() as s:
        clinical = set(s.scalars(sa.select(clinical_source.c.output_digest)))
        clinical |= set(s.scalars(sa.select(clinical_table.c.blob_digest)))
        clinical |= set(s.scalars(sa.select(genomic_file.c.blob_digest)))
    dicom = demo.results["ingest"]["ingested"] - demo.results["generate"]["clinical_files"]
    assert leak["blobs"] == dicom + len(clinical - {None})
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
                select(Series.series_uid, QcVerdict.passed)
                .join(QcVerdict, QcVerdict.series_id == Series.id)
                .where(Series.modality != "SM")  # the pathology site's slides: checked in test_pathology_site
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


@pytest.mark.slow
def test_reading_round_files_every_read_blinded_and_releases_accepted_labels(demo) -> None:  # type: ignore[no-untyped-def]
    """Every SEG the simulated readers STOW'd is filed against its task and reader, no reader saw
    another's read, every case ends accepted, and the store holds no identity after the round."""
    ann = demo.results["annotate"]
    assert ann["status"] == "ok"
    if ann["cases"] == 0:
        pytest.skip("this seed drew no CT series with lesions")
    assert ann["reads_stowed"] == ann["reads_filed"] == 2 * ann["cases"]
    assert ann["blinding_violations"] == 0 and ann["leak_hits"] == 0
    assert ann["accepted"] == ann["cases"] and sum(ann["decisions"].values()) == ann["cases"]
    assert ann["accepted_vs_truth_dice_mean"] > 0.6
    assert demo.labels is not None and len(demo.labels) == ann["cases"]
    row = ann["agreement"][0]
    # a read in which the reader missed the case's only lesion holds no lesion label
    assert row["label"] == "lesion" and row["reads"] == 2 * ann["cases"] - ann["reads_without_lesion"]


@pytest.mark.slow
def test_demo_accounts_find_open_reading_work_by_role(demo) -> None:  # type: ignore[no-untyped-def]
    """A person signing in as the demo's annotator or reviewer finds tasks of their own, the site
    and licensee accounts are refused, and the curator sees the whole project."""
    from fastapi.testclient import TestClient

    from curata.server import create_app

    opened = demo.results["platform"]["open_reading"]
    assert opened["project"] == "demo-open-reads" and opened["tasks"] >= 1
    passwords = dict(
        line.split("\t")[::2]
        for line in Path(demo.results["platform"]["passwords"]).read_text().splitlines()[1:]
    )
    base = "/projects/demo/annotate/demo-open-reads"
    with TestClient(create_app(demo.ws), base_url="http://127.0.0.1") as client:

        def token(user: str) -> dict[str, str]:
            r = client.post(
                f"{base}/monailabel/auth/token", data={"username": user, "password": passwords[user]}
            )
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        for reader in ("demo-annotator", "demo-reviewer"):
            queue = client.get(f"{base}/queue", headers=token(reader))
            assert queue.status_code == 200 and len(queue.json()) == opened["tasks"], queue.text
        for outsider in ("demo-site", "demo-licensee"):
            assert client.get(f"{base}/queue", headers=token(outsider)).status_code == 403
        status = client.get(f"{base}/status", headers=token("demo-curator"))
        assert status.status_code == 200, status.text

"""The platform in a real browser: Debian's chromium driven by chromium-driver through Selenium.

One server and one browser for the whole walk (each start costs seconds): sign-in, role spot checks,
a curator's QC override, a cohort built from the page, OHIF showing a study with the stored pixel
values (and after scrolling), and a licensee downloading a release and verifying it. Screenshots go to
``$CURATA_SCREENSHOTS`` (CI output) or the test's tmp folder.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from curata.server.app import create_app
from curata.server.ohif import find_ohif
from tests.server.conftest import PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _need(what: str, found: Any) -> Any:
    if not found:
        if os.environ.get("CI") or os.environ.get("CURATA_REQUIRE_BROWSER"):
            pytest.fail(f"{what} is missing (scripts/system-deps.sh and scripts/ohif.sh install it)")
        pytest.skip(f"{what} is not installed")
    return found


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    chromium = _need("chromium", shutil.which("chromium") or shutil.which("chromium-browser"))
    driver_bin = _need("chromium-driver", shutil.which("chromedriver"))
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
    ):
        opts.add_argument(flag)
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    driver.downloads = downloads
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _shots(tmp_path: Path) -> Path:
    """``$CURATA_SCREENSHOTS`` (scripts/test.sh points it at .ci-output/screenshots), else the tmp folder."""
    env = os.environ.get("CURATA_SCREENSHOTS")
    return Path(env) / "browser" if env else tmp_path / "screenshots"


def _shot(driver: Any, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / f"{name}.png"))


def _wait(cond: Any, timeout: float = 60, step: float = 0.25) -> Any:
    """``cond()`` until it is truthy; an element not there yet (or replaced) counts as not yet."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = cond()
        except (NoSuchElementException, StaleElementReferenceException):
            value = None
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


def _login(d: Any, base: str, user: str) -> None:
    from selenium.webdriver.common.by import By

    d.delete_all_cookies()
    d.get(f"{base}/ui/login")
    d.find_element(By.ID, "username").send_keys(user)
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    _wait(lambda: "/ui/login" not in d.current_url)


_PIXELS_JS = """
const cs = window.cornerstone;
if (!cs || !cs.getEnabledElements().length) return null;
const vp = cs.getEnabledElements()[0].viewport;
const id = vp.getCurrentImageId();
const img = id && cs.cache.getImage(id);
if (!img) return null;
return {id: id, index: vp.getCurrentImageIdIndex(), n: vp.getImageIds().length,
        pixels: Array.from(img.getPixelData())};
"""


def _stored_hu(ws: Any, sop_uid: str) -> np.ndarray:
    from sqlalchemy import select

    from curata.catalog import Instance

    with ws.catalog.session() as s:
        digest = s.scalar(select(Instance.blob_digest).where(Instance.sop_instance_uid == sop_uid))
    ds = pydicom.dcmread(io.BytesIO(ws.store.get_bytes(digest)))
    from pydicom.pixels import apply_modality_lut

    return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64).ravel()


def test_the_platform_in_a_real_browser(stocked: Any, browser: Any, serve: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    ohif = _need("the OHIF viewer (.ohif/dist)", find_ohif())
    p, d = stocked, browser
    shots = _shots(tmp_path)
    server = serve(create_app(p.ws, ohif_dir=ohif))
    base = server.url

    # sign-in: a wrong password is refused on the page, the right one lands on the projects
    d.get(f"{base}/ui/login")
    d.find_element(By.ID, "username").send_keys("cur")
    d.find_element(By.ID, "password").send_keys("not the password")
    d.find_element(By.ID, "password").send_keys(Keys.ENTER)  # the keyboard submits the form
    assert "wrong username or password" in _wait(lambda: d.find_element(By.CSS_SELECTOR, "[role=alert]").text)
    _login(d, base, "cur")
    assert "Alpha" in d.page_source
    _shot(d, shots, "projects")

    # catalog (thumbnails are real PNGs from DICOMweb), QC review with an override
    d.get(f"{base}/ui/p/alpha/catalog")
    assert p.series["site-a"] in d.page_source
    _wait(
        lambda: d.execute_script("return [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    )
    _shot(d, shots, "catalog")
    d.get(f"{base}/ui/p/alpha/qc")
    _shot(d, shots, "qc-review")
    # the override form lists excluded/warned series; make sure one is there by excluding ours first
    from curata.select import override

    override(p.ws, p.series["site-a"], passed=False, author="setup", reason="seeded for the page")
    d.get(f"{base}/ui/p/alpha/qc")
    card = d.find_element(By.ID, f"s-{p.series['site-a']}")
    card.find_element(By.CSS_SELECTOR, "input[value=include]").click()
    card.find_element(By.CSS_SELECTOR, "input[name=reason]").send_keys("read by a radiologist: usable")
    card.find_element(By.CSS_SELECTOR, "form button").click()
    # the seeded override already reads "Override by setup": wait for the curator's own
    _wait(lambda: "Override by <strong>cur</strong>" in d.page_source)
    assert "usable" in d.page_source
    from curata.select import explain

    assert explain(p.ws, p.series["site-a"]).verdict.passed is True

    # a cohort built from the page: an error first (the CLI's caret), then a query that works
    d.get(f"{base}/ui/p/alpha/cohorts")
    box = d.find_element(By.ID, "where")
    box.send_keys("modalty = CT")
    d.find_element(By.CSS_SELECTOR, "main form button").click()
    err = _wait(lambda: d.find_elements(By.ID, "query-error"))[0].text
    assert "unknown field 'modalty'" in err and "^" in err
    box = d.find_element(By.ID, "where")
    box.clear()
    box.send_keys("modality = CT and qc.passed")
    d.find_element(By.CSS_SELECTOR, "main form button").click()
    assert "1 series of 1 patients" in _wait(lambda: d.find_element(By.ID, "preview-count").text)
    _shot(d, shots, "cohorts")
    d.find_element(By.ID, "name").send_keys("browser-ct")
    d.find_element(By.ID, "name").submit()
    _wait(lambda: "created=browser-ct" in d.current_url)
    from curata.select import show_cohort

    assert [s.site for s in show_cohort(p.ws, "browser-ct").series] == ["site-a"]

    # OHIF shows the study; the pixel values it holds are the stored ones, also after scrolling
    study = p.studies["site-a"]
    d.get(f"{base}/viewer/alpha?StudyInstanceUIDs={study}")
    first = _wait(lambda: d.execute_script(_PIXELS_JS), timeout=90)
    assert first["n"] == 3 and f"/projects/alpha/dicomweb/studies/{study}/" in first["id"]
    sop = first["id"].split("/instances/")[1].split("/")[0]
    assert np.array_equal(np.asarray(first["pixels"], dtype=np.float64), _stored_hu(p.ws, sop))
    time.sleep(1)
    _shot(d, shots, "viewer")
    d.find_element(By.CSS_SELECTOR, "[data-viewport-uid]").click()
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_DOWN)
    moved = _wait(lambda: (r := d.execute_script(_PIXELS_JS)) and r["index"] != first["index"] and r)
    sop2 = moved["id"].split("/instances/")[1].split("/")[0]
    assert sop2 != sop
    assert np.array_equal(np.asarray(moved["pixels"], dtype=np.float64), _stored_hu(p.ws, sop2))
    from curata.server import service

    assert any(e.action == "view-series" and e.username == "cur" for e in service.audit_events(p.ws))

    # role spot checks in the browser: the annotator has no QC page, the outsider no project
    _login(d, base, "ann")
    assert "QC review" not in d.page_source
    d.get(f"{base}/ui/p/alpha/qc")
    assert "do not allow this" in d.page_source
    _login(d, base, "outsider")
    d.get(f"{base}/ui/p/alpha/catalog")
    assert "no project" in d.page_source

    # the licensee downloads the licensed release and verifies it with the shipped script
    _login(d, base, "lic")
    d.get(f"{base}/ui/p/alpha/releases")
    assert p.release in d.page_source
    _shot(d, shots, "releases")
    d.get(f"{base}/ui/p/alpha/releases/{p.release}")
    d.find_element(By.ID, "download").click()
    archive = _wait(lambda: [f for f in d.downloads.glob("*.zip")], timeout=60)[0]
    out = tmp_path / "licensee-copy"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(out)
    check = subprocess.run(
        [sys.executable, str(out / "verify_release.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert any(e.action == "download" and e.username == "lic" for e in service.audit_events(p.ws))
    d.get(f"{base}/ui/p/alpha/ledger")
    _shot(d, shots, "ledger")

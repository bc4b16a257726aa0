"""The whole reading loop in one real browser session (Debian's chromium through Selenium, against
uvicorn), each person signed in with their own account: the curator assigns from the page, two readers
save their SEGs through the project's DICOMweb (STOW-RS, as themselves) and see only their own read
(on the pages, through QIDO/WADO and in OHIF), the first reader writes a report and the reviewer signs
it, the curator computes agreement, adjudicates and releases the accepted labels.
Screenshots go to ``$CURATA_SCREENSHOTS/reading`` (or the test's tmp folder)."""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest

from curata import annotate
from tests.annotate.conftest import PASSWORD, on_platform, truth
from tests.server.conftest import ServerThread

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _need(what: str, found: Any) -> Any:
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing (scripts/system-deps.sh and scripts/ohif.sh install it)")
        pytest.skip(f"{what} is not installed")
    return found


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    chromium = _need("chromium", shutil.which("chromium"))
    driver = _need("chromium-driver", shutil.which("chromedriver"))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(flag)
    b = webdriver.Chrome(service=Service(driver), options=opts)
    b.set_page_load_timeout(60)
    yield b
    b.quit()


def _wait(cond: Any, timeout: float = 60) -> Any:
    from tests.server.test_browser import _wait as wait

    return wait(cond, timeout)


def _login(d: Any, base: str, user: str) -> None:
    from selenium.webdriver.common.by import By

    d.delete_all_cookies()
    d.get(f"{base}/ui/login")
    d.find_element(By.ID, "username").send_keys(user)
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    _wait(lambda: "/ui/login" not in d.current_url)


def _click(d: Any, element_id: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    # the page that holds the button may still be replacing the one before it (a link just followed):
    # a node found in the old document is gone before it is clicked, and that click never happened
    _wait(lambda: d.execute_script("return document.readyState") == "complete")
    for attempt in range(5):
        try:
            page = d.find_element(By.TAG_NAME, "html")
            d.find_element(By.ID, element_id).click()
            break
        except (StaleElementReferenceException, WebDriverException) as exc:
            gone = isinstance(
                exc, StaleElementReferenceException
            ) or "does not belong to the document" in str(exc)
            if not gone or attempt == 4:
                raise
            time.sleep(0.2)
    # the form posts and the server redirects: wait for a new document (the URL may not change when
    # the page already carried a flash), then for it to be read
    _wait(lambda: ec.staleness_of(page)(d))
    _wait(lambda: d.execute_script("return document.readyState") == "complete")


def _stow(base: str, token: str, seg: bytes) -> None:
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(f"{base}/projects/lab/dicomweb", headers={"Authorization": f"Bearer {token}"})
    client.store_instances([pydicom.dcmread(io.BytesIO(seg))])


def _seg_series(base: str, token: str, study: str) -> set[str]:
    r = httpx.get(
        f"{base}/projects/lab/dicomweb/studies/{study}/series",
        params={"Modality": "SEG"},
        headers={"Authorization": f"Bearer {token}"},
    )
    return {x["0020000E"]["Value"][0] for x in (r.json() if r.content else [])}


# the segment labels of every segmentation OHIF has loaded (cornerstone3D's segmentation state)
_SEGMENT_LABELS_JS = """
const t = window.cornerstoneTools;
if (!t || !t.segmentation || !t.segmentation.state) return null;
const out = [];
for (const s of t.segmentation.state.getSegmentations()) {
  const segs = s.segments || (s.config && s.config.segments) || {};
  for (const k of Object.keys(segs)) { if (segs[k] && segs[k].label) out.push(segs[k].label); }
}
return out;
"""


def _ohif_segs(d: Any, base: str, study: str, want: int) -> int:
    """Open the study in OHIF and count the SEG display sets its study browser lists."""
    from selenium.webdriver.common.by import By

    d.get(f"{base}/viewer/lab?StudyInstanceUIDs={study}")
    xpath = "//*[normalize-space(text())='livers read task 1' or normalize-space(text())='livers read task 2' or normalize-space(text())='livers read task 3']"
    _wait(lambda: len(d.find_elements(By.XPATH, xpath)) >= want, 90)
    time.sleep(2)  # let every series arrive: the count must not grow past what this user may see
    return len(d.find_elements(By.XPATH, xpath))


def test_the_reading_loop_in_one_browser_session(project: Any, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from curata.server import create_app
    from curata.server.ohif import find_ohif

    ws, d = project, browser
    shots = (
        Path(os.environ["CURATA_SCREENSHOTS"]) / "reading"
        if os.environ.get("CURATA_SCREENSHOTS")
        else tmp_path
    )
    shots.mkdir(parents=True, exist_ok=True)
    tokens = on_platform(ws, "livers")
    ohif = find_ohif()
    with ServerThread(create_app(ws, ohif_dir=ohif)) as server:
        base = server.url
        # the curator assigns: readers from the project's members, balanced, skipping their own site
        _login(d, base, "dee")
        d.get(f"{base}/ui/p/lab/reading")
        d.find_element(By.LINK_TEXT, "livers").click()
        _click(d, "assign")
        assert "new task" in d.page_source
        tasks = annotate.list_tasks(ws, "livers")
        assert all(len(t.readers) == 2 for t in tasks)
        d.save_screenshot(str(shots / "curator-assign.png"))
        t = next(x for x in tasks if "chi" in x.readers)
        author = next(r for r in t.readers if r != "chi")  # an annotator; chi is the reviewer

        # two blinded reads, each saved through STOW-RS as its reader: filed on arrival
        missed = truth()
        missed[missed == 1] = 2  # the reviewer misses the lesion
        for reader, labels in ((author, truth()), ("chi", missed)):
            _stow(base, tokens[reader], annotate.seg_for(ws, "livers", t.id, labels, reader=reader))
        filed = {r.reader: r for r in annotate.visible_reads(ws, "livers", t.id, "dee")}
        assert set(filed) == {author, "chi"}
        segs = {r: _seg_series(base, tokens[r], t.study_uid) for r in (author, "chi", "dee")}
        assert len(segs["dee"]) == 2 and len(segs[author]) == len(segs["chi"]) == 1
        assert segs[author] != segs["chi"]  # each reader finds only their own SEG through QIDO
        (other,) = segs["chi"]
        wado = httpx.get(
            f"{base}/projects/lab/dicomweb/studies/{t.study_uid}/series/{other}/metadata",
            headers={"Authorization": f"Bearer {tokens[author]}"},
        )
        assert wado.status_code == 404  # ... and cannot fetch the other one by its UID either

        # the first reader: queue, task page (only their own read), start, report, submit
        _login(d, base, author)
        d.get(f"{base}/ui/p/lab/reading/livers/")
        queue = [e.get_attribute("id") for e in d.find_elements(By.CSS_SELECTOR, "#queue a")]
        assert queue == [f"task-{q.id}" for q in annotate.queue(ws, "livers", author)]
        assert f"task-{t.id}" in queue and "Outline the liver" in d.find_element(By.ID, "instructions").text
        d.save_screenshot(str(shots / "reader-queue.png"))
        d.find_element(By.ID, f"task-{t.id}").click()
        _wait(lambda: f"/tasks/{t.id}" in d.current_url)
        assert [e.text for e in d.find_elements(By.CSS_SELECTOR, "#reads td.reader")] == [author]
        assert "chi" not in d.find_element(By.ID, "reads").text
        assert t.study_uid in d.find_element(By.ID, "viewer").get_attribute("href")
        _click(d, "start")
        Select(d.find_element(By.NAME, "f-finding")).select_by_visible_text("lesion present")
        d.find_element(By.NAME, "f-impression").send_keys("One small lesion in the liver.")
        _click(d, "write-report")
        _wait(lambda: "saved" in d.page_source)
        d.save_screenshot(str(shots / "reader-task.png"))
        _click(d, "submit")
        assert f"task-{t.id}" not in [
            e.get_attribute("id") for e in d.find_elements(By.CSS_SELECTOR, "#queue a")
        ]

        if ohif is not None:  # OHIF lists the reader's own SEG in the study, never the other reader's
            assert _ohif_segs(d, base, t.study_uid, 1) == 1
            d.save_screenshot(str(shots / "reader-ohif.png"))

        # the reviewer submits and signs the first reader's report off (its DICOM SR is written)
        _login(d, base, "chi")
        d.get(f"{base}/ui/p/lab/reading/livers/tasks/{t.id}")
        assert [e.text for e in d.find_elements(By.CSS_SELECTOR, "#reads td.reader")] == ["chi"]
        _click(d, "submit")
        d.get(f"{base}/ui/p/lab/reading/livers/tasks/{t.id}")
        (report,) = annotate.reports_of(ws, "livers", t.id)
        _click(d, f"sign-{report['id']}")
        assert d.find_element(By.CSS_SELECTOR, f"#report-{report['id']} td.signed").text == "chi"
        d.get(f"{base}/ui/p/lab/reading/livers/reports/{report['id']}")
        assert "One small lesion in the liver." in d.page_source

        # the curator: agreement, the adjudication page (a missed lesion), the release
        _login(d, base, "dee")
        d.get(f"{base}/ui/p/lab/reading/livers/")
        _click(d, "agreement")
        assert "to adjudicate" in d.page_source
        d.get(f"{base}/ui/p/lab/reading/livers/adjudication")
        assert "lesion" in d.find_element(By.CSS_SELECTOR, f"#case-{t.id} .agreement").text
        d.save_screenshot(str(shots / "adjudication.png"))
        form = d.find_element(By.ID, f"decide-{t.id}")
        Select(form.find_element(By.NAME, "decision")).select_by_value("accept_read")
        Select(form.find_element(By.NAME, "read")).select_by_value(str(filed[author].id))
        before = d.current_url
        form.find_element(By.TAG_NAME, "button").click()
        _wait(lambda: d.current_url != before)
        assert not d.find_elements(By.ID, f"case-{t.id}")
        if ohif is not None:  # the curator's OHIF lists both reads of the study as SEG display sets
            assert _ohif_segs(d, base, t.study_uid, 2) == 2
            d.save_screenshot(str(shots / "curator-ohif.png"))
        d.get(f"{base}/ui/p/lab/reading/livers/")
        d.find_element(By.ID, "release-name").send_keys("livers-labels")
        d.find_element(By.ID, "release").click()
        _wait(lambda: "/releases/livers-labels@1" in d.current_url, 120)
        d.save_screenshot(str(shots / "release.png"))
    (acc,) = annotate.accepted_labels(ws, "livers")
    assert (
        acc["task"] == t.id and acc["decision"] == "accept_read" and acc["readers"] == sorted([author, "chi"])
    )
    labels, _card = annotate.release_labels(ws, "livers")
    assert set(labels) == {t.series_uid}  # only the accepted case carries a label
    from curata.publish import show_release

    card = Path(show_release(ws, "livers-labels@1").card).read_text()
    assert "livers" in card
    lm = np.load(io.BytesIO(ws.store.get_bytes(acc["labelmap_digest"])))["labels"]
    assert (lm == 1).sum() == (truth() == 1).sum()  # the complete read was accepted


def test_monai_label_draft_opens_in_ohif_for_a_reader_when_the_project_shows_drafts(
    project: Any, browser: Any, tmp_path: Path
) -> None:
    """A MONAI Label client call with a reader's own token (/info, then /infer) stores the draft SEG;
    the reader's task page lists it and OHIF lists it among the study's display sets."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from curata.server import create_app
    from curata.server.ohif import find_ohif
    from tests.annotate.test_assist import ORGANS

    ohif = _need("the OHIF viewer (.ohif/dist)", find_ohif())
    ws, d = project, browser
    shots = (
        Path(os.environ["CURATA_SCREENSHOTS"]) / "reading"
        if os.environ.get("CURATA_SCREENSHOTS")
        else tmp_path
    )
    shots.mkdir(parents=True, exist_ok=True)
    annotate.create_project(ws, "drafts", "ct", show_drafts=True)
    annotate.set_schema(ws, "drafts", ORGANS, "Correct the AI draft of the lungs.")
    for name in ("ana", "bo"):
        annotate.add_reader(ws, "drafts", name)
    annotate.create_tasks(ws, "drafts")
    annotate.assign(ws, "drafts")
    tokens = on_platform(ws, "drafts")
    t = annotate.list_tasks(ws, "drafts")[0]
    with ServerThread(create_app(ws, ohif_dir=ohif)) as server:
        base = server.url
        ml = httpx.Client(headers={"Authorization": f"Bearer {tokens['ana']}"}, timeout=120)
        info = ml.get(f"{base}/projects/lab/annotate/drafts/monailabel/info/").json()
        assert "lungs" in info["models"] and info["labels"] == {"lung": 1, "bone": 2}
        r = ml.post(
            f"{base}/projects/lab/annotate/drafts/monailabel/infer/lungs",
            params={"image": t.series_uid, "output": "dicom_seg"},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
        draft = pydicom.dcmread(io.BytesIO(r.content))
        assert draft.ContentLabel == "DRAFT"
        # WADO-RS metadata of the draft, as OHIF loads it, for the reader
        meta = ml.get(
            f"{base}/projects/lab/dicomweb/studies/{t.study_uid}/series/{draft.SeriesInstanceUID}/metadata"
        ).json()
        assert meta[0]["00080018"]["Value"] == [draft.SOPInstanceUID]
        _login(d, base, "ana")
        d.get(f"{base}/ui/p/lab/reading/drafts/tasks/{t.id}")
        assert "AI draft" in d.find_element(By.ID, "reads").text
        d.get(f"{base}/viewer/lab?StudyInstanceUIDs={t.study_uid}")
        label = f"drafts AI draft task {t.id}"
        item = _wait(lambda: d.find_elements(By.XPATH, f"//*[normalize-space(text())='{label}']"), 90)[0]
        d.save_screenshot(str(shots / "reader-ohif-draft-listed.png"))
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(d).double_click(item).perform()

        def loaded() -> bool:
            for yes in d.find_elements(By.XPATH, "//button[normalize-space(.)='Yes']"):
                if yes.is_displayed():
                    yes.click()
            return "lung" in (d.execute_script(_SEGMENT_LABELS_JS) or [])

        try:
            _wait(loaded, 60)  # the SEG's segment, by its label, in OHIF's segmentation panel
        finally:
            d.save_screenshot(str(shots / "reader-ohif-draft-opened.png"))
        time.sleep(2)
        d.save_screenshot(str(shots / "reader-ohif-draft.png"))

        # the reader saves the segmentation from OHIF itself (its "Store Segmentation": a SEG made by
        # dcmjs, sent by STOW-RS to the project's DICOMweb with the session cookie): it arrives filed
        # against the task as the reader's own read, a new object beside the draft
        d.execute_script(
            "const s = window.services.segmentationService.getSegmentations();"
            "window.commandsManager.runCommand('storeSegmentation',"
            " {segmentationId: s[0].segmentationId, modality: 'SEG'});"
        )

        def shown(by: str, what: str) -> list[Any]:
            return [e for e in d.find_elements(by, what) if e.is_displayed()]

        time.sleep(1)
        d.save_screenshot(str(shots / "reader-ohif-store-dialog.png"))
        # a new series of the reader's own, not a new version in the draft's series
        series = _wait(
            lambda: [e for e in shown(By.CSS_SELECTOR, "button[role=combobox]") if "draft" in e.text], 30
        )[0]
        series.click()
        _wait(lambda: shown(By.XPATH, "//*[@role='option'][normalize-space(.)='Create new series']"), 10)[
            0
        ].click()
        name = _wait(
            lambda: [e for e in shown(By.CSS_SELECTOR, "input[placeholder='Report name']") if e.is_enabled()],
            10,
        )[0]
        name.send_keys(Keys.CONTROL, "a")
        name.send_keys("lungs corrected by ana")
        _wait(lambda: shown(By.XPATH, "//button[normalize-space(.)='Save']"), 10)[0].click()

        def mine() -> list[Any]:
            return [r for r in annotate.visible_reads(ws, "drafts", t.id, "ana") if not r.is_draft]

        (read,) = _wait(mine, 60)
        d.save_screenshot(str(shots / "reader-ohif-saved.png"))
        assert read.reader == "ana" and read.kind == "seg" and read.source == "stow"
        assert "lung" in read.labels_present
        # blinded: bo, the other reader of the task, finds neither ana's read nor (as a reader) more
        assert [r.reader for r in annotate.visible_reads(ws, "drafts", t.id, "bo") if not r.is_draft] == []
        assert _seg_series(base, tokens["bo"], t.study_uid) == {draft.SeriesInstanceUID}
        assert len(_seg_series(base, tokens["ana"], t.study_uid)) == 2  # the draft and her own read

"""The reading pages in a real browser (Debian's chromium through Selenium, against uvicorn): a
reader's queue, a blinded reader who does not see the other read, the adjudication page deciding a case."""

from __future__ import annotations

import os
import shutil

import pytest

from curata import annotate
from tests.annotate.conftest import truth
from tests.server.conftest import ServerThread


@pytest.fixture
def browser(tmp_path):  # type: ignore[no-untyped-def]
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium / chromium-driver are not installed (scripts/system-deps.sh installs them)")
        pytest.skip("chromium / chromium-driver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(flag)
    b = webdriver.Chrome(service=Service(driver), options=opts)
    yield b
    b.quit()


@pytest.mark.integration
def test_queue_blinding_and_adjudication_in_the_browser(project, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from curata.server import create_app

    ws = project
    annotate.assign(ws, "livers")
    t = annotate.list_tasks(ws, "livers")[0]
    a, b = t.readers
    missed = truth()
    missed[missed == 1] = 2
    for reader, labels in ((a, truth()), (b, missed)):
        annotate.file_object(ws, annotate.seg_for(ws, "livers", t.id, labels, reader=reader))
        annotate.submit(ws, "livers", t.id, reader, seconds=20)
    annotate.compute_agreement(ws, "livers", t.id)
    from curata.server import service

    # the reading pages sit behind the platform's sign-in (a platform admin here, who may view the
    # pages as any reader with ?user=)
    service.create_user(ws, "lead", "a long lead password", platform_admin=True)
    with ServerThread(create_app(ws)) as server:
        browser.delete_all_cookies()
        browser.get(f"{server.url}/ui/login")
        browser.find_element(By.ID, "username").send_keys("lead")
        browser.find_element(By.ID, "password").send_keys("a long lead password")
        browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        WebDriverWait(browser, 30).until(lambda d: "/ui/login" not in d.current_url)
        base = f"{server.url}/annotate/livers/pages"
        browser.get(f"{base}/queue?user={a}")
        assert "Outline the liver" in browser.find_element(By.CLASS_NAME, "instructions").text
        shown = {e.get_attribute("id") for e in browser.find_elements(By.CSS_SELECTOR, "#queue a")}
        assert shown == {f"task-{q.id}" for q in annotate.queue(ws, "livers", a)}
        assert f"task-{t.id}" not in shown  # the submitted case has left a's queue
        browser.get(f"{base}/queue?user=chi")
        waiting = {e.get_attribute("id") for e in browser.find_elements(By.CSS_SELECTOR, "#queue a")}
        assert waiting and waiting == {f"task-{q.id}" for q in annotate.queue(ws, "livers", "chi")}
        browser.get(f"{base}/tasks/{t.id}?user={a}")
        readers = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#reads td.reader")]
        assert readers == [a]  # blinded: b's read is not on a's page
        assert t.study_uid in browser.find_element(By.ID, "viewer").get_attribute("href")
        browser.get(f"{base}/tasks/{t.id}?user=dee")
        assert sorted(e.text for e in browser.find_elements(By.CSS_SELECTOR, "#reads td.reader")) == sorted(
            [a, b]
        )
        browser.get(f"{base}/adjudication?user=dee")
        assert "lesion" in browser.find_element(By.CLASS_NAME, "agreement").text
        form = browser.find_element(By.ID, f"decide-{t.id}")
        Select(form.find_element(By.NAME, "decision")).select_by_value("accept_read")
        Select(form.find_element(By.NAME, "read")).select_by_visible_text(f"{a} v1")
        form.find_element(By.TAG_NAME, "button").click()
        # back on the adjudication page (after the POST's redirect): no case left to decide
        WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "none")))
        browser.get(f"{base}/tasks/{t.id}?user={a}")
        assert browser.find_element(By.ID, "state").text == "accepted"
        assert (
            len(browser.find_elements(By.CSS_SELECTOR, "#reads td.reader")) == 2
        )  # decided: no longer blind
    (acc,) = annotate.accepted_labels(ws, "livers")
    assert acc["decision"] == "accept_read" and acc["readers"] == sorted([a, b])

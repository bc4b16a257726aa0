"""Screenshots of the platform's main pages on a demo workspace, for docs/screenshots/.

    .venv/bin/python bench/screenshots.py [--demo .demo] [--out docs/screenshots]

Serves the demo workspace (with the OHIF viewer when installed), signs in as the demo account of each
role (passwords from the demo's accounts.txt) in Debian's chromium through chromium-driver, and saves
one PNG per page.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from sqlalchemy import select

from _common import console, free_port
from curata.server.app import create_app
from curata.server.ohif import find_ohif
from curata.workspace import Workspace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--demo", type=Path, default=Path(".demo"))
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = ap.parse_args()
    ws = Workspace.open(args.demo / "workspace")
    accounts = {
        line.split("\t")[0]: line.split("\t")[2]
        for line in (args.demo / "accounts.txt").read_text().splitlines()[1:]
    }
    from curata.catalog import Series, Study

    with ws.catalog.session() as s:
        study, series = s.execute(
            select(Study.study_uid, Series.series_uid)
            .join(Series, Series.study_id == Study.id)
            .where(Series.modality == "CT")
            .order_by(Series.instance_count.desc())
            .limit(1)
        ).one()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(ws, ohif_dir=find_ohif()), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    args.out.mkdir(parents=True, exist_ok=True)

    def login(user: str) -> None:
        d.delete_all_cookies()
        d.get(f"{base}/ui/login")
        d.find_element(By.ID, "username").send_keys(user)
        d.find_element(By.ID, "password").send_keys(accounts[user])
        d.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        time.sleep(0.5)

    def shot(name: str, path: str, wait: float = 1.0) -> None:
        d.get(base + path)
        time.sleep(wait)
        d.save_screenshot(str(args.out / f"{name}.png"))
        console.print(f"{name}: {path}")

    try:
        d.get(f"{base}/ui/login")
        d.save_screenshot(str(args.out / "login.png"))
        login("demo-curator")
        shot("catalog", "/ui/p/demo/catalog?modality=CT", 2)
        shot("qc-review", "/ui/p/demo/qc", 3)
        shot("cohorts", "/ui/p/demo/cohorts?where=modality+%3D+CT+and+qc.passed")
        shot("cohort-error", "/ui/p/demo/cohorts?where=modalty+%3D+CT+and+qc.passed")
        shot("preprocessing", "/ui/p/demo/runs")
        shot("ledger", "/ui/p/demo/ledger")
        shot("ledger-proof", "/ui/p/demo/ledger/1")
        if find_ohif():
            shot("viewer", f"/viewer/demo?StudyInstanceUIDs={study}&SeriesInstanceUIDs={series}", 20)
        login("demo-licensee")
        shot("releases-licensee", "/ui/p/demo/releases")
        shot("release", "/ui/p/demo/releases/demo-chest-ct@1")
        login("demo-site")
        shot("revenue", f"/ui/p/demo/revenue?period={time.gmtime().tm_year}")
    finally:
        d.quit()
        server.should_exit = True


if __name__ == "__main__":
    main()

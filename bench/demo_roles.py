"""Sign in as every demo account on a running demo platform and open that role's landing pages.

The README's path ends with ``curata demo --serve`` (or ``--serve-only`` on a finished demo); this
starts exactly that command as a separate process on a free port, then, in Debian's chromium through
chromium-driver, signs in through the form as each account of the demo's ``accounts.txt`` and opens
the pages that role works on, checking each loads (the page's own heading, no error page, no
sign-in form again). Prints one row per role and page; exit status 1 when any fails.

    .venv/bin/python bench/demo_roles.py --demo /work/fulldemo-out
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from _common import console, free_port, write_json

# the pages each role starts from (its nav items), and the heading text each must show
LANDING: dict[str, list[tuple[str, str]]] = {
    "demo-admin": [("/ui/", "Projects"), ("/ui/p/demo/", "demo"), ("/ui/p/demo/ledger", "Ledger")],
    "demo-curator": [
        ("/ui/p/demo/catalog", "Catalog"),
        ("/ui/p/demo/qc", "QC review"),
        ("/ui/p/demo/cohorts", "Cohorts"),
        ("/ui/p/demo/runs", "Pre-processing"),
        ("/ui/p/demo/releases", "Releases"),
    ],
    "demo-annotator": [("/ui/p/demo/", "demo"), ("/ui/p/demo/catalog", "Catalog")],
    "demo-reviewer": [("/ui/p/demo/qc", "QC review"), ("/ui/p/demo/releases", "Releases")],
    "demo-site": [("/ui/p/demo/catalog", "Catalog"), ("/ui/p/demo/revenue", "Revenue")],
    "demo-licensee": [("/ui/p/demo/releases", "Releases")],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=Path(".demo"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo_roles.json")
    args = ap.parse_args()
    accounts = {
        line.split("\t")[0]: line.split("\t")[2]
        for line in (args.demo / "accounts.txt").read_text().splitlines()[1:]
        if line.strip()
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    curata = Path(sys.executable).with_name("curata")
    proc = subprocess.Popen(
        [str(curata), "demo", "--serve-only", "--out", str(args.demo), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    rows: list[dict[str, object]] = []
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit(f"curata demo --serve-only exited: {proc.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.2)
        viewer = httpx.get(f"{base}/", timeout=10)  # signed out: the viewer sends you to sign in
        rows.append(
            {
                "role": "-",
                "page": "/ signed out",
                "ok": viewer.status_code == 303
                and viewer.headers.get("location", "").startswith("/ui/login"),
            }
        )
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
            opts.add_argument(flag)
        d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            for user, pages in LANDING.items():
                d.delete_all_cookies()
                d.get(f"{base}/ui/login")
                d.find_element(By.ID, "username").send_keys(user)
                d.find_element(By.ID, "password").send_keys(accounts[user])
                d.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
                time.sleep(0.5)
                signed_in = "/ui/login" not in d.current_url and not d.find_elements(By.ID, "password")
                rows.append(
                    {"role": user, "page": "sign in", "ok": signed_in, "at": d.current_url.replace(base, "")}
                )
                for path, heading in pages:
                    d.get(base + path)
                    h1 = " ".join(e.text for e in d.find_elements(By.TAG_NAME, "h1"))
                    ok = (
                        heading.lower() in (h1 + " " + d.title).lower()
                        and not d.find_elements(By.ID, "password")
                        and "Internal Server Error" not in d.page_source
                    )
                    rows.append({"role": user, "page": path, "ok": ok, "h1": h1[:60], "title": d.title[:60]})
                d.get(base + "/")  # the OHIF viewer at the site root, with this user's studies
                time.sleep(3)
                ok = (
                    "OHIF" in d.title
                    and bool(d.find_elements(By.ID, "root"))
                    and "/ui/login" not in d.current_url
                )
                rows.append({"role": user, "page": "/ (OHIF viewer)", "ok": ok, "h1": d.title[:60]})
        finally:
            d.quit()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for r in rows:
        mark = "[green]ok[/]" if r["ok"] else "[red]FAIL[/]"
        console.print(f"{r['role']:16s} {r['page']:28s} {mark}  {r.get('h1', r.get('at', ''))}")
    write_json(args.out, {"demo": str(args.demo), "rows": rows})
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Every stage page renders for the roles that may see it, from the stage services' data."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from curata.server.app import create_app


def test_pages_show_the_stages_data(stocked: Any) -> None:
    p = stocked
    with TestClient(create_app(p.ws), follow_redirects=False) as c:
        cur = p.auth("cur")
        r = c.get("/ui/p/alpha/catalog", headers=cur)
        assert r.status_code == 200 and p.series["site-a"] in r.text and p.series["site-b"] not in r.text
        assert c.get("/ui/p/alpha/catalog?site=site-b", headers=cur).text.count("Open in viewer") == 0
        assert "No series match" in c.get("/ui/p/alpha/catalog?qc=unmeasured", headers=cur).text
        r = c.get("/ui/p/alpha/qc", headers=cur)
        assert r.status_code == 200 and re.search(r"\d+ passed", r.text)
        r = c.get("/ui/p/alpha/cohorts", headers=cur, params={"where": "modalty = CT"})
        assert "unknown field &#39;modalty&#39;" in r.text and "    ^" in r.text  # the CLI's caret
        r = c.get("/ui/p/alpha/cohorts", headers=cur, params={"where": "modality = CT"})
        assert re.search(r"<strong>1</strong> series of <strong>1</strong> patients", r.text)
        assert "site-a 1" in r.text and "site-b" not in r.text  # the plots count only the project's data
        assert "ct-a" in r.text
        assert c.get("/ui/p/alpha/runs", headers=cur).status_code == 200
        r = c.get("/ui/p/alpha/releases", headers=cur)
        assert p.release in r.text
        r = c.get(f"/ui/p/alpha/releases/{p.release}", headers=cur)
        assert r.status_code == 200 and "Dataset card" in r.text and 'id="download"' not in r.text
        assert c.get(f"/ui/p/alpha/releases/{p.release}/card", headers=cur).status_code == 200
        r = c.get("/ui/p/alpha/ledger", headers=cur)
        assert "inclusion proof" in r.text and "none yet" in r.text
        entry = int(re.search(r"/ledger/(\d+)\">inclusion proof", r.text).group(1))  # type: ignore[union-attr]
        r = c.get(f"/ui/p/alpha/ledger/{entry}", headers=cur)
        assert "Inclusion proof verified" in r.text or "no checkpoint" in r.text.lower()
        r = c.get("/ui/p/alpha/revenue?period=2026-Q4", headers=p.auth("hos"))
        assert "1000.00 EUR" in r.text and "Site totals add up" in r.text
        # the licensee sees its licensed release only, and may download it
        lic = p.auth("lic")
        assert c.get("/ui/p/alpha/catalog", headers=lic).status_code == 403
        r = c.get(f"/ui/p/alpha/releases/{p.release}", headers=lic)
        assert 'id="download"' in r.text
        assert c.get("/ui/p/alpha/releases/other@1", headers=lic).status_code == 404


def test_curator_override_is_a_decision_with_its_author(stocked: Any) -> None:
    from curata.catalog import Provenance
    from curata.select import explain
    from curata.server import service

    p = stocked
    uid = p.series["site-a"]
    with TestClient(create_app(p.ws), follow_redirects=False) as c:
        h = p.auth("cur")
        r = c.post(
            "/ui/p/alpha/qc/override",
            headers=h,
            data={"series_uid": uid, "decision": "exclude", "reason": "motion"},
        )
        assert r.status_code == 303
        assert explain(p.ws, uid).verdict.passed is False
        r = c.get("/ui/p/alpha/qc", headers=h)
        assert "Override by <strong>cur</strong>" in r.text and "motion" in r.text
        other = p.series["site-b"]
        r = c.post(
            "/ui/p/alpha/qc/override",
            headers=h,
            data={"series_uid": other, "decision": "exclude", "reason": "x"},
        )
        assert r.status_code == 404  # another project's series
        r = c.post(
            "/ui/p/alpha/qc/override",
            headers=p.auth("rev"),
            data={"series_uid": uid, "decision": "include", "reason": "x"},
        )
        assert r.status_code == 403  # a reviewer reads the review, a curator decides
    with p.ws.catalog.session() as s:
        prov = s.query(Provenance).filter_by(step="qc.override").one()
        assert prov.output["author"] == "cur" and prov.output["passed"] is False
    from curata.select import run_qc

    run_qc(p.ws, workers=1)  # deciding again keeps the curator's decision for this content
    assert explain(p.ws, uid).verdict.passed is False
    assert any(e.action == "qc-override" and e.username == "cur" for e in service.audit_events(p.ws))


def test_cohort_from_the_page_is_bounded_to_the_project(stocked: Any) -> None:
    from curata.select import show_cohort
    from curata.server import service

    p = stocked
    with TestClient(create_app(p.ws), follow_redirects=False) as c:
        r = c.post(
            "/ui/p/alpha/cohorts", headers=p.auth("cur"), data={"name": "all-ct", "where": "modality = CT"}
        )
        assert r.status_code == 303
    cohort = show_cohort(p.ws, "all-ct")
    assert [s.site for s in cohort.series] == ["site-a"]
    assert "all-ct" in service.get_project(p.ws, "alpha").cohorts

"""A project's ledger page shows that project's entries only: another project's series views (their
UIDs) are not listed, and their inclusion proofs answer 404, as another project's UID does."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def test_a_projects_ledger_shows_only_its_own_entries(platform: Any) -> None:
    from curata.ledger import Ledger
    from curata.server import create_app, service

    ws = platform.ws
    alpha_uid, beta_uid = platform.series["site-a"], platform.series["site-b"]
    seen_a = service.record(ws, "view-series", username="cur", target=alpha_uid, project="alpha")
    seen_b = service.record(ws, "view-series", username="outsider", target=beta_uid, project="beta")
    Ledger.open(ws).checkpoint()
    with TestClient(create_app(ws), follow_redirects=False) as client:
        beta = client.get("/ui/p/beta/ledger", headers=platform.auth("outsider"))
        assert beta.status_code == 200
        assert beta_uid in beta.text and alpha_uid not in beta.text
        other = client.get(f"/ui/p/beta/ledger/{seen_a.ledger_index}", headers=platform.auth("outsider"))
        assert other.status_code == 404 and alpha_uid not in other.text
        own = client.get(f"/ui/p/beta/ledger/{seen_b.ledger_index}", headers=platform.auth("outsider"))
        assert own.status_code == 200 and beta_uid in own.text
        alpha = client.get("/ui/p/alpha/ledger", headers=platform.auth("cur"))
        assert alpha_uid in alpha.text and beta_uid not in alpha.text

"""The platform's tables and queries on PostgreSQL (the migration, scope subqueries, rate limiting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from curata.server import service
from curata.server.app import create_app


@pytest.mark.postgres
def test_accounts_and_scopes_on_postgresql(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ct_series: Any
) -> None:
    from curata.collect.ingest import Ingestor
    from curata.workspace import Workspace

    monkeypatch.setenv("CURATA_DATABASE_URL", pg_url)
    ws = Workspace.init(tmp_path / "ws", site="s")
    assert ws.catalog.dialect == "postgresql"
    Ingestor(ws, deidentify=False, site="s", workers=1).ingest_paths([ct_series(2, deidentified=True)])
    service.create_project(ws, "p1")
    service.add_resource(ws, "p1", "site", "s")
    service.add_resource(ws, "p1", "release", "r")
    for user, role in (("cur", "curator"), ("lic", "licensee")):
        service.create_user(ws, user, "a long password!")
        service.set_role(ws, user, "p1", role)
    service.grant_licence(ws, "lic", "p1", "r@1")
    with TestClient(create_app(ws)) as c:
        cur = {"Authorization": f"Bearer {service.create_token(ws, 'cur').token}"}
        lic = {"Authorization": f"Bearer {service.create_token(ws, 'lic').token}"}
        assert len(c.get("/projects/p1/dicomweb/studies", headers=cur).json()) == 1
        assert c.get("/projects/p1/dicomweb/studies", headers=lic).json() == []  # r@1 holds no series
        assert c.get("/ui/p/p1/catalog", headers=cur).status_code == 200
    for _ in range(service.LOGIN_FAILURES_ALLOWED):
        with pytest.raises(service.AuthError):
            service.authenticate(ws, "cur", "wrong", client="10.0.0.1")
    with pytest.raises(service.RateLimited):
        service.authenticate(ws, "cur", "a long password!", client="10.0.0.1")
    ws.catalog.dispose()

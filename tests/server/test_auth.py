"""Accounts and security: argon2 hashes, sessions (cookie flags, fixation), CSRF, rate limiting,
API tokens, IDOR across projects, path traversal, security headers, and the audit trail in the log."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from curata.server import service
from curata.server.app import create_app
from tests.server.conftest import PASSWORD


def _login_page(client: Any) -> str:
    r = client.get("/ui/login")
    assert r.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]


def _login(client: Any, user: str, password: str = PASSWORD) -> Any:
    token = _login_page(client)
    return client.post(
        "/ui/login", data={"username": user, "password": password, "csrf_token": token, "next": "/ui/"}
    )


def _csrf(client: Any) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/ui/").text).group(1)  # type: ignore[union-attr]


def test_passwords_are_argon2_and_checked(workspace: Any) -> None:
    service.create_user(workspace, "alice", "a long enough password")
    with workspace.catalog.session() as s:
        from curata.server.models import User

        stored = s.query(User).filter_by(username="alice").one().password_hash
    assert stored.startswith("$argon2id$") and "a long enough password" not in stored
    assert service.authenticate(workspace, "alice", "a long enough password").username == "alice"
    with pytest.raises(service.AuthError):
        service.authenticate(workspace, "alice", "a long enough passworD")
    with pytest.raises(service.AccountError, match="at least"):
        service.create_user(workspace, "bob", "short")
    with pytest.raises(service.AccountError, match="not allowed"):
        service.create_user(workspace, "../etc", "a long enough password")


def test_login_failures_are_rate_limited(platform: Any) -> None:
    ws = platform.ws
    for _ in range(service.LOGIN_FAILURES_ALLOWED):
        with pytest.raises(service.AuthError) as exc:
            service.authenticate(ws, "cur", "wrong password!", client="10.0.0.9")
        assert exc.value.status == 401
    with pytest.raises(service.RateLimited) as limited:  # even the right password is refused now
        service.authenticate(ws, "cur", PASSWORD, client="10.0.0.9")
    assert limited.value.status == 429 and limited.value.retry_after > 0
    service.set_password(ws, "cur", "a brand new password")  # an admin reset lifts it
    assert service.authenticate(ws, "cur", "a brand new password").username == "cur"


def _sid(response: Any) -> str:
    return re.search(r"curata_session=([^;]+)", response.headers["set-cookie"]).group(1)  # type: ignore[union-attr]


def test_login_page_sets_a_fresh_httponly_samesite_session(platform: Any) -> None:
    app = create_app(platform.ws)
    with TestClient(app, follow_redirects=False) as client:
        token = _login_page(client)
        r = client.post(  # session fixation attempt: the browser arrives with an id chosen by someone else
            "/ui/login",
            data={"username": "cur", "password": PASSWORD, "csrf_token": token},
            headers={"Cookie": f"curata_login_csrf={token}; curata_session=attacker-chosen-id"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/ui/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
        sid = _sid(r)
        assert sid != "attacker-chosen-id" and len(sid) >= 40
    with TestClient(app) as fresh:
        assert fresh.get("/api/me", headers={"Cookie": f"curata_session={sid}"}).json()["username"] == "cur"
        assert (
            fresh.get("/api/me", headers={"Cookie": "curata_session=attacker-chosen-id"}).status_code == 401
        )
    with TestClient(app, follow_redirects=False) as client:  # logging in again: a new id, the old one dies
        client.cookies.set("curata_session", sid)
        again = _sid(_login(client, "cur"))
        assert again != sid
    with TestClient(app) as fresh:
        assert fresh.get("/api/me", headers={"Cookie": f"curata_session={sid}"}).status_code == 401
        assert fresh.get("/api/me", headers={"Cookie": f"curata_session={again}"}).status_code == 200


def test_login_wrong_password_and_login_csrf(platform: Any) -> None:
    with TestClient(create_app(platform.ws), follow_redirects=False) as client:
        r = _login(client, "cur", "not the password")
        assert r.status_code == 401 and "wrong username or password" in r.text
        assert "curata_session" not in client.cookies
        client.get("/ui/login")
        r = client.post("/ui/login", data={"username": "cur", "password": PASSWORD, "csrf_token": "forged"})
        assert r.status_code == 403


def test_session_cookie_is_secure_under_tls(platform: Any, serve: Any, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server = serve(create_app(platform.ws, tls=True), certfile=cert, keyfile=key)
    with httpx.Client(base_url=server.url, verify=str(cert), follow_redirects=False) as client:
        r = client.get("/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]
        r = client.post("/ui/login", data={"username": "cur", "password": PASSWORD, "csrf_token": token})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-curata_session=")
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert client.get("/api/me").json()["username"] == "cur"


def test_csrf_is_required_for_session_changes_but_not_for_tokens(platform: Any) -> None:
    with TestClient(create_app(platform.ws), follow_redirects=False) as client:
        _login(client, "adm")
        body = {"username": "outsider", "role": "reviewer"}
        assert client.post("/api/projects/alpha/members", json=body).status_code == 403
        assert client.post("/ui/logout", data={"csrf_token": "forged"}).status_code == 403
        csrf = _csrf(client)
        r = client.post("/api/projects/alpha/members", json=body, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json()["roles"] == ["reviewer"]
        assert client.post("/ui/logout", data={"csrf_token": csrf}).status_code == 303
        assert client.get("/api/me").status_code == 401  # signed out: the session is gone
    with TestClient(create_app(platform.ws)) as client:  # a token carries no cookie: no CSRF needed
        r = client.post(
            "/api/projects/alpha/members",
            json={"username": "outsider", "role": "annotator"},
            headers=platform.auth("adm"),
        )
        assert r.status_code == 200


def test_api_tokens_revoke_and_disable(platform: Any) -> None:
    with TestClient(create_app(platform.ws)) as client:
        assert client.get("/api/me", headers=platform.auth("ann")).json()["username"] == "ann"
        assert client.get("/api/me", headers={"Authorization": "Bearer cur_not-a-token"}).status_code == 401
        service.revoke_tokens(platform.ws, "ann")
        assert client.get("/api/me", headers=platform.auth("ann")).status_code == 401
        service.set_active(platform.ws, "rev", False)
        assert client.get("/api/me", headers=platform.auth("rev")).status_code == 401


def test_idor_another_projects_uids_are_not_found(platform: Any) -> None:
    other_study, other_series = platform.studies["site-b"], platform.series["site-b"]
    mine = platform.studies["site-a"]
    with TestClient(create_app(platform.ws)) as client:
        h = platform.auth("cur")
        qido = client.get("/projects/alpha/dicomweb/studies", headers=h).json()
        assert [s["0020000D"]["Value"][0] for s in qido] == [mine]
        assert (
            client.get(f"/projects/alpha/dicomweb/studies/{other_study}/metadata", headers=h).status_code
            == 404
        )
        assert client.get(f"/projects/alpha/dicomweb/studies/{other_study}", headers=h).status_code == 404
        url = f"/projects/alpha/dicomweb/studies/{other_study}/series/{other_series}/thumbnail"
        assert client.get(url, headers=h).status_code == 404
        assert (
            client.get(f"/projects/alpha/dicomweb/series?SeriesInstanceUID={other_series}", headers=h).json()
            == []
        )
        # the other project itself: 404, the same as a project that does not exist
        r = client.get(f"/projects/beta/dicomweb/studies/{other_study}/metadata", headers=h)
        assert r.status_code == 404
        assert client.get("/projects/nope/dicomweb/studies", headers=h).status_code == 404
        # and the member of beta reads beta, not alpha
        hb = platform.auth("outsider")
        assert (
            client.get(f"/projects/beta/dicomweb/studies/{other_study}/metadata", headers=hb).status_code
            == 200
        )
        assert client.get(f"/projects/alpha/dicomweb/studies/{mine}/metadata", headers=hb).status_code == 404
        # a licensee with no licence sees nothing, even in its own project
        assert client.get("/projects/alpha/dicomweb/studies", headers=platform.auth("lic")).json() == []


def test_path_traversal_is_refused(platform: Any, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<title>viewer</title>")
    (tmp_path / "secret.txt").write_text("outside the build")
    with TestClient(create_app(platform.ws, ohif_dir=dist)) as client:
        for path in (
            "/ui/static/..%2F..%2Fservice.py",
            "/ui/static/%2e%2e%2fservice.py",
            "/..%2Fsecret.txt",
            "/%2e%2e/secret.txt",
            "/assets/..%2F..%2Fsecret.txt",
        ):
            r = client.get(path, headers=platform.auth("cur"))
            assert "outside the build" not in r.text and "def " not in r.text, path
            assert r.status_code in (404, 200), path
            if r.status_code == 200:  # the viewer's own index for its routes, nothing else
                assert "<title>viewer</title>" in r.text
        assert client.get("/ui/static/curata.css").status_code == 200


def test_security_headers(platform: Any) -> None:
    with TestClient(create_app(platform.ws), follow_redirects=False) as client:
        r = client.get("/ui/login")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-eval" not in csp
        assert r.headers["cache-control"] == "no-store"


def test_plain_http_on_a_public_address_is_refused() -> None:
    from curata.errors import ConfigError
    from curata.server.cli import check_bind

    assert check_bind("127.0.0.1", False, False) is None
    assert check_bind("::1", False, False) is None
    assert check_bind("0.0.0.0", True, False) is None  # TLS
    with pytest.raises(ConfigError, match="plain HTTP"):
        check_bind("0.0.0.0", False, False)
    assert "PLAIN HTTP" in (check_bind("10.1.2.3", False, True) or "")


def test_logins_views_and_changes_are_in_the_log_without_names(platform: Any) -> None:
    from curata.ledger import Ledger

    with TestClient(create_app(platform.ws), follow_redirects=False) as client:
        _login(client, "cur")
        _login(client, "ann", "wrong password!")
        study, series = platform.studies["site-a"], platform.series["site-a"]
        r = client.get(f"/projects/alpha/dicomweb/studies/{study}/series/{series}/metadata")
        assert r.status_code == 200
    events = service.audit_events(platform.ws)
    actions = [(e.action, e.username) for e in events]
    assert (
        ("login", "cur") in actions
        and ("login-failed", "ann") in actions
        and ("view-series", "cur") in actions
    )
    ledger = Ledger.open(platform.ws)
    entries = [e for e in ledger.entries("access")]
    assert {e.payload["action"] for e in entries} >= {"login", "login-failed", "view-series"}
    assert all(e.index is not None for e in entries)
    raw = b"".join(ledger.entry_bytes(0))
    assert b'"cur"' not in raw and b"ann" not in raw  # users are commitments, not names
    view = next(e for e in entries if e.payload["action"] == "view-series")
    assert view.payload["target"] == f"{study}/{series}" and view.payload["user"].startswith("hmac-sha256:")
    assert ledger.verify().ok

"""The accounts API (``/api``): sessions, the caller, projects, members, resources, licences, tokens,
users and the audit trail. Thin: every route calls :mod:`curata.server.service`."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from curata.server import service
from curata.server.auth import (
    Access,
    client_address,
    end_session,
    login_required,
    platform_admin_required,
    require,
    start_session,
)
from curata.server.models import Role
from curata.server.service import Principal

router = APIRouter(prefix="/api", tags=["accounts"])


class Credentials(BaseModel):
    username: str
    password: str


class NewProject(BaseModel):
    name: str
    title: str = ""
    description: str = ""


class NewUser(BaseModel):
    username: str
    password: str
    display_name: str = ""
    platform_admin: bool = False


class RoleChange(BaseModel):
    username: str
    role: str
    remove: bool = False


class ResourceIn(BaseModel):
    kind: str
    name: str
    remove: bool = False


class LicenceIn(BaseModel):
    username: str
    release: str  # NAME@V
    expires: date | None = None  # the last day the grant serves (none: no end)
    revoke: bool = False  # end the grant now instead


class TokenIn(BaseModel):
    name: str = "api"
    days: int | None = None


def _check_password(request: Request, username: str, password: str) -> service.UserRecord:
    """The password checked (rate-limited); a failure is recorded, with the client, and re-raised."""
    ws = request.app.state.ws
    try:
        return service.authenticate(ws, username, password, client=client_address(request))
    except service.AuthError:
        service.record(
            ws,
            "login-failed",
            username=username[:64],
            ledger=request.app.state.ledger,
            detail={"client": client_address(request)},
        )
        raise


def login(request: Request, response: Response, username: str, password: str) -> service.UserRecord:
    """Check the password (rate-limited), mint a fresh session, record the login. Shared with the page."""
    user = _check_password(request, username, password)
    start_session(request, response, user.id)
    service.record(request.app.state.ws, "login", username=user.username, ledger=request.app.state.ledger)
    return user


def token_login(
    request: Request, username: str, password: str, *, name: str, days: int = 1
) -> service.NewToken:
    """Check the password (rate-limited, recorded as a login) and mint a short-lived API token: for
    clients that sign in with a password rather than a browser session (MONAI Label's /auth/token)."""
    ws = request.app.state.ws
    user = _check_password(request, username, password)
    token = service.create_token(ws, user.username, name, days=days)
    service.record(ws, "login", username=user.username, ledger=request.app.state.ledger, detail={"via": name})
    return token


@router.post("/session")
def open_session(body: Credentials, request: Request, response: Response) -> dict[str, Any]:
    user = login(request, response, body.username, body.password)
    return {"username": user.username, "roles": user.roles}


@router.delete("/session")
def close_session(
    request: Request, response: Response, who: Principal = Depends(login_required)
) -> dict[str, str]:
    end_session(request, response)
    service.record(request.app.state.ws, "logout", principal=who, ledger=request.app.state.ledger)
    return {"status": "signed out"}


@router.get("/me")
def me(request: Request, who: Principal = Depends(login_required)) -> dict[str, Any]:
    user = service.get_user(request.app.state.ws, who.username)
    return {"username": user.username, "platform_admin": user.platform_admin, "roles": user.roles}


@router.post("/tokens")
def new_token(body: TokenIn, request: Request, who: Principal = Depends(login_required)) -> dict[str, Any]:
    tok = service.create_token(request.app.state.ws, who.username, body.name, days=body.days)
    service.record(
        request.app.state.ws,
        "token-created",
        principal=who,
        target=body.name,
        ledger=request.app.state.ledger,
    )
    return {"token": tok.token, "name": tok.name}


@router.get("/projects")
def projects(request: Request, who: Principal = Depends(login_required)) -> list[dict[str, Any]]:
    return [
        {"name": p.name, "title": p.title} for p in service.list_projects(request.app.state.ws, for_user=who)
    ]


@router.post("/projects")
def create_project(
    body: NewProject, request: Request, who: Principal = Depends(platform_admin_required)
) -> dict[str, str]:
    p = service.create_project(
        request.app.state.ws, body.name, title=body.title, description=body.description
    )
    service.record(
        request.app.state.ws,
        "project-created",
        principal=who,
        target=p.name,
        project=p.name,
        ledger=request.app.state.ledger,
    )
    return {"name": p.name}


@router.get("/projects/{project}")
def project(access: Access = Depends(require())) -> dict[str, Any]:
    p = access.project
    assert p is not None
    out: dict[str, Any] = {"name": p.name, "title": p.title, "roles": sorted(access.roles)}
    if access.has(Role.curator):
        out.update(sites=p.sites, cohorts=p.cohorts, releases=p.releases, members=p.members)
    return out


@router.post("/projects/{project}/members")
def set_member_role(
    body: RoleChange, request: Request, access: Access = Depends(require(Role.admin))
) -> dict[str, Any]:
    assert access.project is not None
    user = service.set_role(
        request.app.state.ws, body.username, access.project.name, body.role, remove=body.remove
    )
    service.record(
        request.app.state.ws,
        "role-removed" if body.remove else "role-granted",
        principal=access.principal,
        target=f"{body.username}:{body.role}",
        project=access.project.name,
        ledger=request.app.state.ledger,
    )
    return {"username": user.username, "roles": user.roles.get(access.project.name, [])}


@router.post("/projects/{project}/resources")
def add_resource(
    body: ResourceIn, request: Request, access: Access = Depends(require(Role.admin))
) -> dict[str, Any]:
    assert access.project is not None
    ws = request.app.state.ws
    if body.remove:  # narrowing is the project admin's own business
        p = service.remove_resource(ws, access.project.name, body.kind, body.name)
    else:  # widening: only by what the caller already reaches outside this project (else 403)
        p = service.add_resource(ws, access.project.name, body.kind, body.name, by=access.principal)
    service.record(
        ws,
        "resource-removed" if body.remove else "resource-added",
        principal=access.principal,
        target=f"{body.kind}:{body.name}",
        project=p.name,
        ledger=request.app.state.ledger,
    )
    return {"sites": p.sites, "cohorts": p.cohorts, "releases": p.releases}


@router.post("/projects/{project}/licences")
def grant_licence(
    body: LicenceIn, request: Request, access: Access = Depends(require(Role.admin))
) -> dict[str, str | None]:
    """Grant a release version to a licensee (until ``expires``, inclusive), or with ``revoke`` end it."""
    assert access.project is not None
    ws = request.app.state.ws
    if body.revoke:
        g = service.revoke_licence(ws, body.username, access.project.name, body.release)
    else:
        g = service.grant_licence(
            ws,
            body.username,
            access.project.name,
            body.release,
            by=access.principal.username,
            expires_at=service.end_of_day(body.expires) if body.expires else None,
        )
    service.record(
        ws,
        "licence-revoked" if body.revoke else "licence-granted",
        principal=access.principal,
        target=f"{body.username}:{g.label}",
        project=access.project.name,
        detail={"expires": body.expires.isoformat()} if body.expires and not body.revoke else None,
        ledger=request.app.state.ledger,
    )
    return {
        "release": g.label,
        "username": body.username,
        "expires_at": g.expires_at.isoformat() if g.expires_at else None,
        "revoked_at": g.revoked_at.isoformat() if g.revoked_at else None,
    }


@router.get("/users")
def users(request: Request, _who: Principal = Depends(platform_admin_required)) -> list[dict[str, Any]]:
    return [
        {"username": u.username, "platform_admin": u.platform_admin, "active": u.active, "roles": u.roles}
        for u in service.list_users(request.app.state.ws)
    ]


@router.post("/users")
def create_user(
    body: NewUser, request: Request, who: Principal = Depends(platform_admin_required)
) -> dict[str, str]:
    u = service.create_user(
        request.app.state.ws,
        body.username,
        body.password,
        display_name=body.display_name,
        platform_admin=body.platform_admin,
    )
    service.record(
        request.app.state.ws,
        "user-created",
        principal=who,
        target=u.username,
        ledger=request.app.state.ledger,
    )
    return {"username": u.username}


@router.get("/audit")
def audit(
    request: Request, _who: Principal = Depends(platform_admin_required), limit: int = 200
) -> list[dict[str, Any]]:
    return [
        {
            "at": e.at.isoformat(),
            "user": e.username,
            "action": e.action,
            "target": e.target,
            "project": e.project,
            "ledger_index": e.ledger_index,
        }
        for e in service.audit_events(request.app.state.ws, limit=min(limit, 1000))
    ]

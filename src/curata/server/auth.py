"""Who is asking, and may they: FastAPI dependencies over :mod:`curata.server.service`.

Credentials, in order: ``Authorization: Bearer cur_...`` (a user's API token), the legacy shared
gateway token (``create_app(token=...)``: DICOMweb only, for ``curata gateway push``), or the session
cookie set at login. A request with a session cookie that changes something (POST, PUT, PATCH,
DELETE) must carry the session's CSRF token, in the ``X-CSRF-Token`` header or a ``csrf_token`` form
field; token-authenticated requests carry no cookie, so they need none.

A stage protects its routes with :func:`require`::

    @router.get("/projects/{project}/tasks")
    def tasks(access: Access = Depends(require(Role.annotator, Role.reviewer))) -> ...:
        access.project.name, access.roles, access.principal.username, access.series   # scope
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response

from curata.server import scope
from curata.server.models import Role
from curata.server.service import (
    SESSION_LIFETIME,
    AuthError,
    Principal,
    ProjectRecord,
    authorize,
    close_session,
    open_session,
    principal_from_session,
    principal_from_token,
    serving_licences,
)

SESSION_COOKIE = "curata_session"
SECURE_SESSION_COOKIE = "__Host-curata_session"  # the prefix binds it to this host, path / and TLS
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Every role may read; these may also write (STOW, forms) unless a route says otherwise.
ALL_ROLES = tuple(Role)


@dataclass(frozen=True)
class Access:
    """What a route gets from :func:`require`: who, in which project, with which roles, and the
    ``series`` subquery (``select(Series.id)``) bounding what they may see."""

    principal: Principal
    project: ProjectRecord | None
    roles: frozenset[Role]
    series: Any

    def has(self, *roles: Role) -> bool:
        return bool(self.roles & ({*roles, Role.admin}))


def session_cookie_name(request: Request) -> str:
    return SECURE_SESSION_COOKIE if request.url.scheme == "https" else SESSION_COOKIE


def _bearer(request: Request) -> str:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def _session_id(request: Request) -> str:
    return request.cookies.get(SECURE_SESSION_COOKIE) or request.cookies.get(SESSION_COOKIE) or ""


def principal(request: Request) -> Principal | None:
    """The caller, or None. Cached on the request."""
    if hasattr(request.state, "principal"):
        return request.state.principal  # type: ignore[no-any-return]
    ws = request.app.state.ws
    found: Principal | None = None
    bearer = _bearer(request)
    if bearer:
        service: str = getattr(request.app.state, "token", "")
        if service and secrets.compare_digest(bearer.encode(), service.encode()):
            found = Principal(None, "gateway-service", False, "service")
        else:
            found = principal_from_token(ws, bearer)
            if found is None:
                raise AuthError("this bearer token is not valid", hint="`curata user token NAME` makes one")
    else:
        found = principal_from_session(ws, _session_id(request))
    request.state.principal = found
    return found


def _same_origin_dicomweb(request: Request) -> bool:
    """STOW from the viewer (OHIF) on this origin: it cannot add our CSRF header, but a cross-site page
    cannot send ``multipart/related`` without a CORS preflight (which we never grant) and the browser's
    Origin header names where the request came from."""
    origin = request.headers.get("origin", "")
    ctype = request.headers.get("content-type", "")
    own = f"{request.url.scheme}://{request.url.netloc}"
    return "/dicomweb/" in request.url.path + "/" and ctype.startswith("multipart/related") and origin == own


async def _check_csrf(request: Request, who: Principal) -> None:
    if who.via != "session" or request.method in SAFE_METHODS:
        return
    if _same_origin_dicomweb(request):
        return
    given = request.headers.get(CSRF_HEADER, "")
    if not given:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # Starlette caches it: the route reads it again for free
            given = str(form.get(CSRF_FIELD, ""))
    if not given or not secrets.compare_digest(given.encode(), who.csrf_token.encode()):
        raise AuthError(
            "missing or wrong CSRF token", hint="reload the page and submit the form again", status=403
        )


async def login_required(request: Request) -> Principal:
    """Any signed-in user (or a valid API token); CSRF-checked for changes."""
    who = principal(request)
    if who is None or who.is_service:
        raise AuthError("sign in first", hint="log in at /ui/login, or send an API token")
    await _check_csrf(request, who)
    return who


async def platform_admin_required(request: Request) -> Principal:
    who = await login_required(request)
    if not who.platform_admin:
        raise AuthError("only a platform admin may do this", status=403)
    return who


def require(
    *roles: Role, project_param: str = "project", write: tuple[Role, ...] | None = None
) -> Callable[[Request], Awaitable[Access]]:
    """A dependency: the caller must hold one of ``roles`` in the project named by the path parameter
    ``project_param`` (project admins and platform admins always pass). ``write``, when given, is the
    narrower set of roles allowed for POST/PUT/PATCH/DELETE on the same route.

    The project a user is not a member of answers 404, like a project that does not exist.
    """
    allowed = tuple(roles) or ALL_ROLES

    async def dependency(request: Request) -> Access:
        who = await login_required(request)
        name = request.path_params.get(project_param)
        if not name:
            raise AuthError(f"this route has no {{{project_param}}} path parameter", status=500)
        wanted = write if (write is not None and request.method not in SAFE_METHODS) else allowed
        record, held = authorize(request.app.state.ws, who, str(name), wanted)
        grants = (
            serving_licences(request.app.state.ws, who.user_id, record.name) if Role.licensee in held else []
        )
        seen = scope.series_ids(record, held, grants, who.username, platform_admin=who.platform_admin)
        access = Access(who, record, frozenset(held), seen)
        request.state.access = access
        return access

    # read by the role-matrix test
    dependency.roles = allowed  # type: ignore[attr-defined]
    dependency.write_roles = write  # type: ignore[attr-defined]
    return dependency


async def require_dicomweb_global(request: Request) -> Access:
    """``/dicomweb`` (no project): the shared gateway token (STOW/QIDO/WADO) or a platform admin."""
    who = principal(request)
    if who is None:
        raise AuthError("missing or wrong bearer token", hint="send an API token or log in")
    if who.is_service:
        access = Access(who, None, frozenset({Role.site}), scope.all_series())
    else:
        await _check_csrf(request, who)
        if not who.platform_admin:
            raise AuthError(
                "only platform admins use /dicomweb; members use /projects/NAME/dicomweb",
                status=403,
            )
        access = Access(who, None, frozenset(Role), scope.all_series())
    request.state.access = access
    return access


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def start_session(request: Request, response: Response, user_id: int) -> str:
    """Mint a new session for ``user_id`` and set its cookie (any cookie the browser brought is
    dropped: the id is always fresh). Returns the CSRF token of the new session."""
    ws = request.app.state.ws
    old = _session_id(request)
    if old:
        close_session(ws, old)
    new = open_session(ws, user_id)
    secure = request.url.scheme == "https"
    response.set_cookie(
        SECURE_SESSION_COOKIE if secure else SESSION_COOKIE,
        new.session_id,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )
    return new.csrf_token


def end_session(request: Request, response: Response) -> None:
    sid = _session_id(request)
    if sid:
        close_session(request.app.state.ws, sid)
    for name in (SESSION_COOKIE, SECURE_SESSION_COOKIE):
        response.delete_cookie(name, path="/", secure=name.startswith("__Host-"), httponly=True)

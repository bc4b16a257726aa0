"""Curata's pages (``/ui``): server-rendered Jinja2 templates over the stage services.

The pages hold no logic of their own: each route authorises (``require``), calls a stage's public API,
and renders. Forms post back with the session's CSRF token (checked by ``require``/``login_required``).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from curata import __version__
from curata.server import service
from curata.server.auth import Access, end_session, login_required, principal, require
from curata.server.models import Role
from curata.server.service import AuthError, Principal

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/ui", tags=["pages"])
LOGIN_CSRF_COOKIE = "curata_login_csrf"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}

# (path under /ui/p/{project}/, label, roles that see the link; empty: everyone)
NAV: list[tuple[str, str, set[Role]]] = []


def nav_item(href: str, label: str, *roles: Role) -> None:
    """Stages add a link to the project's navigation (shown to ``roles``, or everyone)."""
    NAV.append((href, label, set(roles)))


def page(request: Request, template: str, access: Access | None = None, **ctx: Any) -> HTMLResponse:
    who = access.principal if access else principal(request)
    roles = set(access.roles) if access else set()
    base = {
        "who": who,
        "csrf": who.csrf_token if who else "",
        "project": access.project if access else None,
        "roles": roles,
        "nav": [(h, label) for h, label, need in NAV if not need or roles & (need | {Role.admin})],
        "version": __version__,
        "title": ctx.pop("title", "Curata"),
    }
    return templates.TemplateResponse(request, template, {**base, **ctx})


def safe_next(value: str) -> str:
    """Only a local path is a place to go after login (no open redirect)."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    path = (HERE / "static" / name).resolve()
    if path.parent != (HERE / "static").resolve() or path.suffix not in STATIC_TYPES or not path.is_file():
        return Response("not found", status_code=404)
    return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix])


def _login_form(
    request: Request, token: str, next: str, *, username: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    ctx = {
        "who": None,
        "csrf": token,
        "project": None,
        "roles": set(),
        "nav": [],
        "version": __version__,
        "title": "Sign in",
        "next": safe_next(next),
        "username": username,
        "error": error,
    }
    return templates.TemplateResponse(request, "login.html", ctx, status_code=status)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/ui/") -> Response:
    """The sign-in form, with a login CSRF token (double submit: a strict cookie and a form field)."""
    token = secrets.token_urlsafe(24)
    response = _login_form(request, token, next)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui/login",
    )
    return response


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    username: str = Form(...),
    password: str = Form(...),
    csrf_token: str = Form(""),
    next: str = Form("/ui/"),
) -> Response:
    from curata.server.router import login

    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
        raise AuthError("missing or wrong CSRF token", hint="reload the sign-in page", status=403)
    response = RedirectResponse(safe_next(next), status_code=303)
    try:
        login(request, response, username, password)
    except AuthError as exc:
        out = _login_form(
            request,
            expected,
            next,
            username=username,
            error=exc.message,
            status=429 if exc.status == 429 else 401,
        )
        if isinstance(exc, service.RateLimited):
            out.headers["Retry-After"] = str(exc.retry_after)
        return out
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui/login")
    return response


@router.post("/logout")
def logout(request: Request, who: Principal = Depends(login_required)) -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    end_session(request, response)
    service.record(request.app.state.ws, "logout", principal=who, ledger=request.app.state.ledger)
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request, who: Principal = Depends(login_required)) -> Response:
    projects = service.list_projects(request.app.state.ws, for_user=who)
    return page(request, "home.html", title="Projects", projects=projects)


@router.get("/p/{project}/", response_class=HTMLResponse)
def project_home(request: Request, access: Access = Depends(require())) -> Response:
    from curata.server.web import pages

    return page(
        request,
        "project.html",
        access,
        title=access.project.title if access.project else "",
        active="",
        **pages.overview(request.app.state.ws, access),
    )

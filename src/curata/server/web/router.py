"""Curata's pages (``/ui``): server-rendered Jinja2 templates over the stage services.

The pages hold no logic of their own: each route authorises (``require``), calls a stage's public API,
and renders. Forms post back with the session's CSRF token (checked by ``require``/``login_required``).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from curata import __version__
from curata.catalog import Series
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
    ctx: dict[str, Any] = {
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


# -- stage pages -----------------------------------------------------------------------------------
READERS = (Role.curator, Role.annotator, Role.reviewer, Role.site)  # working roles (not licensees)
nav_item("catalog", "Catalog", *READERS)
nav_item("qc", "QC review", Role.curator, Role.reviewer)
nav_item("cohorts", "Cohorts", Role.curator)
nav_item("runs", "Pre-processing", Role.curator)
nav_item("releases", "Releases", Role.curator, Role.reviewer, Role.licensee, Role.site)
nav_item("ledger", "Ledger")
nav_item("revenue", "Revenue", Role.site)


def _ws(request: Request) -> Any:
    return request.app.state.ws


def record_action(request: Request, access: Access, action: str, target: str, **detail: Any) -> None:
    service.record(
        _ws(request),
        action,
        principal=access.principal,
        target=target,
        project=access.project.name if access.project else None,
        detail=detail,
        ledger=request.app.state.ledger,
    )


@router.get("/p/{project}/catalog", response_class=HTMLResponse)
def catalog_page(
    request: Request,
    access: Access = Depends(require(*READERS)),
    site: str = "",
    modality: str = "",
    qc: str = "",
    text: str = "",
    patient: str = "",
    study: str = "",
    offset: int = 0,
) -> Response:
    from curata.server.web import pages

    filters = {"site": site, "modality": modality, "qc": qc, "text": text, "patient": patient, "study": study}
    data = pages.catalog(_ws(request), access, filters, max(offset, 0))
    return page(request, "catalog.html", access, title="Catalog", active="catalog", **data)


@router.get("/p/{project}/qc", response_class=HTMLResponse)
def qc_page(request: Request, access: Access = Depends(require(Role.curator, Role.reviewer))) -> Response:
    from curata.server.web import pages

    data = pages.qc_review(_ws(request), access)
    return page(request, "qc.html", access, title="QC review", active="qc", **data)


@router.post("/p/{project}/qc/override")
def qc_override(
    request: Request,
    access: Access = Depends(require(Role.curator)),
    series_uid: str = Form(...),
    decision: str = Form(...),
    reason: str = Form(""),
) -> Response:
    from curata.select import override
    from curata.server.web import pages

    with _ws(request).catalog.session() as s:  # the series must be in this project's scope
        visible = s.scalar(
            select(Series.id).where(Series.series_uid == series_uid, Series.id.in_(access.series))
        )
    if visible is None:
        raise AuthError(f"no series {series_uid} for you", status=404)
    if decision not in ("include", "exclude"):
        raise AuthError("decision is include or exclude", status=400)
    try:
        result = override(
            _ws(request),
            series_uid,
            passed=decision == "include",
            author=access.principal.username,
            reason=reason,
        )
    except service.CurataError as exc:
        qc = pages.qc_review(_ws(request), access)
        return page(request, "qc.html", access, title="QC review", active="qc", error=exc.message, **qc)
    record_action(request, access, "qc-override", series_uid, decision=decision)
    name = access.project.name if access.project else ""
    return RedirectResponse(f"/ui/p/{name}/qc?done={decision}#s-{result.series_uid}", status_code=303)


@router.get("/p/{project}/cohorts", response_class=HTMLResponse)
def cohorts_page(
    request: Request, access: Access = Depends(require(Role.curator)), where: str = ""
) -> Response:
    from curata.server.web import pages

    preview = pages.cohort_preview(_ws(request), access, where) if where.strip() else None
    return page(
        request,
        "cohorts.html",
        access,
        title="Cohorts",
        active="cohorts",
        cohorts=pages.cohorts(_ws(request), access),
        preview=preview,
        where=where,
        error="",
    )


@router.post("/p/{project}/cohorts", response_class=HTMLResponse)
def cohort_create(
    request: Request,
    access: Access = Depends(require(Role.curator)),
    name: str = Form(...),
    where: str = Form(...),
) -> Response:
    from curata.select import create_cohort
    from curata.server.web import pages

    assert access.project is not None
    try:
        service._check_name("cohort", name)
        pages.cohort_preview(_ws(request), access, where)  # raises nothing: errors come back as data
        created = create_cohort(_ws(request), name, pages.scoped_query(access, where))
    except service.CurataError as exc:
        preview = pages.cohort_preview(_ws(request), access, where)
        return page(
            request,
            "cohorts.html",
            access,
            title="Cohorts",
            active="cohorts",
            cohorts=pages.cohorts(_ws(request), access),
            preview=preview,
            where=where,
            error=exc.message,
            name=name,
        )
    service.add_resource(_ws(request), access.project.name, "cohort", name)
    record_action(request, access, "cohort-created", name, series=created.series)
    return RedirectResponse(f"/ui/p/{access.project.name}/cohorts?created={name}", status_code=303)


@router.get("/p/{project}/runs", response_class=HTMLResponse)
def runs_page(request: Request, access: Access = Depends(require(Role.curator))) -> Response:
    from curata.server.web import pages

    return page(
        request, "runs.html", access, title="Pre-processing", active="runs", **pages.runs(_ws(request))
    )


RELEASE_ROLES = (Role.curator, Role.reviewer, Role.licensee, Role.site)


def _grants(request: Request, access: Access) -> list[Any]:
    return service.licences_of(
        _ws(request), access.principal.user_id, access.project.name if access.project else None
    )


@router.get("/p/{project}/releases", response_class=HTMLResponse)
def releases_page(request: Request, access: Access = Depends(require(*RELEASE_ROLES))) -> Response:
    from curata.server.web import pages

    items = pages.releases(_ws(request), access, _grants(request, access))
    return page(request, "releases.html", access, title="Releases", active="releases", releases=items)


def _release_or_404(request: Request, access: Access, ref: str) -> None:
    from curata.server.models import Role
    from curata.server.web import pages

    if not re.fullmatch(r"[A-Za-z0-9_.-]+@\d+", ref) or not pages.may_see_release(
        access, _grants(request, access), ref
    ):
        if Role.licensee in access.roles and ref in {
            g.label
            for g in service.licences_of(
                _ws(request),
                access.principal.user_id,
                access.project.name if access.project else None,
                ended=True,
            )
        }:  # an expired or revoked grant answers as no grant at all; the attempt is logged
            record_action(request, access, "licence-ended", ref, path=request.url.path)
        raise AuthError(f"no release {ref} for you", status=404)


def _superseded(request: Request, ref: str) -> Any:
    from curata.publish import superseded

    return superseded(_ws(request), ref)


@router.get("/p/{project}/releases/{ref}", response_class=HTMLResponse)
def release_page(request: Request, ref: str, access: Access = Depends(require(*RELEASE_ROLES))) -> Response:
    from curata.server.web import pages

    _release_or_404(request, access, ref)
    data = pages.release_detail(_ws(request), ref)
    gone = _superseded(request, ref)
    licensed = {g.label for g in _grants(request, access)} if Role.licensee in access.roles else set()
    may_download = gone is None and ref in licensed
    return page(
        request,
        "release.html",
        access,
        title=ref,
        active="releases",
        ref=ref,
        may_download=may_download,
        superseded=gone,
        may_have_had=ref in licensed,
        use_licensed=gone is not None and gone.use in licensed,
        **data,
    )


@router.get("/p/{project}/releases/{ref}/card", response_class=HTMLResponse)
def release_card(request: Request, ref: str, access: Access = Depends(require(*RELEASE_ROLES))) -> Response:
    from curata.publish import show_release

    _release_or_404(request, access, ref)
    card = Path(show_release(_ws(request), ref).card or "")
    return HTMLResponse(card.read_text(encoding="utf-8"))


@router.get("/p/{project}/releases/{ref}/download")
def release_download(
    request: Request, ref: str, access: Access = Depends(require(Role.licensee))
) -> Response:
    """The licensee's own fingerprinted copy of a licensed release, as a zip (built once, then reused).
    A version a consent withdrawal left behind answers 410, naming the version to download instead."""
    from fastapi.responses import FileResponse

    from curata.server.web import downloads

    _release_or_404(request, access, ref)
    if ref not in {g.label for g in _grants(request, access)}:
        raise AuthError(f"{ref} is not licensed to you", status=403)
    gone = _superseded(request, ref)
    if gone is not None:
        record_action(request, access, "download-refused", ref, reason="consent withdrawn", use=gone.use)
        raise AuthError(gone.message, hint=gone.hint, status=410)
    path = downloads.licensee_zip(_ws(request), ref, access.principal.username)
    record_action(request, access, "download", ref, bytes=path.stat().st_size)
    return FileResponse(path, media_type="application/zip", filename=f"{ref.replace('@', '-v')}.zip")


@router.get("/p/{project}/ledger", response_class=HTMLResponse)
def ledger_page(request: Request, access: Access = Depends(require()), kind: str = "") -> Response:
    from curata.server.web import pages

    data = pages.ledger(_ws(request), request.app.state.ledger, kind=kind or None, project=access.project)
    return page(request, "ledger.html", access, title="Ledger", active="ledger", **data)


@router.get("/p/{project}/ledger/{index}", response_class=HTMLResponse)
def ledger_proof(request: Request, index: int, access: Access = Depends(require())) -> Response:
    from curata.server.web import pages

    log = request.app.state.ledger
    log.refresh()
    if not 0 <= index < log.size:
        raise AuthError(f"no entry {index} in the log", status=404)
    entry = log.entry(index)
    if not pages.entry_of_project(entry.kind, entry.payload, access.project):
        raise AuthError(f"no entry {index} for you", status=404)  # another project's, or site-wide
    try:
        data = pages.proof(log, index)
    except service.CurataError as exc:
        return page(
            request,
            "proof.html",
            access,
            title=f"Entry {index}",
            active="ledger",
            index=index,
            error=exc.message,
            hint=exc.hint or "",
        )
    return page(
        request, "proof.html", access, title=f"Entry {index}", active="ledger", index=index, error="", **data
    )


@router.get("/p/{project}/revenue", response_class=HTMLResponse)
def revenue_page(
    request: Request, access: Access = Depends(require(Role.site)), period: str = "", site: str = ""
) -> Response:
    from datetime import date

    from curata.server.web import pages

    assert access.project is not None
    sites = access.project.sites
    site = site if site in sites else (sites[0] if sites else "")
    period = period or str(date.today().year)
    try:
        data = pages.revenue(request.app.state.ledger, period, site or None)
        error = ""
    except service.CurataError as exc:
        data, error = {}, exc.message
    return page(
        request,
        "revenue.html",
        access,
        title="Revenue",
        active="revenue",
        sites=sites,
        site=site,
        period=period,
        error=error,
        data=data,
    )

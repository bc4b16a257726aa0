"""``create_app(ws)``: the FastAPI application. Each stage mounts its own ``router.py`` (see README.md).

One process serves: the JSON API and Curata's pages (``/ui``), DICOMweb per project
(``/projects/{project}/dicomweb``) and platform-wide (``/dicomweb``, for the gateway's shared token and
platform admins), and the OHIF viewer's static build at the site root when it is installed.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from curata import __version__
from curata.errors import CurataError
from curata.server.auth import require, require_dicomweb_global
from curata.server.models import Role
from curata.server.service import AuthError, RateLimited
from curata.workspace import Workspace

# Stage routers: each module exposes ``router`` (a FastAPI APIRouter) whose routes carry their own
# ``Depends(require(...))``. A stage adds its line here; the role-matrix test then insists that every
# new route has an entry in tests/server/test_role_matrix.py.
STAGE_ROUTERS: list[str] = [
    "curata.server.router",  # accounts, sessions, projects, audit (JSON API)
    "curata.server.web.router",  # Curata's pages under /ui
    "curata.server.web.reading",  # the reading pages (annotate) under /ui/p/{project}/reading
    "curata.annotate.router",  # reading JSON + MONAI Label under /projects/{project}/annotate
    "curata.collect.router",  # de-identified clinical and genomic batches from gateways (/clinical)
]

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)
# OHIF's build evaluates code (webpack chunks, WASM codecs) and inlines styles; it gets its own policy.
OHIF_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline' 'unsafe-eval' 'wasm-unsafe-eval' blob:; worker-src 'self' blob:; "
    "connect-src 'self' blob: data:; font-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'"
)


def create_app(
    ws: Workspace,
    *,
    token: str = "",
    verified_deidentified: bool = False,
    public_url: str = "",
    max_upload_bytes: int | None = None,
    ohif_dir: Path | None = None,
    tls: bool = False,
) -> FastAPI:
    """The platform over ``ws``.

    ``verified_deidentified``: central-platform behaviour; STOW-RS accepts only objects already marked
    de-identified (PatientIdentityRemoved YES) and stores them unchanged. Otherwise (a gateway) every
    upload is de-identified on arrival with the site key. ``token``: the legacy shared gateway token,
    accepted on ``/dicomweb`` only (users have their own API tokens). ``public_url``: the address
    clients use (behind a proxy), for absolute URLs in DICOMweb answers. ``ohif_dir``: the OHIF
    Viewer's ``dist/`` (scripts/ohif.sh installs it into ``.ohif/dist``), served at the site root.
    ``max_upload_bytes``: the largest STOW-RS request body (413 beyond it; default 512 MiB).
    """
    from curata.collect.net import Receiver
    from curata.ledger import Ledger
    from curata.server.dicomweb import router as dicomweb_router

    receiver = Receiver(ws, deidentify=not verified_deidentified)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        receiver.close()  # file what is queued before the process goes

    app = FastAPI(
        title="Curata",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.ws = ws
    app.state.token = token
    app.state.public_url = public_url
    app.state.verified_deidentified = verified_deidentified
    app.state.receiver = receiver
    if max_upload_bytes:
        app.state.max_upload_bytes = max_upload_bytes
    app.state.tls = tls
    app.state.ledger = Ledger.open(ws)
    app.state.ohif_dir = ohif_dir

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "")
        if exc.status == 401 and wants_html and request.method == "GET":
            return RedirectResponse(f"/ui/login?next={request.url.path}", status_code=303)
        headers = {"WWW-Authenticate": 'Bearer realm="curata"'} if exc.status == 401 else {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        body = {"detail": exc.message, **({"hint": exc.hint} if exc.hint else {})}
        return JSONResponse(body, status_code=exc.status, headers=headers)

    @app.exception_handler(CurataError)
    async def _curata_error(_request: Request, exc: CurataError) -> Response:
        body = {"detail": exc.message, **({"hint": exc.hint} if exc.hint else {})}
        return JSONResponse(body, status_code=400)

    @app.middleware("http")
    async def _security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        ours = request.url.path.startswith(("/ui", "/api", "/projects", "/dicomweb", "/healthz"))
        h.setdefault("Content-Security-Policy", CSP if ours else OHIF_CSP)
        if request.url.scheme == "https":
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.url.path.startswith(("/ui", "/api", "/projects", "/dicomweb")):
            h.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    # Every member reads; licensees read only their licensed releases (scope); STOW needs a working role.
    stow_roles = (Role.curator, Role.annotator, Role.reviewer, Role.site)
    app.include_router(
        dicomweb_router,
        prefix="/projects/{project}/dicomweb",
        dependencies=[Depends(require(write=stow_roles))],
    )
    app.include_router(dicomweb_router, prefix="/dicomweb", dependencies=[Depends(require_dicomweb_global)])
    for module in STAGE_ROUTERS:
        app.include_router(importlib.import_module(module).router)

    if ohif_dir is not None:
        from curata.server.ohif import mount_ohif

        mount_ohif(app, ohif_dir)
    else:

        @app.get("/", include_in_schema=False)
        def root() -> RedirectResponse:
            return RedirectResponse("/ui/", status_code=303)

    return app


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app answers, included routers flattened (HEAD left out)."""
    out: list[tuple[str, str]] = []

    def add(methods: Any, path: str) -> None:
        for m in sorted(methods or ()):
            if m != "HEAD":
                out.append((m, path))

    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            for ctx in contexts():
                add(getattr(ctx.original_route, "methods", None), ctx.path)
        else:
            add(getattr(route, "methods", None), getattr(route, "path", ""))
    return sorted(set(out), key=lambda mp: (mp[1], mp[0]))

"""``create_app(ws)``: the FastAPI application. Later stages add their routers here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from curata import __version__
from curata.server.auth import require_token
from curata.workspace import Workspace


def create_app(
    ws: Workspace, *, token: str = "", verified_deidentified: bool = False, public_url: str = ""
) -> FastAPI:
    """The server over ``ws``.

    ``verified_deidentified``: central-platform behaviour; STOW-RS accepts only objects already marked
    de-identified (PatientIdentityRemoved YES) and stores them unchanged. Otherwise (a gateway) every
    upload is de-identified on arrival with the site key. ``public_url``: the address clients use
    (behind a proxy), for the absolute URLs in DICOMweb answers.
    """
    from curata.collect.net.receive import Receiver
    from curata.server.dicomweb import router as dicomweb_router

    receiver = Receiver(ws, deidentify=not verified_deidentified)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        receiver.close()  # file what is queued before the process goes

    app = FastAPI(title="Curata", version=__version__, lifespan=lifespan)
    app.state.ws = ws
    app.state.token = token
    app.state.public_url = public_url
    app.state.verified_deidentified = verified_deidentified
    app.state.receiver = receiver

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(dicomweb_router, prefix="/dicomweb", dependencies=[Depends(require_token)])
    from curata.annotate.router import router as annotate_router

    app.include_router(annotate_router, prefix="/annotate", dependencies=[Depends(require_token)])

    return app

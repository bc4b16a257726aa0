"""``create_app(ws)``: the FastAPI application. Later stages add their routers here."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from curata import __version__
from curata.server.auth import require_token
from curata.workspace import Workspace


def create_app(ws: Workspace, *, token: str = "", verified_deidentified: bool = False) -> FastAPI:
    """The server over ``ws``.

    ``verified_deidentified``: central-platform behaviour; STOW-RS accepts only objects already marked
    de-identified (PatientIdentityRemoved YES) and stores them unchanged. Otherwise (a gateway) every
    upload is de-identified on arrival with the site key.
    """
    from curata.collect.net.receive import Receiver
    from curata.server.dicomweb import router as dicomweb_router

    app = FastAPI(title="Curata", version=__version__)
    app.state.ws = ws
    app.state.token = token
    app.state.verified_deidentified = verified_deidentified
    app.state.receiver = Receiver(ws, deidentify=not verified_deidentified)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(dicomweb_router, prefix="/dicomweb", dependencies=[Depends(require_token)])

    @app.on_event("shutdown")
    def _close() -> None:
        app.state.receiver.close()

    return app

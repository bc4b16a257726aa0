"""Bearer-token authentication: one shared secret per server (``[gateway] token`` or ``$CURATA_TOKEN``)."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request, status


def require_token(request: Request) -> None:
    """Refuse the request unless it carries the server's token (no token configured: open)."""
    expected: str = request.app.state.token
    if not expected:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token",
            headers={"WWW-Authenticate": 'Bearer realm="curata"'},
        )

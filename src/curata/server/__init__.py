"""The HTTP face of Curata: a FastAPI app over the workspace. Routers per resource; DICOMweb first."""

from __future__ import annotations

from curata.server.app import create_app

__all__ = ["create_app"]

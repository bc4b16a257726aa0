"""The OHIF Viewer v3 (the prebuilt ``@ohif/app`` from npm, installed by ``scripts/ohif.sh`` into
``.ohif/dist``), served at the site root with an ``app-config.js`` generated per user: one DICOMweb
data source per project the user is a member of, pointing at ``/projects/{name}/dicomweb``. The
browser's session cookie authenticates every request (same origin: no token in the page)."""

from __future__ import annotations

import json
import mimetypes
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

import curata
from curata.server import service
from curata.server.auth import principal

ENV_OHIF = "CURATA_OHIF_DIR"
# Prefixes that belong to Curata: never answered with OHIF's index.html.
CURATA_PREFIXES = ("api/", "ui/", "projects/", "dicomweb/", "healthz")
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


def find_ohif() -> Path | None:
    """``$CURATA_OHIF_DIR``, else the checkout's ``.ohif/dist`` (scripts/ohif.sh), else None."""
    env = os.environ.get(ENV_OHIF)
    candidates = [Path(env)] if env else []
    candidates.append(Path(curata.__file__).resolve().parents[2] / ".ohif" / "dist")
    for path in candidates:
        if (path / "index.html").is_file():
            return path
    return None


def app_config(projects: list[service.ProjectRecord], base: str) -> dict[str, Any]:
    sources = [
        {
            "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
            "sourceName": p.name,
            "configuration": {
                "friendlyName": f"Curata: {p.title or p.name}",
                "name": p.name,
                "wadoUriRoot": f"{base}/projects/{p.name}/dicomweb",
                "qidoRoot": f"{base}/projects/{p.name}/dicomweb",
                "wadoRoot": f"{base}/projects/{p.name}/dicomweb",
                "qidoSupportsIncludeField": True,
                "imageRendering": "wadors",
                "thumbnailRendering": "wadors",
                "enableStudyLazyLoad": True,
                "supportsFuzzyMatching": False,
                "supportsWildcard": True,
                "staticWado": False,
                "singlepart": "bulkdata,video",
                "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
                "omitQuotationForMultipartRequest": True,
                "dicomUploadEnabled": False,
            },
        }
        for p in projects
    ]
    return {
        "routerBasename": None,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"},
        "defaultDataSourceName": sources[0]["sourceName"] if sources else "",
        "dataSources": sources,
    }


def mount_ohif(app: FastAPI, dist: Path) -> None:
    root = dist.resolve()

    @app.get("/app-config.js", include_in_schema=False)
    def config_js(request: Request) -> Response:
        who = principal(request)
        if who is None or who.is_service:
            js = "window.location.replace('/ui/login?next=' + encodeURIComponent(location.pathname + location.search));"
            return Response(js, media_type="text/javascript", headers={"Cache-Control": "no-store"})
        projects = service.list_projects(request.app.state.ws, for_user=who)
        base = request.app.state.public_url.rstrip("/") or str(request.base_url).rstrip("/")
        body = "window.config = " + json.dumps(app_config(projects, base), indent=1) + ";\n"
        return Response(body, media_type="text/javascript", headers={"Cache-Control": "no-store"})

    @app.get("/", include_in_schema=False)
    @app.get("/{path:path}", include_in_schema=False)
    def ohif_file(request: Request, path: str = "") -> Response:
        """A file of the build, or the viewer's index.html for its own routes (/viewer, ...)."""
        if path.startswith(CURATA_PREFIXES):
            return Response("not found", status_code=404)
        who = principal(request)
        if (who is None or who.is_service) and not path:
            return HTMLResponse("", status_code=303, headers={"Location": "/ui/login?next=/"})
        target = (root / path).resolve() if path else root / "index.html"
        if not target.is_relative_to(root):  # ../ in the path: refuse, never leave the build folder
            return Response("not found", status_code=404)
        if not target.is_file():
            if "." in path.rsplit("/", 1)[-1]:
                return Response("not found", status_code=404)
            target = root / "index.html"
        cache = "no-cache" if target.name in ("index.html", "sw.js") else "public, max-age=86400"
        return FileResponse(target, headers={"Cache-Control": cache})

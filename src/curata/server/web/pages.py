"""Read models for the pages: each function calls stage services / the catalog through the caller's
scope and returns plain dicts for a template. No decisions are made here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from curata.catalog import Patient, Series, Site, Study
from curata.server.auth import Access
from curata.workspace import Workspace


def overview(ws: Workspace, access: Access) -> dict[str, Any]:
    """Counts of what the caller may see in the project, by site and modality."""
    with ws.catalog.session() as s:
        rows = s.execute(
            select(Site.name, Series.modality, func.count(Series.id), func.count(func.distinct(Patient.id)))
            .join(Study, Series.study_id == Study.id)
            .join(Patient, Study.patient_id == Patient.id)
            .join(Site, Patient.site_id == Site.id)
            .where(Series.id.in_(access.series))
            .group_by(Site.name, Series.modality)
            .order_by(Site.name, Series.modality)
        ).all()
    return {
        "by_site": [{"site": a, "modality": b or "", "series": c, "patients": d} for a, b, c, d in rows],
        "total_series": sum(r[2] for r in rows),
    }

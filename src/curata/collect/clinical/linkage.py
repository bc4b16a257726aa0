"""The linkage report: which patients have which modalities (images, clinical rows, variants, specimens),
and which lack one the project expects. Specimens are linked to slide series (SM) of the same patient
taken within a few days (dates on both sides carry the same per-patient shift, so the interval is exact).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from curata.workspace import Workspace

CLINICAL_KINDS = ("clinical", "genomic", "specimen")
SLIDE_WINDOW_DAYS = 14


@dataclass
class LinkageRow:
    site: str
    patient: str  # pseudonym
    modalities: list[str] = field(default_factory=list)  # image modalities with series in the catalog
    clinical_rows: int = 0
    vcf_files: int = 0
    specimens: int = 0
    slides_linked: int = 0
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _day(value: str | None) -> dt.date | None:
    try:
        return dt.datetime.strptime(value or "", "%Y%m%d").date()
    except ValueError:
        return None


def linkage_report(ws: Workspace, expect: Sequence[str] = ("CT", "clinical")) -> list[LinkageRow]:
    """One row per patient (images or clinical), with what is missing of ``expect`` (image modalities such
    as CT, MR, SM, or clinical / genomic / specimen)."""
    from curata.catalog import Patient, Series, Site, Study
    from curata.collect.clinical.models import OMOP
    from curata.collect.clinical.tables import clinical_rows, index_counts

    person = OMOP["person"]
    rows: dict[tuple[int, str], LinkageRow] = {}
    sites: dict[int, str] = {}
    with ws.catalog.session() as s:
        sites = dict(s.execute(sa.select(Site.id, Site.name)).all())

        def row(site_id: int, pseudonym: str) -> LinkageRow:
            key = (site_id, pseudonym)
            if key not in rows:
                rows[key] = LinkageRow(sites.get(site_id, "?"), pseudonym)
            return rows[key]

        slides: dict[tuple[int, str], list[dt.date | None]] = defaultdict(list)
        for site_id, pseudo, modality, sdate in s.execute(
            sa.select(Patient.site_id, Patient.pseudonym, Series.modality, Study.study_date)
            .join(Study, Study.patient_id == Patient.id)
            .join(Series, Series.study_id == Study.id)
        ):
            r = row(site_id, pseudo)
            if modality and modality not in r.modalities:
                r.modalities.append(modality)
            if modality == "SM":
                slides[(site_id, pseudo)].append(_day(sdate))
        pids: dict[int, tuple[int, str]] = {}
        for pid, site_id, pseudo in s.execute(
            sa.select(person.c.person_id, person.c.site_id, person.c.pseudonym)
        ):
            pids[int(pid)] = (site_id, pseudo)
            row(site_id, pseudo)
        vcfs: dict[int, set[str]] = defaultdict(set)
        for pid, name, digest, n in index_counts(s):
            r = row(*pids[pid])
            if name == "genomic_variant":
                vcfs[pid].add(digest)
                continue
            r.clinical_rows += n
            if name == "specimen":
                r.specimens += n
        for pid, digests in vcfs.items():
            row(*pids[pid]).vcf_files += len(digests)
        for spec in clinical_rows(s, ws.store, "specimen"):
            key, sday = pids[int(spec["person_id"])], spec["specimen_date"]
            if any(d and sday and abs((d - sday).days) <= SLIDE_WINDOW_DAYS for d in slides.get(key, [])):
                rows[key].slides_linked += 1
    for r in rows.values():
        have = set(r.modalities)
        if r.clinical_rows:
            have.add("clinical")
        if r.vcf_files:
            have.add("genomic")
        if r.specimens:
            have.add("specimen")
        r.missing = [e for e in expect if e not in have]
        r.modalities.sort()
    return sorted(rows.values(), key=lambda r: (r.site, r.patient))


__all__ = ["LinkageRow", "linkage_report"]

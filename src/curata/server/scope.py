"""What a member of a project may see: the series of its sites, cohorts and releases.

A licensee (holding no other role) sees only the series of the release versions licensed to them.
Blinding is global, not per project: nobody but a platform admin sees the reads of other readers on
a case still open in a blinded annotation project, nor AI drafts the project hides
(``curata.annotate.hidden_series``), through *any* project, even one whose sites hold the case and
which holds no annotation project. Only the reading's adjudicators and the curators and admins of a
platform project that holds the reading (``managed_readings``) are let through. These are SQL
subqueries of ``series.id``, so every DICOMweb query and page joins them and a UID of another project
simply is not found (404), the same answer as a UID that does not exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import false, or_, select, tuple_

from curata.catalog import Patient, Series, Site, Study
from curata.publish import Release, ReleaseMember, ReleaseVersion
from curata.select import Cohort, CohortSeries
from curata.server.models import Membership, ProjectResource, ResourceKind, Role, User
from curata.server.service import Grant, ProjectRecord


def series_ids(
    project: ProjectRecord,
    roles: set[Role],
    grants: list[Grant] | None = None,
    user: str | None = None,
    *,
    platform_admin: bool = False,
) -> Any:
    """A ``select(Series.id)`` of every series ``roles`` may see in ``project``, less the annotation
    reads ``user`` (who asks) may not see. Only a platform admin (``platform_admin``) skips the
    blinding; ``user=None`` is for callers that serve no person (tests of the bare scope)."""
    seen = _series_ids(project, roles, grants)
    if user is None or platform_admin:
        return seen
    return select(Series.id).where(Series.id.in_(seen), Series.id.not_in(blinded_from(user)))


def blinded_from(user: str) -> Any:
    """A ``select(Series.id)`` of the reads and drafts ``user`` may not see, in every project."""
    from curata.annotate import hidden_series

    return hidden_series(user, managed_readings(user))


def managed_readings(user: str) -> Any:
    """A ``select`` of the names of the annotation projects ``user`` manages: those held by a
    platform project where they are curator or admin (who assign, adjudicate and release there)."""
    return (
        select(ProjectResource.name)
        .join(Membership, Membership.project_id == ProjectResource.project_id)
        .join(User, User.id == Membership.user_id)
        .where(
            ProjectResource.kind == ResourceKind.annotation.value,
            User.username == user,
            Membership.role.in_([Role.curator.value, Role.admin.value]),
        )
    )


def _series_ids(project: ProjectRecord, roles: set[Role], grants: list[Grant] | None) -> Any:
    if roles and roles <= {Role.licensee}:
        if not grants:
            return select(Series.id).where(false())
        pairs = [(g.release, g.version) for g in grants]
        return (
            select(ReleaseMember.series_id)
            .join(ReleaseVersion, ReleaseMember.version_id == ReleaseVersion.id)
            .join(Release, ReleaseVersion.release_id == Release.id)
            .where(tuple_(Release.name, ReleaseVersion.version).in_(pairs))
        )
    clauses = []
    if project.sites:
        clauses.append(
            Series.id.in_(
                select(Series.id)
                .join(Study, Series.study_id == Study.id)
                .join(Patient, Study.patient_id == Patient.id)
                .join(Site, Patient.site_id == Site.id)
                .where(Site.name.in_(project.sites))
            )
        )
    if project.cohorts:
        clauses.append(
            Series.id.in_(
                select(CohortSeries.series_id)
                .join(Cohort, CohortSeries.cohort_id == Cohort.id)
                .where(Cohort.name.in_(project.cohorts))
            )
        )
    if project.releases:
        clauses.append(
            Series.id.in_(
                select(ReleaseMember.series_id)
                .join(ReleaseVersion, ReleaseMember.version_id == ReleaseVersion.id)
                .join(Release, ReleaseVersion.release_id == Release.id)
                .where(Release.name.in_(project.releases))
            )
        )
    if project.series:
        clauses.append(Series.series_uid.in_(project.series))
    if not clauses:
        return select(Series.id).where(false())
    return select(Series.id).where(or_(*clauses))


def all_series() -> Any:
    """Everything (the shared gateway token and platform-wide views of a platform admin)."""
    return select(Series.id)

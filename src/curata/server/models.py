"""Platform tables: users, API tokens, web sessions, projects with their members and resources, licence
grants of releases to licensee users, login failures (rate limiting) and the audit trail.

Nothing here holds patient data. Secrets are stored only as hashes: passwords with argon2id, API tokens
and session ids with sha256 (they are long random values, so a fast hash is enough).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from curata.catalog.models import Base, utcnow


class Role(enum.StrEnum):
    """What a member may do in a project. ``admin`` of a project may do everything in it."""

    admin = "admin"
    curator = "curator"
    annotator = "annotator"
    reviewer = "reviewer"
    site = "site"  # a hospital contributor: uploads, sees its own site's data
    licensee = "licensee"  # downloads the releases licensed to them, nothing else


class ResourceKind(enum.StrEnum):
    """What a project groups: the sites whose data it uses, its cohorts, its releases, and series stored into it."""

    site = "site"
    cohort = "cohort"
    release = "release"
    series = "series"  # objects stored into the project (SEG/SR from the viewer, uploads)
    annotation = "annotation"  # an annotation project (curata annotate) read by this project's members


class User(Base):
    __tablename__ = "platform_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    memberships: Mapped[list[Membership]] = relationship(back_populates="user")


class ApiToken(Base):
    """A bearer token for scripts: ``cur_<prefix>_<secret>``; only its sha256 is kept."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("platform_user.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A browser session. The cookie holds a random id; the table holds its sha256 and the CSRF token.
    A new id is minted at every login (no session fixation) and deleted at logout."""

    __tablename__ = "web_session"
    id: Mapped[int] = mapped_column(primary_key=True)
    id_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("platform_user.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Project(Base):
    __tablename__ = "project"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(256), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    memberships: Mapped[list[Membership]] = relationship(back_populates="project")
    resources: Mapped[list[ProjectResource]] = relationship(back_populates="project")


class Membership(Base):
    __tablename__ = "project_member"
    __table_args__ = (UniqueConstraint("user_id", "project_id", "role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("platform_user.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    user: Mapped[User] = relationship(back_populates="memberships")
    project: Mapped[Project] = relationship(back_populates="memberships")


class ProjectResource(Base):
    """A site, cohort or release (by name) that belongs to a project: it bounds what members can see."""

    __tablename__ = "project_resource"
    __table_args__ = (UniqueConstraint("project_id", "kind", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    project: Mapped[Project] = relationship(back_populates="resources")


class LicenceGrant(Base):
    """A release version (``NAME@V``) licensed to one licensee user within a project, until
    ``expires_at`` (none: no end) or until it was revoked (``revoked_at``); an ended grant serves nothing
    and is kept as the record of what was licensed."""

    __tablename__ = "licence_grant"
    __table_args__ = (UniqueConstraint("user_id", "release", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("platform_user.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    release: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    granted_by: Mapped[int | None] = mapped_column(ForeignKey("platform_user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginFailure(Base):
    """One failed login, by username and by client address (for rate limiting); pruned as they age."""

    __tablename__ = "login_failure"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class AuditEvent(Base):
    """Who did what, when: logins, views of a series, downloads, changes. Each is also appended to the
    transparency log (``ledger_index``) with the user as a salted commitment."""

    __tablename__ = "audit_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("platform_user.id"), index=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str] = mapped_column(String(256), default="")
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ledger_index: Mapped[int | None] = mapped_column(Integer)

"""Publishing tables: releases, their immutable versions, members (series with their split), exports to
licensees and consent withdrawals. Files themselves live in the store, listed by each version's manifest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from curata.catalog.models import Base, utcnow


class Release(Base):
    """A named dataset; its content lives in numbered, immutable versions (NAME@1, NAME@2...)."""

    __tablename__ = "release"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    versions: Mapped[list[ReleaseVersion]] = relationship(
        back_populates="release", order_by="ReleaseVersion.version"
    )


class ReleaseVersion(Base):
    """One immutable build. ``content_key`` is the sha256 of everything that shapes the content; the same
    key never makes a second version. ``manifest_digest`` names manifest.json in the store."""

    __tablename__ = "release_version"
    __table_args__ = (UniqueConstraint("release_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("release.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_key: Mapped[str] = mapped_column(String(64), index=True)
    manifest_digest: Mapped[str] = mapped_column(String(64))
    merkle_root: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(Text, default="created")
    ledger_index: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    release: Mapped[Release] = relationship(back_populates="versions")
    members: Mapped[list[ReleaseMember]] = relationship(back_populates="version")

    @property
    def label(self) -> str:
        return f"{self.release.name}@{self.version}"


class ReleaseMember(Base):
    """A series in a version, and the split its patient belongs to."""

    __tablename__ = "release_member"
    __table_args__ = (UniqueConstraint("version_id", "series_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("release_version.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    split: Mapped[str] = mapped_column(String(16))
    version: Mapped[ReleaseVersion] = relationship(back_populates="members")


class ReleaseExport(Base):
    """A licensee's fingerprinted copy of a version. ``mark`` is the keyed mark its files carry."""

    __tablename__ = "release_export"
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("release_version.id"), index=True)
    licensee: Mapped[str] = mapped_column(String(128), index=True)
    mark: Mapped[str] = mapped_column(String(64), unique=True)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    ledger_index: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    version: Mapped[ReleaseVersion] = relationship()


class ConsentWithdrawal(Base):
    """A patient who withdrew consent: excluded from every later version of every release.
    ``salt`` keeps the log's commitment to the pseudonym unlinkable without the catalog."""

    __tablename__ = "consent_withdrawal"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), unique=True)
    salt: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

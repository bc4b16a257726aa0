"""Selection tables: QC measurements keyed by content, verdicts with reasons, rule sets and cohorts.

- ``qc_measurement``: the metrics of one series' content. ``qc_key`` is the sha256 of the series'
  sorted blob digests and the QC code version, so a re-run finds the key and measures nothing new,
  and a series that gains or loses an instance is measured again.
- ``qc_verdict``: the current decision for a series under the active rule set: passed or not, every
  rule that fired with the values it saw, the rule-set digest and the code version. Each decision is
  also recorded as a ``Provenance`` row (step ``qc.decide``) so the ledger can log it.
- ``qc_ruleset``: every rule set ever applied (TOML text, by digest); the newest is active.
- ``cohort`` / ``cohort_series``: a named query and the series it matched when it was taken.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from curata.catalog.models import Base, utcnow


class QcMeasurement(Base):
    __tablename__ = "qc_measurement"
    id: Mapped[int] = mapped_column(primary_key=True)
    qc_key: Mapped[str] = mapped_column(String(64), unique=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    thumbnail_digest: Mapped[str | None] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(64))
    seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class QcVerdict(Base):
    __tablename__ = "qc_verdict"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), unique=True)
    qc_key: Mapped[str] = mapped_column(String(64), index=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    warned: Mapped[bool] = mapped_column(Boolean, default=False)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    ruleset_digest: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class QcRuleSet(Base):
    __tablename__ = "qc_ruleset"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Cohort(Base):
    __tablename__ = "cohort"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    query: Mapped[str] = mapped_column(Text)
    series_count: Mapped[int] = mapped_column(Integer, default=0)
    code_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CohortSeries(Base):
    __tablename__ = "cohort_series"
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohort.id"), primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), primary_key=True, index=True)

"""Catalog models. Only pseudonymous, de-identified values are ever stored here.

Other stages declare their own tables on the same ``Base`` (in ``curata/<stage>/models.py``) and add
Alembic migrations of their own on top of ``0001_initial``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Site(Base):
    """A contributing hospital or imaging centre."""

    __tablename__ = "site"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    region: Mapped[str | None] = mapped_column(String(128))
    country: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    patients: Mapped[list[Patient]] = relationship(back_populates="site")


class Patient(Base):
    """A patient known only by a keyed pseudonym (never a real name or ID)."""

    __tablename__ = "patient"
    __table_args__ = (UniqueConstraint("site_id", "pseudonym"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    pseudonym: Mapped[str] = mapped_column(String(64), index=True)
    sex: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    site: Mapped[Site] = relationship(back_populates="patients")
    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    __tablename__ = "study"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_date: Mapped[str | None] = mapped_column(String(8))  # DICOM DA, shifted per patient
    study_time: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    patient_age_years: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    """A series and the header fields curators filter on."""

    __tablename__ = "series"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_number: Mapped[int | None] = mapped_column(Integer)
    modality: Mapped[str | None] = mapped_column(String(16), index=True)
    body_part: Mapped[str | None] = mapped_column(String(64), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    protocol_name: Mapped[str | None] = mapped_column(Text)
    sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    manufacturer: Mapped[str | None] = mapped_column(String(64), index=True)
    model: Mapped[str | None] = mapped_column(String(64))
    series_date: Mapped[str | None] = mapped_column(String(8))
    slice_thickness: Mapped[float | None] = mapped_column(Float)
    spacing_between_slices: Mapped[float | None] = mapped_column(Float)
    pixel_spacing_row: Mapped[float | None] = mapped_column(Float)
    pixel_spacing_col: Mapped[float | None] = mapped_column(Float)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax: Mapped[str | None] = mapped_column(String(64))
    image_type: Mapped[str | None] = mapped_column(String(128))
    kvp: Mapped[float | None] = mapped_column(Float)
    magnetic_field_strength: Mapped[float | None] = mapped_column(Float)
    sequence_name: Mapped[str | None] = mapped_column(String(64))
    contrast_agent: Mapped[str | None] = mapped_column(String(64))
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Blob(Base):
    """A stored object, named by the sha256 of its bytes."""

    __tablename__ = "blob"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(64), default="application/dicom")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Instance(Base):
    __tablename__ = "instance"
    __table_args__ = (Index("ix_instance_series_number", "series_id", "instance_number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    blob_digest: Mapped[str] = mapped_column(ForeignKey("blob.digest"), index=True)
    source_digest: Mapped[str | None] = mapped_column(String(64), index=True)  # sha256 of the input file
    transfer_syntax: Mapped[str | None] = mapped_column(String(64))
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    image_position: Mapped[list[Any] | None] = mapped_column(JSON)
    image_orientation: Mapped[list[Any] | None] = mapped_column(JSON)
    slice_location: Mapped[float | None] = mapped_column(Float)
    acquisition_number: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    series: Mapped[Series] = relationship(back_populates="instances")
    blob: Mapped[Blob] = relationship()


class QuarantineItem(Base):
    """An input Curata refused, with the reason. At a site the bytes stay in its quarantine folder, never
    in the store; ``input_digest`` names them there. A central platform keeps no bytes of what it
    refuses, only this row. No source path: paths can hold patient names."""

    __tablename__ = "quarantine_item"
    __table_args__ = (UniqueConstraint("stage", "input_digest"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(String(32))  # ingest, deid, gateway, qc...
    input_digest: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Provenance(Base):
    """How an output came to be: its inputs, the step, its parameters and the code version.

    ``key`` is the sha256 of (step, inputs, parameters, code version): the cache key that makes a re-run
    do nothing new. Every stage records its work here; the ledger appends these records.
    """

    __tablename__ = "provenance"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    step: Mapped[str] = mapped_column(String(64), index=True)
    inputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    code_version: Mapped[str] = mapped_column(String(64))
    output: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

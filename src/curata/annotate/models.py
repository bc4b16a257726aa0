"""Annotation tables: projects and their schemas, readers, tasks, reads (immutable, versioned),
agreement between reads and the accepted label of each task.

- ``annotation_project``: one project on one cohort; its reading rules (readers per task, blinding,
  whether AI drafts are shown, agreement thresholds below which a case goes to an adjudicator).
- ``annotation_schema``: every version of a project's labels (codes, colour, kind) and instructions;
  the newest is in force, reads name the version they were filed under.
- ``annotation_reader``: a person reading for a project, by user name and site (the web platform's
  accounts are referenced by name, no foreign key, so this stage stands on its own).
- ``annotation_task``: one series (or study) to read; ``state`` follows TaskState.
- ``task_assignment``: a reader on a task, with their own state and the time they spent.
- ``annotation_read``: one filed object (a DICOM SEG/SR, an imported NIfTI/NRRD/RTSTRUCT, or an AI
  draft), with the label map it was converted to on the image grid. Never changed: a correction is a
  new version naming the one it corrects (``supersedes_id``).
- ``task_agreement``: the agreement figures of one label between two reads.
- ``accepted_label``: the label a task ends with, how it was decided, by whom, from which reads.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from curata.catalog.models import Base, utcnow


class TaskState(StrEnum):
    to_do = "to_do"
    in_progress = "in_progress"
    submitted = "submitted"  # every reader has filed a read
    in_review = "in_review"  # reads agree: waiting for the review that accepts them
    adjudication = "adjudication"  # reads disagree beyond the project's thresholds
    accepted = "accepted"


class AssignmentState(StrEnum):
    to_do = "to_do"
    in_progress = "in_progress"
    submitted = "submitted"


class ReadKind(StrEnum):
    seg = "seg"  # DICOM Segmentation
    sr = "sr"  # DICOM SR (TID 1500 measurements, or a reading report)
    nifti = "nifti"
    nrrd = "nrrd"
    rtstruct = "rtstruct"
    draft = "draft"  # an AI pre-annotation: a separate, marked object


class Decision(StrEnum):
    review = "review"  # reads agreed; a reviewer accepted their consensus
    accept_read = "accept_read"  # the adjudicator took one read as it is
    edit = "edit"  # the adjudicator filed an edited version of one read
    staple = "staple"  # STAPLE consensus of the reads


class AnnotationProject(Base):
    __tablename__ = "annotation_project"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    cohort: Mapped[str] = mapped_column(String(128))
    unit: Mapped[str] = mapped_column(String(16), default="series")  # series | study
    readers_per_task: Mapped[int] = mapped_column(Integer, default=2)
    blinded: Mapped[bool] = mapped_column(Boolean, default=True)
    show_drafts: Mapped[bool] = mapped_column(Boolean, default=False)
    skip_own_site: Mapped[bool] = mapped_column(Boolean, default=False)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report_template: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnnotationSchema(Base):
    __tablename__ = "annotation_schema"
    __table_args__ = (UniqueConstraint("project_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("annotation_project.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    instructions: Mapped[str] = mapped_column(Text, default="")
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnnotationReader(Base):
    __tablename__ = "annotation_reader"
    __table_args__ = (UniqueConstraint("project_id", "user_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("annotation_project.id"), index=True)
    user_name: Mapped[str] = mapped_column(String(128))
    site: Mapped[str | None] = mapped_column(String(128))
    adjudicator: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnnotationTask(Base):
    __tablename__ = "annotation_task"
    __table_args__ = (UniqueConstraint("project_id", "series_uid"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("annotation_project.id"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    site: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default=TaskState.to_do, index=True)
    priority: Mapped[float | None] = mapped_column(Float)  # active-learning score, higher first
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TaskAssignment(Base):
    __tablename__ = "task_assignment"
    __table_args__ = (UniqueConstraint("task_id", "reader"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("annotation_task.id"), index=True)
    reader: Mapped[str] = mapped_column(String(128), index=True)
    state: Mapped[str] = mapped_column(String(16), default=AssignmentState.to_do)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seconds_spent: Mapped[float] = mapped_column(Float, default=0.0)
    assigned_by: Mapped[str] = mapped_column(String(16), default="auto")  # auto | hand


class AnnotationRead(Base):
    __tablename__ = "annotation_read"
    __table_args__ = (UniqueConstraint("task_id", "reader", "kind", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("annotation_task.id"), index=True)
    reader: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=1)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("annotation_read.id"))
    schema_version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(64))  # stow, import, assist:<model>, edit
    object_digest: Mapped[str] = mapped_column(String(64))  # the filed object's bytes in the store
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    labelmap_digest: Mapped[str | None] = mapped_column(String(64))  # npz on the image grid
    labels_present: Mapped[list[Any]] = mapped_column(JSON, default=list)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # classifications, findings
    is_draft: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TaskAgreement(Base):
    __tablename__ = "task_agreement"
    __table_args__ = (UniqueConstraint("task_id", "read_a_id", "read_b_id", "label"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("annotation_task.id"), index=True)
    read_a_id: Mapped[int] = mapped_column(ForeignKey("annotation_read.id"))
    read_b_id: Mapped[int] = mapped_column(ForeignKey("annotation_read.id"))
    label: Mapped[str] = mapped_column(String(128))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    passed: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AcceptedLabel(Base):
    __tablename__ = "accepted_label"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("annotation_task.id"), unique=True)
    decision: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str] = mapped_column(String(128))
    read_id: Mapped[int | None] = mapped_column(ForeignKey("annotation_read.id"))  # accept_read / edit
    readers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    read_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    agreement: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    labelmap_digest: Mapped[str] = mapped_column(String(64))
    seg_digest: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReadingReport(Base):
    """A structured reading report: written by one reader, signed off by another; never changed (a
    correction is a new version naming the old one). Signing writes the DICOM SR."""

    __tablename__ = "reading_report"
    __table_args__ = (UniqueConstraint("task_id", "author", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("annotation_task.id"), index=True)
    author: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer, default=1)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("reading_report.id"))
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    signed_by: Mapped[str | None] = mapped_column(String(128))
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sr_digest: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

"""The slide table: what a whole-slide image is, beside its DICOM-WSI series (no identity).

One row per slide, tied to the series its DICOM-WSI levels were filed under. ``vendor_blob_digest``
names the de-identified vendor file when the site keeps it (``[wsi] keep_vendor_file``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from curata.catalog.models import Base, utcnow


class Slide(Base):
    __tablename__ = "slide"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), unique=True)
    slide_id: Mapped[str] = mapped_column(String(64), index=True)
    vendor: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    levels: Mapped[int] = mapped_column(Integer)
    mpp: Mapped[float | None] = mapped_column(Float)
    magnification: Mapped[float | None] = mapped_column(Float)
    scanner: Mapped[str | None] = mapped_column(String(128))
    stain: Mapped[str | None] = mapped_column(String(64))
    organ: Mapped[str | None] = mapped_column(String(64))
    tile_size: Mapped[int | None] = mapped_column(Integer)
    compression: Mapped[str | None] = mapped_column(String(32))
    removed_images: Mapped[list[Any]] = mapped_column(JSON, default=list)
    vendor_blob_digest: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

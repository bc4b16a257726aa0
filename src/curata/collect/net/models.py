"""Gateway state tables: what the gateway received from peers and what it pushed to a platform.

Source UIDs are never stored in clear: ``source_key`` is an HMAC-SHA256 of the source SOP Instance
UID under the site secret, so a resumed pull can tell which instances it already holds while the
catalog keeps only pseudonymous values.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from curata.catalog.models import Base, utcnow


class GatewayReceived(Base):
    """One instance the gateway filed from a peer (C-STORE, C-MOVE, C-GET, WADO-RS, STOW-RS)."""

    __tablename__ = "gateway_received"
    id: Mapped[int] = mapped_column(primary_key=True)
    source_key: Mapped[str] = mapped_column(String(64), unique=True)  # keyed hash of the source UID
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)  # de-identified UID
    peer: Mapped[str | None] = mapped_column(String(64))  # calling AE title or "dicomweb"
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GatewayPush(Base):
    """One instance delivered to (and verified by) a central platform."""

    __tablename__ = "gateway_push"
    __table_args__ = (UniqueConstraint("target", "blob_digest"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    target: Mapped[str] = mapped_column(String(255), index=True)
    blob_digest: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    pushed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

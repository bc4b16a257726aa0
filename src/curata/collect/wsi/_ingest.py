"""The ingest side of slides: one vendor file in, a de-identified DICOM-WSI series (and its slide row) out."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from curata.catalog import Series, index_fields
from curata.collect.wsi.models import Slide
from curata.collect.wsi.service import (
    SlideIngest,
    SlideSettings,
    convert_mrxs_slide,
    deidentify_slide,
    read_sidecar,
)
from curata.errors import InputError


def ingest_slide_outcome(name: str, raw: bytes, digest: str, ctx: Any) -> Any:
    """De-identify, convert and store one vendor slide; never raises for a bad slide (quarantine)."""

    try:
        identity, settings, pseudo = _site_inputs(name, ctx)
        result = deidentify_slide(
            raw, key=ctx.key, source=name, identity=identity, settings=settings, pseudo=pseudo
        )
        return _stored(name, raw, digest, ctx, result)
    except Exception as exc:  # a bad or unforeseen slide: quarantine, never stop the batch
        return _quarantined(name, raw, digest, ctx, exc)


def _site_inputs(name: str, ctx: Any) -> tuple[Any, SlideSettings, Any]:
    """The slide's sidecar identity, the site's slide settings and its pseudonymiser; a vendor file
    that reaches an ingest without de-identification is refused."""
    if not ctx.deidentify:
        raise InputError(
            "a vendor slide file reached the central platform without de-identification; refused",
            hint="ingest slides at a site (with de-identification), which converts them to DICOM-WSI",
        )
    pseudo = ctx.deidentifier.pseudo if ctx.deidentifier is not None else None
    return read_sidecar(name), SlideSettings.from_config(getattr(ctx, "wsi", None)), pseudo


def _quarantined(name: str, raw: bytes, digest: str, ctx: Any, exc: Exception) -> Any:
    """The slide quarantined with a reason fit to keep (an unforeseen error's message may quote the
    input: only its type and where it happened are kept)."""
    from curata.collect.ingest import IngestOutcome, refuse_bytes
    from curata.collect.reasons import safe_reason

    reason = safe_reason(exc)
    refuse_bytes(ctx, digest, raw, name, reason, "ingest")  # the platform keeps no raw slide
    return IngestOutcome("quarantined", name, input_digest=digest, reason=reason, size=len(raw))


def ingest_mrxs_outcome(name: str, raw: bytes, digest: str, ctx: Any) -> Any:
    """A 3DHISTECH ``.mrxs`` file with its data folder: converted to DICOM-WSI from OpenSlide reads
    (label and macro never read, the vendor folder never kept); a broken slide is quarantined."""
    from pathlib import Path

    from curata.collect.ingest import IngestOutcome
    from curata.collect.wsi.mrxs import mrxs_digest

    try:
        if "!" in name or not Path(name).is_file():
            raise InputError(
                "an MRXS slide must be ingested from a folder on disk (its data folder beside it)",
                hint="unpack archives first: the .mrxs file needs the folder of the same name",
            )
        digest = mrxs_digest(Path(name), raw)
        if digest in ctx.known_inputs:
            return IngestOutcome("present", name, input_digest=digest)
        identity, settings, pseudo = _site_inputs(name, ctx)
        result = convert_mrxs_slide(
            Path(name), raw, key=ctx.key, identity=identity, settings=settings, pseudo=pseudo
        )
        return _stored(name, raw, digest, ctx, result)
    except Exception as exc:  # a bad or unforeseen slide: quarantine, never stop the batch
        return _quarantined(name, raw, digest, ctx, exc)


def _stored(name: str, raw: bytes, digest: str, ctx: Any, result: SlideIngest) -> Any:
    """Put a converted slide's instances (and its vendor file, if kept) in the store."""
    from curata.collect.ingest import IngestOutcome

    children: list[Any] = []
    for blob_bytes, ds in zip(result.instances, result.datasets, strict=True):
        fields = index_fields(ds)
        blob = ctx.store.put_bytes(blob_bytes)
        children.append(
            IngestOutcome(
                "ingested",
                name,
                input_digest=digest,
                sop_instance_uid=fields["instance"]["sop_instance_uid"],
                blob_digest=blob,
                size=len(blob_bytes),
                fields=fields,
                deid_record=result.deid.record.as_dict() if not children else None,
            )
        )
    slide = dict(result.slide_fields)
    if result.vendor_bytes is not None:
        slide["vendor_blob_digest"] = ctx.store.put_bytes(result.vendor_bytes)
    if ctx.deidentifier is not None and ctx.deidentifier.vault is not None:
        ctx.deidentifier.vault.append(result.deid.reid)
    first = children[0]
    return IngestOutcome(
        "ingested",
        name,
        input_digest=digest,
        sop_instance_uid=first.sop_instance_uid,
        blob_digest=first.blob_digest,
        size=sum(c.size for c in children),
        fields=first.fields,
        children=children,
        slide=slide,
    )


def file_slide(session: Session, series_uid: str, fields: dict[str, Any]) -> Slide:
    """The slide row of a series (created once; a re-ingest finds it)."""
    series = session.scalar(select(Series).where(Series.series_uid == series_uid))
    if series is None:
        raise InputError(f"no series {series_uid} to attach the slide to")
    session.flush()
    row = session.scalar(select(Slide).where(Slide.series_id == series.id))
    if row is None:
        allowed = {c.name for c in Slide.__table__.columns} - {"id", "series_id", "created_at"}
        row = Slide(series_id=series.id, **{k: v for k, v in fields.items() if k in allowed})
        session.add(row)
        session.flush()
    return row


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""Provenance records and the cache key every stage uses to skip work it has done."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from curata import __version__
from curata.catalog.models import Provenance


def code_version() -> str:
    return f"curata {__version__}"


def cache_key(
    step: str, inputs: Sequence[str], parameters: dict[str, Any], version: str | None = None
) -> str:
    """sha256 over a canonical JSON of (step, inputs, parameters, code version)."""
    payload = json.dumps(
        {
            "step": step,
            "inputs": list(inputs),
            "parameters": parameters,
            "code_version": version or code_version(),
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def find(session: Session, key: str) -> Provenance | None:
    return session.scalar(select(Provenance).where(Provenance.key == key))


def record(
    session: Session,
    step: str,
    inputs: Sequence[str],
    parameters: dict[str, Any],
    output: dict[str, Any],
    *,
    version: str | None = None,
) -> Provenance:
    """Add (or return the existing) provenance record for this unit of work. Caller commits."""
    version = version or code_version()
    key = cache_key(step, inputs, parameters, version)
    existing = find(session, key)
    if existing is not None:
        return existing
    prov = Provenance(
        key=key, step=step, inputs=list(inputs), parameters=parameters, code_version=version, output=output
    )
    session.add(prov)
    return prov


# Objects a platform member stored through a project's STOW-RS (SEG/SR/RTSTRUCT made in a viewer):
# checked at the door, not de-identified by a site, and never a release's label on that alone.
VIEWER_STOW = "viewer.stow"


def stowed_blobs(session: Session) -> set[str]:
    """Blob digests of every object stored through a project's STOW-RS (``VIEWER_STOW`` records)."""
    rows = session.scalars(select(Provenance.output).where(Provenance.step == VIEWER_STOW))
    return {str(out.get("blob")) for out in rows if isinstance(out, dict) and out.get("blob")}

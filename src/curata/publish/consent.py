"""Versions a consent withdrawal left behind: a version is immutable, so one built before a patient
withdrew keeps their series. Such a version is no longer handed out: no new export, licence grant or
download of it; the message names the newer version to use instead. It counts patients only (no
pseudonym: the message may reach a licensee).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from curata.publish.models import ConsentWithdrawal, ReleaseMember

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from curata.workspace import Workspace


@dataclass(frozen=True)
class Superseded:
    """``ref`` holds ``patients`` who withdrew consent; ``use`` is the newest version holding none of them
    (None where every version still does: ``curata release withdraw`` builds one)."""

    ref: str
    patients: int
    use: str | None

    @property
    def message(self) -> str:
        who = f"{self.patients} patient{'s' if self.patients != 1 else ''} withdrawn since"
        if self.use:
            return f"{self.ref} holds {who}; use {self.use}"
        return f"{self.ref} holds {who}; no later version leaves them out yet"

    @property
    def hint(self) -> str:
        if self.use:
            return f"{self.use} is the same release without them"
        name = self.ref.split("@", 1)[0]
        return f"`curata release withdraw {name} --patient SITE/PSEUDONYM` builds a version without them"


def _withdrawn_in(session: Session, version_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(func.distinct(ReleaseMember.patient_id))).where(
                ReleaseMember.version_id == version_id,
                ReleaseMember.patient_id.in_(select(ConsentWithdrawal.patient_id)),
            )
        )
        or 0
    )


def superseded_in(session: Session, ref: str) -> Superseded | None:
    """Why ``ref`` (``NAME@V`` or ``NAME``) may not be handed out any more, or None where it may."""
    from curata.publish.release import get_version

    version = get_version(session, ref)
    count = _withdrawn_in(session, version.id)
    if not count:
        return None
    label = f"{version.release.name}@{version.version}"
    use = None
    for later in reversed(version.release.versions):
        if later.version > version.version and not _withdrawn_in(session, later.id):
            use = f"{later.release.name}@{later.version}"
            break
    return Superseded(label, count, use)


def superseded(ws: Workspace, ref: str) -> Superseded | None:
    with ws.catalog.session() as session:
        return superseded_in(session, ref)


def superseded_versions(ws: Workspace) -> list[Superseded]:
    """Every version of every release that holds a patient withdrawn since."""
    from curata.publish.models import ReleaseVersion

    with ws.catalog.session() as session:
        ids = session.scalars(
            select(ReleaseMember.version_id)
            .where(ReleaseMember.patient_id.in_(select(ConsentWithdrawal.patient_id)))
            .distinct()
        )
        out = []
        for vid in sorted(set(ids)):
            v = session.get(ReleaseVersion, vid)
            assert v is not None
            found = superseded_in(session, f"{v.release.name}@{v.version}")
            if found is not None:
                out.append(found)
        return out


def exported_to(ws: Workspace, ref: str) -> set[str]:
    """The licensees ``ref`` (``NAME@V``) was exported to."""
    from curata.publish.models import Release, ReleaseExport, ReleaseVersion

    name, _, ver = ref.partition("@")
    with ws.catalog.session() as session:
        return set(
            session.scalars(
                select(ReleaseExport.licensee)
                .join(ReleaseVersion, ReleaseExport.version_id == ReleaseVersion.id)
                .join(Release, ReleaseVersion.release_id == Release.id)
                .where(Release.name == name, ReleaseVersion.version == int(ver))
            )
        )


def check_may_hand_out(ws: Workspace, ref: str) -> None:
    """Refuse (ReleaseError) a new export, grant or download of a version a withdrawal left behind."""
    from curata.publish.release import ReleaseError

    found = superseded(ws, ref)
    if found is not None:
        raise ReleaseError(found.message, hint=found.hint)

"""Accounts, projects, roles, API tokens, web sessions, licence grants and the audit trail.

Typed functions over a workspace; they return frozen records and never print. The CLI
(``curata user``, ``curata project``) and the HTTP routers call these and hold no logic of their own.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from curata.errors import CurataError
from curata.server.models import (
    ApiToken,
    AuditEvent,
    LicenceGrant,
    LoginFailure,
    Membership,
    Project,
    ProjectResource,
    ResourceKind,
    Role,
    User,
    WebSession,
)

if TYPE_CHECKING:
    from curata.workspace import Workspace

# Login failures: at most this many per username (or 4x per client address) within the window.
LOGIN_FAILURES_ALLOWED = 5
LOGIN_WINDOW = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "cur_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_hasher = PasswordHasher()  # argon2id, the library's current parameters
# A hash to verify against when the user does not exist, so timing does not tell who exists.
_DUMMY_HASH = _hasher.hash("curata-no-such-user")


class AuthError(CurataError):
    """A login, token or permission was refused. ``status`` is the HTTP status the server answers."""

    def __init__(self, message: str, *, hint: str | None = None, status: int = 401) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class RateLimited(AuthError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too many failed logins; try again later",
            hint=f"wait {retry_after} s, or ask an admin to reset the password",
            status=429,
        )
        self.retry_after = retry_after


class AccountError(CurataError):
    """A user, project or role name is wrong or already taken."""

    exit_code = 2


# -- records -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserRecord:
    id: int
    username: str
    display_name: str
    platform_admin: bool
    active: bool
    roles: dict[str, list[str]] = field(default_factory=dict)  # project -> roles


@dataclass(frozen=True)
class ProjectRecord:
    id: int
    name: str
    title: str
    description: str
    sites: list[str] = field(default_factory=list)
    cohorts: list[str] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)  # username -> roles
    annotations: list[str] = field(default_factory=list)  # annotation projects read here


@dataclass(frozen=True)
class NewToken:
    token: str  # shown once; only its sha256 is kept
    id: int
    name: str
    username: str


@dataclass(frozen=True)
class NewSession:
    session_id: str  # goes into the cookie; only its sha256 is kept
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user (by session or API token) or the legacy shared gateway token."""

    user_id: int | None
    username: str
    platform_admin: bool
    via: str  # "session", "token" or "service"
    csrf_token: str = ""

    @property
    def is_service(self) -> bool:
        return self.via == "service"


@dataclass(frozen=True)
class Grant:
    release: str
    version: int
    project: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.release}@{self.version}"


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    username: str
    action: str
    target: str
    project: str
    ledger_index: int | None


# -- helpers -----------------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name or ""):
        raise AccountError(
            f"{kind} name {name!r} is not allowed",
            hint="use 1-64 letters, digits, and . _ @ - (starting with a letter or digit)",
        )
    return name


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise AccountError(
            f"unknown role {value!r}", hint=f"use one of {', '.join(r.value for r in Role)}"
        ) from None


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
            hint="use a passphrase of several words",
        )


def _user(s: Session, username: str) -> User:
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountError(f"no user {username!r}", hint="`curata user ls` lists the accounts")
    return user


def _project(s: Session, name: str) -> Project:
    project = s.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise AccountError(f"no project {name!r}", hint="`curata project ls` lists the projects")
    return project


def _user_record(s: Session, user: User) -> UserRecord:
    roles: dict[str, list[str]] = {}
    rows = s.execute(
        select(Project.name, Membership.role)
        .join(Project, Membership.project_id == Project.id)
        .where(Membership.user_id == user.id)
        .order_by(Project.name, Membership.role)
    )
    for project, role in rows:
        roles.setdefault(project, []).append(role)
    return UserRecord(user.id, user.username, user.display_name, user.platform_admin, user.active, roles)


# -- users -------------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(
    ws: Workspace, username: str, password: str, *, display_name: str = "", platform_admin: bool = False
) -> UserRecord:
    """A new account. ``platform_admin`` may manage users and projects and sees every project."""
    _check_name("user", username)
    _check_password(password)
    with ws.catalog.session() as s:
        if s.scalar(select(User.id).where(User.username == username)) is not None:
            raise AccountError(
                f"user {username!r} already exists", hint="`curata user passwd` changes a password"
            )
        user = User(
            username=username,
            display_name=display_name or username,
            password_hash=hash_password(password),
            platform_admin=platform_admin,
        )
        s.add(user)
        s.flush()
        return _user_record(s, user)


def set_password(ws: Workspace, username: str, password: str) -> UserRecord:
    """Change a password; every open session of that user ends and its failed logins are forgotten."""
    _check_password(password)
    with ws.catalog.session() as s:
        user = _user(s, username)
        user.password_hash = hash_password(password)
        s.execute(delete(WebSession).where(WebSession.user_id == user.id))
        s.execute(delete(LoginFailure).where(LoginFailure.username == username))
        return _user_record(s, user)


def set_active(ws: Workspace, username: str, active: bool) -> UserRecord:
    with ws.catalog.session() as s:
        user = _user(s, username)
        user.active = active
        if not active:
            s.execute(delete(WebSession).where(WebSession.user_id == user.id))
        return _user_record(s, user)


def list_users(ws: Workspace) -> list[UserRecord]:
    with ws.catalog.session() as s:
        return [_user_record(s, u) for u in s.scalars(select(User).order_by(User.username))]


def get_user(ws: Workspace, username: str) -> UserRecord:
    with ws.catalog.session() as s:
        return _user_record(s, _user(s, username))


def authenticate(ws: Workspace, username: str, password: str, *, client: str = "") -> UserRecord:
    """Check a password. Failures are counted per username and per client address: past the limit
    every attempt (even a right one) is refused with :class:`RateLimited` until the window passes."""
    now = _now()
    since = now - LOGIN_WINDOW
    with ws.catalog.session() as s:
        s.execute(delete(LoginFailure).where(LoginFailure.at < since))
        by_name = s.scalar(select(func.count(LoginFailure.id)).where(LoginFailure.username == username[:64]))
        by_client = (
            s.scalar(select(func.count(LoginFailure.id)).where(LoginFailure.client == client[:64]))
            if client
            else 0
        )
        if (by_name or 0) >= LOGIN_FAILURES_ALLOWED or (by_client or 0) >= 4 * LOGIN_FAILURES_ALLOWED:
            oldest = s.scalar(
                select(func.min(LoginFailure.at)).where(
                    or_(LoginFailure.username == username[:64], LoginFailure.client == client[:64])
                )
            )
            retry = int(((_aware(oldest) if oldest else now) + LOGIN_WINDOW - now).total_seconds()) + 1
            raise RateLimited(max(retry, 1))
        user = s.scalar(select(User).where(User.username == username))
        ok: bool
        try:
            ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or user is None or not user.active:
            s.add(LoginFailure(username=username[:64], client=client[:64], at=now))
            s.commit()
            raise AuthError("wrong username or password", hint="check both; accounts are case-sensitive")
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        s.execute(delete(LoginFailure).where(LoginFailure.username == username))
        return _user_record(s, user)


# -- API tokens --------------------------------------------------------------------------------
def create_token(ws: Workspace, username: str, name: str = "cli", *, days: int | None = None) -> NewToken:
    """A bearer token for scripts (``Authorization: Bearer cur_...``); printed once, stored as sha256."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with ws.catalog.session() as s:
        user = _user(s, username)
        row = ApiToken(
            user_id=user.id,
            name=name,
            token_sha256=_sha256(token),
            expires_at=_now() + timedelta(days=days) if days else None,
        )
        s.add(row)
        s.flush()
        return NewToken(token=token, id=row.id, name=name, username=username)


def revoke_tokens(ws: Workspace, username: str) -> int:
    with ws.catalog.session() as s:
        user = _user(s, username)
        rows = list(
            s.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)))
        )
        for row in rows:
            row.revoked_at = _now()
        return len(rows)


def principal_from_token(ws: Workspace, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    with ws.catalog.session() as s:
        row = s.execute(
            select(ApiToken, User)
            .join(User, ApiToken.user_id == User.id)
            .where(ApiToken.token_sha256 == _sha256(token))
        ).first()
        if row is None:
            return None
        tok, user = row
        if tok.revoked_at is not None or not user.active:
            return None
        if tok.expires_at is not None and _aware(tok.expires_at) < _now():
            return None
        now = _now()
        if tok.last_used_at is None or _aware(tok.last_used_at) < now - timedelta(minutes=1):
            tok.last_used_at = now  # at most one write a minute per token, not one per request
        return Principal(user.id, user.username, user.platform_admin, "token")


# -- web sessions ------------------------------------------------------------------------------
def open_session(ws: Workspace, user_id: int) -> NewSession:
    """A fresh session id (never one the browser offered: no session fixation) and its CSRF token."""
    sid = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    expires = _now() + SESSION_LIFETIME
    with ws.catalog.session() as s:
        s.execute(delete(WebSession).where(WebSession.expires_at < _now()))
        s.add(WebSession(id_sha256=_sha256(sid), user_id=user_id, csrf_token=csrf, expires_at=expires))
    return NewSession(sid, csrf, expires)


def principal_from_session(ws: Workspace, session_id: str) -> Principal | None:
    if not session_id:
        return None
    with ws.catalog.session() as s:
        row = s.execute(
            select(WebSession, User)
            .join(User, WebSession.user_id == User.id)
            .where(WebSession.id_sha256 == _sha256(session_id))
        ).first()
        if row is None:
            return None
        sess, user = row
        if _aware(sess.expires_at) < _now() or not user.active:
            return None
        return Principal(user.id, user.username, user.platform_admin, "session", csrf_token=sess.csrf_token)


def close_session(ws: Workspace, session_id: str) -> None:
    with ws.catalog.session() as s:
        s.execute(delete(WebSession).where(WebSession.id_sha256 == _sha256(session_id)))


# -- projects, members, resources ----------------------------------------------------------------
def _project_record(s: Session, p: Project) -> ProjectRecord:
    res: dict[str, list[str]] = {k.value: [] for k in ResourceKind}
    for r in s.scalars(
        select(ProjectResource).where(ProjectResource.project_id == p.id).order_by(ProjectResource.name)
    ):
        res.setdefault(r.kind, []).append(r.name)
    members: dict[str, list[str]] = {}
    for username, role in s.execute(
        select(User.username, Membership.role)
        .join(User, Membership.user_id == User.id)
        .where(Membership.project_id == p.id)
        .order_by(User.username, Membership.role)
    ):
        members.setdefault(username, []).append(role)
    return ProjectRecord(
        p.id,
        p.name,
        p.title,
        p.description,
        res["site"],
        res["cohort"],
        res["release"],
        res["series"],
        members,
        res["annotation"],
    )


def create_project(ws: Workspace, name: str, *, title: str = "", description: str = "") -> ProjectRecord:
    _check_name("project", name)
    with ws.catalog.session() as s:
        if s.scalar(select(Project.id).where(Project.name == name)) is not None:
            raise AccountError(f"project {name!r} already exists")
        p = Project(name=name, title=title or name, description=description)
        s.add(p)
        s.flush()
        return _project_record(s, p)


def get_project(ws: Workspace, name: str) -> ProjectRecord:
    with ws.catalog.session() as s:
        return _project_record(s, _project(s, name))


def list_projects(ws: Workspace, *, for_user: Principal | None = None) -> list[ProjectRecord]:
    """Every project, or only those ``for_user`` is a member of (platform admins see all)."""
    with ws.catalog.session() as s:
        stmt = select(Project).order_by(Project.name)
        if for_user is not None and not for_user.platform_admin:
            stmt = stmt.where(
                Project.id.in_(select(Membership.project_id).where(Membership.user_id == for_user.user_id))
            )
        return [_project_record(s, p) for p in s.scalars(stmt)]


def add_resource(
    ws: Workspace, project: str, kind: str, name: str, *, by: Principal | None = None
) -> ProjectRecord:
    """Put a site, cohort, release, series or annotation project (by name) into a project; members
    see only what it holds. ``by``: the person asking (the accounts API), who must already reach
    the resource outside this project (:func:`check_reach`: 403, nothing changed); None for the
    operator's CLI and for a stage filing what its own request made (a STOWed series, a new cohort)."""
    k = _resource_kind(kind)
    with ws.catalog.session() as s:
        p = _project(s, project)
        if by is not None:
            _check_reach(s, by, p, k, name)
        if (
            s.scalar(
                select(ProjectResource.id).where(
                    ProjectResource.project_id == p.id,
                    ProjectResource.kind == k.value,
                    ProjectResource.name == name,
                )
            )
            is None
        ):
            s.add(ProjectResource(project_id=p.id, kind=k.value, name=name))
            s.flush()
        return _project_record(s, p)


def remove_resource(ws: Workspace, project: str, kind: str, name: str) -> ProjectRecord:
    """Take a resource out of a project (a project admin's right: narrowing needs no reach)."""
    k = _resource_kind(kind)
    with ws.catalog.session() as s:
        p = _project(s, project)
        s.execute(
            delete(ProjectResource).where(
                ProjectResource.project_id == p.id,
                ProjectResource.kind == k.value,
                ProjectResource.name == name,
            )
        )
        s.flush()
        return _project_record(s, p)


def _resource_kind(kind: str) -> ResourceKind:
    try:
        return ResourceKind(kind)
    except ValueError:
        raise AccountError(
            f"unknown resource kind {kind!r}", hint="use one of site, cohort, release, series, annotation"
        ) from None


def check_reach(ws: Workspace, principal: Principal, project: str, kind: str, name: str) -> None:
    """Refuse (403) unless ``principal`` may widen ``project`` by the resource ``kind``/``name``.

    A project admin manages their project, not the platform: they may add only what they already
    read outside it, as admin of another project that holds the same resource (for a series: whose
    scope holds it). A platform admin adds anything; a resource the project holds already is no
    widening. A name that exists nowhere answers the same as one held by others (no probing)."""
    with ws.catalog.session() as s:
        _check_reach(s, principal, _project(s, project), _resource_kind(kind), name)


def _check_reach(s: Session, who: Principal, p: Project, kind: ResourceKind, name: str) -> None:
    if who.platform_admin:
        return
    holders = select(ProjectResource.project_id).where(
        ProjectResource.kind == kind.value, ProjectResource.name == name
    )
    if s.scalar(holders.where(ProjectResource.project_id == p.id)) is not None:
        return  # held already: nothing widens
    administered = list(
        s.scalars(
            select(Project)
            .join(Membership, Membership.project_id == Project.id)
            .where(Membership.user_id == who.user_id, Membership.role == Role.admin.value, Project.id != p.id)
        )
    )
    if any(s.scalar(holders.where(ProjectResource.project_id == q.id)) is not None for q in administered):
        return
    if kind is ResourceKind.series and _series_in_reach(
        s, who, [_project_record(s, q) for q in administered], name
    ):
        return
    raise AuthError(
        f"you may not add {kind.value} {name!r} to {p.name}: it is in no other project you administer",
        hint="a platform admin widens a project's reach, or the admin of a project that holds it",
        status=403,
    )


def _series_in_reach(s: Session, who: Principal, projects: list[ProjectRecord], series_uid: str) -> bool:
    """Whether ``series_uid`` is in what ``who`` sees, as admin, in one of ``projects``."""
    from curata.catalog import Series
    from curata.server import scope

    for record in projects:
        seen = scope.series_ids(record, {Role.admin}, None, who.username)
        if s.scalar(select(Series.id).where(Series.series_uid == series_uid, Series.id.in_(seen))):
            return True
    return False


def set_role(
    ws: Workspace, username: str, project: str, role: Role | str, *, remove: bool = False
) -> UserRecord:
    """Give (or with ``remove`` take away) a role in a project."""
    r = role if isinstance(role, Role) else parse_role(role)
    with ws.catalog.session() as s:
        user, p = _user(s, username), _project(s, project)
        existing = s.scalar(
            select(Membership).where(
                Membership.user_id == user.id, Membership.project_id == p.id, Membership.role == r.value
            )
        )
        if remove and existing is not None:
            s.delete(existing)
            if r is Role.licensee:
                _revoke_project_grants(s, user.id, p.id)
        elif not remove and existing is None:
            s.add(Membership(user_id=user.id, project_id=p.id, role=r.value))
        s.flush()
        return _user_record(s, user)


def roles_in(ws: Workspace, principal: Principal, project: str) -> tuple[ProjectRecord, set[Role]]:
    """The project and the roles ``principal`` holds in it (a platform admin holds admin everywhere).
    An unknown project and a project the user is not in answer the same (404): no probing for names."""
    with ws.catalog.session() as s:
        p = s.scalar(select(Project).where(Project.name == project))
        if p is None:
            raise AuthError(f"no project {project!r} for you", status=404)
        if principal.platform_admin:
            return _project_record(s, p), set(Role)
        roles = {
            Role(r)
            for r in s.scalars(
                select(Membership.role).where(
                    Membership.user_id == principal.user_id, Membership.project_id == p.id
                )
            )
        }
        if not roles:
            raise AuthError(f"no project {project!r} for you", status=404)
        return _project_record(s, p), roles


def authorize(
    ws: Workspace, principal: Principal, project: str, allowed: Iterable[Role]
) -> tuple[ProjectRecord, set[Role]]:
    """Refuse (403) unless ``principal`` holds one of ``allowed`` in ``project`` (project admins pass)."""
    record, roles = roles_in(ws, principal, project)
    wanted = set(allowed)
    if not (roles & (wanted | {Role.admin})):
        raise AuthError(
            f"your roles in {project} ({', '.join(sorted(roles))}) do not allow this",
            hint=f"needs one of: {', '.join(sorted(wanted))}",
            status=403,
        )
    return record, roles


# -- licence grants ----------------------------------------------------------------------------
def _grant_row(s: Session, user_id: int, name: str, version: int) -> LicenceGrant | None:
    return s.scalar(
        select(LicenceGrant).where(
            LicenceGrant.user_id == user_id, LicenceGrant.release == name, LicenceGrant.version == version
        )
    )


def end_of_day(day: date) -> datetime:
    """A grant's expiry given as a day: it serves through that whole day (UTC)."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def _open(g: LicenceGrant, now: datetime) -> bool:
    return g.revoked_at is None and (g.expires_at is None or _aware(g.expires_at) > now)


def grant_licence(
    ws: Workspace,
    username: str,
    project: str,
    release: str,
    *,
    by: str | None = None,
    expires_at: datetime | None = None,
) -> Grant:
    """License ``NAME@V`` to a licensee user in ``project`` (the release must belong to the project),
    until ``expires_at`` where given. Granting again reopens a revoked or expired grant with the new end.
    A version a consent withdrawal left behind is refused, naming the version to license instead."""
    from curata.publish import superseded

    name, _, ver = release.partition("@")
    if not ver.isdigit():
        raise AccountError(f"{release!r} is not NAME@VERSION", hint="e.g. lung-ct@1")
    if expires_at is not None and _aware(expires_at) <= _now():
        raise AccountError(f"the expiry {expires_at:%Y-%m-%d} is already past")
    with ws.catalog.session() as s:
        user, p = _user(s, username), _project(s, project)
        if (
            s.scalar(
                select(ProjectResource.id).where(
                    ProjectResource.project_id == p.id,
                    ProjectResource.kind == "release",
                    ProjectResource.name == name,
                )
            )
            is None
        ):
            raise AccountError(
                f"release {name!r} is not in project {project!r}",
                hint=f"`curata project add-resource {project} release {name}` first",
            )
        try:
            gone = superseded(ws, f"{name}@{int(ver)}")
        except CurataError:  # a version not built yet: granted as before, checked when it is served
            gone = None
        if gone is not None:
            raise AccountError(gone.message, hint=gone.hint)
        granter = s.scalar(select(User.id).where(User.username == by)) if by else None
        row = _grant_row(s, user.id, name, int(ver))
        if row is None:
            s.add(
                LicenceGrant(
                    user_id=user.id,
                    project_id=p.id,
                    release=name,
                    version=int(ver),
                    granted_by=granter,
                    expires_at=expires_at,
                )
            )
        else:  # an explicit new grant: reopened, with this grant's end
            row.revoked_at, row.expires_at, row.project_id = None, expires_at, p.id
            row.granted_by = granter if granter is not None else row.granted_by
        if (
            s.scalar(
                select(Membership.id).where(
                    Membership.user_id == user.id,
                    Membership.project_id == p.id,
                    Membership.role == Role.licensee.value,
                )
            )
            is None
        ):
            s.add(Membership(user_id=user.id, project_id=p.id, role=Role.licensee.value))
    return Grant(name, int(ver), project, expires_at)


def revoke_licence(ws: Workspace, username: str, project: str, release: str) -> Grant:
    """End the grant of ``NAME@V`` to ``username`` in ``project`` now (kept as the record, serving nothing)."""
    name, _, ver = release.partition("@")
    if not ver.isdigit():
        raise AccountError(f"{release!r} is not NAME@VERSION", hint="e.g. lung-ct@1")
    with ws.catalog.session() as s:
        user, p = _user(s, username), _project(s, project)
        row = _grant_row(s, user.id, name, int(ver))
        if row is None or row.project_id != p.id:
            raise AccountError(f"{username} holds no grant of {release} in {project}")
        if row.revoked_at is None:
            row.revoked_at = _now()
        return Grant(name, int(ver), project, row.expires_at, row.revoked_at)


def _revoke_project_grants(s: Session, user_id: int, project_id: int) -> None:
    """A licensee role taken away ends the user's grants in the project: adding the role back later does
    not bring them back (a new grant does)."""
    now = _now()
    for row in s.scalars(
        select(LicenceGrant).where(
            LicenceGrant.user_id == user_id,
            LicenceGrant.project_id == project_id,
            LicenceGrant.revoked_at.is_(None),
        )
    ):
        row.revoked_at = now


def licences_of(
    ws: Workspace, user_id: int | None, project: str | None = None, *, ended: bool = False
) -> list[Grant]:
    """The user's open grants (revoked and expired ones left out; with ``ended``, those only)."""
    now = _now()
    with ws.catalog.session() as s:
        stmt = (
            select(LicenceGrant, Project.name)
            .join(Project, LicenceGrant.project_id == Project.id)
            .where(LicenceGrant.user_id == user_id)
        )
        if project:
            stmt = stmt.where(Project.name == project)
        return [
            Grant(g.release, g.version, p, g.expires_at, g.revoked_at)
            for g, p in s.execute(stmt.order_by(LicenceGrant.release, LicenceGrant.version))
            if _open(g, now) != ended
        ]


def serving_licences(ws: Workspace, user_id: int | None, project: str) -> list[Grant]:
    """The user's open grants in ``project`` whose version may still be served: a version that holds a
    patient withdrawn since serves nothing, its project DICOMweb view included (the grant stays open as
    the record; ``carry_grants`` licenses the new version in its place)."""
    from curata.publish import superseded_in

    grants = licences_of(ws, user_id, project)
    if not grants:
        return grants
    kept = []
    with ws.catalog.session() as s:
        for g in grants:
            try:
                gone = superseded_in(s, g.label)
            except CurataError:  # a version not built yet (a grant may come first): nothing to serve
                gone = None
            if gone is None:
                kept.append(g)
    return kept


def carry_grants(ws: Workspace) -> list[tuple[str, str, str]]:
    """After a consent withdrawal: each open grant of a version that holds a patient withdrawn since is
    carried to the newest version without them (same project, same end). The licensee must stop using
    the old copy and gets the new one, as a data-access committee asks; the old grant stays, as the record,
    and its version serves no download any more. Returns ``(username, old, new)`` per carried grant."""
    from curata.publish import superseded_in

    now = _now()
    carried: list[tuple[str, str, str]] = []
    with ws.catalog.session() as s:
        rows = list(
            s.execute(select(LicenceGrant, User.username).join(User, LicenceGrant.user_id == User.id))
        )
        seen: dict[str, Any] = {}
        for g, username in rows:
            if not _open(g, now):
                continue
            ref = f"{g.release}@{g.version}"
            if ref not in seen:
                try:
                    seen[ref] = superseded_in(s, ref)
                except CurataError:  # a grant of a version that is not (or no longer) in the catalog
                    seen[ref] = None
            found = seen[ref]
            if found is None or found.use is None:
                continue
            new_version = int(found.use.rsplit("@", 1)[1])
            row = _grant_row(s, g.user_id, g.release, new_version)
            if row is None:
                s.add(
                    LicenceGrant(
                        user_id=g.user_id,
                        project_id=g.project_id,
                        release=g.release,
                        version=new_version,
                        granted_by=g.granted_by,
                        expires_at=g.expires_at,
                    )
                )
            elif _open(row, now) or row.revoked_at is not None:
                continue  # licensed already, or revoked by an admin: a revocation stands
            else:  # expired: carried with the old grant's end
                row.expires_at = g.expires_at
            carried.append((username, ref, found.use))
    return carried


def after_withdrawal(ws: Workspace) -> None:
    """A consent withdrawal was made: the versions it left behind stop being handed out. Their cached
    downloads are deleted and open licence grants of them carried to the newest version without the
    patient (``carry_grants``); both are in the audit trail."""
    from curata.server.web.downloads import purge_superseded

    for ref in purge_superseded(ws):
        record(ws, "download-purged", username="cli", target=ref, detail={"reason": "consent withdrawn"})
    for username, old, new in carry_grants(ws):
        record(ws, "licence-carried", username="cli", target=f"{username}:{old}->{new}")


# -- audit trail ---------------------------------------------------------------------------------
def count_recent(ws: Workspace, username: str, action: str, *, seconds: int) -> int:
    """How many ``action`` audit rows ``username`` has in the last ``seconds`` (a rate bound that holds
    across processes: the rows are in the catalog)."""
    since = _now() - timedelta(seconds=seconds)
    with ws.catalog.session() as s:
        return int(
            s.scalar(
                select(func.count(AuditEvent.id))
                .join(User, User.id == AuditEvent.user_id)
                .where(User.username == username, AuditEvent.action == action, AuditEvent.at >= since)
            )
            or 0
        )


def record(
    ws: Workspace,
    action: str,
    *,
    principal: Principal | None = None,
    username: str = "",
    target: str = "",
    project: str | None = None,
    detail: dict[str, Any] | None = None,
    ledger: Any = None,
) -> AuditRecord:
    """Record an event in the audit table and append it to the transparency log.

    The log gets the action, the target (UIDs, release names: no patient data), the project and the
    user as a salted commitment; ``detail`` stays in the audit table only.
    """
    from curata.ledger import Ledger

    name = principal.username if principal else username
    user_id = principal.user_id if principal else None
    now = _now()
    log = ledger if ledger is not None else Ledger.open(ws)
    payload: dict[str, Any] = {"action": action, "target": target, "project": project or ""}
    try:
        payload["user"] = log.commit("user:" + name) if name else ""
    except CurataError:
        payload["user"] = ""
    entry = log.append("access", payload, time=now)
    with ws.catalog.session() as s:
        if user_id is None and name:
            user_id = s.scalar(select(User.id).where(User.username == name))
            if user_id is None:  # a failed login for a name that is no account: keep what was typed
                detail = {**(detail or {}), "username": name}
        pid = s.scalar(select(Project.id).where(Project.name == project)) if project else None
        ev = AuditEvent(
            at=now,
            user_id=user_id,
            action=action,
            target=target[:256],
            project_id=pid,
            detail=detail or {},
            ledger_index=entry.index,
        )
        s.add(ev)
        s.flush()
        return AuditRecord(ev.id, now, name, action, target, project or "", entry.index)


def audit_events(ws: Workspace, *, limit: int = 200, action: str | None = None) -> list[AuditRecord]:
    with ws.catalog.session() as s:
        stmt = (
            select(AuditEvent, User.username, Project.name)
            .outerjoin(User, AuditEvent.user_id == User.id)
            .outerjoin(Project, AuditEvent.project_id == Project.id)
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        return [
            AuditRecord(
                e.id,
                e.at,
                u or str((e.detail or {}).get("username", "")),
                e.action,
                e.target,
                p or "",
                e.ledger_index,
            )
            for e, u, p in s.execute(stmt)
        ]

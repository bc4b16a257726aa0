"""The catalog: what the platform holds, indexed for curators. SQLite by default, PostgreSQL at scale."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from curata._lazy import lazy_exports
from curata.catalog.models import (
    Base,
    Blob,
    Instance,
    Patient,
    Provenance,
    QuarantineItem,
    Series,
    Site,
    Study,
)
from curata.errors import CatalogError

if TYPE_CHECKING:
    from curata.catalog.dicom_index import RawView, check_required, index_fields
    from curata.catalog.provenance import VIEWER_STOW, cache_key, code_version
    from curata.catalog.query import join_series_to_site, series_rows
    from curata.catalog.service import (
        SeriesFilter,
        describe_object,
        list_patients,
        list_quarantine,
        list_series,
        list_sites,
        list_studies,
        verify_store,
        workspace_status,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "check_required": "dicom_index",
        "index_fields": "dicom_index",
        "RawView": "dicom_index",
        "VIEWER_STOW": "provenance",
        "cache_key": "provenance",
        "code_version": "provenance",
        "join_series_to_site": "query",
        "series_rows": "query",
        "SeriesFilter": "service",
        "describe_object": "service",
        "list_patients": "service",
        "list_quarantine": "service",
        "list_series": "service",
        "list_sites": "service",
        "list_studies": "service",
        "verify_store": "service",
        "workspace_status": "service",
    },
)


def record_provenance(*args: Any, **kwargs: Any) -> Any:
    """:func:`curata.catalog.provenance.record` (re-exported under a name that says what it records)."""
    from curata.catalog.provenance import record

    return record(*args, **kwargs)


def stowed_blobs(*args: Any, **kwargs: Any) -> Any:
    """:func:`curata.catalog.provenance.stowed_blobs`: objects stored through a project's STOW-RS."""
    from curata.catalog.provenance import stowed_blobs as _stowed

    return _stowed(*args, **kwargs)


def find_provenance(*args: Any, **kwargs: Any) -> Any:
    """:func:`curata.catalog.provenance.find`."""
    from curata.catalog.provenance import find

    return find(*args, **kwargs)


__all__ = [
    "VIEWER_STOW",
    "Base",
    "Blob",
    "Catalog",
    "Instance",
    "Patient",
    "Provenance",
    "QuarantineItem",
    "RawView",
    "Series",
    "SeriesFilter",
    "Site",
    "Study",
    "cache_key",
    "check_required",
    "code_version",
    "describe_object",
    "find_provenance",
    "index_fields",
    "join_series_to_site",
    "list_patients",
    "list_quarantine",
    "list_series",
    "list_sites",
    "list_studies",
    "record_provenance",
    "series_rows",
    "stowed_blobs",
    "verify_store",
    "workspace_status",
]

MIGRATIONS = Path(__file__).parent / "migrations"


@functools.lru_cache(maxsize=4)
def _script_heads(location: str) -> frozenset[str]:
    """The head revisions of the migration scripts shipped with this code: read (every script loaded) once
    per process, as the scripts do not change under a running process (a server ingests many times)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", location)
    return frozenset(ScriptDirectory.from_config(cfg).get_heads())


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid database url>"


class Catalog:
    """One database: an engine, a session factory, and the migrations that shape it."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        try:
            self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise CatalogError(
                f"cannot use database {redact_url(url)}: {exc}",
                hint="check CURATA_DATABASE_URL or [catalog] url in curata.toml",
            ) from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def open_session(self) -> Session:
        """A long-lived session the caller commits and closes (a writer that batches transactions)."""
        return self._sessions()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise
        finally:
            session.close()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (every stage's branch)."""
        from alembic import command

        try:
            with self.engine.begin() as conn:
                cfg = self._alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "heads")
        except OperationalError as exc:
            raise CatalogError(
                f"cannot reach database {redact_url(self.url)}: {exc.orig}",
                hint="is the server running and the URL right?",
            ) from exc

    def _alembic_config(self):  # type: ignore[no-untyped-def]
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def current_revisions(self) -> set[str]:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())

    def head_revisions(self) -> set[str]:
        return set(_script_heads(str(MIGRATIONS)))

    def check_schema(self) -> None:
        if (
            not inspect(self.engine).has_table("alembic_version")
            or self.current_revisions() != self.head_revisions()
        ):
            raise CatalogError(
                f"the catalog at {redact_url(self.url)} is not at the current schema",
                hint="run `curata init` on the workspace (it migrates the catalog)",
            )

    def dispose(self) -> None:
        self.engine.dispose()

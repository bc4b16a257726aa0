"""The catalog on both engines: migrations, models, uniqueness, provenance cache keys."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from curata.catalog import Blob, Catalog, Instance, Patient, QuarantineItem, Series, Site, Study
from curata.catalog.models import Base
from curata.catalog.provenance import cache_key, find, record
from curata.errors import CatalogError


def test_migrations_create_every_model_table(database_url: str) -> None:
    cat = Catalog(database_url)
    cat.migrate()
    tables = set(inspect(cat.engine).get_table_names())
    assert {
        t.name
        for t in Base.metadata.sorted_tables
        if t.name
        in {"site", "patient", "study", "series", "instance", "blob", "quarantine_item", "provenance"}
    } <= tables
    assert cat.current_revisions() == cat.head_revisions()
    cat.check_schema()
    cat.migrate()  # idempotent
    cat.dispose()


def test_migrations_match_the_models(database_url: str) -> None:
    """Autogenerate finds nothing to change: the migration history and the models agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import curata.catalog.models as models

    cat = Catalog(database_url)
    cat.migrate()
    with cat.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = [
            d
            for d in compare_metadata(ctx, models.Base.metadata)
            if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")
        ]
    cat.dispose()
    assert diff == []


def test_unmigrated_catalog_is_refused(database_url: str) -> None:
    cat = Catalog(database_url)
    with pytest.raises(CatalogError, match="not at the current schema"):
        cat.check_schema()
    cat.dispose()


def _hierarchy(cat: Catalog) -> None:
    with cat.session() as s:
        site = Site(name="lagos-1", region="West Africa", country="NG")
        pat = Patient(site=site, pseudonym="P-ABC", sex="F")
        st = Study(patient=pat, study_uid="2.25.1", study_date="20240101", patient_age_years=54.0)
        se = Series(study=st, series_uid="2.25.2", modality="CT", rows=512, columns=512, instance_count=1)
        blob = Blob(digest="a" * 64, size=10)
        s.add_all(
            [site, pat, st, se, blob, Instance(series=se, sop_instance_uid="2.25.3", blob_digest="a" * 64)]
        )


def test_hierarchy_round_trips_and_uids_are_unique(database_url: str) -> None:
    cat = Catalog(database_url)
    cat.migrate()
    _hierarchy(cat)
    with cat.session() as s:
        inst = s.scalar(select(Instance).where(Instance.sop_instance_uid == "2.25.3"))
        assert inst is not None
        assert inst.series.study.patient.site.country == "NG"
        assert inst.blob.size == 10
    with pytest.raises(IntegrityError), cat.session() as s:
        se = s.scalar(select(Series))
        s.add(Instance(series=se, sop_instance_uid="2.25.3", blob_digest="a" * 64))
    with pytest.raises(IntegrityError), cat.session() as s:
        s.add(Patient(site_id=s.scalar(select(Site.id)), pseudonym="P-ABC"))
    cat.dispose()


def test_instance_requires_its_blob_row(database_url: str) -> None:
    """Foreign keys hold on both engines: no catalog row may point at an unknown blob."""
    cat = Catalog(database_url)
    cat.migrate()
    _hierarchy(cat)
    with pytest.raises(IntegrityError), cat.session() as s:
        se = s.scalar(select(Series))
        s.add(Instance(series=se, sop_instance_uid="2.25.99", blob_digest="b" * 64))
    cat.dispose()


def test_quarantine_is_unique_per_stage_and_input(database_url: str) -> None:
    cat = Catalog(database_url)
    cat.migrate()
    with cat.session() as s:
        s.add(QuarantineItem(stage="ingest", input_digest="c" * 64, reason="not DICOM"))
    with pytest.raises(IntegrityError), cat.session() as s:
        s.add(QuarantineItem(stage="ingest", input_digest="c" * 64, reason="again"))
    cat.dispose()


def test_provenance_cache_key_and_record(database_url: str) -> None:
    k1 = cache_key("resample", ["d1", "d2"], {"spacing": [1, 1, 1]}, "v1")
    assert k1 == cache_key("resample", ["d1", "d2"], {"spacing": [1, 1, 1]}, "v1")
    assert k1 != cache_key("resample", ["d1", "d2"], {"spacing": [1, 1, 2]}, "v1")
    assert k1 != cache_key("resample", ["d1", "d2"], {"spacing": [1, 1, 1]}, "v2")
    assert k1 != cache_key("resample", ["d2", "d1"], {"spacing": [1, 1, 1]}, "v1")
    cat = Catalog(database_url)
    cat.migrate()
    with cat.session() as s:
        p = record(s, "resample", ["d1"], {"spacing": 1}, {"blob": "x"}, version="v1")
        again = record(s, "resample", ["d1"], {"spacing": 1}, {"blob": "y"}, version="v1")
        assert again is p
    with cat.session() as s:
        got = find(s, cache_key("resample", ["d1"], {"spacing": 1}, "v1"))
        assert got is not None and got.output == {"blob": "x"} and got.code_version == "v1"
    cat.dispose()


def test_unreachable_postgres_is_a_clear_error() -> None:
    cat = Catalog("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(CatalogError, match="cannot reach database"):
        cat.migrate()

"""A catalog from before the Parquet tables upgrades: its SQL rows are indexed, queried and released as
before, new ids start after theirs, and the migration goes down and up again. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import command

from curata.catalog import Catalog, Patient, Site
from curata.collect.clinical import OMOP, clinical_index, clinical_rows
from curata.collect.clinical.models import clinical_id_counter
from curata.collect.genomics.models import genomic_file, genomic_variant
from curata.select.query import parse, to_sql


def _upgrade(cat: Catalog, target: str) -> None:
    with cat.engine.begin() as conn:
        cfg = cat._alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)


def _downgrade(cat: Catalog, target: str) -> None:
    with cat.engine.begin() as conn:
        cfg = cat._alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, target)


def _patients(cat: Catalog, query: str) -> set[str]:
    with cat.session() as s:
        return set(s.scalars(sa.select(Patient.pseudonym).where(to_sql(parse(query).root))))


def test_an_older_catalog_is_indexed_on_upgrade_and_goes_down_again(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cat = Catalog(database_url)
    _upgrade(cat, "0008_clinical")
    person, cond, meas = OMOP["person"], OMOP["condition_occurrence"], OMOP["measurement"]
    with cat.engine.begin() as conn:  # what 0008 wrote: one SQL row per OMOP row and per variant
        site = conn.execute(sa.insert(Site.__table__).values(name="lagos", created_at=dt.datetime.now(dt.UTC)).returning(Site.__table__.c.id)).scalar_one()  # fmt: skip
        for p in ("PA", "PB", "PC"):
            conn.execute(sa.insert(Patient.__table__).values(site_id=site, pseudonym=p, created_at=dt.datetime.now(dt.UTC)))  # fmt: skip
        ids = {}
        for p in ("PA", "PB"):
            ids[p] = conn.execute(
                sa.insert(person).values(site_id=site, pseudonym=p, gender_concept_id=0, race_concept_id=0,
                                         ethnicity_concept_id=0, age_capped=False).returning(person.c.person_id)
            ).scalar_one()  # fmt: skip
        day = dt.date(2024, 2, 20)
        for n, (p, stage, value) in enumerate([("PA", "IIIA", 11.2), ("PA", None, 13.0), ("PB", "IV", 14.5)]):
            conn.execute(sa.insert(cond).values(person_id=ids[p], site_id=site, source_digest="d" * 64,
                                                record_key=f"c{n}", condition_start_date=day, condition_concept_id=0,
                                                condition_type_concept_id=0, condition_source_value="C34.1",
                                                source_display="lung adenocarcinoma", stage=stage,
                                                stage_group=stage and stage[:3].rstrip("AB")))  # fmt: skip
            conn.execute(sa.insert(meas).values(person_id=ids[p], site_id=site, source_digest="d" * 64,
                                                record_key=f"m{n}", measurement_date=day, measurement_concept_id=0,
                                                measurement_type_concept_id=0, measurement_source_value="718-7",
                                                value_as_number=value))  # fmt: skip
        fid = conn.execute(
            sa.insert(genomic_file).values(site_id=site, input_digest="v" * 64, blob_digest="b" * 64, format="vcf",
                                           samples=["PA"], variant_count=1, dropped_header_lines=0)
            .returning(genomic_file.c.id)
        ).scalar_one()  # fmt: skip
        conn.execute(sa.insert(genomic_variant).values(file_id=fid, person_id=ids["PA"], chrom="chr7", pos=55191822,
                                                       ref="T", alt="G", gene="EGFR", consequence="missense_variant",
                                                       zygosity="heterozygous", allele_frequency=0.42))  # fmt: skip
    _upgrade(cat, "heads")
    assert _patients(cat, "clinical.stage in (III, IV)") == {"PA", "PB"}
    assert _patients(cat, "clinical.measurement_value = 11.2") == {"PA"}
    assert _patients(cat, "clinical.measurement_value > 14") == {"PB"}
    assert _patients(cat, "genomic.gene = EGFR and genomic.allele_frequency < 0.5") == {"PA"}
    assert _patients(cat, "not genomic.sequenced") == {"PB", "PC"}
    with cat.session() as s:
        entries = {(r.person_id, r.table_name): r.rows for r in s.execute(sa.select(clinical_index))}
        assert entries[(ids["PA"], "condition_occurrence")] == 2 and entries[(ids["PB"], "measurement")] == 1
        rows = clinical_rows(s, None, "condition_occurrence", [ids["PA"]])  # still read from SQL
        assert [r["stage"] for r in rows] == ["IIIA", None]
        top = s.scalar(sa.select(sa.func.max(cond.c.condition_occurrence_id)))
        counter = s.scalar(
            sa.select(clinical_id_counter.c.next_id).where(
                clinical_id_counter.c.table_name == "condition_occurrence"
            )
        )
        assert counter == top + 1  # new rows' ids come after the old ones
    _downgrade(cat, "0008_clinical")
    assert not sa.inspect(cat.engine).has_table("clinical_index")
    with cat.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(cond)) == 3  # the SQL rows stay
    _upgrade(cat, "heads")
    assert _patients(cat, "clinical.stage = IIIA") == {"PA"}
    cat.engine.dispose()

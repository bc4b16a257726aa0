"""The cohort query language: tokens, errors with a caret, SQL on SQLite and PostgreSQL, and the
Python evaluator (used by the rules) agreeing with SQL row for row."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from curata.catalog import Catalog, Patient, Series, Site, Study
from curata.errors import QueryError
from curata.select.models import QcMeasurement, QcVerdict
from curata.select.query import evaluate, parse, series_select, tokenize


def test_tokens_keep_their_positions() -> None:
    toks = tokenize("modality=CT and qc.noise_hu<20.5 or site in ('a b', x)")
    assert [(t.kind, t.pos) for t in toks[:5]] == [
        ("word", 0),
        ("op", 8),
        ("word", 9),
        ("keyword", 12),
        ("word", 16),
    ]
    assert toks[6].value == 20.5 and any(t.value == "a b" for t in toks)


@pytest.mark.parametrize(
    ("query", "column", "message"),
    [
        ("modality = CT and", 17, "expected a field name"),
        ("modalty = CT", 0, "unknown field 'modalty'"),
        ("slice_thickness <= thin", 19, "is a number"),
        ("qc.noise_hu and modality = CT", 0, "is not yes/no"),
        ("(modality = CT", 14, "expected ')'"),
        ("modality = CT patient_age > 3", 14, "expected 'and', 'or'"),
        ("body_part < CHEST", 10, "not a number"),
        ("site = 'lagos", 7, "unterminated text"),
        ("modality = CT & qc.passed", 14, "unexpected character '&'"),
        ("qc.passed = maybe", 12, "compare it with true or false"),
        ("", 0, "empty query"),
    ],
)
def test_errors_point_at_the_offending_token(query: str, column: int, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    text = info.value.message
    assert message in text
    lines = text.splitlines()
    assert lines[-2].strip() == query.strip()
    indent = len(lines[-2]) - len(lines[-2].lstrip())
    assert lines[-1].index("^") - indent == column


def test_unknown_field_suggests_close_names() -> None:
    with pytest.raises(QueryError) as info:
        parse("qc.nosie_hu < 20")
    assert info.value.hint and "qc.noise_hu" in info.value.hint


def _catalog(url: str) -> Catalog:
    cat = Catalog(url)
    cat.migrate()
    rows = [
        # site, sex, age, modality, body part, thickness, manufacturer, passed, metrics
        (
            "lagos-1",
            "F",
            64,
            "CT",
            "CHEST",
            1.0,
            "GE",
            True,
            {"noise_hu": 12.0, "is_localizer": False, "plane": "AXIAL"},
        ),
        (
            "lagos-1",
            "M",
            45,
            "CT",
            "CHEST",
            1.0,
            "GE",
            True,
            {"noise_hu": 25.0, "is_localizer": False, "plane": "AXIAL"},
        ),
        (
            "lagos-1",
            "F",
            71,
            "CT",
            "CHEST",
            5.0,
            "SIEMENS",
            False,
            {"noise_hu": 40.0, "is_localizer": False, "plane": "AXIAL"},
        ),
        (
            "accra-2",
            "M",
            58,
            "CT",
            "ABDOMEN",
            1.25,
            "Siemens",
            True,
            {"noise_hu": 9.0, "is_localizer": False, "plane": "CORONAL"},
        ),
        (
            "accra-2",
            "F",
            33,
            "MR",
            "BRAIN",
            1.0,
            "Philips",
            False,
            {"snr": 8.0, "is_localizer": True, "plane": "SAGITTAL"},
        ),
        ("accra-2", None, None, "CT", "CHEST", None, None, None, None),  # not measured, unknowns
    ]
    with cat.session() as s:
        sites = {n: Site(name=n) for n in ("lagos-1", "accra-2")}
        for i, (site, sex, age, mod, bp, th, man, passed, metrics) in enumerate(rows):
            p = Patient(site=sites[site], pseudonym=f"P{i}", sex=sex)
            st = Study(patient=p, study_uid=f"2.25.{i}", patient_age_years=age)
            se = Series(
                study=st,
                series_uid=f"2.25.100{i}",
                modality=mod,
                body_part=bp,
                slice_thickness=th,
                manufacturer=man,
                description=f"series {i} {'lung' if i % 2 else 'soft'}",
            )
            s.add(se)
            s.flush()
            if metrics is not None:
                s.add(QcMeasurement(qc_key=f"{i:064d}", series_id=se.id, metrics=metrics, code_version="t"))
                s.add(
                    QcVerdict(
                        series_id=se.id,
                        qc_key=f"{i:064d}",
                        passed=passed,
                        warned=False,
                        reasons=[],
                        ruleset_digest="r",
                        code_version="t",
                    )
                )
    return cat


QUERIES = {
    "modality = CT and body_part = CHEST and slice_thickness <= 1.5 and patient_age >= 50 and qc.passed": {0},
    "modality = ct and qc.noise_hu < 20": {0, 3},
    "not qc.passed": {2, 4},
    "qc.excluded or qc.is_localizer": {2, 4},
    "site in (lagos-1) and sex = F": {0, 2},
    "site not in ('lagos-1') and modality != MR": {3, 5},
    "manufacturer = siemens": {2, 3},
    "description like '%lung%'": {1, 3, 5},
    "description not like '%lung%' and qc.measured": {0, 2, 4},
    "slice_thickness is null": {5},
    "qc.noise_hu is not null and (qc.noise_hu > 20 or patient_age < 50)": {1, 2},
    "qc.plane != AXIAL": {3, 4},
    "qc.passed = false": {2, 4},
    "qc.snr < 10": {4},
}


def test_queries_select_the_right_series_on_both_engines(database_url: str) -> None:
    cat = _catalog(database_url)
    with cat.session() as s:
        uid_of = dict(s.execute(select(Series.id, Series.series_uid)).all())
        for query, expected in QUERIES.items():
            got = {int(uid_of[i].removeprefix("2.25.100")) for i in s.scalars(series_select(query))}
            assert got == expected, query
    cat.dispose()


def test_python_evaluation_agrees_with_sql(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from curata.select.service import series_record

    cat = _catalog(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with cat.session() as s:
        records = {}
        for se in s.scalars(select(Series)):
            m = s.scalar(select(QcMeasurement).where(QcMeasurement.series_id == se.id))
            v = s.scalar(select(QcVerdict).where(QcVerdict.series_id == se.id))
            rec = series_record(se, m.metrics if m else None)
            rec.update(
                {
                    "qc.passed": v.passed if v else None,
                    "qc.excluded": (not v.passed) if v else None,
                    "qc.measured": v is not None,
                }
            )
            records[int(se.series_uid.removeprefix("2.25.100"))] = rec
        for query, expected in QUERIES.items():
            q = parse(query)
            assert {i for i, r in records.items() if evaluate(q, r) is True} == expected, query
    cat.dispose()

"""QC over a real workspace: ingest phantoms, measure in parallel, cache by content, isolate failures,
decide under default and project rules, explain, cohorts, report, and the CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from curata.catalog import Instance, Provenance, QuarantineItem, Series
from curata.cli import app
from curata.collect.ingest import Ingestor
from curata.select import create_cohort, explain, list_cohorts, run_qc, show_cohort, write_report
from curata.select.models import QcMeasurement, QcVerdict
from curata.select.phantoms import DEFECTS, Spec, build, make_series, save
from curata.select.service import QC_VERSION, set_rules

ROWS, SLICES = 96, 12


def _defect(name: str):  # type: ignore[no-untyped-def]
    return next(d for d in DEFECTS if d.name == name)


@pytest.fixture
def loaded(workspace, tmp_path: Path):  # type: ignore[no-untyped-def]
    src = tmp_path / "phantoms"
    save(build(Spec("CT", ROWS, SLICES, seed=1)), src / "clean_ct")
    save(build(Spec("MR", ROWS, SLICES, noise=12.0, seed=2)), src / "clean_mr")
    save(make_series(_defect("missing_slices"), 1, rows=ROWS, slices=SLICES), src / "gap")
    save(make_series(_defect("ct_noise"), 60, rows=ROWS, slices=SLICES), src / "noisy")
    summary, _ = Ingestor(workspace, deidentify=False, workers=1).ingest_paths([src])
    assert summary.counts["ingested"] == 4 * SLICES - 1
    return workspace


def _uid(ws, description_like: str | None = None, modality: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        q = select(Series.series_uid)
        if modality:
            q = q.where(Series.modality == modality)
        return list(s.scalars(q))


def _verdicts(ws) -> dict[str, QcVerdict]:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        rows = s.execute(
            select(Series.series_uid, QcVerdict).join(QcVerdict, QcVerdict.series_id == Series.id)
        )
        return {u: v for u, v in rows}


def test_run_measures_once_and_decides(loaded) -> None:  # type: ignore[no-untyped-def]
    ws = loaded
    summary = run_qc(ws, workers=2, quiet=True)
    assert summary.counts["measured"] == 4 and summary.counts["failed"] == 0
    assert (summary.counts["passed"], summary.counts["excluded"]) == (2, 2)
    reasons = {tuple(r["rule"] for r in v.reasons) for v in _verdicts(ws).values() if not v.passed}
    assert reasons == {("missing_slices",), ("ct_noise",)}
    again = run_qc(ws, workers=1, quiet=True)
    assert again.counts["measured"] == 0 and again.counts["cached"] == 4
    with ws.catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(QcMeasurement)) == 4
        prov = list(s.scalars(select(Provenance).where(Provenance.step == "qc.decide")))
        assert len(prov) == 4  # a re-run records nothing new
        excluded = [p for p in prov if not p.output["passed"]]
        assert {p.output["reasons"][0]["rule"] for p in excluded} == {"missing_slices", "ct_noise"}
        assert all(
            "values" in p.output["reasons"][0] and p.code_version.endswith(f"qc/{QC_VERSION}")
            for p in excluded
        )


def test_new_content_is_measured_again(loaded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = loaded
    run_qc(ws, workers=1, quiet=True)
    with ws.catalog.session() as s:
        gap_series = s.scalar(
            select(Series)
            .join(QcVerdict, QcVerdict.series_id == Series.id)
            .where(QcVerdict.passed.is_(False))
            .where(Series.instance_count == SLICES - 1)
        )
        assert gap_series is not None
        uid = gap_series.series_uid
    # the missing slice arrives: same series, new content -> measured again and now passed
    full = make_series(_defect("missing_slices"), 1, rows=ROWS, slices=SLICES)
    with ws.catalog.session() as s:
        ref = s.scalar(select(Instance).join(Series).where(Series.series_uid == uid))
        study_uid = ref.series.study.study_uid
    missing = full[SLICES // 2 : SLICES // 2 + 1]
    src = tmp_path / "late"
    for ds in missing:
        ds.SeriesInstanceUID, ds.StudyInstanceUID = uid, study_uid
        ds.FrameOfReferenceUID = "1.2.3"
        ds.ImagePositionPatient = [
            ds.ImagePositionPatient[0],
            ds.ImagePositionPatient[1],
            float(SLICES // 2 * 2.5),
        ]
    save(missing, src)
    Ingestor(ws, deidentify=False, workers=1).ingest_paths([src])
    summary = run_qc(ws, workers=1, quiet=True)
    assert summary.counts["measured"] == 1 and summary.counts["cached"] == 3
    assert _verdicts(ws)[uid].passed


def test_an_unreadable_series_is_quarantined_and_the_batch_goes_on(loaded) -> None:  # type: ignore[no-untyped-def]
    ws = loaded
    with ws.catalog.session() as s:
        inst = s.scalar(select(Instance).join(Series).where(Series.modality == "MR"))
        path = ws.store.local_path(inst.blob_digest)
    path.chmod(0o644)
    path.write_bytes(b"not dicom at all")
    summary = run_qc(ws, workers=1, quiet=True)
    assert summary.counts["failed"] == 1 and summary.counts["measured"] == 3 and summary.failed
    with ws.catalog.session() as s:
        q = s.scalar(select(QuarantineItem).where(QuarantineItem.stage == "qc"))
        assert q is not None and "could not read" in q.reason
    bad = [v for v in _verdicts(ws).values() if v.reasons and v.reasons[0]["rule"] == "unreadable"]
    assert len(bad) == 1 and not bad[0].passed
    again = run_qc(ws, workers=1, quiet=True)  # a failed series is tried again, the others are cached
    assert (again.counts["failed"], again.counts["cached"], again.counts["measured"]) == (1, 3, 0)


def test_project_rules_override_and_redecide(loaded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = loaded
    run_qc(ws, workers=1, quiet=True)
    ruleset, summary = set_rules(
        ws,
        """
disable = ["missing_slices"]

[[rule]]
name = "ct_noise"
when = "modality = CT and qc.noise_hu > 100"
action = "exclude"
reason = "very noisy"

[[rule]]
name = "no_mr"
when = "modality = MR"
action = "warn"
reason = "MR not in this project"
""",
    )
    assert "missing_slices" not in {r.name for r in ruleset.rules}
    assert summary.counts.get("excluded", 0) == 0 and summary.counts["warned"] == 1
    vs = _verdicts(ws)
    assert all(v.passed for v in vs.values()) and all(v.ruleset_digest == ruleset.digest for v in vs.values())
    from curata.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown field"):
        set_rules(ws, '[[rule]]\nname = "x"\nwhen = "qc.bogus > 1"\n')


def test_explain_cohorts_and_report(loaded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = loaded
    run_qc(ws, workers=1, quiet=True)
    vs = _verdicts(ws)
    bad_uid = next(u for u, v in vs.items() if not v.passed)
    out = explain(ws, bad_uid)
    assert out.measured and out.verdict is not None and out.verdict.passed is False and out.verdict.current
    fired = [r for r in out.rules if r.fired]
    assert fired and all(r.values for r in fired)
    assert {m.metric for m in out.metrics} >= {"noise_hu", "missing_slices", "slice_count"}
    made = create_cohort(ws, "clean-ct", "modality = CT and qc.passed")
    assert made.series == 1
    create_cohort(ws, "everything", "qc.measured")
    assert [c.name for c in list_cohorts(ws)] == ["clean-ct", "everything"]
    shown = show_cohort(ws, "clean-ct")
    assert len(shown.series) == 1 and shown.series[0].qc_passed is True
    html = write_report(ws, tmp_path / "r" / "qc.html").read_text()
    assert "Excluded series (2)" in html and html.count("data:image/png;base64,") >= 4
    assert "missing_slices" in html and "<td>noise_hu</td>" in html


def test_cli_contract(loaded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = loaded
    runner = CliRunner()
    w = ["--workspace", str(ws.root)]
    r = runner.invoke(app, ["qc", "run", "--json", "-j", "1", *w])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["measured"] == 4
    r = runner.invoke(app, ["qc", "run", "--where", "modality = MR", "--json", *w])
    assert json.loads(r.stdout)["cached"] == 1
    r = runner.invoke(
        app, ["cohort", "create", "old", "--where", "modality = CT and patient_age >= fifty", *w]
    )
    from curata.errors import QueryError

    assert isinstance(r.exception, QueryError) and r.exception.exit_code == 2
    assert "is a number" in r.exception.message and r.exception.message.rstrip().endswith("^")
    r = runner.invoke(app, ["cohort", "create", "ct", "--where", "modality = CT", "--json", *w])
    assert r.exit_code == 0 and json.loads(r.stdout)["series"] == 3
    r = runner.invoke(app, ["cohort", "show", "ct", "--json", *w])
    assert len(json.loads(r.stdout)["series"]) == 3
    r = runner.invoke(app, ["cohort", "ls", "--json", *w])
    assert [c["name"] for c in json.loads(r.stdout)] == ["ct"]
    uid = _uid(ws, modality="MR")[0]
    r = runner.invoke(app, ["qc", "explain", uid[:30], "--json", *w])
    assert r.exit_code == 0 and json.loads(r.stdout)["series_uid"] == uid
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "mr_out"\nwhen = "modality = MR"\naction = "exclude"\nreason = "no MR"\n'
    )
    r = runner.invoke(app, ["qc", "rules", str(rules), "--json", *w])
    assert r.exit_code == 0 and any(x["name"] == "mr_out" for x in json.loads(r.stdout)["rules"])
    assert not _verdicts(ws)[uid].passed
    r = runner.invoke(app, ["qc", "report", str(tmp_path / "out.html"), *w])
    assert r.exit_code == 0 and (tmp_path / "out.html").stat().st_size > 10_000


@pytest.mark.postgres
def test_qc_and_cohorts_on_postgresql(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from curata.workspace import Workspace

    monkeypatch.setenv("CURATA_DATABASE_URL", pg_url)
    ws = Workspace.init(tmp_path / "pgws", site="pg-site")
    src = tmp_path / "in"
    save(build(Spec("CT", ROWS, SLICES, seed=4)), src / "clean")
    save(make_series(_defect("ct_noise"), 60, rows=ROWS, slices=SLICES), src / "noisy")
    Ingestor(ws, deidentify=False, workers=1).ingest_paths([src])
    summary = run_qc(ws, workers=1, quiet=True)
    assert (summary.counts["passed"], summary.counts["excluded"]) == (1, 1)
    assert run_qc(ws, workers=1, quiet=True).counts["cached"] == 2
    assert create_cohort(ws, "quiet", "qc.noise_hu < 20 and qc.passed and not qc.is_localizer").series == 1
    assert create_cohort(ws, "loud", "qc.noise_hu >= 20 and qc.excluded").series == 1
    ws.catalog.dispose()


def test_qc_leaves_derived_objects_out(loaded) -> None:  # type: ignore[no-untyped-def]
    """A SEG or SR series has no image of its own: QC neither measures nor decides it (the page counts
    it as not applicable, not as "not measured yet"), and the images keep their verdicts."""
    ws = loaded
    with ws.catalog.session() as s:
        seg = s.scalars(select(Series).where(Series.modality == "CT").order_by(Series.id)).first()
        assert seg is not None
        seg.modality, seg_uid = "SEG", seg.series_uid
    summary = run_qc(ws, workers=1, quiet=True)
    assert summary.counts["measured"] == 3 and summary.counts["failed"] == 0
    verdicts = _verdicts(ws)
    assert seg_uid not in verdicts and len(verdicts) == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_a_decoder_panic_fails_its_series_and_qc_goes_on(workspace, tmp_path: Path, workers: int) -> None:  # type: ignore[no-untyped-def]
    """pylibjpeg-rle panics on a damaged RLE frame (a BaseException, which could not even cross the
    process pool): that series fails QC with a reason, the others are measured."""
    from tests.conftest import write_good_and_corrupt_series

    write_good_and_corrupt_series(tmp_path / "in")
    ingested, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "in"])
    assert ingested.counts["ingested"] == 8, ingested.counts  # ingest does not decode a CT's pixels
    summary = run_qc(workspace, workers=workers, quiet=True)
    assert summary.counts["failed"] == 1 and summary.counts["measured"] == 1, summary.counts
    with workspace.catalog.session() as s:
        q = s.scalar(select(QuarantineItem).where(QuarantineItem.stage == "qc"))
        assert q is not None and "cannot decode pixel data" in q.reason, q and q.reason
    rules = sorted(
        bool(v.reasons) and v.reasons[0]["rule"] == "unreadable" for v in _verdicts(workspace).values()
    )
    assert rules == [False, True], rules

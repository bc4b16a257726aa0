"""Pipelines: cached by content, parallel (process pool and a real Dask cluster), failures isolated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curata.errors import ConfigError
from curata.preprocess.pipeline import (
    CacheSpec,
    load_volume,
    parse_pipeline,
    run_pipeline,
    series_from_folder,
    series_from_workspace,
)
from curata.preprocess.synthetic import (
    axial_slices,
    body_phantom,
    moved_phantom,
    phantom,
    write_ct_volume,
    write_series,
)

N, SPACING = 32, 4.0

PIPELINE = {
    "name": "test",
    "convert": {"uneven": "refuse"},
    "step": [
        {"op": "reorient", "axcodes": "RAS"},
        {"op": "resample", "spacing": [5.0, 5.0, 5.0]},
        {"op": "register", "to": "baseline", "metric": "meansquares", "body_threshold": -500.0},
        {"op": "zscore", "mask": "body", "threshold": -500.0},
    ],
}


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two patients, each a baseline CT and a follow-up lying a little differently, plus one broken series."""
    root = tmp_path_factory.mktemp("hospital")
    base = body_phantom((N, N, N))
    for p, (rot, shift) in enumerate(
        [((3.0, 0.0, -2.0), (4.0, -3.0, 2.0)), ((0.0, 2.0, 3.0), (-3.0, 2.0, 4.0))]
    ):
        pid = f"P{p}"
        write_ct_volume(root / pid / "base", base, spacing=SPACING, patient_id=pid, study_date="20240101")
        follow = moved_phantom(base, SPACING, rotation_deg=rot, translation_mm=shift)
        write_ct_volume(root / pid / "follow", follow, spacing=SPACING, patient_id=pid, study_date="20240601")
    gap = [0.0, 2.5, 5.0, 10.0, 12.5, 15.0]  # a missing slice: refused by default
    write_series(root / "broken", axial_slices(phantom((6, 8, 8)), offsets=gap), patient_id="P9")
    return root


def test_pipeline_file_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        parse_pipeline({"steps": []})
    with pytest.raises(ConfigError, match="uneven"):
        parse_pipeline({"convert": {"uneven": "guess"}})
    with pytest.raises(ConfigError, match="unknown step"):
        parse_pipeline({"step": [{"op": "magic"}]})


def test_run_cache_and_partial_recompute(hospital: Path, tmp_path: Path) -> None:
    items = series_from_folder(hospital)
    assert len(items) == 5
    spec = CacheSpec("folder", str(tmp_path / "cache"))
    pipeline = parse_pipeline(PIPELINE)
    first = run_pipeline(pipeline, items, spec, workers=2, export_to=tmp_path / "out", quiet=True)
    # the broken series fails alone, with its reason; the rest go on
    assert [f[0] for f in first.failures] == [i.item_id for i in items if i.patient == "P9"]
    assert "missing slice" in first.failures[0][1]
    assert list((tmp_path / "cache" / "quarantine").glob("*.json"))
    assert len(first.volumes) == 4
    assert first.computed == 4 + 4 * 4 and first.cached == 0
    # follow-ups registered to their baseline: overlap and quality recorded
    records = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "provenance").glob("*.json")]
    regs = [r for r in records if r["step"] == "preprocess.register"]
    follow = [
        r["output"]["registration"]["quality"]
        for r in regs
        if r["output"]["registration"]["role"] == "follow-up"
    ]
    assert len(follow) == 2 and all(q["dice_body"] > 0.97 for q in follow)
    for v in first.volumes:
        vol = load_volume(spec, v.digest)
        assert (
            np.allclose(vol.spacing, 5.0) and "".join(__import__("nibabel").aff2axcodes(vol.affine)) == "RAS"
        )
        z = vol.meta["zscore"]
        body = vol.data * z["std"] + z["mean"] > -500.0
        assert abs(float(vol.data[body].mean())) < 1e-3 and abs(float(vol.data[body].std()) - 1) < 1e-3
        if v.series.study_key.startswith("20240601"):
            assert (
                "BSpline" not in vol.meta["registration"]["transform"]
                and "Euler3DTransform" in vol.meta["registration"]["transform"]
            )
    assert len(first.exported) == 4 and all(p.name.endswith(".nii.gz") for p in first.exported)
    # a re-run does nothing new
    again = run_pipeline(pipeline, items, spec, workers=1, quiet=True)
    assert again.computed == 0 and again.cached == 4 + 4 * 4
    assert [v.digest for v in again.volumes] == [v.digest for v in first.volumes]
    # a changed parameter recomputes only what depends on it
    changed = dict(PIPELINE, step=[*PIPELINE["step"][:3], {"op": "zscore", "mask": "all"}])
    third = run_pipeline(parse_pipeline(changed), items, spec, workers=1, quiet=True)
    assert third.computed == 4 and third.cached == 4 + 4 * 3


def test_dask_cluster_gives_the_same_digests(hospital: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    items = [i for i in series_from_folder(hospital) if i.patient == "P0"]
    pipeline = parse_pipeline({"name": "d", "step": PIPELINE["step"][:2]})
    local = run_pipeline(pipeline, items, CacheSpec("folder", str(tmp_path / "a")), workers=1, quiet=True)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        remote = run_pipeline(
            pipeline,
            items,
            CacheSpec("folder", str(tmp_path / "b")),
            scheduler=cluster.scheduler_address,
            quiet=True,
        )
    assert remote.computed == local.computed == 2 + 2 * 2
    assert sorted(v.digest for v in remote.volumes) == sorted(v.digest for v in local.volumes)


def test_workspace_run_records_provenance(workspace, hospital: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from curata.catalog.models import Blob, Provenance, QuarantineItem
    from curata.collect.ingest import Ingestor
    from curata.preprocess.cli import register as register_cli

    summary, _ = Ingestor(workspace, workers=1).ingest_paths([hospital / "P0", hospital / "broken"])
    assert summary.counts["ingested"] == 2 * N + 6
    items = series_from_workspace(workspace)
    assert len(items) == 3
    toml = tmp_path / "p.toml"
    toml.write_text(
        'name = "ws"\n[[step]]\nop = "reorient"\n[[step]]\nop = "register"\nmetric = "meansquares"\nbody_threshold = -500.0\n'
    )
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    register_cli(app)
    res = CliRunner().invoke(
        app, ["preprocess", "run", str(toml), "-w", str(workspace.root), "--json", "--workers", "1"]
    )
    assert res.exit_code == 1  # the broken series failed
    out = json.loads(res.stdout)
    assert out["summary"]["volumes"] == 2 and out["summary"]["failed"] == 1
    with workspace.catalog.session() as session:
        steps = sorted(session.scalars(select(Provenance.step).where(Provenance.step.like("preprocess.%"))))
        assert steps.count("preprocess.register") == 2 and steps.count("preprocess.convert") == 2
        digests = [v["digest"] for v in out["volumes"]]
        assert all(session.get(Blob, d) is not None for d in digests)
        assert session.scalar(select(QuarantineItem).where(QuarantineItem.stage == "preprocess")) is not None
    assert all(workspace.store.exists(d) for d in digests)
    rerun = CliRunner().invoke(
        app, ["preprocess", "run", str(toml), "-w", str(workspace.root), "--json", "--workers", "1"]
    )
    assert json.loads(rerun.stdout)["summary"]["computed"] == 0


def test_demo_pipeline_registers_follow_ups(workspace, hospital: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from curata.collect.ingest import Ingestor
    from curata.preprocess import run_demo_pipeline

    Ingestor(workspace, workers=1).ingest_paths([hospital / "P1"])
    result = run_demo_pipeline(workspace, tmp_path / "demo-out", workers=1, quiet=True)
    assert result["series"] == 2 and result["volumes"] == 2 and result["failed"] == 0
    assert result["registered_followups"] == 1 and result["mean_body_dice"] > 0.95
    assert len(list((tmp_path / "demo-out").rglob("*.nii.gz"))) == 2
    again = run_demo_pipeline(workspace, tmp_path / "demo-out", workers=1, quiet=True)
    assert again["computed"] == 0


def test_convert_a_workspace_selection(workspace, hospital: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import typer
    from typer.testing import CliRunner

    from curata.collect.ingest import Ingestor
    from curata.preprocess.cli import register as register_cli

    Ingestor(workspace, workers=1).ingest_paths([hospital / "P1", hospital / "broken"])
    app = typer.Typer()
    register_cli(app)
    res = CliRunner().invoke(
        app, ["convert", "all", str(tmp_path / "out"), "-w", str(workspace.root), "--json"]
    )
    assert res.exit_code == 1, res.output  # the broken series is refused, the others converted
    out = json.loads(res.stdout)
    assert len(out["converted"]) == 2 and len(out["refused"]) == 1
    uid = series_from_workspace(workspace)[0].item_id
    one = CliRunner().invoke(
        app, ["convert", f"series:{uid}", str(tmp_path / "one"), "-w", str(workspace.root), "--json"]
    )
    assert (
        one.exit_code in (0, 1)
        and len(json.loads(one.stdout)["converted"]) + len(json.loads(one.stdout)["refused"]) == 1
    )


@pytest.mark.parametrize("name", ["ct_followup.toml", "mr_standard.toml"])
def test_shipped_pipelines_parse(name: str) -> None:
    from curata.preprocess.pipeline import load_pipeline

    path = Path(__import__("curata.preprocess", fromlist=["x"]).__file__).parent / "pipelines" / name
    p = load_pipeline(path)
    assert p.steps and p.describe()["steps"][0]["op"] == "reorient"


@pytest.mark.parametrize("damage", ["truncate_pixels", "garbage_jpeg_lossless"])
def test_a_series_that_cannot_be_decoded_fails_alone(tmp_path: Path, damage: str) -> None:
    """A decoder's ordinary error (pixel data cut short, a garbage codestream) fails its series with a
    clear reason, recorded in the cache's quarantine; the other series runs through."""
    import tests.conftest

    good, bad = tests.conftest.write_good_and_corrupt_series(
        tmp_path / "in", damage=getattr(tests.conftest, damage)
    )
    spec = CacheSpec("folder", str(tmp_path / "cache"))
    pipeline = parse_pipeline({"name": "t", "step": [{"op": "reorient", "axcodes": "RAS"}]})
    result = run_pipeline(pipeline, series_from_folder(tmp_path / "in"), spec, workers=1)
    assert [v.series.item_id for v in result.volumes] == [good]
    ((item, reason),) = result.failures
    assert item == bad and "cannot decode pixel data" in reason, reason
    assert "Doe" not in reason and "PAT-0001" not in reason and str(tmp_path) not in reason
    (record,) = (tmp_path / "cache" / "quarantine").glob("*.json")
    assert "cannot decode pixel data" in record.read_text()

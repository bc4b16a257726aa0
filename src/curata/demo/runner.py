"""`curata demo`: the whole path on the embedded defaults, on a synthetic multi-site hospital export.

1. a realistic export from several hospitals (identifiers planted everywhere, a few broken files);
2. a workspace (SQLite, local store) and ingest of every site, de-identified before storage;
3. a leak check of everything stored against the hospitals' true identities;
4. quality control, a QC report, a cohort;
5. a pre-processing pipeline (convert, reorient, resample, normalize, register follow-up to baseline);
5b. a reading round: simulated readers save lesion SEGs through STOW-RS, blinded double reads,
    agreement, adjudication, accepted labels;
6. a release with its dataset card, an export for a licensee, and `verify_release.py` on that export;
7. the platform: a project over every site, an account per role (passwords in ``accounts.txt``);
8. the transparency log: every record appended, a signed checkpoint, verified.
Stages that are not installed are reported as such; every other failure stops the demo with its reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curata.console import console, make_progress, print_table
from curata.workspace import Workspace


@dataclass
class DemoContext:
    out: Path
    patients: int
    sites: int
    size: str
    seed: int
    workers: int | None
    export_dir: Path = field(init=False)
    manifest_path: Path = field(init=False)
    ws: Workspace | None = None
    manifest: Any = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, list[str]] | None = None  # accepted labels for the release (annotate step)
    annotation: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.export_dir = self.out / "hospital-export"
        self.manifest_path = self.out / "hospital-export.manifest.json"


Step = Callable[[DemoContext], dict[str, Any]]


def step_generate(ctx: DemoContext) -> dict[str, Any]:
    from curata.demo.synth import generate_hospital_export

    if ctx.export_dir.exists():
        shutil.rmtree(ctx.export_dir)
    with make_progress() as progress:
        task = progress.add_task("generate hospital export", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        manifest = generate_hospital_export(
            ctx.export_dir,
            sites=ctx.sites,
            patients=ctx.patients,
            seed=ctx.seed,
            size=ctx.size,
            manifest_path=ctx.manifest_path,
            progress=tick,
            workers=ctx.workers,
        )
    ctx.manifest = manifest
    from curata.demo.clinical import write_clinical_exports

    clinical = write_clinical_exports(manifest, ctx.export_dir, ctx.out / "clinical-truth.json", ctx.seed)
    files = sum(1 for p in ctx.export_dir.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in ctx.export_dir.rglob("*") if p.is_file())
    return {"files": files, "MB": round(size / 1e6, 1), "where": str(ctx.export_dir), **clinical}


def step_ingest(ctx: DemoContext) -> dict[str, Any]:
    from curata.collect import Ingestor

    ws = Workspace.init(ctx.out / "workspace", site="demo-central")
    ctx.ws = ws
    totals: dict[str, Any] = {"ingested": 0, "present": 0, "quarantined": 0, "skipped": 0, "failed": 0}
    seconds = 0.0
    for site in ctx.manifest.sites:
        ingestor = Ingestor(ws, site=site.name, region=site.region, country=site.country, workers=ctx.workers)
        with make_progress() as progress:
            task = progress.add_task(f"ingest {site.name}", total=None)

            def total_hint(n: int, t: Any = task, p: Any = progress) -> None:
                p.update(t, total=n)

            def on_progress(_o: Any, t: Any = task, p: Any = progress) -> None:
                p.advance(t)

            summary, _problems = ingestor.ingest_paths(
                [ctx.export_dir / site.folder], total_hint=total_hint, on_progress=on_progress
            )
        seconds += summary.seconds
        for k in totals:
            totals[k] += summary.counts.get(k, 0)
    rate = totals["ingested"] / seconds if seconds else 0.0
    return {
        **totals,
        "seconds": round(seconds, 1),
        "instances_per_s": round(rate, 1),
        "expected_quarantined": len(ctx.manifest.broken_files),
        "where": str(ws.root),
    }


def step_leak_check(ctx: DemoContext) -> dict[str, Any]:
    """Every stored object's raw bytes against the hospitals' true identities (the manifest)."""
    from curata.demo.leaks import scan_store_for_identities

    assert ctx.ws is not None
    report = scan_store_for_identities(ctx.ws, ctx.manifest)
    if report["hits"]:
        raise RuntimeError(f"PHI LEAK: {report['hits'][:5]}")
    return report


def step_qc(ctx: DemoContext) -> dict[str, Any]:
    from curata.select import run_qc, write_report

    assert ctx.ws is not None
    with make_progress() as progress:
        bar = progress.add_task("measuring series", total=None)
        summary = run_qc(
            ctx.ws,
            workers=ctx.workers,
            on_progress=lambda done, total: progress.update(bar, completed=done, total=total),
        )
    report = write_report(ctx.ws, ctx.out / "qc-report.html")
    return {**summary.as_dict(), "report": str(report)}


def step_cohort(ctx: DemoContext) -> dict[str, Any]:
    from curata.select import create_cohort

    assert ctx.ws is not None
    cohort = create_cohort(ctx.ws, "demo-ct", "modality = CT and qc.passed")
    return {"cohort": "demo-ct", "series": cohort.series, "query": cohort.query}


def step_clinical_cohort(ctx: DemoContext) -> dict[str, Any]:
    """Images joined with clinical and genomic criteria, checked against the generator's truth."""
    from sqlalchemy import select

    from curata.catalog import Patient, Series, Site, Study
    from curata.collect.clinical import ClinicalDeidentifier
    from curata.demo.clinical import COHORT_QUERY, expected_cohort
    from curata.select import create_cohort, series_select

    assert ctx.ws is not None
    truth = json.loads((ctx.out / "clinical-truth.json").read_text())
    cohort = create_cohort(ctx.ws, "demo-lung-egfr", COHORT_QUERY)
    key = ctx.ws.site_key()
    by_pseudonym = {
        (t["site"], ClinicalDeidentifier(key, issuer=t["issuer"]).patient(t["patient_id"]).pseudonym): t[
            "patient"
        ]
        for t in truth
    }
    with ctx.ws.catalog.session() as s:
        found = {
            by_pseudonym.get((site, pseudo), f"?{pseudo}")
            for site, pseudo in s.execute(
                select(Site.name, Patient.pseudonym)
                .join(Patient, Patient.site_id == Site.id)
                .join(Study, Study.patient_id == Patient.id)
                .join(Series, Series.study_id == Study.id)
                .where(Series.id.in_(series_select(COHORT_QUERY)))
            )
        }
        with_ct = {
            by_pseudonym.get((site, pseudo))
            for site, pseudo in s.execute(
                select(Site.name, Patient.pseudonym)
                .join(Patient, Patient.site_id == Site.id)
                .join(Study, Study.patient_id == Patient.id)
                .join(Series, Series.study_id == Study.id)
                .where(Series.modality == "CT")
            )
        }
    expected = expected_cohort(truth) & with_ct
    if not expected:
        raise RuntimeError("clinical cohort: the generator's truth holds no patient to find")
    if found != expected:
        raise RuntimeError(f"clinical cohort: found {sorted(found)}, the truth says {sorted(expected)}")
    return {
        "cohort": "demo-lung-egfr",
        "query": COHORT_QUERY,
        "series": cohort.series,
        "patients": len(found),
        "expected_patients": len(expected),
        "matches_truth": True,
    }


def step_preprocess(ctx: DemoContext) -> dict[str, Any]:
    from curata.preprocess import run_demo_pipeline

    assert ctx.ws is not None
    return run_demo_pipeline(ctx.ws, ctx.out / "preprocessed")


def step_annotate(ctx: DemoContext) -> dict[str, Any]:
    from curata.demo.annotate import run_reading_round, save_table

    assert ctx.ws is not None
    from curata.demo.leaks import scan_store_for_identities

    result = run_reading_round(ctx.ws, ctx.manifest, "demo-ct", max_cases=6, seed=ctx.seed)
    ctx.labels, ctx.annotation = result.pop("release_labels"), result.pop("release_annotation")
    # every SEG, label map and report now in the store, scanned again for the true identities
    leaks = scan_store_for_identities(ctx.ws, ctx.manifest)
    if leaks["hits"]:
        raise RuntimeError(f"PHI LEAK after annotation: {leaks['hits'][:5]}")
    result["leak_check_blobs"], result["leak_hits"] = leaks["blobs"], len(leaks["hits"])
    save_table(ctx.out / "annotation.json", result)
    return {**result, "where": str(ctx.out / "annotation.json")}


def step_release(ctx: DemoContext) -> dict[str, Any]:
    from curata.publish import create_release, export_release

    assert ctx.ws is not None
    release = create_release(
        ctx.ws, "demo-chest-ct", cohort="demo-ct", labels=ctx.labels, annotation=ctx.annotation
    )
    target = ctx.out / "export-acme-ai"
    if target.exists():
        shutil.rmtree(target)
    exported = export_release(ctx.ws, release.ref, target, licensee="ACME AI")
    verify = subprocess.run(
        [sys.executable, str(target / "verify_release.py"), str(target)], capture_output=True, text=True
    )
    if verify.returncode != 0:
        raise RuntimeError(f"verify_release.py failed on the export: {verify.stdout}{verify.stderr}")
    return {
        "release": release.ref,
        "card": release.card,
        "export": str(target),
        "files": exported.files,
        "verify_release.py": "OK",
    }


def step_pathology(ctx: DemoContext) -> dict[str, Any]:
    """A pathology site: planted slides ingested, leak-checked, QC'd, tiled, normalised and released."""
    from curata.demo.pathology import run_pathology

    assert ctx.ws is not None
    return run_pathology(ctx)


def step_platform(ctx: DemoContext) -> dict[str, Any]:
    from curata.server import setup_demo_platform

    assert ctx.ws is not None
    release = ctx.results.get("release", {}).get("release")
    cohort = ctx.results.get("cohort", {}).get("cohort")
    result = setup_demo_platform(ctx.ws, ctx.out, cohort=cohort, release=release)
    reading: dict[str, Any] = {"project": None}
    if cohort:  # work left for the demo's annotator and reviewer to do in the browser
        from curata.demo.annotate import open_reading_for_accounts

        reading = open_reading_for_accounts(
            ctx.ws, cohort, readers=("demo-annotator", "demo-reviewer"), adjudicator="demo-curator"
        )
    return {
        "project": result["project"],
        "open_reading": reading,
        "accounts": [f"{a['username']} ({a['role']})" for a in result["accounts"]],
        "passwords": result["accounts_file"],
    }


def step_ledger(ctx: DemoContext) -> dict[str, Any]:
    from curata.ledger import Ledger, log_provenance

    assert ctx.ws is not None
    appended = log_provenance(ctx.ws, None)
    ledger = Ledger.open(ctx.ws)
    checkpoint = ledger.checkpoint()
    report = ledger.verify()
    return {
        "appended": appended,
        "size": checkpoint.size,
        "verified": bool(report.ok),
        "where": str(ctx.ws.root / "ledger"),
    }


STEPS: list[tuple[str, Step]] = [
    ("generate", step_generate),
    ("ingest", step_ingest),
    ("leak check", step_leak_check),
    ("qc", step_qc),
    ("cohort", step_cohort),
    ("clinical cohort", step_clinical_cohort),
    ("preprocess", step_preprocess),
    ("annotate", step_annotate),
    ("release", step_release),
    ("pathology", step_pathology),
    ("platform", step_platform),
    ("ledger", step_ledger),
]


def run_demo(
    out: Path,
    *,
    patients: int = 30,
    sites: int = 3,
    size: str = "full",
    seed: int = 0,
    workers: int | None = None,
) -> DemoContext:
    ctx = DemoContext(
        out=out.resolve(), patients=patients, sites=sites, size=size, seed=seed, workers=workers
    )
    ctx.out.mkdir(parents=True, exist_ok=True)
    if (ctx.out / "workspace").exists():
        shutil.rmtree(ctx.out / "workspace")  # the demo always starts from a fresh workspace
    for name, step in STEPS:
        console.rule(f"[bold]{name}")
        t0 = time.perf_counter()
        result = step(ctx)  # every stage ships with Curata: a missing one is a broken install, said loudly
        result = {"status": "ok", **result, "step_seconds": round(time.perf_counter() - t0, 1)}
        ctx.results[name] = result
        console.print(json.dumps(result, default=str, indent=1))
    (ctx.out / "demo-summary.json").write_text(json.dumps(ctx.results, default=str, indent=2))
    rows = [{"step": k, "status": v.get("status"), "result": _headline(v)} for k, v in ctx.results.items()]
    print_table(rows, title="curata demo")
    console.print(f"[bold green]results[/] under {ctx.out}  (summary: {ctx.out / 'demo-summary.json'})")
    return ctx


def _headline(result: dict[str, Any]) -> str:
    keys = [k for k in result if k not in ("status", "step_seconds")]
    return ", ".join(f"{k}={result[k]}" for k in keys[:5])

"""Workspace and catalog commands: init, ls, show, status, store verify."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import func, or_, select

from curata.catalog import Blob, Instance, Patient, QuarantineItem, Series, Site, Study
from curata.catalog.provenance import code_version
from curata.console import console, print_json, print_table
from curata.workspace import Workspace

store_app = typer.Typer(help="The content-addressed blob store.", no_args_is_help=True)


class Level(StrEnum):
    sites = "sites"
    patients = "patients"
    studies = "studies"
    series = "series"
    quarantine = "quarantine"


def _ws(workspace: Path | None) -> Workspace:
    return Workspace.find(workspace)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return str(n)


def init(
    directory: Path = typer.Argument(Path("."), help="Workspace folder (created if missing)."),
    site: str = typer.Option(None, "--site", help="This site's name (default: local-site)."),
) -> None:
    """Create a workspace: config, catalog (migrated), store and a new site secret."""
    ws = Workspace.init(directory, site=site)
    console.print(f"[green]workspace ready[/] at {ws.root}")
    from curata.catalog import redact_url

    console.print(f"  catalog  {redact_url(ws.database_url)}")
    console.print(f"  store    {ws.store_path}")
    console.print(f"  site key {ws.key_path} (mode 0600; never share it)")


def ls(
    level: Level = typer.Argument(..., help="What to list."),
    site: str = typer.Option(None, help="Only this site."),
    patient: str = typer.Option(None, help="Only this patient pseudonym."),
    modality: str = typer.Option(None, help="Only series of this modality (CT, MR...)."),
    body_part: str = typer.Option(None, "--body-part", help="Only series of this body part."),
    manufacturer: str = typer.Option(None, help="Only series from this manufacturer (substring)."),
    limit: int = typer.Option(200, help="At most this many rows."),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
    workspace: Path | None = typer.Option(None, "--workspace", "-w"),
) -> None:
    """List sites, patients, studies, series or quarantined inputs as a table."""
    ws = _ws(workspace)
    rows: list[dict[str, Any]] = []
    with ws.catalog.session() as s:
        if level is Level.sites:
            q = (
                select(Site.name, Site.region, Site.country, func.count(Patient.id))
                .outerjoin(Patient)
                .group_by(Site.id)
                .order_by(Site.name)
            )
            if site:
                q = q.where(Site.name == site)
            rows = [
                {"site": n, "region": r, "country": c, "patients": p}
                for n, r, c, p in s.execute(q.limit(limit))
            ]
        elif level is Level.patients:
            q = (
                select(Patient.pseudonym, Site.name, Patient.sex, func.count(Study.id))
                .join(Site)
                .outerjoin(Study)
                .group_by(Patient.id, Site.name)
                .order_by(Site.name, Patient.pseudonym)
            )
            if site:
                q = q.where(Site.name == site)
            if patient:
                q = q.where(Patient.pseudonym == patient)
            rows = [
                {"patient": p, "site": si, "sex": sx, "studies": n}
                for p, si, sx, n in s.execute(q.limit(limit))
            ]
        elif level is Level.studies:
            q = (
                select(Study, Patient.pseudonym, Site.name)
                .join(Patient, Study.patient_id == Patient.id)
                .join(Site)
                .order_by(Patient.pseudonym, Study.study_date)
            )
            if site:
                q = q.where(Site.name == site)
            if patient:
                q = q.where(Patient.pseudonym == patient)
            for st, p, si in s.execute(q.limit(limit)):
                rows.append(
                    {
                        "study_uid": st.study_uid,
                        "patient": p,
                        "site": si,
                        "date": st.study_date,
                        "age": st.patient_age_years,
                        "description": st.description,
                        "series": len(st.series),
                    }
                )
        elif level is Level.series:
            q = (
                select(Series, Patient.pseudonym, Site.name)
                .join(Study, Series.study_id == Study.id)
                .join(Patient, Study.patient_id == Patient.id)
                .join(Site)
                .order_by(Patient.pseudonym, Series.series_number)
            )
            if site:
                q = q.where(Site.name == site)
            if patient:
                q = q.where(Patient.pseudonym == patient)
            if modality:
                q = q.where(func.upper(Series.modality) == modality.upper())
            if body_part:
                q = q.where(func.upper(Series.body_part) == body_part.upper())
            if manufacturer:
                q = q.where(Series.manufacturer.ilike(f"%{manufacturer}%"))
            for se, p, si in s.execute(q.limit(limit)):
                rows.append(
                    {
                        "series_uid": se.series_uid,
                        "patient": p,
                        "site": si,
                        "modality": se.modality,
                        "body_part": se.body_part,
                        "description": se.description,
                        "manufacturer": se.manufacturer,
                        "model": se.model,
                        "rows": se.rows,
                        "columns": se.columns,
                        "slice_thickness": se.slice_thickness,
                        "instances": se.instance_count,
                    }
                )
        else:
            q = select(QuarantineItem).order_by(QuarantineItem.created_at.desc()).limit(limit)
            rows = [
                {
                    "input_sha256": qi.input_digest,
                    "stage": qi.stage,
                    "reason": qi.reason,
                    "size": qi.size,
                    "at": qi.created_at,
                }
                for qi in s.scalars(q)
            ]
    if as_json:
        print_json(rows)
        return
    short = [
        {k: (v[:24] + "…" if isinstance(v, str) and len(v) > 40 else v) for k, v in r.items()} for r in rows
    ]
    print_table(short, title=f"{level.value} ({len(rows)})")


def show(
    uid: str = typer.Argument(
        ..., help="A study, series or SOP instance UID, a patient pseudonym or a blob digest."
    ),
    as_json: bool = typer.Option(False, "--json"),
    workspace: Path | None = typer.Option(None, "--workspace", "-w"),
) -> None:
    """Show everything the catalog knows about one object."""
    ws = _ws(workspace)
    out: dict[str, Any] | None = None
    with ws.catalog.session() as s:
        if (p := s.scalar(select(Patient).where(Patient.pseudonym == uid))) is not None:
            out = {
                "kind": "patient",
                "pseudonym": p.pseudonym,
                "site": p.site.name,
                "sex": p.sex,
                "studies": [
                    {
                        "study_uid": st.study_uid,
                        "date": st.study_date,
                        "age": st.patient_age_years,
                        "series": len(st.series),
                    }
                    for st in p.studies
                ],
            }
        elif (st := s.scalar(select(Study).where(Study.study_uid == uid))) is not None:
            out = {
                "kind": "study",
                "study_uid": st.study_uid,
                "patient": st.patient.pseudonym,
                "site": st.patient.site.name,
                "date": st.study_date,
                "time": st.study_time,
                "age": st.patient_age_years,
                "description": st.description,
                "series": [
                    {
                        "series_uid": se.series_uid,
                        "modality": se.modality,
                        "description": se.description,
                        "instances": se.instance_count,
                    }
                    for se in st.series
                ],
            }
        elif (se := s.scalar(select(Series).where(Series.series_uid == uid))) is not None:
            cols = {
                c.key: getattr(se, c.key) for c in Series.__table__.columns if c.key not in ("id", "study_id")
            }
            out = {
                "kind": "series",
                **cols,
                "study_uid": se.study.study_uid,
                "patient": se.study.patient.pseudonym,
            }
        elif (
            inst := s.scalar(
                select(Instance).where(or_(Instance.sop_instance_uid == uid, Instance.blob_digest == uid))
            )
        ) is not None:
            cols = {
                c.key: getattr(inst, c.key)
                for c in Instance.__table__.columns
                if c.key not in ("id", "series_id")
            }
            out = {
                "kind": "instance",
                **cols,
                "series_uid": inst.series.series_uid,
                "size": inst.blob.size,
                "stored": ws.store.exists(inst.blob_digest),
            }
    if out is None:
        from curata.errors import CurataError

        raise CurataError(
            f"nothing in the catalog is called {uid!r}",
            hint="`curata ls patients|studies|series` lists what there is",
        )
    if as_json:
        print_json(out)
        return
    console.print_json(data=out, default=str)


def status(
    as_json: bool = typer.Option(False, "--json"),
    workspace: Path | None = typer.Option(None, "--workspace", "-w"),
) -> None:
    """Counts, quarantine and store size of the workspace."""
    ws = _ws(workspace)
    with ws.catalog.session() as s:
        counts = {
            name: s.scalar(select(func.count()).select_from(model)) or 0
            for name, model in (
                ("sites", Site),
                ("patients", Patient),
                ("studies", Study),
                ("series", Series),
                ("instances", Instance),
                ("blobs", Blob),
            )
        }
        counts["quarantined"] = (
            s.scalar(
                select(func.count()).select_from(QuarantineItem).where(QuarantineItem.resolved_at.is_(None))
            )
            or 0
        )
        catalog_bytes = s.scalar(select(func.coalesce(func.sum(Blob.size), 0))) or 0
    info = {
        "workspace": str(ws.root),
        "site": ws.site_name,
        "catalog": ws.catalog.dialect,
        "code_version": code_version(),
        **counts,
        "stored_bytes": int(catalog_bytes),
        "stored": _human(int(catalog_bytes)),
    }
    if as_json:
        print_json(info)
        return
    print_table([{"what": k, "value": v} for k, v in info.items()], title="curata status")


@store_app.command("verify")
def store_verify(
    as_json: bool = typer.Option(False, "--json"),
    workspace: Path | None = typer.Option(None, "--workspace", "-w"),
) -> None:
    """Re-hash every blob; report corrupt ones and blobs the catalog names but the store lacks."""
    ws = _ws(workspace)
    with ws.catalog.session() as s:
        expected = set(s.scalars(select(Blob.digest)))
    with console.status("re-hashing the store"):
        report = ws.store.verify(expected)
    info = {
        "checked": report.checked,
        "bytes": report.bytes,
        "corrupt": report.corrupt,
        "missing": report.missing,
        "ok": report.ok,
    }
    if as_json:
        print_json(info)
    else:
        print_table(
            [
                {
                    "checked": report.checked,
                    "size": _human(report.bytes),
                    "corrupt": len(report.corrupt),
                    "missing": len(report.missing),
                }
            ],
            title="store verify",
        )
        for d in report.corrupt:
            console.print(f"[red]corrupt[/] {d}")
        for d in report.missing:
            console.print(f"[red]missing[/] {d}")
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(ls)
    app.command()(show)
    app.command()(status)
    app.add_typer(store_app, name="store")

"""Read models for the pages: each function reads through the caller's scope (``access.series``) with
the stages' public APIs and catalog tables, and returns plain dicts for a template. No decisions are
made here: QC verdicts, cohorts, releases, proofs and statements all come from their stage services."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from curata.catalog import Patient, Provenance, Series, Site, Study
from curata.errors import CurataError
from curata.select import QC_NOT_APPLICABLE, CohortInfo, QcVerdict
from curata.server.auth import Access
from curata.workspace import Workspace

PAGE_SIZE = 100


def overview(ws: Workspace, access: Access) -> dict[str, Any]:
    """Counts of what the caller may see in the project, by site and modality."""
    with ws.catalog.session() as s:
        rows = s.execute(
            select(Site.name, Series.modality, func.count(Series.id), func.count(func.distinct(Patient.id)))
            .join(Study, Series.study_id == Study.id)
            .join(Patient, Study.patient_id == Patient.id)
            .join(Site, Patient.site_id == Site.id)
            .where(Series.id.in_(access.series))
            .group_by(Site.name, Series.modality)
            .order_by(Site.name, Series.modality)
        ).all()
    return {
        "by_site": [{"site": a, "modality": b or "", "series": c, "patients": d} for a, b, c, d in rows],
        "total_series": sum(r[2] for r in rows),
    }


def _verdict(passed: bool | None, warned: bool | None) -> str:
    if passed is None:
        return "unmeasured"
    return "excluded" if not passed else ("warned" if warned else "passed")


def catalog(ws: Workspace, access: Access, f: dict[str, str], offset: int = 0) -> dict[str, Any]:
    """Series in scope with their study, patient pseudonym, site and QC verdict; filtered, paged."""
    base = (
        select(Series, Study, Patient.pseudonym, Patient.sex, Site.name, QcVerdict.passed, QcVerdict.warned)
        .join(Study, Series.study_id == Study.id)
        .join(Patient, Study.patient_id == Patient.id)
        .join(Site, Patient.site_id == Site.id)
        .outerjoin(QcVerdict, QcVerdict.series_id == Series.id)
        .where(Series.id.in_(access.series))
    )
    stmt = base
    if f.get("site"):
        stmt = stmt.where(Site.name == f["site"])
    if f.get("modality"):
        stmt = stmt.where(Series.modality == f["modality"])
    if f.get("patient"):
        stmt = stmt.where(Patient.pseudonym == f["patient"])
    if f.get("study"):
        stmt = stmt.where(Study.study_uid == f["study"])
    if f.get("text"):
        like = f"%{f['text']}%"
        stmt = stmt.where(Series.description.ilike(like) | Study.description.ilike(like))
    qc = f.get("qc", "")
    if qc == "passed":
        stmt = stmt.where(QcVerdict.passed.is_(True))
    elif qc == "excluded":
        stmt = stmt.where(QcVerdict.passed.is_(False))
    elif qc == "unmeasured":
        stmt = stmt.where(QcVerdict.id.is_(None))
    with ws.catalog.session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.execute(
            stmt.order_by(Site.name, Patient.pseudonym, Study.study_date, Series.series_number)
            .offset(offset)
            .limit(PAGE_SIZE)
        ).all()
        sites = [
            {"name": n, "patients": p, "studies": st, "series": se}
            for n, p, st, se in s.execute(
                select(
                    Site.name,
                    func.count(func.distinct(Patient.id)),
                    func.count(func.distinct(Study.id)),
                    func.count(Series.id),
                )
                .select_from(Series)
                .join(Study, Series.study_id == Study.id)
                .join(Patient, Study.patient_id == Patient.id)
                .join(Site, Patient.site_id == Site.id)
                .where(Series.id.in_(access.series))
                .group_by(Site.name)
                .order_by(Site.name)
            )
        ]
        modalities = sorted(
            m for m in s.scalars(select(Series.modality).where(Series.id.in_(access.series)).distinct()) if m
        )
    series = [
        {
            "series_uid": se.series_uid,
            "study_uid": st.study_uid,
            "patient": pseudonym,
            "sex": sex or "",
            "age": st.patient_age_years,
            "site": site,
            "study_date": st.study_date or "",
            "modality": se.modality or "",
            "body_part": se.body_part or "",
            "description": se.description or "",
            "scanner": " ".join(x for x in (se.manufacturer, se.model) if x),
            "instances": se.instance_count,
            "qc": _verdict(passed, warned),
        }
        for se, st, pseudonym, sex, site, passed, warned in rows
    ]
    return {
        "series": series,
        "total": total,
        "offset": offset,
        "next_offset": offset + PAGE_SIZE if offset + PAGE_SIZE < total else None,
        "prev_offset": max(offset - PAGE_SIZE, 0) if offset else None,
        "sites": sites,
        "modalities": modalities,
        "filters": f,
    }


def qc_review(ws: Workspace, access: Access) -> dict[str, Any]:
    """The excluded (and warned) series in scope with the rules that fired and any curator override."""
    with ws.catalog.session() as s:
        counts = dict(
            s.execute(
                select(QcVerdict.passed, func.count())
                .where(QcVerdict.series_id.in_(access.series))
                .group_by(QcVerdict.passed)
            ).all()
        )
        in_scope = (
            s.scalar(
                select(func.count(Series.id)).where(
                    Series.id.in_(access.series),
                    Series.modality.is_(None) | Series.modality.not_in(sorted(QC_NOT_APPLICABLE)),
                )
            )
            or 0
        )
        rows = s.execute(
            select(Series, Study.study_uid, Site.name, Patient.pseudonym, QcVerdict)
            .join(QcVerdict, QcVerdict.series_id == Series.id)
            .join(Study, Series.study_id == Study.id)
            .join(Patient, Study.patient_id == Patient.id)
            .join(Site, Patient.site_id == Site.id)
            .where(Series.id.in_(access.series))
            .where(
                (QcVerdict.passed.is_(False)) | (QcVerdict.warned.is_(True)) | QcVerdict.reasons.is_not(None)
            )
            .order_by(QcVerdict.passed, Site.name, Series.id)
        ).all()
    items = []
    for se, study_uid, site, pseudonym, v in rows:
        reasons = list(v.reasons or [])
        if v.passed and not v.warned and not any(r.get("rule") == "curator-override" for r in reasons):
            continue
        override = next((r for r in reasons if r.get("rule") == "curator-override"), None)
        items.append(
            {
                "series_uid": se.series_uid,
                "study_uid": study_uid,
                "site": site,
                "patient": pseudonym,
                "modality": se.modality or "",
                "description": se.description or "",
                "verdict": _verdict(v.passed, v.warned),
                "reasons": [r for r in reasons if r.get("rule") != "curator-override"],
                "override": override,
            }
        )
    passed, excluded = counts.get(True, 0), counts.get(False, 0)
    return {
        "items": items,
        "passed": passed,
        "excluded": excluded,
        "unmeasured": in_scope - passed - excluded,
    }


def _age_band(age: float | None) -> str:
    if age is None:
        return "unknown"
    lo = int(age // 10 * 10)
    return f"{lo}-{lo + 9}"


def cohort_preview(ws: Workspace, access: Access, where: str) -> dict[str, Any]:
    """Parse ``where`` (errors come back with the CLI's caret) and count the matching series in scope by
    site, sex, age band and scanner."""
    from curata.select import parse, series_select

    try:
        query = parse(where)
    except CurataError as exc:
        return {"error": exc.message, "hint": exc.hint or "", "where": where}
    with ws.catalog.session() as s:
        ids = series_select(query).where(Series.id.in_(access.series)).subquery()
        rows = s.execute(
            select(
                Site.name, Patient.sex, Study.patient_age_years, Series.manufacturer, Series.model, Patient.id
            )
            .join(Study, Series.study_id == Study.id)
            .join(Patient, Study.patient_id == Patient.id)
            .join(Site, Patient.site_id == Site.id)
            .where(Series.id.in_(select(ids.c.id)))
        ).all()
    plots = {
        "site": Counter(r[0] for r in rows),
        "sex": Counter(r[1] or "unknown" for r in rows),
        "age": Counter(_age_band(r[2]) for r in rows),
        "scanner": Counter(" ".join(x for x in (r[3], r[4]) if x) or "unknown" for r in rows),
    }
    return {
        "where": where,
        "error": "",
        "series": len(rows),
        "patients": len({r[5] for r in rows}),
        "plots": {k: bars(v) for k, v in plots.items()},
    }


def bars(counts: Counter[str], width: int = 300) -> dict[str, Any]:
    """A horizontal bar chart's geometry (drawn as inline SVG by the template)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
    top = max((c for _, c in items), default=1)
    label_w = 120
    return {
        "height": 20 * len(items) + 4,
        "width": width + label_w + 40,
        "bars": [
            {"label": k[:22], "count": c, "y": 20 * i + 2, "x": label_w, "w": max(1, round(width * c / top))}
            for i, (k, c) in enumerate(items)
        ],
    }


def cohorts(ws: Workspace, access: Access) -> list[CohortInfo]:
    from curata.select import list_cohorts

    mine = set(access.project.cohorts) if access.project else set()
    return [c for c in list_cohorts(ws) if c.name in mine]


def scoped_query(access: Access, where: str) -> str:
    """The user's query bounded to the project's sites, so a cohort never reaches another project."""
    sites = access.project.sites if access.project else []
    if not sites:
        raise CurataError(
            "this project has no sites to build cohorts from",
            hint="an admin adds one: curata project add-resource PROJECT site NAME",
        )
    quoted = ", ".join("'" + s.replace("'", "\\'") + "'" for s in sites)
    return f"({where}) and site in ({quoted})"


def releases(ws: Workspace, access: Access, grants: list[Any]) -> list[dict[str, Any]]:
    """The project's release versions; a licensee-only member sees only those licensed to them."""
    from curata.publish import list_releases, superseded_versions
    from curata.server.models import Role

    assert access.project is not None
    gone = {g.ref: g.message for g in superseded_versions(ws)}
    names = set(access.project.releases)
    licensed = {g.label for g in grants}
    licensee_only = access.roles <= {Role.licensee}
    out = []
    for r in list_releases(ws):
        name = r.ref.split("@", 1)[0]
        if name not in names:
            continue
        if licensee_only and r.ref not in licensed:
            continue
        out.append(
            {**dataclasses.asdict(r), "licensed": r.ref in licensed, "superseded": gone.get(r.ref, "")}
        )
    return out


def release_detail(ws: Workspace, ref: str) -> dict[str, Any]:
    from curata.publish import show_release

    info = show_release(ws, ref)
    splits = info.splits or {}
    return {"info": info, "splits": splits}


def may_see_release(access: Access, grants: list[Any], ref: str) -> bool:
    from curata.server.models import Role

    assert access.project is not None
    if ref.split("@", 1)[0] not in access.project.releases:
        return False
    if access.roles <= {Role.licensee}:
        return ref in {g.label for g in grants}
    return True


def runs(ws: Workspace, limit: int = 100) -> dict[str, Any]:
    """Pre-processing work recorded as provenance (``preprocess.*``): steps, counts, the latest runs."""
    with ws.catalog.session() as s:
        steps = s.execute(
            select(
                Provenance.step,
                func.count(),
                func.max(Provenance.created_at),
                func.max(Provenance.code_version),
            )
            .where(Provenance.step.like("preprocess.%"))
            .group_by(Provenance.step)
            .order_by(Provenance.step)
        ).all()
        latest = s.scalars(
            select(Provenance)
            .where(Provenance.step.like("preprocess.%"))
            .order_by(Provenance.id.desc())
            .limit(limit)
        ).all()
    return {
        "steps": [{"step": a, "count": b, "latest": c, "version": d} for a, b, c, d in steps],
        "latest": [
            {
                "step": p.step,
                "key": p.key,
                "parameters": p.parameters,
                "inputs": len(p.inputs or []),
                "output": {k: v for k, v in (p.output or {}).items() if isinstance(v, str | int | float)},
                "at": p.created_at,
            }
            for p in latest
        ],
    }


_SIG = re.compile(r"^\u2014 (\S+) ", re.M)


def entry_of_project(kind: str, payload: Any, project: Any) -> bool:
    """Whether a log entry is ``project``'s (a ``ProjectRecord``): an access entry recorded in it, or a
    release, licence or usage entry of one of its releases. Site-wide entries (ingest,
    de-identification, provenance) and other projects' are no project's page's."""
    if not isinstance(payload, dict):
        return False
    if kind == "access":
        return payload.get("project") == project.name
    if kind in ("release", "licence", "usage"):
        name = str(payload.get("release") or payload.get("name") or "").split("@", 1)[0]
        return name in project.releases
    return False


def ledger(
    ws: Workspace,
    log: Any,
    *,
    kind: str | None = None,
    limit: int = 100,
    project: Any = None,
) -> dict[str, Any]:
    """The log's size, its checkpoints with their cosigners (witnesses), and the latest entries
    (``project``'s only, when given)."""
    from curata.ledger import LedgerEntry

    log.refresh()
    size = log.size
    checkpoints = []
    for n in reversed(log.checkpoint_sizes()[-10:]):
        cp = log.load_checkpoint(n)
        signers = _SIG.findall(cp.note) if cp else []
        checkpoints.append(
            {
                "size": n,
                "root": cp.root_hash.hex() if cp else "",
                "signers": signers,
                "witnesses": [x for x in signers if cp and x != cp.origin],
            }
        )
    entries: list[dict[str, Any]] = []
    end = size
    while end > 0 and len(entries) < limit and size - end < 20 * limit:  # newest first, read in blocks
        start = max(0, end - 4 * limit)
        block = log.entry_bytes(start, end)
        for i in range(len(block) - 1, -1, -1):
            e = LedgerEntry.decode(start + i, block[i])
            if kind and e.kind != kind:
                continue
            if project is not None and not entry_of_project(e.kind, e.payload, project):
                continue
            entries.append({"index": e.index, "kind": e.kind, "time": e.time, "payload": e.payload})
            if len(entries) >= limit:
                break
        end = start
    return {"size": size, "checkpoints": checkpoints, "entries": entries, "kind": kind or ""}


def proof(log: Any, index: int) -> dict[str, Any]:
    """The inclusion proof of one entry against the latest checkpoint covering it, verified here."""
    from curata.ledger import Verifier

    entry = log.entry(index)
    p = log.prove(index)
    verifier = Verifier.from_vkey((log.folder / "log.vkey").read_text().strip())
    try:
        p.verify(verifier)
        ok, problem = True, ""
    except Exception as exc:  # a failed proof is shown, not raised
        ok, problem = False, str(exc)
    return {
        "entry": {"index": entry.index, "kind": entry.kind, "time": entry.time, "payload": entry.payload},
        "leaf_hash": p.leaf_hash.hex(),
        "size": p.size,
        "hashes": [h.hex() for h in p.hashes],
        "root": p.checkpoint.root_hash.hex(),
        "checkpoint": p.checkpoint.note,
        "verified": ok,
        "problem": problem,
    }


_STATEMENTS: dict[tuple[str, str, str, int], Any] = {}


def revenue(log: Any, period: str, site: str | None, rule: str = "patients") -> dict[str, Any]:
    """A site's lines of the revenue statement. The statement is a function of the log up to its size
    (append-only), so it is computed once per (period, rule, size)."""
    from curata.ledger import statement

    log.refresh()
    key = (str(log.folder), period, rule, log.size)
    st = _STATEMENTS.get(key)
    if st is None:
        st = statement(log, period, rule=rule)
        if len(_STATEMENTS) > 64:
            _STATEMENTS.clear()
        _STATEMENTS[key] = st
    lines = []
    for line in st.licences:
        lines.append(
            {
                "index": line.index,
                "release": line.release,
                "date": line.date,
                "currency": line.currency,
                "fee": line.fee_cents / 100,
                "share": (line.shares.get(site, 0) if site else sum(line.shares.values())) / 100,
                "weight": line.weights.get(site, 0) if site else sum(line.weights.values()),
                "weights_total": sum(line.weights.values()),
                "problem": line.problem,
            }
        )
    totals = {
        cur: {k: v / 100 for k, v in t.items() if (not site or k in (site, "_fees"))}
        for cur, t in st.totals().items()
    }
    return {
        "period": st.period,
        "rule": st.rule,
        "log_size": st.log_size,
        "log_root": st.log_root,
        "lines": lines,
        "totals": totals,
        "reconciles": st.reconciles,
        "site": site or "",
    }

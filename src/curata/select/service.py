"""The selection service: measure series (cached by content), decide verdicts under the active rules,
explain one series, and save cohorts. The CLI, the server and the demo call these functions.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, joinedload

from curata.catalog import (
    Blob,
    Instance,
    Patient,
    Provenance,
    QuarantineItem,
    Series,
    Site,
    Study,
    cache_key,
    code_version,
    join_series_to_site,
    record_provenance,
)
from curata.console import RunSummary
from curata.errors import CurataError, QueryError, is_fatal, safe_reason
from curata.runtime import imap_unordered
from curata.select.metrics import registry as metrics_registry
from curata.select.metrics.ct_mr import analysis_ranks, measure, read_images
from curata.select.metrics.wsi import is_wsm, measure_slide
from curata.select.models import Cohort, CohortSeries, QcMeasurement, QcRuleSet, QcVerdict
from curata.select.query import HEADER_FIELDS, Query, parse, series_select
from curata.select.rules import RuleSet, apply, default_ruleset, load_ruleset
from curata.workspace import Workspace

# The QC version lives in the metric registry (bumped with any metric's definition); every series whose
# measurement carries another version is measured again.
QC_VERSION = str(metrics_registry.QC_VERSION)


# -- the records this service returns ----------------------------------------------------------------


@dataclass(frozen=True)
class MetricValue:
    """One measured metric of a series, with its unit and definition from the registry."""

    metric: str
    value: Any
    unit: str
    definition: str


@dataclass(frozen=True)
class RuleCheck:
    """One rule of the active set against one series: whether it fired, and the values it read."""

    name: str
    when: str
    action: str
    reason: str
    fired: bool
    result: bool | None
    values: dict[str, Any]


@dataclass(frozen=True)
class VerdictInfo:
    """The recorded verdict of a series; ``current`` when it was decided on this content and rule set."""

    passed: bool
    warned: bool
    reasons: list[dict[str, Any]]
    ruleset: str
    code_version: str
    decided_at: datetime | None
    current: bool


@dataclass(frozen=True)
class Explanation:
    """Every metric, every rule and the verdict of one series (``curata qc explain``)."""

    series_uid: str
    modality: str | None
    description: str | None
    site: str
    qc_key: str | None
    measured: bool
    error: str | None
    metrics: list[MetricValue] = field(default_factory=list)
    rules: list[RuleCheck] = field(default_factory=list)
    verdict: VerdictInfo | None = None


@dataclass(frozen=True)
class OverrideResult:
    """A curator's decision on one series, as recorded (``before``: the verdict it replaced)."""

    series_uid: str
    passed: bool
    author: str
    reason: str
    before: bool | None


@dataclass(frozen=True)
class CohortInfo:
    """A saved cohort: its name, query, size and the moment it was taken."""

    name: str
    query: str
    series: int
    created_at: datetime | None


@dataclass(frozen=True)
class CohortMember:
    """One series of a cohort, with its site and QC verdict (None: never judged)."""

    series_uid: str
    modality: str | None
    body_part: str | None
    site: str
    qc_passed: bool | None


@dataclass(frozen=True)
class CohortDetail:
    """A cohort with its series."""

    name: str
    query: str
    created_at: datetime | None
    series: list[CohortMember]


@dataclass(frozen=True)
class QcCounts:
    series: int
    judged: int
    passed: int
    excluded: int


def qc_code_version() -> str:
    return f"{code_version()} qc/{QC_VERSION}"


def qc_key(blob_digests: Iterable[str]) -> str:
    """The content key of a series' QC: its sorted blob digests and the QC code version."""
    h = hashlib.sha256(qc_code_version().encode())
    for d in sorted(blob_digests):
        h.update(d.encode())
    return h.hexdigest()


# -- measuring (in worker processes) --------------------------------------------------------------------


@dataclass
class QcJob:
    series_id: int
    key: str
    digests: list[str]


@dataclass
class QcOutcome:
    metrics: dict[str, Any] = field(default_factory=dict)
    thumbnail: str | None = None
    thumbnail_size: int = 0
    error: str | None = None
    seconds: float = 0.0


_STORE: Any = None


def _init_worker(store_url: str) -> None:
    global _STORE
    from curata.store import open_store

    _STORE = open_store(store_url)


def measure_job(job: QcJob) -> QcOutcome:
    """Read a series from the store once and measure it; never raises for a bad series."""
    t0 = time.perf_counter()
    try:
        sources: list[Any] = []
        for d in job.digests:
            path = _STORE.local_path(d)
            sources.append(path if path is not None else _STORE.open(d))
        if _is_slide(sources[0]):
            metrics, thumb = measure_slide(sources)
        else:
            images = read_images(sources, keep=set(analysis_ranks(len(sources))))
            metrics, thumb = measure(images)
        digest = _STORE.put_bytes(thumb) if thumb else None
        return QcOutcome(metrics, digest, len(thumb or b""), None, time.perf_counter() - t0)
    except BaseException as exc:  # one unreadable series (a decoder's panic too) must not stop the batch
        if is_fatal(exc):
            raise  # an interrupt, an exit
        # kept in the catalog, printed and reported: a parser's or decoder's text may quote the data
        return QcOutcome(error=safe_reason(exc), seconds=time.perf_counter() - t0)


def _is_slide(source: Any) -> bool:
    """A DICOM-WSI series (VL Whole Slide Microscopy) is measured by the slide metrics."""
    import pydicom

    ds = pydicom.dcmread(source, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    if hasattr(source, "seek"):
        source.seek(0)
    return is_wsm(ds)


# -- the run --------------------------------------------------------------------------------------------


def _selected(session: Session, where: str | Query | None) -> list[int]:
    return list(session.scalars(series_select(where).order_by(Series.id)))


# Objects with no image of their own to measure: segmentations, structured reports, structure sets,
# key-object selections, presentation states, documents, registrations, plans. QC does not apply to
# them (the images they refer to are measured); they count as "not applicable", never "not measured".
QC_NOT_APPLICABLE = frozenset(
    {"SEG", "SR", "RTSTRUCT", "KO", "PR", "DOC", "REG", "RTPLAN", "PLAN", "FID", "ANN"}
)


def _qc_selected(session: Session, where: str | Query | None) -> list[int]:
    q = series_select(where).where(
        Series.modality.is_(None) | Series.modality.not_in(sorted(QC_NOT_APPLICABLE))
    )
    return list(session.scalars(q.order_by(Series.id)))


def _digests(session: Session, ids: list[int]) -> dict[int, list[str]]:
    """Each series' blob digests in slice order (position along the normal, else instance number)."""
    rows: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for chunk in _chunks(ids, 500):
        q = select(
            Instance.series_id,
            Instance.blob_digest,
            Instance.image_position,
            Instance.image_orientation,
            Instance.instance_number,
        ).where(Instance.series_id.in_(chunk))
        for sid, digest, pos, orient, number in session.execute(q):
            rows[sid].append((digest, pos, orient, number))
    return {sid: _in_slice_order(items) for sid, items in rows.items()}


def _in_slice_order(items: list[tuple[Any, ...]]) -> list[str]:
    orient = next((o for _, _, o, _ in items if o and len(o) == 6), None)
    if orient is not None and all(p and len(p) == 3 for _, p, _, _ in items):
        normal = np.cross(np.asarray(orient[:3], float), np.asarray(orient[3:], float))
        return [d for d, *_ in sorted(items, key=lambda t: (float(np.dot(t[1], normal)), t[0]))]
    return [d for d, *_ in sorted(items, key=lambda t: (t[3] if t[3] is not None else 0, t[0]))]


def _chunks(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _existing_keys(session: Session, keys: list[str]) -> set[str]:
    """Keys already measured; a measurement that failed is forgotten, so the next run tries again."""
    found: set[str] = set()
    for chunk in _chunks(keys, 500):
        rows = session.execute(
            select(QcMeasurement.qc_key, QcMeasurement.error).where(QcMeasurement.qc_key.in_(chunk))
        )
        failed = []
        for key, error in rows:
            if error:
                failed.append(key)
            else:
                found.add(key)
        if failed:
            session.execute(delete(QcMeasurement).where(QcMeasurement.qc_key.in_(failed)))
    return found


def run_qc(
    ws: Workspace,
    where: str | None = None,
    workers: int | None = None,
    *,
    quiet: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Measure every selected series not yet measured, then decide every selected series' verdict.

    Never prints: ``on_progress(done, total)`` follows the measurements (the CLI draws its bar from
    it); ``quiet`` is accepted for older callers and changes nothing."""
    ws.catalog.check_schema()
    query = parse(where) if where else None
    summary = RunSummary("qc run")
    for key in ("measured", "cached", "passed", "excluded", "warned", "failed"):
        summary.counts[key] = 0
    with ws.catalog.session() as session:
        ids = _qc_selected(session, query)
        digests = _digests(session, ids)
        keys = {sid: qc_key(digests[sid]) for sid in ids if digests.get(sid)}
        have = _existing_keys(session, list(keys.values()))
    jobs = [QcJob(sid, k, digests[sid]) for sid, k in keys.items() if k not in have]
    summary.add("cached", len(keys) - len(jobs))
    store_url = ws.store_url
    workers = ws.workers(workers)
    with ws.catalog.session() as session:
        last = time.monotonic()
        results = imap_unordered(
            measure_job, jobs, workers=workers, initializer=_init_worker, initargs=(store_url,), window=None
        )
        for done, (job, out) in enumerate(results, start=1):
            _file_outcome(session, job, out)
            summary.add("failed" if out.error else "measured")
            if on_progress is not None:
                on_progress(done, len(jobs))
            if time.monotonic() - last > 1.0:
                session.commit()
                last = time.monotonic()
    decided = decide(ws, ids, keys)
    for key in ("passed", "excluded", "warned"):
        summary.add(key, decided.counts.get(key, 0))
    summary.extra["rules"] = decided.extra["rules"]
    return summary


def _file_outcome(session: Session, job: QcJob, out: QcOutcome) -> None:
    if out.thumbnail and session.get(Blob, out.thumbnail) is None:
        session.add(Blob(digest=out.thumbnail, size=out.thumbnail_size, media_type="image/png"))
    session.add(
        QcMeasurement(
            qc_key=job.key,
            series_id=job.series_id,
            metrics=out.metrics,
            error=out.error,
            thumbnail_digest=out.thumbnail,
            code_version=qc_code_version(),
            seconds=round(out.seconds, 4),
        )
    )
    if out.error:
        exists = session.scalar(
            select(QuarantineItem.id).where(
                QuarantineItem.stage == "qc", QuarantineItem.input_digest == job.key
            )
        )
        if exists is None:
            session.add(
                QuarantineItem(
                    stage="qc", input_digest=job.key, reason=f"QC could not read the series: {out.error}"
                )
            )
    session.flush()


# -- rules and verdicts ---------------------------------------------------------------------------------


def active_ruleset(ws: Workspace) -> RuleSet:
    with ws.catalog.session() as session:
        row = session.scalar(select(QcRuleSet).order_by(QcRuleSet.created_at.desc(), QcRuleSet.id.desc()))
        if row is None:
            return default_ruleset()
        return load_ruleset(row.source, f"rule set {row.digest[:12]}")


def set_rules(ws: Workspace, text: str, origin: str = "rules") -> tuple[RuleSet, RunSummary]:
    """Make ``text`` (TOML) the active rule set and decide every measured series again."""
    ruleset = load_ruleset(text, origin)
    with ws.catalog.session() as session:
        row = session.scalar(select(QcRuleSet).where(QcRuleSet.digest == ruleset.digest))
        if row is None:
            session.add(QcRuleSet(digest=ruleset.digest, source=text))
        else:
            row.source = text
            row.created_at = datetime.now(UTC)
    return ruleset, decide(ws, None)


def _holder(col: Any, objs: dict[type, Any]) -> Any:
    obj = objs.get(col.class_)
    return getattr(obj, col.key) if obj is not None else None


def series_record(series: Series, metrics: dict[str, Any] | None) -> dict[str, Any]:
    """The values a rule or a query sees for one series: header fields, then ``qc.<metric>``."""
    study = series.study
    patient = study.patient
    objs: dict[type, Any] = {Series: series, Study: study, Patient: patient, Site: patient.site}
    rec = {name: _holder(f.column(), objs) for name, f in HEADER_FIELDS.items()}
    for k, v in (metrics or {}).items():
        rec[f"qc.{k}"] = v
    return rec


def decide(ws: Workspace, series_ids: list[int] | None, keys: dict[int, str] | None = None) -> RunSummary:
    """Apply the active rules to the current measurement of each series; record verdicts + provenance.

    Works in chunks with a handful of bulk queries each (series with their study, patient and site;
    measurements; verdicts; existing provenance), so deciding costs little next to measuring.
    """
    ruleset = active_ruleset(ws)
    summary = RunSummary("qc decide")
    summary.extra["rules"] = ruleset.digest[:12]
    version = qc_code_version()
    params = {"ruleset": ruleset.digest}
    with ws.catalog.session() as session:
        ids = series_ids if series_ids is not None else _qc_selected(session, None)
        if keys is None:
            digests = _digests(session, ids)
            keys = {sid: qc_key(digests[sid]) for sid in ids if digests.get(sid)}
        for chunk in _chunks([i for i in ids if i in keys], 200):
            rows = {
                s.id: s
                for s in session.scalars(
                    select(Series)
                    .where(Series.id.in_(chunk))
                    .options(joinedload(Series.study).joinedload(Study.patient).joinedload(Patient.site))
                )
            }
            wanted = [keys[sid] for sid in chunk]
            measured = {
                m.qc_key: m
                for m in session.scalars(select(QcMeasurement).where(QcMeasurement.qc_key.in_(wanted)))
            }
            verdicts = {
                v.series_id: v
                for v in session.scalars(select(QcVerdict).where(QcVerdict.series_id.in_(chunk)))
            }
            prov_keys = {
                sid: cache_key("qc.decide", [rows[sid].series_uid, keys[sid]], params, version)
                for sid in chunk
            }
            recorded = set(
                session.scalars(select(Provenance.key).where(Provenance.key.in_(list(prov_keys.values()))))
            )
            overrides = _overrides(session, [rows[sid].series_uid for sid in chunk])
            for sid in chunk:
                m = measured.get(keys[sid])
                if m is None:
                    continue
                if m.error:
                    passed, warned = False, False
                    reasons = [
                        {
                            "rule": "unreadable",
                            "action": "exclude",
                            "reason": m.error,
                            "when": "",
                            "values": {},
                        }
                    ]
                else:
                    passed, warned, firings = apply(ruleset, series_record(rows[sid], m.metrics))
                    reasons = [f.as_dict() for f in firings]
                o = overrides.get((rows[sid].series_uid, keys[sid]))
                if o is not None:  # a curator's decision on this content stands over the rules
                    passed, reasons = bool(o["passed"]), [_override_reason(o), *reasons]
                v = verdicts.get(sid)
                if v is None:
                    v = QcVerdict(series_id=sid)
                    session.add(v)
                v.qc_key, v.passed, v.warned, v.reasons = keys[sid], passed, warned, reasons
                v.ruleset_digest, v.code_version, v.decided_at = ruleset.digest, version, datetime.now(UTC)
                if prov_keys[sid] not in recorded:
                    session.add(
                        Provenance(
                            key=prov_keys[sid],
                            step="qc.decide",
                            inputs=[rows[sid].series_uid, keys[sid]],
                            parameters=params,
                            code_version=version,
                            output={"passed": passed, "warned": warned, "reasons": reasons},
                        )
                    )
                summary.add("passed" if passed else "excluded")
                if warned:
                    summary.add("warned")
            session.commit()
    return summary


# -- curator overrides ------------------------------------------------------------------------------------
OVERRIDE_STEP = "qc.override"


def _overrides(session: Session, uids: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest override per (series uid, qc key) among ``uids``."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not uids:
        return out
    rows = session.scalars(select(Provenance).where(Provenance.step == OVERRIDE_STEP).order_by(Provenance.id))
    wanted = set(uids)
    for p in rows:
        if p.inputs and p.inputs[0] in wanted:
            out[(p.inputs[0], p.inputs[1])] = {**p.output, "at": p.created_at}
    return out


def _override_reason(o: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": "curator-override",
        "action": "include" if o["passed"] else "exclude",
        "reason": o.get("reason", ""),
        "author": o.get("author", ""),
        "when": "",
        "values": {},
    }


def override(ws: Workspace, uid: str, *, passed: bool, author: str, reason: str) -> OverrideResult:
    """A curator's decision on one series: include (``passed``) or exclude it whatever the rules say,
    with a reason and its author. Recorded as provenance (step ``qc.override``, appended to the log like
    every decision); it holds for this content (the qc key) until the series changes."""
    reason = reason.strip()
    if not reason:
        raise QueryError("an override needs a reason", hint="say why the rules' verdict is wrong")
    if not author:
        raise QueryError("an override needs its author")
    with ws.catalog.session() as session:
        s = find_series(session, uid)
        digests = list(session.scalars(select(Instance.blob_digest).where(Instance.series_id == s.id)))
        key = qc_key(digests)
        v = session.scalar(select(QcVerdict).where(QcVerdict.series_id == s.id))
        before = None if v is None else bool(v.passed)
        output = {"passed": passed, "author": author, "reason": reason, "before": before}
        record_provenance(session, OVERRIDE_STEP, [s.series_uid, key, f"t={time.time_ns()}"], {}, output)
        entry = {**output, "at": datetime.now(UTC)}
        if v is not None:
            others = [r for r in v.reasons if r.get("rule") != "curator-override"]
            v.passed, v.reasons = passed, [_override_reason(entry), *others]
            v.decided_at = datetime.now(UTC)
        else:
            session.add(
                QcVerdict(
                    series_id=s.id,
                    qc_key=key,
                    passed=passed,
                    warned=False,
                    reasons=[_override_reason(entry)],
                    ruleset_digest=active_ruleset(ws).digest,
                    code_version=qc_code_version(),
                )
            )
        return OverrideResult(s.series_uid, passed, author, reason, before)


# -- explain --------------------------------------------------------------------------------------------


def find_series(session: Session, uid: str) -> Series:
    s = session.scalar(select(Series).where(Series.series_uid == uid))
    if s is None:
        matches = list(session.scalars(select(Series).where(Series.series_uid.like(f"{uid}%")).limit(2)))
        if len(matches) == 1:
            return matches[0]
        raise CurataError(f"no series with UID {uid!r}", hint="`curata ls series` lists them")
    return s


def explain(ws: Workspace, uid: str) -> Explanation:
    """Every metric (with unit and definition), every rule (fired or not, with the values it read), the verdict."""
    from curata.select.metrics.registry import METRICS
    from curata.select.query import evaluate

    ruleset = active_ruleset(ws)
    with ws.catalog.session() as session:
        s = find_series(session, uid)
        digests = [
            d for (d,) in session.execute(select(Instance.blob_digest).where(Instance.series_id == s.id))
        ]
        key = qc_key(digests) if digests else None
        m = session.scalar(select(QcMeasurement).where(QcMeasurement.qc_key == key)) if key else None
        verdict = session.scalar(select(QcVerdict).where(QcVerdict.series_id == s.id))
        record = series_record(s, m.metrics if m else None)
        metrics = []
        if m is not None:
            for name, value in m.metrics.items():
                meta = METRICS.get(name)
                metrics.append(
                    MetricValue(name, value, meta.unit if meta else "", meta.definition if meta else "")
                )
        _, _, firings = apply(ruleset, record)
        fired = {f.rule for f in firings}
        rules = [
            RuleCheck(
                name=rule.name,
                when=rule.when,
                action=rule.action,
                reason=rule.reason,
                fired=rule.name in fired,
                result=evaluate(rule.query.root, record),
                values={f: record.get(f) for f in dict.fromkeys(rule.query.fields)},
            )
            for rule in ruleset.rules
        ]
        shown = None
        if verdict is not None:
            shown = VerdictInfo(
                passed=verdict.passed,
                warned=verdict.warned,
                reasons=verdict.reasons,
                ruleset=verdict.ruleset_digest,
                code_version=verdict.code_version,
                decided_at=verdict.decided_at,
                current=verdict.qc_key == key and verdict.ruleset_digest == ruleset.digest,
            )
        return Explanation(
            series_uid=s.series_uid,
            modality=s.modality,
            description=s.description,
            site=s.study.patient.site.name,
            qc_key=key,
            measured=m is not None,
            error=m.error if m else None,
            metrics=metrics,
            rules=rules,
            verdict=shown,
        )


# -- cohorts --------------------------------------------------------------------------------------------


def create_cohort(ws: Workspace, name: str, where: str) -> CohortInfo:
    """Save ``name``: the query, the moment, and the series it matches now."""
    query = parse(where)
    with ws.catalog.session() as session:
        if session.scalar(select(Cohort.id).where(Cohort.name == name)) is not None:
            raise QueryError(
                f"a cohort named {name!r} exists", hint="cohorts are immutable: choose a new name"
            )
        ids = _selected(session, query)
        cohort = Cohort(name=name, query=where, series_count=len(ids), code_version=code_version())
        session.add(cohort)
        session.flush()
        session.add_all([CohortSeries(cohort_id=cohort.id, series_id=i) for i in ids])
        uids = list(session.scalars(select(Series.series_uid).where(Series.id.in_(ids)))) if ids else []
        record_provenance(
            session,
            "cohort.create",
            sorted(uids),
            {"name": name, "query": where},
            {"series": len(ids)},
        )
        return CohortInfo(name, where, len(ids), cohort.created_at)


def cohort_id(session: Session, name: str) -> int | None:
    """The id of cohort ``name``, or None where there is none."""
    return session.scalar(select(Cohort.id).where(Cohort.name == name))


def cohort_series_ids(session: Session, name: str) -> list[int] | None:
    """The series (ids, sorted) cohort ``name`` holds, or None where there is no such cohort."""
    cid = cohort_id(session, name)
    if cid is None:
        return None
    ids = session.scalars(select(CohortSeries.series_id).where(CohortSeries.cohort_id == cid))
    return sorted(int(i) for i in ids)


def qc_verdicts(session: Session, series_ids: Sequence[int]) -> dict[int, bool]:
    """Whether each judged series passed QC (series never judged are absent)."""
    out: dict[int, bool] = {}
    ids = [int(i) for i in series_ids]
    for chunk in _chunks(ids, 500):
        for sid, passed in session.execute(
            select(QcVerdict.series_id, QcVerdict.passed).where(QcVerdict.series_id.in_(chunk))
        ):
            out[int(sid)] = bool(passed)
    return out


def list_cohorts(ws: Workspace) -> list[CohortInfo]:
    with ws.catalog.session() as session:
        return [
            CohortInfo(c.name, c.query, c.series_count, c.created_at)
            for c in session.scalars(select(Cohort).order_by(Cohort.created_at))
        ]


def show_cohort(ws: Workspace, name: str) -> CohortDetail:
    with ws.catalog.session() as session:
        c = session.scalar(select(Cohort).where(Cohort.name == name))
        if c is None:
            raise CurataError(f"no cohort named {name!r}", hint="`curata cohort ls` lists them")
        rows = session.execute(
            join_series_to_site(
                select(
                    Series.series_uid, Series.modality, Series.body_part, Site.name, QcVerdict.passed
                ).join(CohortSeries, CohortSeries.series_id == Series.id)
            )
            .outerjoin(QcVerdict, QcVerdict.series_id == Series.id)
            .where(CohortSeries.cohort_id == c.id)
            .order_by(Series.series_uid)
        )
        series = [CohortMember(u, m, b, s, p) for u, m, b, s, p in rows]
        return CohortDetail(c.name, c.query, c.created_at, series)


def drop_verdicts(ws: Workspace) -> None:
    """Forget every verdict (measurements stay cached); used by tests and ``qc rules --reset``."""
    with ws.catalog.session() as session:
        session.execute(delete(QcVerdict))


def counts(ws: Workspace) -> QcCounts:
    with ws.catalog.session() as session:
        total = session.scalar(select(func.count()).select_from(Series)) or 0
        passed = session.scalar(select(func.count()).where(QcVerdict.passed.is_(True))) or 0
        judged = session.scalar(select(func.count()).select_from(QcVerdict)) or 0
    return QcCounts(total, judged, passed, judged - passed)

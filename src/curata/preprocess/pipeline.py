"""``curata preprocess run``: a declared pipeline over series, cached, parallel, recorded.

Every unit of work (convert one series; one step on one volume; one pairwise step on a volume and
its reference) has a cache key: sha256 of (step, input digests, parameters, code version). Outputs
are content-addressed blobs (a deterministic one-file Zarr), so a re-run finds every key and does
nothing new, and a changed parameter recomputes only the steps downstream of it.

Pipeline file::

    name = "ct-standard"
    modality = "CT"                # optional filter
    [convert]
    uneven = "refuse"              # refuse | split | interpolate
    tilt = "shear"                 # shear | resample
    [[step]]
    op = "reorient"
    axcodes = "RAS"
    [[step]]
    op = "resample"
    spacing = [1.5, 1.5, 1.5]
    [[step]]
    op = "register"                # pairwise: follow-ups to the patient's baseline
    to = "baseline"
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tomllib
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from curata import __version__
from curata._io import fsync_dir, fsync_file
from curata.console import RunSummary
from curata.errors import ConfigError, CurataError, InputError
from curata.preprocess.policies import DEFAULT_TILT, DEFAULT_UNEVEN, TILT_POLICIES, UNEVEN_POLICIES
from curata.preprocess.steps import Step, make_step
from curata.preprocess.volume import Volume, volume_from_zarr_zip, write_json, write_nifti, zarr_zip_bytes

VOLUME_MEDIA_TYPE = "application/vnd.curata.volume+zarr+zip"


# -- the pipeline file ------------------------------------------------------------------------------------
@dataclass
class Pipeline:
    name: str
    steps: list[Step]
    uneven: str = DEFAULT_UNEVEN
    tilt: str = DEFAULT_TILT
    modality: str | None = None
    export: str = "nifti-gz"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "convert": {"uneven": self.uneven, "tilt": self.tilt},
            "steps": [s.describe() for s in self.steps],
        }


def parse_pipeline(data: dict[str, Any], *, origin: str = "pipeline") -> Pipeline:
    known = {"name", "modality", "convert", "step", "export"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {sorted(unknown)}", hint=f"allowed: {sorted(known)}")
    conv = data.get("convert", {})
    uneven, tilt = conv.get("uneven", DEFAULT_UNEVEN), conv.get("tilt", DEFAULT_TILT)
    if uneven not in UNEVEN_POLICIES:
        raise ConfigError(f"{origin}: convert.uneven must be refuse, split or interpolate, not {uneven!r}")
    if tilt not in TILT_POLICIES:
        raise ConfigError(f"{origin}: convert.tilt must be shear or resample, not {tilt!r}")
    export = data.get("export", "nifti-gz")
    if export not in ("nifti", "nifti-gz"):
        raise ConfigError(f"{origin}: export must be nifti or nifti-gz, not {export!r}")
    steps = [make_step(spec) for spec in data.get("step", [])]
    return Pipeline(str(data.get("name", origin)), steps, uneven, tilt, data.get("modality"), export)


def load_pipeline(path: Path) -> Pipeline:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"pipeline file {path} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}", hint="fix the TOML syntax") from exc
    return parse_pipeline(data, origin=str(path))


# -- where inputs come from and outputs go ------------------------------------------------------------------
@dataclass(frozen=True)
class CacheSpec:
    """Picklable description of the cache, opened again inside each worker."""

    kind: str  # "workspace" | "folder"
    root: str


class FolderCache:
    """Blobs and provenance records as files (for conversion of a folder without a workspace)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "objects").mkdir(parents=True, exist_ok=True)
        (root / "provenance").mkdir(parents=True, exist_ok=True)

    def lookup(self, key: str) -> dict[str, Any] | None:
        path = self.root / "provenance" / f"{key}.json"
        return json.loads(path.read_text())["output"] if path.exists() else None

    def put(self, data: bytes) -> str:
        from curata.preprocess.volume import atomic_write_bytes

        digest = hashlib.sha256(data).hexdigest()
        path = self.root / "objects" / digest
        if not path.exists():
            atomic_write_bytes(path, data)
        return digest

    def get(self, digest: str) -> bytes:
        return (self.root / "objects" / digest).read_bytes()

    def put_file(self, path: Path) -> str:
        """Store a finished file (hashed in chunks, moved into place atomically) and drop ``path``."""
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        digest = h.hexdigest()
        final = self.root / "objects" / digest
        if final.exists():
            Path(path).unlink()
        else:
            tmp = final.with_name(f".{digest}.part")
            shutil.move(str(path), tmp)
            fsync_file(tmp)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        return digest

    def path(self, digest: str) -> Path:
        return self.root / "objects" / digest

    def record(
        self,
        key: str,
        step: str,
        inputs: list[str],
        params: dict[str, Any],
        output: dict[str, Any],
        version: str,
    ) -> None:
        write_json(
            self.root / "provenance" / f"{key}.json",
            {
                "key": key,
                "step": step,
                "inputs": inputs,
                "parameters": params,
                "code_version": version,
                "output": output,
            },
        )

    def quarantine(self, digest: str, reason: str) -> None:
        write_json(self.root / "quarantine" / f"{digest}.json", {"stage": "preprocess", "reason": reason})


class WorkspaceCache:
    """The workspace store for blobs and the catalog's Provenance table for records."""

    def __init__(self, root: Path) -> None:
        from curata.workspace import Workspace

        self.ws = Workspace.open(root)

    def lookup(self, key: str) -> dict[str, Any] | None:
        from curata.catalog import find_provenance

        with self.ws.catalog.session() as session:
            prov = find_provenance(session, key)
            return dict(prov.output) if prov is not None else None

    def put(self, data: bytes) -> str:
        return self.ws.store.put_bytes(data)

    def get(self, digest: str) -> bytes:
        return self.ws.store.get_bytes(digest)

    def put_file(self, path: Path) -> str:
        """Store a finished file (the store copies it in chunks and commits atomically); drop ``path``."""
        digest = self.ws.store.put_file(Path(path))
        Path(path).unlink()
        return digest

    def path(self, digest: str) -> Path | BinaryIO:
        """A local path to the blob where the store has one, else an open file."""
        local = self.ws.store.local_path(digest)
        return local if local is not None else self.ws.store.open(digest)

    def record(
        self,
        key: str,
        step: str,
        inputs: list[str],
        params: dict[str, Any],
        output: dict[str, Any],
        version: str,
    ) -> None:
        from sqlalchemy.exc import IntegrityError

        from curata.catalog import find_provenance as find
        from curata.catalog.models import Blob, Provenance

        try:
            with self.ws.catalog.session() as session:
                for digest in _digests_in(output):
                    if session.get(Blob, digest) is None:
                        session.add(
                            Blob(digest=digest, size=self.ws.store.size(digest), media_type=VOLUME_MEDIA_TYPE)
                        )
                if find(session, key) is None:
                    session.add(
                        Provenance(
                            key=key,
                            step=step,
                            inputs=inputs,
                            parameters=params,
                            code_version=version,
                            output=output,
                        )
                    )
        except IntegrityError:  # another worker recorded the same key (or blob) first: same content
            pass

    def quarantine(self, digest: str, reason: str) -> None:
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError

        from curata.catalog.models import QuarantineItem

        try:
            with self.ws.catalog.session() as session:
                q = session.scalar(
                    select(QuarantineItem).where(
                        QuarantineItem.stage == "preprocess", QuarantineItem.input_digest == digest
                    )
                )
                if q is None:
                    session.add(QuarantineItem(stage="preprocess", input_digest=digest, reason=reason[:2000]))
                else:
                    q.reason = reason[:2000]
        except IntegrityError:
            pass


def _digests_in(output: dict[str, Any]) -> list[str]:
    if "digest" in output:
        return [output["digest"]]
    return [v["digest"] for v in output.get("volumes", [])]


_OPEN: dict[CacheSpec, Any] = {}


def open_cache(spec: CacheSpec) -> FolderCache | WorkspaceCache:
    cache = _OPEN.get(spec)
    if cache is None:
        cache = WorkspaceCache(Path(spec.root)) if spec.kind == "workspace" else FolderCache(Path(spec.root))
        _OPEN[spec] = cache
    return cache


# -- units of work ----------------------------------------------------------------------------------------------
def step_version(step: Step) -> str:
    return f"curata {__version__} {step.op}/v{step.version}"


def convert_version() -> str:
    return f"curata {__version__} convert/v1"


def cache_key(step: str, inputs: list[str], params: dict[str, Any], version: str) -> str:
    payload = json.dumps(
        {"step": step, "inputs": inputs, "parameters": params, "code_version": version},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class SeriesItem:
    """One series to convert: its files (local paths or ``blob:<digest>``) and their content digests."""

    item_id: str
    patient: str
    study_key: str
    modality: str
    sources: list[str]
    digests: list[str]


@dataclass
class VolumeItem:
    series: SeriesItem
    stack: str
    digest: str

    @property
    def label(self) -> str:
        return f"{self.series.item_id}/{self.stack}"


@dataclass
class Task:
    kind: str  # convert | chain | pair
    cache: CacheSpec
    series: SeriesItem | None = None
    digest: str | None = None
    reference: str | None = None
    steps: tuple[Step, ...] = ()
    uneven: str = DEFAULT_UNEVEN
    tilt: str = DEFAULT_TILT
    tag: Any = None


@dataclass
class TaskResult:
    ok: bool
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (stack name, digest)
    computed: int = 0
    cached: int = 0
    error: str = ""
    error_input: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def run_task(task: Task) -> TaskResult:
    """Run one unit in whatever process it lands in; failures come back as a result, never raised."""
    result = TaskResult(ok=True)
    try:
        cache = open_cache(task.cache)
        if task.kind == "convert":
            assert task.series is not None
            result.outputs = _convert(cache, task, result)
        elif task.kind == "chain":
            assert task.digest is not None
            digest = task.digest
            for step in task.steps:
                digest = _apply(cache, step, digest, None, result)
            result.outputs = [("", digest)]
        elif task.kind == "pair":
            assert task.digest is not None
            result.outputs = [("", _apply(cache, task.steps[0], task.digest, task.reference, result))]
        else:
            raise ValueError(f"unknown task kind {task.kind}")
    except CurataError as exc:
        result.ok, result.error = False, exc.message
    except Exception as exc:  # a step blew up on this item: record it, the batch goes on
        result.ok = False
        result.error = f"{type(exc).__name__}: {exc} ({traceback.extract_tb(exc.__traceback__)[-1].name})"
    if not result.ok:
        bad = task.digest or (
            cache_key("convert-input", sorted(task.series.digests), {}, "") if task.series else ""
        )
        result.error_input = bad
        # quarantine bookkeeping must never hide the real error
        with contextlib.suppress(Exception):
            open_cache(task.cache).quarantine(bad, result.error)
    return result


def _convert(cache: FolderCache | WorkspaceCache, task: Task, result: TaskResult) -> list[tuple[str, str]]:
    from curata.preprocess.convert import convert_series

    series = task.series
    assert series is not None
    params = {"uneven": task.uneven, "tilt": task.tilt}
    inputs = sorted(series.digests)
    key = cache_key("preprocess.convert", inputs, params, convert_version())
    hit = cache.lookup(key)
    if hit is not None:
        result.cached += 1
        return [(v["name"], v["digest"]) for v in hit["volumes"]]
    files: list[Any] = []
    for src in series.sources:
        files.append(io.BytesIO(cache.get(src[5:])) if src.startswith("blob:") else Path(src))
    pieces = convert_series(files, uneven=task.uneven, tilt=task.tilt)  # type: ignore[arg-type]
    outputs = []
    for name, vol in pieces:
        outputs.append((name, cache.put(zarr_zip_bytes(vol))))
    record = {"volumes": [{"name": n, "digest": d} for n, d in outputs], "media_type": VOLUME_MEDIA_TYPE}
    cache.record(key, "preprocess.convert", inputs, params, record, convert_version())
    result.computed += 1
    return outputs


def _apply(
    cache: FolderCache | WorkspaceCache, step: Step, digest: str, reference: str | None, result: TaskResult
) -> str:
    import time

    inputs = [digest] + ([reference] if reference else [])
    params = step.params()
    key = cache_key(f"preprocess.{step.op}", inputs, params, step_version(step))
    hit = cache.lookup(key)
    if hit is not None:
        result.cached += 1
        return str(hit["digest"])
    started = time.perf_counter()
    image = volume_from_zarr_zip(cache.get(digest))
    ref = volume_from_zarr_zip(cache.get(reference)) if reference else None
    out = step.apply(image, ref)
    out_digest = cache.put(zarr_zip_bytes(out))
    seconds = time.perf_counter() - started
    output = {
        "digest": out_digest,
        "media_type": VOLUME_MEDIA_TYPE,
        "shape": list(out.shape),
        "spacing": [round(v, 6) for v in out.spacing],
        "seconds": round(seconds, 3),
    }
    if "registration" in out.meta:
        output["registration"] = {k: v for k, v in out.meta["registration"].items() if k != "transform"}
    cache.record(key, f"preprocess.{step.op}", inputs, params, output, step_version(step))
    result.computed += 1
    result.timings[step.op] = result.timings.get(step.op, 0.0) + seconds
    return out_digest


# -- executors ------------------------------------------------------------------------------------------------
def execute(
    tasks: list[Task], *, workers: int | None, scheduler: str | None
) -> Iterator[tuple[Task, TaskResult]]:
    """Run tasks on a Dask cluster (``scheduler``) or a local process pool; yields as they finish."""
    if not tasks:
        return
    if scheduler:
        from distributed import Client, as_completed

        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            from curata.errors import NetworkError

            raise NetworkError(
                f"cannot reach the Dask scheduler {scheduler}: {exc}",
                hint="check the address and that it runs",
            ) from exc
        try:
            futures = {client.submit(run_task, t, pure=False): t for t in tasks}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            client.close()
        return
    from curata.runtime import imap_unordered

    yield from imap_unordered(
        run_task, tasks, workers=min(workers or 0, len(tasks)) or min(_cpus(), len(tasks))
    )


def _cpus() -> int:
    from curata.runtime import default_workers

    return default_workers(None)


# -- discovering inputs -----------------------------------------------------------------------------------------
def series_from_folder(root: Path) -> list[SeriesItem]:
    import pydicom

    from curata.preprocess.dicom_stack import find_dicom_files

    groups: dict[str, dict[str, Any]] = {}
    for path in find_dicom_files(root):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # non-DICOM files in a folder are skipped, as convert does
            continue
        uid = str(ds.get("SeriesInstanceUID", "")) or f"no-series-uid:{path.parent}"
        g = groups.setdefault(
            uid,
            {
                "patient": str(ds.get("PatientID", "")),
                "study": f"{ds.get('StudyDate', '')}{ds.get('StudyTime', '')}:{ds.get('StudyInstanceUID', '')}",
                "modality": str(ds.get("Modality", "")),
                "paths": [],
            },
        )
        g["paths"].append(path)
    items = []
    for uid, g in sorted(groups.items()):
        digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in g["paths"]]
        items.append(
            SeriesItem(uid, g["patient"], g["study"], g["modality"], [str(p) for p in g["paths"]], digests)
        )
    return items


def series_from_workspace(
    ws: Any, *, cohort: str | None = None, modality: str | None = None
) -> list[SeriesItem]:
    from sqlalchemy import select

    from curata.catalog import Instance, Patient, Series, Study, join_series_to_site

    with ws.catalog.session() as session:
        query = join_series_to_site(
            select(
                Series.id,
                Series.series_uid,
                Series.modality,
                Patient.pseudonym,
                Study.study_date,
                Study.study_time,
                Study.study_uid,
            ),
            site=False,
        ).order_by(Series.series_uid)
        if cohort:
            from curata.select import cohort_series_ids

            members = cohort_series_ids(session, cohort)
            if members is None:
                raise ConfigError(f"no cohort named {cohort!r}", hint="`curata cohort ls` lists them")
            query = query.where(Series.id.in_(members))
        if modality:
            query = query.where(Series.modality == modality)
        rows = session.execute(query).all()
        blobs: dict[int, list[str]] = defaultdict(list)
        ids = [r[0] for r in rows]
        for start in range(0, len(ids), 500):
            for sid, digest in session.execute(
                select(Instance.series_id, Instance.blob_digest).where(
                    Instance.series_id.in_(ids[start : start + 500])
                )
            ):
                blobs[sid].append(digest)
    items = []
    for sid, uid, mod, patient, date, time_, study_uid in rows:
        digests = sorted(blobs.get(sid, []))
        if not digests:
            continue
        sources = []
        for d in digests:
            local = ws.store.local_path(d)
            sources.append(str(local) if local is not None else f"blob:{d}")
        items.append(
            SeriesItem(uid, patient, f"{date or ''}{time_ or ''}:{study_uid}", mod or "", sources, digests)
        )
    return items


# -- the run -----------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    volumes: list[VolumeItem]
    failures: list[tuple[str, str]]
    computed: int
    cached: int
    exported: list[Path]
    timings: dict[str, float]


def _segments(steps: list[Step]) -> list[tuple[bool, list[Step]]]:
    out: list[tuple[bool, list[Step]]] = []
    for s in steps:
        if s.pairwise:
            out.append((True, [s]))
        elif out and not out[-1][0]:
            out[-1][1].append(s)
        else:
            out.append((False, [s]))
    return out


def _baselines(volumes: list[VolumeItem]) -> dict[str, str | None]:
    """Reference digest per volume label: the patient's earliest study of that modality and stack."""
    groups: dict[tuple[str, str, str], list[VolumeItem]] = defaultdict(list)
    for v in volumes:
        groups[(v.series.patient, v.series.modality, _stack_kind(v.stack))].append(v)
    ref: dict[str, str | None] = {}
    for members in groups.values():
        members.sort(key=lambda v: (v.series.study_key, v.series.item_id))
        base = members[0]
        for v in members:
            ref[v.label] = None if v is base or v.series.study_key == base.series.study_key else base.digest
    return ref


def _stack_kind(name: str) -> str:
    # "<number>_<description>[_sN]": follow-ups keep the description, not necessarily the number
    parts = name.split("_", 1)
    return parts[1] if len(parts) == 2 and parts[0].isdigit() else name


def run_pipeline(
    pipeline: Pipeline,
    items: list[SeriesItem],
    cache: CacheSpec,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    export_to: Path | None = None,
    quiet: bool = True,
    on_event: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Run ``pipeline`` over ``items``; never prints. ``on_progress(done, total)`` follows the tasks
    (the CLI draws its bar from it); ``quiet`` is accepted for older callers and changes nothing."""
    computed = cached = 0
    failures: list[tuple[str, str]] = []
    timings: dict[str, float] = defaultdict(float)
    segments = _segments(pipeline.steps)
    total = len(items) * (1 + len(segments))
    done = 0

    def run(tasks: list[Task]) -> Iterable[tuple[Task, TaskResult]]:
        nonlocal computed, cached, done
        for task, res in execute(tasks, workers=workers, scheduler=scheduler):
            computed += res.computed
            cached += res.cached
            for k, v in res.timings.items():
                timings[k] += v
            done += 1
            if on_progress is not None:
                on_progress(done, total)
            yield task, res

    conv = [Task("convert", cache, series=s, uneven=pipeline.uneven, tilt=pipeline.tilt) for s in items]
    volumes: list[VolumeItem] = []
    for task, res in run(conv):
        assert task.series is not None
        if not res.ok:
            failures.append((task.series.item_id, res.error))
            continue
        volumes.extend(VolumeItem(task.series, name, d) for name, d in res.outputs)
    volumes.sort(key=lambda v: v.label)
    for pairwise, steps in segments:
        if pairwise:
            refs = _baselines(volumes)
            tasks = [
                Task("pair", cache, digest=v.digest, reference=refs[v.label], steps=tuple(steps), tag=v)
                for v in volumes
            ]
        else:
            tasks = [Task("chain", cache, digest=v.digest, steps=tuple(steps), tag=v) for v in volumes]
        survivors = []
        for task, res in run(tasks):
            v: VolumeItem = task.tag
            if not res.ok:
                failures.append((v.label, res.error))
                continue
            v.digest = res.outputs[0][1]
            survivors.append(v)
        volumes = sorted(survivors, key=lambda v: v.label)
    exported = export(volumes, cache, export_to, pipeline) if export_to is not None else []
    return RunResult(volumes, failures, computed, cached, exported, dict(timings))


def export(volumes: list[VolumeItem], spec: CacheSpec, out: Path, pipeline: Pipeline) -> list[Path]:
    """Final volumes as NIfTI (gzip at level 1, parallel) with a JSON sidecar naming their digest."""
    cache = open_cache(spec)
    paths = []
    for v in volumes:
        vol = volume_from_zarr_zip(cache.get(v.digest))
        safe_series = v.series.item_id.replace("/", "_")
        base = out / _safe(v.series.patient or "unknown") / f"{_safe(v.stack)}_{safe_series[-12:]}"
        suffix = ".nii.gz" if pipeline.export == "nifti-gz" else ".nii"
        path = write_nifti(vol, base.with_name(base.name + suffix))
        meta = {k: val for k, val in vol.meta.items()}
        meta["curata_pipeline"] = pipeline.describe()
        meta["curata_volume_digest"] = v.digest
        meta["series_uid"] = v.series.item_id
        write_json(base.with_name(base.name + ".json"), meta)
        paths.append(path)
    return paths


def _safe(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def load_volume(spec: CacheSpec, digest: str) -> Volume:
    return volume_from_zarr_zip(open_cache(spec).get(digest))


@dataclass
class PipelineRun:
    """What `curata preprocess run` reports: counts, volumes, failures and exported files."""

    summary: RunSummary
    result: RunResult

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary.as_dict(),
            "volumes": [
                {"series": v.series.item_id, "stack": v.stack, "digest": v.digest}
                for v in self.result.volumes
            ],
            "failures": [{"item": i, "reason": r} for i, r in self.result.failures],
            "exported": [str(p) for p in self.result.exported],
        }


def run_declared_pipeline(
    path: Path,
    *,
    cohort: str | None,
    scheduler: str | None,
    source: Path | None,
    output: Path | None,
    workers: int,
    workspace: Path | None,
    on_progress: Callable[[int, int], None] | None = None,
) -> PipelineRun:
    """Run the pipeline TOML at ``path`` over a workspace (or a folder of DICOM files); never prints."""
    from curata.workspace import Workspace

    pipeline = load_pipeline(path)
    summary = RunSummary(f"preprocess {pipeline.name}")
    if source is not None:
        if not source.exists():
            raise InputError("input folder does not exist", path=str(source))
        if cohort:
            raise ConfigError("--cohort selects workspace series; it cannot be combined with --input")
        items = series_from_folder(source)
        if pipeline.modality:
            items = [i for i in items if i.modality == pipeline.modality]
        if output is None:
            raise ConfigError("--input needs --output (where the volumes and the cache go)")
        spec = CacheSpec("folder", str((output / ".curata-cache").resolve()))
    else:
        ws = Workspace.find(workspace)
        scheduler = scheduler or ws.settings.runtime.scheduler or None
        workers = ws.workers(workers)
        items = series_from_workspace(ws, cohort=cohort, modality=pipeline.modality)
        spec = CacheSpec("workspace", str(ws.root))
    result = run_pipeline(
        pipeline,
        items,
        spec,
        workers=workers or None,
        scheduler=scheduler,
        export_to=output,
        on_progress=on_progress,
    )
    summary.add("series", len(items))
    summary.add("volumes", len(result.volumes))
    summary.add("computed", result.computed)
    summary.add("cached", result.cached)
    summary.add("failed", len(result.failures))
    return PipelineRun(summary, result)

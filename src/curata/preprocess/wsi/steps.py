"""Slide pre-processing steps: tissue mask, tiling, stain normalisation; cached with provenance.

Like the volume steps (``preprocess/steps.py``), each step is a frozen dataclass with ``op`` and
``version``, registered in ``SLIDE_STEPS``, and its parameters feed the cache key and the provenance
record. A slide pipeline is a TOML file::

    [pipeline]
    name = "tiles-20x"
    kind = "slide"

    [[step]]
    op = "tissue_mask"

    [[step]]
    op = "tiles"
    size = 256
    overlap = 0
    mpp = 0.5           # or level = 0
    min_tissue = 0.5
    output = "zarr"     # or "png" when exported

    [[step]]
    op = "stain_normalize"
    method = "macenko"  # or "reinhard"
    target = "reference"  # or a series UID whose tiles define the target (fitted once per run)

Each slide is one task (local process pool, or a Dask cluster with ``scheduler``); every step's output
(a mask, a tile set) is a Zarr zip blob in the workspace store, recorded as a ``Provenance`` row keyed
by (inputs, step, parameters, code version), so a re-run computes nothing new.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
import tomllib
from array import array
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from curata.errors import ConfigError, CurataError, safe_reason
from curata.preprocess.wsi import stain
from curata.preprocess.wsi.read import SlideLevels, read_slide

TILE_MEDIA_TYPE = "application/x-curata-tiles+zarr-zip"
LUT_TILES = 1024  # from this many tiles the 256^3 lookup table pays for itself


@dataclass(frozen=True)
class SlideStep:
    op: ClassVar[str] = ""
    version: ClassVar[int] = 1

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def describe(self) -> dict[str, Any]:
        return {"op": self.op, "version": self.version, **self.params()}


SLIDE_STEPS: dict[str, type[SlideStep]] = {}


def slide_step(cls: type[SlideStep]) -> type[SlideStep]:
    SLIDE_STEPS[cls.op] = cls
    return cls


def tissue_mask(img: np.ndarray, saturation: float = 0.08) -> np.ndarray:
    """Tissue on a low-resolution RGB view: saturated, not near white (see the slide QC for the same rule)."""
    from scipy import ndimage as ndi

    f = img.astype(np.float32)
    mx = f.max(axis=-1)
    s = (mx - f.min(axis=-1)) / np.maximum(mx, 1.0)
    mask = (s > saturation) & (f.mean(axis=-1) < 235)
    return ndi.binary_opening(mask, structure=np.ones((3, 3), bool))


@slide_step
@dataclass(frozen=True)
class TissueMask(SlideStep):
    op: ClassVar[str] = "tissue_mask"
    saturation: float = 0.08
    max_side: int = 2048


@slide_step
@dataclass(frozen=True)
class Tiles(SlideStep):
    op: ClassVar[str] = "tiles"
    size: int = 256
    overlap: int = 0
    level: int | None = None
    mpp: float | None = None
    min_tissue: float = 0.5
    output: str = "zarr"

    def __post_init__(self) -> None:
        if self.size <= 0 or not 0 <= self.overlap < self.size:
            raise ConfigError("tiles: size must be > 0 and 0 <= overlap < size")
        if self.output not in ("zarr", "png"):
            raise ConfigError("tiles: output must be zarr or png")


@slide_step
@dataclass(frozen=True)
class StainNormalize(SlideStep):
    op: ClassVar[str] = "stain_normalize"
    method: str = "macenko"
    target: str = "reference"

    def __post_init__(self) -> None:
        if self.method not in ("macenko", "reinhard"):
            raise ConfigError("stain_normalize: method must be macenko or reinhard")
        if self.method == "reinhard" and self.target == "reference":
            raise ConfigError("stain_normalize: reinhard needs a target slide (target = <series UID>)")


@dataclass(frozen=True)
class SlidePipeline:
    name: str
    steps: tuple[SlideStep, ...]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "slide", "steps": [s.describe() for s in self.steps]}


def parse_slide_pipeline(data: dict[str, Any], origin: str = "pipeline") -> SlidePipeline:
    head = data.get("pipeline", {})
    steps = []
    for i, entry in enumerate(data.get("step", [])):
        entry = dict(entry)
        op = entry.pop("op", None)
        cls = SLIDE_STEPS.get(str(op))
        if cls is None:
            raise ConfigError(
                f"{origin}: step {i + 1}: unknown slide step {op!r}", hint=f"one of {sorted(SLIDE_STEPS)}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(entry) - names
        if unknown:
            raise ConfigError(f"{origin}: step {i + 1} ({op}): unknown parameter(s) {sorted(unknown)}")
        steps.append(cls(**entry))
    ops = [s.op for s in steps]
    if "tiles" not in ops:
        raise ConfigError(f"{origin}: a slide pipeline needs a tiles step")
    if "stain_normalize" in ops and ops.index("stain_normalize") < ops.index("tiles"):
        raise ConfigError(f"{origin}: stain_normalize works on tiles: put it after the tiles step")
    return SlidePipeline(str(head.get("name") or Path(origin).stem), tuple(steps))


def load_slide_pipeline(path: Path) -> SlidePipeline:
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the pipeline {path}: {exc}") from exc
    return parse_slide_pipeline(data, origin=str(path))


# ---------------------------------------------------------------------- tile sets as Zarr zip blobs
def tiles_to_bytes(tiles: np.ndarray, coords: np.ndarray, attrs: dict[str, Any]) -> bytes:
    import zarr

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiles.zarr.zip"
        store = zarr.ZipStore(str(path), mode="w")
        root = zarr.group(store=store)
        n, s = tiles.shape[0], tiles.shape[1] if tiles.ndim == 4 else 0
        root.create_dataset(
            "tiles", data=tiles, chunks=(max(1, min(n, 16)), s or 1, s or 1, 3) if n else None
        )
        root.create_dataset("coords", data=coords.astype(np.int64))
        root.attrs.update(attrs)
        store.close()
        return path.read_bytes()


TILE_CHUNK = 16  # tiles per Zarr chunk: what the streaming writer holds before it writes


class _FileMap(MutableMapping[str, bytes]):
    """A Zarr store of one file per key in a folder, listed in first-write order: zipped, it gives the
    entries (and the metadata, no ``dimension_separator``) that ``tiles_to_bytes`` writes."""

    def __init__(self, root: Path) -> None:
        self.root, self._keys = root, dict[str, None]()

    def _path(self, key: str) -> Path:
        return self.root / key.replace("/", os.sep)

    def __getitem__(self, key: str) -> bytes:
        if key not in self._keys:
            raise KeyError(key)
        return self._path(key).read_bytes()

    def __setitem__(self, key: str, value: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(value))
        self._keys.setdefault(key)

    def __delitem__(self, key: str) -> None:
        self._path(key).unlink()
        del self._keys[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)


def write_tiles(
    path: Path, tiles: Iterable[tuple[np.ndarray, int, int]], size: int, attrs: dict[str, Any]
) -> int:
    """Stream ``(tile, y, x)`` into a tile set at ``path`` (a Zarr zip, the layout of
    :func:`tiles_to_bytes`): tiles are written a chunk of ``TILE_CHUNK`` at a time into a Zarr folder
    in a temporary directory, zipped at the end and renamed onto ``path`` only when complete, so an
    interrupted run leaves nothing half-written and memory is one chunk whatever the slide's size.
    Returns the number of tiles."""
    import zarr

    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tiles-") as tmp:
        folder = _FileMap(Path(tmp) / "tiles.zarr")
        root = zarr.group(store=folder)
        coords = array("q")
        buf: list[np.ndarray] = []
        dset: Any = None
        for tile, y, x in tiles:
            buf.append(tile)
            coords.extend((y, x))
            if len(buf) == TILE_CHUNK:
                if dset is None:
                    dset = root.create_dataset(
                        "tiles", shape=(0, size, size, 3), chunks=(TILE_CHUNK, size, size, 3), dtype=np.uint8
                    )
                dset.append(np.stack(buf))
                buf.clear()
        n = len(coords) // 2
        if dset is None:  # fewer than one chunk: as tiles_to_bytes writes it (one chunk of n)
            data = np.stack(buf) if buf else np.zeros((0, size, size, 3), np.uint8)
            root.create_dataset("tiles", data=data, chunks=(n, size, size, 3) if n else None)
        else:
            if buf:
                dset.append(np.stack(buf))
            # the appends' metadata names a dimension separator; written afresh for the final shape, it
            # is the metadata of an array created whole (the chunks already written are untouched)
            del folder["tiles/.zarray"]
            root.create_dataset(
                "tiles", shape=(n, size, size, 3), chunks=(TILE_CHUNK, size, size, 3), dtype=np.uint8
            )
        buf.clear()
        root.create_dataset("coords", data=np.frombuffer(coords, np.int64).reshape(-1, 2))
        root.attrs.update(attrs)
        part = Path(tmp) / "tiles.zarr.zip"
        zipped = zarr.ZipStore(str(part), mode="w")
        for key in folder:  # key by key: one chunk in memory at a time
            zipped[key] = folder[key]
        zipped.close()
        os.replace(part, path)
    return n


def tiles_from_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    import zarr

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiles.zarr.zip"
        path.write_bytes(data)
        store = zarr.ZipStore(str(path), mode="r")
        root = zarr.open_group(store=store, mode="r")
        tiles, coords, attrs = root["tiles"][:], root["coords"][:], dict(root.attrs)
        store.close()
    return tiles, coords, attrs


def mask_bytes(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.packbits(mask, axis=None), allow_pickle=False)
    np.save(buf, np.asarray(mask.shape), allow_pickle=False)
    return buf.getvalue()


def mask_from_bytes(data: bytes) -> np.ndarray:
    buf = io.BytesIO(data)
    bits, shape = np.load(buf), np.load(buf)
    return np.unpackbits(bits)[: int(np.prod(shape))].reshape(shape).astype(bool)


# ---------------------------------------------------------------------- the work on one slide
def _mask(slide: SlideLevels, step: TissueMask) -> np.ndarray:
    thumb = slide.thumbnail(step.max_side)
    return tissue_mask(thumb, step.saturation)


def _tile_level(slide: SlideLevels, step: Tiles) -> int:
    return step.level if step.level is not None else slide.level_for_mpp(step.mpp)


def _tile_attrs(slide: SlideLevels, step: Tiles) -> dict[str, Any]:
    idx = _tile_level(slide, step)
    return {"level": idx, "mpp": slide.mpp(idx), "size": step.size, "overlap": step.overlap}


def _iter_tiles(
    slide: SlideLevels, mask: np.ndarray | None, step: Tiles
) -> Iterator[tuple[np.ndarray, int, int]]:
    """``(tile, y, x)`` of each whole tile on enough tissue, row by row, read region by region."""
    idx = _tile_level(slide, step)
    h, w = slide.size(idx)  # tiles are read region by region, never the whole level
    stride = step.size - step.overlap
    for y in range(0, max(h - step.size, 0) + 1, stride):
        for x in range(0, max(w - step.size, 0) + 1, stride):
            if mask is not None:
                sy, sx = mask.shape[0] / h, mask.shape[1] / w
                m = mask[
                    int(y * sy) : max(int((y + step.size) * sy), int(y * sy) + 1),
                    int(x * sx) : max(int((x + step.size) * sx), int(x * sx) + 1),
                ]
                if not m.size or m.mean() < step.min_tissue:
                    continue
            if y + step.size > h or x + step.size > w:
                continue  # whole tiles only
            yield slide.region(idx, y, x, step.size, step.size), y, x


def _tiles(
    slide: SlideLevels, mask: np.ndarray | None, step: Tiles
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Every tile in memory (for fitting a stain target; the tiles step streams with :func:`write_tiles`)."""
    tiles, coords = [], []
    for tile, y, x in _iter_tiles(slide, mask, step):
        tiles.append(tile)
        coords.append((y, x))
    arr = np.stack(tiles) if tiles else np.zeros((0, step.size, step.size, 3), np.uint8)
    return arr, np.asarray(coords, np.int64).reshape(-1, 2), _tile_attrs(slide, step)


def _normalize(tiles: np.ndarray, step: StainNormalize, target: dict[str, Any] | None) -> np.ndarray:
    if len(tiles) == 0:
        return tiles
    if step.method == "macenko":
        tgt = (
            stain.MacenkoStains(np.asarray(target["he"], np.float32), np.asarray(target["max_c"], np.float32))
            if target
            else None
        )
        norm = stain.MacenkoNormalizer(tgt)
        source = stain.macenko_fit(tiles[:: max(1, len(tiles) // 64)])
        if len(tiles) >= COLOR_TABLE_MIN_TILES:  # same pixels, one gather per pixel
            lut = norm.lut(source)
            return np.concatenate([norm.apply_lut(tiles[i : i + 64], lut) for i in range(0, len(tiles), 64)])
        tables = norm.tables(source)
        return np.concatenate(
            [norm.apply(tiles[i : i + 64], source, tables) for i in range(0, len(tiles), 64)]
        )
    assert target is not None
    rnorm = stain.ReinhardNormalizer(
        stain.ReinhardStats(np.asarray(target["mean"], np.float32), np.asarray(target["std"], np.float32))
    )
    src = stain.reinhard_fit(tiles[:: max(1, len(tiles) // 64)])
    if len(tiles) >= COLOR_TABLE_MIN_TILES:
        rlut = rnorm.lut(src)
        return np.concatenate([rnorm.apply_lut(tiles[i : i + 64], rlut) for i in range(0, len(tiles), 64)])
    return np.concatenate([rnorm.apply(tiles[i : i + 64], src) for i in range(0, len(tiles), 64)])


# from this many tiles on, a slide's 2^24-colour table (built in ~0.6 s Macenko, ~2.5 s Reinhard) pays off
COLOR_TABLE_MIN_TILES = 256


@dataclass
class SlideTask:
    series_uid: str
    digests: tuple[str, ...]
    workspace: str
    pipeline: SlidePipeline
    targets: dict[str, Any] = field(default_factory=dict)


@dataclass
class SlideResult:
    series_uid: str
    ok: bool
    tiles_digest: str | None = None
    tiles: int = 0
    computed: int = 0
    cached: int = 0
    error: str = ""


def _version(step: SlideStep) -> str:
    from curata import __version__

    return f"curata {__version__} wsi.{step.op}/v{step.version}"


def run_slide_task(task: SlideTask) -> SlideResult:
    """Every step of one slide, each looked up in the cache first; failures come back, never raised."""
    from curata.catalog import cache_key
    from curata.preprocess.pipeline import CacheSpec, open_cache

    res = SlideResult(task.series_uid, ok=True)
    try:
        cache = open_cache(CacheSpec("workspace", task.workspace))
        slide: SlideLevels | None = None

        def load() -> SlideLevels:
            nonlocal slide
            if slide is None:
                slide = read_slide([cache.path(d) for d in task.digests])  # frames read on demand
            return slide

        current = list(task.digests)
        mask_digest: str | None = None
        for step in task.pipeline.steps:
            params = step.params()
            if isinstance(step, StainNormalize):
                params = {**params, "fitted": task.targets.get(step.target)}
            inputs = current + ([mask_digest] if isinstance(step, Tiles) and mask_digest else [])
            key = cache_key(f"preprocess.wsi.{step.op}", inputs, params, _version(step))
            hit = cache.lookup(key)
            if hit is not None:
                res.cached += 1
                out_digest = str(hit["digest"])
                res.tiles = int(hit.get("tiles", res.tiles))
            else:
                extra: dict[str, Any]
                if isinstance(step, TissueMask):
                    out_digest, extra = cache.put(mask_bytes(_mask(load(), step))), {}
                elif isinstance(step, Tiles):  # streamed to a file, stored as a file: never all in memory
                    mask = mask_from_bytes(cache.get(mask_digest)) if mask_digest else None
                    attrs = _tile_attrs(load(), step)
                    with tempfile.TemporaryDirectory(prefix="curata-tiles-") as tmp:
                        part = Path(tmp) / "tiles.zarr.zip"
                        n = write_tiles(part, _iter_tiles(load(), mask, step), step.size, attrs)
                        out_digest, extra = cache.put_file(part), {"tiles": n, **attrs}
                    res.tiles = n
                elif isinstance(step, StainNormalize):
                    arr, coords, attrs = tiles_from_bytes(cache.get(current[0]))
                    out = _normalize(arr, step, task.targets.get(step.target))
                    out_digest = cache.put(tiles_to_bytes(out, coords, {**attrs, "stain": step.method}))
                    extra = {"tiles": len(out)}
                else:  # pragma: no cover - the registry holds only these
                    raise ConfigError(f"unknown slide step {step.op}")
                output = {"digest": out_digest, "media_type": TILE_MEDIA_TYPE, **extra}
                cache.record(key, f"preprocess.wsi.{step.op}", inputs, params, output, _version(step))
                res.computed += 1
            if isinstance(step, TissueMask):
                mask_digest = out_digest
            else:
                current = [out_digest]
        res.tiles_digest = current[0] if current and current != list(task.digests) else None
    except CurataError as exc:
        res.ok, res.error = False, exc.message
    except Exception as exc:  # one slide must not stop the batch; a library's text may quote the data
        res.ok, res.error = False, safe_reason(exc)
    return res


def fit_targets(ws: Any, pipeline: SlidePipeline) -> dict[str, Any]:
    """Fit each stain target once per run (a series UID: its tissue tiles at the pipeline's tiling)."""
    from sqlalchemy import select

    from curata.catalog import Instance, Series

    targets: dict[str, Any] = {}
    tiles_step = next(s for s in pipeline.steps if isinstance(s, Tiles))
    for step in pipeline.steps:
        if not isinstance(step, StainNormalize) or step.target in targets or step.target == "reference":
            continue
        with ws.catalog.session() as session:
            digests = list(
                session.scalars(
                    select(Instance.blob_digest).join(Series).where(Series.series_uid == step.target)
                )
            )
        if not digests:
            raise ConfigError(f"stain target {step.target!r} is not a series of this workspace")
        slide = read_slide([ws.store.local_path(d) or ws.store.open(d) for d in digests])
        mask = _mask(slide, TissueMask())
        tiles, _, _ = _tiles(slide, mask, tiles_step)
        if step.method == "macenko":
            fitted = stain.macenko_fit(tiles)
            targets[step.target] = {
                "he": fitted.he.round(6).tolist(),
                "max_c": fitted.max_c.round(6).tolist(),
            }
        else:
            r = stain.reinhard_fit(tiles)
            targets[step.target] = {"mean": r.mean.round(6).tolist(), "std": r.std.round(6).tolist()}
    return targets


def slide_series(ws: Any, cohort: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """(series UID, blob digests) of every slide series (modality SM), or of a cohort's."""
    from sqlalchemy import select

    from curata.catalog import Instance, Series

    with ws.catalog.session() as session:
        q = select(Series.id, Series.series_uid).where(Series.modality == "SM").order_by(Series.series_uid)
        if cohort:
            from curata.select import Cohort, CohortSeries

            cid = session.scalar(select(Cohort.id).where(Cohort.name == cohort))
            if cid is None:
                raise ConfigError(f"no cohort named {cohort!r}", hint="`curata cohort ls` lists them")
            q = q.join(CohortSeries, CohortSeries.series_id == Series.id).where(CohortSeries.cohort_id == cid)
        out = []
        for sid, uid in session.execute(q).all():
            digests = tuple(
                sorted(session.scalars(select(Instance.blob_digest).where(Instance.series_id == sid)))
            )
            out.append((uid, digests))
    return out


def run_slide_pipeline(
    ws: Any,
    pipeline: SlidePipeline,
    *,
    cohort: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> list[SlideResult]:
    """Run a slide pipeline over the workspace's slides (or a cohort's) on the local pool or Dask."""
    targets = fit_targets(ws, pipeline)
    tasks = [SlideTask(uid, d, str(ws.root), pipeline, targets) for uid, d in slide_series(ws, cohort)]
    return [r for _t, r in _execute(tasks, workers, scheduler)]


def _execute(
    tasks: list[SlideTask], workers: int | None, scheduler: str | None
) -> Iterator[tuple[SlideTask, SlideResult]]:
    if not tasks:
        return
    if scheduler:
        from distributed import Client, as_completed

        client = Client(scheduler, timeout="10s")
        try:
            futures = {client.submit(run_slide_task, t, pure=False): t for t in tasks}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            client.close()
        return
    from curata.runtime import imap_unordered

    yield from imap_unordered(run_slide_task, tasks, workers=workers or 1)


def export_tiles(ws: Any, results: list[SlideResult], out: Path, fmt: str = "png") -> list[Path]:
    """Final tile sets as PNG files (``<series>/<y>_<x>.png``) or one Zarr zip per slide."""
    from PIL import Image

    out = Path(out)
    paths = []
    for r in results:
        if not r.ok or not r.tiles_digest:
            continue
        data = ws.store.get_bytes(r.tiles_digest)
        if fmt == "zarr":
            p = out / f"{r.series_uid}.zarr.zip"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            paths.append(p)
            continue
        tiles, coords, _ = tiles_from_bytes(data)
        folder = out / r.series_uid
        folder.mkdir(parents=True, exist_ok=True)
        for tile, (y, x) in zip(tiles, coords, strict=True):
            p = folder / f"{y}_{x}.png"
            Image.fromarray(tile).save(p)
            paths.append(p)
    return paths

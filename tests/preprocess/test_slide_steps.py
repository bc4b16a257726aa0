"""Slide pre-processing: tissue mask, tiles and stain normalisation as cached pipeline steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from curata.catalog import Provenance, Series
from curata.collect.ingest import Ingestor
from curata.collect.wsi import synthetic as syn
from curata.errors import ConfigError
from curata.preprocess.wsi import (
    MacenkoNormalizer,
    ReinhardNormalizer,
    export_tiles,
    macenko_fit,
    parse_slide_pipeline,
    reinhard_fit,
    run_slide_pipeline,
    tiles_from_bytes,
)
from curata.preprocess.wsi.steps import TILE_MEDIA_TYPE, Tiles

PIPE = {
    "pipeline": {"name": "t", "kind": "slide"},
    "step": [
        {"op": "tissue_mask"},
        {"op": "tiles", "size": 128, "overlap": 32, "level": 0, "min_tissue": 0.5},
        {"op": "stain_normalize", "method": "macenko"},
    ],
}


def _tiles(seed: int = 0) -> np.ndarray:
    img = syn.tissue_image(512, 512, seed=seed, tissue=0.9)
    return img.reshape(4, 128, 4, 128, 3).swapaxes(1, 2).reshape(16, 128, 128, 3).copy()


def test_macenko_matches_the_direct_formula_and_moves_colour_towards_the_target() -> None:
    tiles = _tiles(1)
    src = macenko_fit(tiles)
    assert src.he.shape == (3, 2) and np.allclose(np.linalg.norm(src.he, axis=0), 1, atol=1e-5)
    norm = MacenkoNormalizer()
    out = norm.apply(tiles, src)
    od = -np.log((tiles.reshape(-1, 3).astype(np.float64) + 1) / 240)
    conc = np.linalg.lstsq(src.he.astype(np.float64), od.T, rcond=None)[0].T * (norm.target.max_c / src.max_c)
    direct = np.clip(240 * np.exp(-(conc @ norm.target.he.T)), 0, 255).astype(np.uint8)
    assert np.abs(out.reshape(-1, 3).astype(int) - direct.astype(int)).max() <= 1
    lut = norm.lut(src)  # the 256^3 table gives the same pixels as the per-channel tables
    assert np.array_equal(norm.apply_lut(tiles, lut), out)
    # fitting the output again gives the target's stain vectors
    refit = macenko_fit(out)
    assert np.abs(refit.he - norm.target.he).max() < 0.08


def test_reinhard_matches_target_statistics() -> None:
    source, target = _tiles(2), (_tiles(3).astype(np.float32) * np.array([0.8, 0.95, 1.0])).astype(np.uint8)
    r = ReinhardNormalizer.fit(target)
    out = r.apply(source, reinhard_fit(source))
    got, want, before = reinhard_fit(out), reinhard_fit(target), reinhard_fit(source)
    assert np.abs(got.mean - want.mean).sum() < 0.3 * np.abs(before.mean - want.mean).sum()
    same = r.apply(target, reinhard_fit(target))  # a slide normalised to its own statistics is unchanged
    assert np.abs(same.astype(int) - target.astype(int)).mean() < 1.0


def test_colour_tables_give_the_per_pixel_results() -> None:
    """The fast path (one 2^24-colour table per source slide, one gather per pixel) against the
    per-pixel implementations: identical for Reinhard and Macenko, on tissue tiles and on random
    colours; the packed index is ``r | g << 8 | b << 16`` for any shape (odd sizes, one pixel)."""
    from curata.preprocess.wsi.stain import rgb_index

    rng = np.random.default_rng(7)
    for shape in [(1, 3), (5, 7, 3), (2, 3, 5, 3)]:
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        want = x[..., 0].astype(np.intp) | x[..., 1].astype(np.intp) << 8 | x[..., 2].astype(np.intp) << 16
        assert np.array_equal(rgb_index(x), want)
        assert np.array_equal(rgb_index(x[..., ::-1]), rgb_index(np.ascontiguousarray(x[..., ::-1])))
    tiles = _tiles(4)
    noise = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    src = macenko_fit(tiles)
    norm = MacenkoNormalizer()
    lut = norm.lut(src)
    for batch in (tiles, noise):
        assert np.array_equal(norm.apply_lut(batch, lut), norm.apply(batch, src))
    r = ReinhardNormalizer.fit(_tiles(5))
    rsrc = reinhard_fit(tiles)
    rlut = r.lut(rsrc)
    for batch in (tiles, noise):
        assert np.array_equal(r.apply_lut(batch, rlut), r.apply(batch, rsrc))


def test_pipeline_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="unknown slide step"):
        parse_slide_pipeline({"step": [{"op": "tilez"}]})
    with pytest.raises(ConfigError, match="unknown parameter"):
        parse_slide_pipeline({"step": [{"op": "tiles", "sise": 3}]})
    with pytest.raises(ConfigError, match="after the tiles"):
        parse_slide_pipeline({"step": [{"op": "stain_normalize"}, {"op": "tiles"}]})


def test_slide_pipeline_runs_cached_with_provenance(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    site = tmp_path / "site"
    site.mkdir()
    syn.write_svs(site / "a.svs", size=512, seed=4)
    syn.write_generic_tiff(site / "b.tiff", size=512, seed=5)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([site])
    assert summary.counts["ingested"] == 2 and not problems
    pipe = parse_slide_pipeline(PIPE)
    results = run_slide_pipeline(workspace, pipe, workers=1)
    assert len(results) == 2 and all(r.ok for r in results), results
    assert all(r.computed == 3 and r.tiles > 0 for r in results)
    tiles, coords, attrs = tiles_from_bytes(workspace.store.get_bytes(results[0].tiles_digest))
    assert tiles.shape[1:] == (128, 128, 3) and len(tiles) == len(coords) == results[0].tiles
    assert attrs["stain"] == "macenko" and attrs["overlap"] == 32
    assert set(np.diff(np.unique(coords[:, 1]))) <= {96, 192, 288}  # stride = size - overlap
    with workspace.catalog.session() as s:
        steps = dict(s.execute(select(Provenance.step, func.count()).group_by(Provenance.step)).all())
        assert steps["preprocess.wsi.tiles"] == 2 and steps["preprocess.wsi.stain_normalize"] == 2
    again = run_slide_pipeline(workspace, pipe, workers=1)
    assert all(r.computed == 0 and r.cached == 3 for r in again)
    assert [r.tiles_digest for r in again] == [r.tiles_digest for r in results]
    files = export_tiles(workspace, results, tmp_path / "out", "png")
    assert len(files) == sum(r.tiles for r in results) and files[0].suffix == ".png"
    # a Reinhard target slide is fitted once per run
    with workspace.catalog.session() as s:
        target = s.scalars(select(Series.series_uid)).first()
    rein = dict(
        PIPE, step=[*PIPE["step"][:2], {"op": "stain_normalize", "method": "reinhard", "target": target}]
    )
    out = run_slide_pipeline(workspace, parse_slide_pipeline(rein), workers=1)
    assert all(r.ok and r.cached == 2 and r.computed == 1 for r in out)


def _reference_tiles(blobs: list[bytes], step: Tiles) -> bytes:
    """The tiling before streaming (main at 4e822aa): each instance read whole by pydicom, every tile
    stacked in memory, then one Zarr zip. Kept here as the reference the streamed tile set must match."""
    import io

    import pydicom
    from pydicom.encaps import generate_frames

    from curata.preprocess.wsi.read import WSM_SOP_CLASS, SlideLevels, _Level
    from curata.preprocess.wsi.steps import TissueMask, _mask, tiles_to_bytes

    levels = []
    for blob in blobs:
        ds = pydicom.dcmread(io.BytesIO(blob))
        if str(ds.get("SOPClassUID", "")) != WSM_SOP_CLASS:
            continue
        if {str(v).upper() for v in ds.get("ImageType") or []} & {"LABEL", "OVERVIEW", "THUMBNAIL"}:
            continue
        n = int(ds.get("NumberOfFrames", 1) or 1)
        assert ds.file_meta.TransferSyntaxUID.is_encapsulated
        frames = list(generate_frames(ds.PixelData, number_of_frames=n))
        mpp = float(ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing[0]) * 1000
        levels.append(
            _Level(int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows), int(ds.Columns),
                   int(ds.Rows), frames, True, mpp)
        )  # fmt: skip
    slide = SlideLevels(levels)
    mask = _mask(slide, TissueMask())
    idx = step.level if step.level is not None else slide.level_for_mpp(step.mpp)
    size, stride = step.size, step.size - step.overlap
    h, w = slide.size(idx)
    tiles, coords = [], []
    for y in range(0, max(h - size, 0) + 1, stride):
        for x in range(0, max(w - size, 0) + 1, stride):
            sy, sx = mask.shape[0] / h, mask.shape[1] / w
            m = mask[int(y * sy) : max(int((y + size) * sy), int(y * sy) + 1),
                     int(x * sx) : max(int((x + size) * sx), int(x * sx) + 1)]  # fmt: skip
            if not m.size or m.mean() < step.min_tissue:
                continue
            if y + size > h or x + size > w:
                continue
            tiles.append(slide.region(idx, y, x, size, size))
            coords.append((y, x))
    arr = np.stack(tiles) if tiles else np.zeros((0, size, size, 3), np.uint8)
    attrs = {"level": idx, "mpp": slide.mpp(idx), "size": size, "overlap": step.overlap}
    return tiles_to_bytes(arr, np.asarray(coords, np.int64).reshape(-1, 2), attrs)


def _entries(data: bytes) -> dict[str, bytes]:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_streamed_tiles_are_the_in_memory_tiles(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Same tiles, coordinates, attributes, Zarr entries and metadata bytes as the tiling that held all tiles in memory; the provenance record has the same fields."""
    site = tmp_path / "site"
    site.mkdir()
    syn.write_svs(site / "a.svs", size=640, seed=7)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([site])
    assert summary.counts["ingested"] == 1 and not problems
    counts = set()
    for size, overlap, min_tissue, level in [
        (128, 32, 0.5, 0),
        (32, 0, 0.2, 0),
        (64, 0, 0.0, 1),
        (256, 0, 1.0, 0),
    ]:
        step = {"size": size, "overlap": overlap, "level": level, "min_tissue": min_tissue}
        pipe = parse_slide_pipeline({"step": [{"op": "tissue_mask"}, {"op": "tiles", **step}]})
        (res,) = run_slide_pipeline(workspace, pipe, workers=1)
        assert res.ok and res.tiles_digest, res
        streamed = workspace.store.get_bytes(res.tiles_digest)
        with workspace.catalog.session() as s:
            prov = next(
                p
                for p in s.scalars(select(Provenance).where(Provenance.step == "preprocess.wsi.tiles"))
                if p.output["digest"] == res.tiles_digest
            )
            inputs, output = list(prov.inputs), dict(prov.output)
        reference = _reference_tiles([workspace.store.get_bytes(d) for d in inputs[:-1]], Tiles(**step))
        got, want_entries = _entries(streamed), _entries(reference)  # same entries
        assert sorted(got) == sorted(want_entries)
        tiles, coords, attrs = tiles_from_bytes(streamed)
        want_tiles, want_coords, want_attrs = tiles_from_bytes(reference)
        assert np.array_equal(tiles, want_tiles) and np.array_equal(coords, want_coords)
        assert attrs == want_attrs and attrs["level"] == level
        meta = [k for k in got if k.rsplit("/", 1)[-1].startswith(".")]  # .zgroup, .zattrs, .zarray
        assert len(meta) == 4 and all(got[k] == want_entries[k] for k in meta)
        want = {
            "digest": res.tiles_digest,
            "media_type": TILE_MEDIA_TYPE,
            "tiles": len(want_tiles),
            **want_attrs,
        }
        assert output == want and res.tiles == len(want_tiles)
        counts.add(len(want_tiles))
    assert len(counts) == 4 and 0 in counts and max(counts) > 16  # none, one chunk, several (last partial)


def test_a_damaged_tile_fails_its_slide_by_name_and_the_other_slides_are_tiled(
    workspace, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A stored level whose frames no longer decode (bit rot, a bad copy) was tiled as white background
    and the slide reported ok; now the slide fails with the frame named, and the batch goes on."""
    import pydicom

    from curata.catalog import Instance
    from curata.collect.wsi.frames import frame_ranges

    site = tmp_path / "site"
    site.mkdir()
    syn.write_svs(site / "a.svs", size=512, seed=4)
    syn.write_generic_tiff(site / "b.tiff", size=512, seed=5)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([site])
    assert summary.counts["ingested"] == 2
    with workspace.catalog.session() as s:
        damaged_uid = s.scalars(select(Series.series_uid).order_by(Series.id)).first()
        digests = s.scalars(
            select(Instance.blob_digest).join(Series).where(Series.series_uid == damaged_uid)
        ).all()
    paths = [workspace.store.local_path(d) for d in digests]
    level0 = max(
        paths, key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).TotalPixelMatrixColumns)
    )
    with level0.open("rb") as fp:
        got = frame_ranges(fp)
    assert got is not None
    data = bytearray(level0.read_bytes())
    for offset, length in got[1]:  # every frame of the full-resolution level: garbage of its length
        data[offset : offset + length] = bytes((i * 37 + 11) % 256 for i in range(length))
    level0.chmod(0o644)
    level0.write_bytes(bytes(data))
    results = {r.series_uid: r for r in run_slide_pipeline(workspace, parse_slide_pipeline(PIPE), workers=1)}
    assert len(results) == 2
    bad = results[damaged_uid]
    assert not bad.ok and bad.tiles_digest is None
    assert bad.error.startswith("cannot decode frame ") and " of level 0" in bad.error, bad.error
    assert all(r.ok and r.tiles > 0 for uid, r in results.items() if uid != damaged_uid)

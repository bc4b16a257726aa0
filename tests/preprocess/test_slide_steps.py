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

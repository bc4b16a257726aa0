"""Large slides are read tile by tile: DICOM-WSI conversion, slide QC and tiling keep memory bounded
by tiles, not levels. A synthetic single-level SVS of 16384 x 16384 pixels (768 MB decoded, a few MB
of JPEG) goes through each, and tracemalloc's peak stays far below one decoded level."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile

from curata.collect.wsi import deidentify_slide
from curata.collect.wsi import synthetic as syn

SIDE, TILE = 16384, 256
LEVEL_BYTES = SIDE * SIDE * 3  # 768 MiB decoded
BOUND = 256 * 2**20  # what each stage may allocate at its peak: a third of one decoded level
# (QC analyses a <= 2048^2 thumbnail in float arrays: its peak is set by THUMB_MAX, not the level)
KEY = b"streaming-test-key-0123456789abcdef"


def _tiles() -> Iterator[np.ndarray]:
    patch = syn.tissue_image(1024, 1024, seed=5, tissue=0.9)
    white = np.full((TILE, TILE, 3), 250, np.uint8)
    for ty in range(SIDE // TILE):
        for tx in range(SIDE // TILE):
            if ty < 4 and tx < 4:  # tissue in the top-left 1024 x 1024 corner only
                yield np.ascontiguousarray(patch[ty * TILE : (ty + 1) * TILE, tx * TILE : (tx + 1) * TILE])
            else:
                yield white


@pytest.fixture(scope="module")
def big_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.svs"
    desc = f"Aperio Image Library v12.0.0\n{SIDE}x{SIDE} [0,0 {SIDE}x{SIDE}] ({TILE}x{TILE}) JPEG/RGB Q=80|AppMag = 20|MPP = 0.5"
    tifffile.imwrite(path, _tiles(), shape=(SIDE, SIDE, 3), dtype=np.uint8, tile=(TILE, TILE),
                     compression="jpeg", photometric="rgb", description=desc)  # fmt: skip
    assert path.stat().st_size < 20 * 2**20
    return path


def _peak(fn):  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_large_slide_is_converted_checked_and_tiled_in_bounded_memory(big_svs: Path, tmp_path: Path) -> None:
    from curata.preprocess.wsi.read import read_slide
    from curata.preprocess.wsi.steps import (
        Tiles,
        TissueMask,
        _iter_tiles,
        _mask,
        _tile_attrs,
        tiles_from_bytes,
        write_tiles,
    )
    from curata.select.metrics.wsi import measure_slide

    raw = big_svs.read_bytes()
    res, peak = _peak(lambda: deidentify_slide(raw, key=KEY, source="big.svs", identity=None))
    assert peak < BOUND, f"conversion peaked at {peak / 2**20:.0f} MiB"
    assert res.info.width == SIDE and len(res.instances) == 1
    ds = res.datasets[0]
    assert (ds.TotalPixelMatrixColumns, int(ds.NumberOfFrames)) == (SIDE, (SIDE // TILE) ** 2)
    blob = res.instances[0]
    del res

    metrics, peak = _peak(lambda: measure_slide([io.BytesIO(blob)]))
    assert peak < BOUND, f"slide QC peaked at {peak / 2**20:.0f} MiB"
    m = metrics[0]
    assert m["slide_width"] == SIDE and m["corrupted_tiles"] == 0
    assert 0.001 < m["tissue_fraction"] < 0.02  # the 1024^2 corner of 16384^2 is 0.4%

    path = tmp_path / "level.dcm"  # tiling reads the stored file, frame by frame (never its Pixel Data)
    path.write_bytes(blob)
    out = tmp_path / "tiles.zarr.zip"

    def tile_it(mask_side: int | None, min_tissue: float):  # type: ignore[no-untyped-def]
        slide = read_slide([path])
        mask = _mask(slide, TissueMask(max_side=mask_side)) if mask_side else None
        step = Tiles(size=256, level=0, min_tissue=min_tissue)
        return write_tiles(out, _iter_tiles(slide, mask, step), 256, _tile_attrs(slide, step))

    n, peak = _peak(lambda: tile_it(1024, 0.5))
    assert peak < BOUND, f"tiling peaked at {peak / 2**20:.0f} MiB"
    tiles, coords, _attrs = tiles_from_bytes(out.read_bytes())
    assert 4 <= n == len(tiles) <= 24 and coords.max() < 1280  # the tissue corner's tiles only
    ref = pydicom.dcmread(io.BytesIO(blob))  # the tiles are the level's pixels at their coordinates
    assert ref.TotalPixelMatrixRows == SIDE
    patch = syn.tissue_image(1024, 1024, seed=5, tissue=0.9)
    y, x = coords[0]
    assert np.abs(tiles[0].astype(int) - patch[y : y + 256, x : x + 256]).mean() < 6
    assert LEVEL_BYTES >= 3 * BOUND
    del tiles, ref

    # every tile of the level (no mask): 4096 tiles, 768 MiB of output, written as they are cut
    out.unlink()
    n, peak = _peak(lambda: tile_it(None, 0.0))
    output_bytes = n * 256 * 256 * 3
    assert n == (SIDE // 256) ** 2 and output_bytes == LEVEL_BYTES
    assert peak < output_bytes / 16, f"tiling all {n} tiles peaked at {peak / 2**20:.0f} MiB"
    assert out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tiles-")]
    with zipfile.ZipFile(out) as zf:  # all of them are there, in chunks of 16 tiles
        names = zf.namelist()
    assert sum(k.startswith("tiles/") and not k.startswith("tiles/.") for k in names) == n // 16


def test_frames_are_read_on_demand_from_the_stored_file(big_svs: Path, tmp_path: Path) -> None:
    """QC and tiling open an instance's frames by byte range: the same bytes as pydicom's frames."""
    from pydicom.encaps import generate_frames

    from curata.collect.wsi import LazyFrames, open_frames

    res = deidentify_slide(big_svs.read_bytes(), key=KEY, source="big.svs", identity=None)
    path = tmp_path / "level.dcm"
    path.write_bytes(res.instances[0])
    ds, frames = open_frames(path)
    assert isinstance(frames, LazyFrames) and "PixelData" not in ds
    assert len(frames) == (SIDE // TILE) ** 2
    full = pydicom.dcmread(path)
    for i, want in enumerate(generate_frames(full.PixelData, number_of_frames=len(frames))):
        if i % 97 == 0 or i == len(frames) - 1:
            assert frames[i] == want

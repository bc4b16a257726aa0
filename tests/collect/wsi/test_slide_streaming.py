"""Large slides are read tile by tile: DICOM-WSI conversion, slide QC and tiling keep memory bounded
by tiles, not levels. A synthetic single-level SVS of 16384 x 16384 pixels (768 MB decoded, a few MB
of JPEG) goes through each, and tracemalloc's peak stays far below one decoded level."""

from __future__ import annotations

import io
import tracemalloc
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


def test_large_slide_is_converted_checked_and_tiled_in_bounded_memory(big_svs: Path) -> None:
    from curata.preprocess.wsi.read import read_slide
    from curata.preprocess.wsi.steps import Tiles, TissueMask, _mask, _tiles
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

    def tile_it():  # type: ignore[no-untyped-def]
        slide = read_slide([io.BytesIO(blob)])
        mask = _mask(slide, TissueMask(max_side=1024))
        return _tiles(slide, mask, Tiles(size=256, level=0, min_tissue=0.5))

    (tiles, coords, _attrs), peak = _peak(tile_it)
    assert peak < BOUND, f"tiling peaked at {peak / 2**20:.0f} MiB"
    assert 4 <= len(tiles) <= 24 and coords.max() < 1280  # the tissue corner's tiles only
    ref = pydicom.dcmread(io.BytesIO(blob))  # the tiles are the level's pixels at their coordinates
    assert ref.TotalPixelMatrixRows == SIDE
    patch = syn.tissue_image(1024, 1024, seed=5, tissue=0.9)
    y, x = coords[0]
    assert np.abs(tiles[0].astype(int) - patch[y : y + 256, x : x + 256]).mean() < 6
    assert LEVEL_BYTES >= 3 * BOUND

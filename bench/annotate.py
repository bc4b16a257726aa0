"""Agreement benchmark: HD95, ASSD and surface Dice of two reads of one 512x512x300 CT label map,
from Curata's band-limited distance transforms, DeepMind's ``surface-distance`` and MONAI, in one run.

    .venv/bin/python bench/annotate.py [--slices 300] [--size 512] [--repeats 2] [--out bench/results/annotate.json]

The pair: an organ (a 180 x 140 x 120 mm ellipsoid whose boundary is bent by smooth noise) and seven
lesions (4-15 mm radius); the second read is the first with the boundary noise redrawn (a reader's
different contour), every lesion's radius changed by up to 1.5 mm, and one lesion missed. Rows:

- ``curata surfel``: ``surface_distances(..., "surfel")`` then HD95, ASSD, surface Dice at 2 mm: the
  same quantities as ``surface-distance`` (area-weighted surfels), checked equal to 1e-6 mm;
- ``surface-distance``: ``compute_surface_distances`` + ``compute_robust_hausdorff`` +
  ``compute_average_surface_distance`` + ``compute_surface_dice_at_tolerance``;
- ``curata voxel``: the same with ``"voxel"`` (boundary voxels), checked against MONAI;
- ``monai``: ``compute_hausdorff_distance(percentile=95)`` + ``compute_average_surface_distance`` +
  ``compute_surface_dice`` (each call finds the edges again, as a user's three calls do);
  ``monai hd95 only``: that single call, the cheapest MONAI row.
Each row is the best of ``--repeats`` runs (the machine is shared). Ratios: reference seconds divided
by Curata's seconds for the same convention, and against the fastest reference row.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from scipy import ndimage

from _common import console, cores, print_ratio_table, write_json
from curata.annotate._agreement import surface_distances

SPACING = (1.0, 0.78, 0.78)  # slice, row, column (mm)
TOL = 2.0


def _noise(shape: tuple[int, ...], seed: int, amp: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = ndimage.gaussian_filter(rng.normal(size=tuple(max(4, s // 8) for s in shape)), 2.0)
    small *= amp / (small.std() or 1.0)
    return ndimage.zoom(small, [s / m for s, m in zip(shape, small.shape, strict=True)], order=1)[
        : shape[0], : shape[1], : shape[2]
    ]


def make_pair(slices: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    shape = (slices, size, size)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    zz, yy, xx = z * SPACING[0], y * SPACING[1], x * SPACING[2]
    c = (shape[0] * SPACING[0] / 2, shape[1] * SPACING[1] / 2, shape[2] * SPACING[2] / 2)
    organ = ((zz - c[0]) / 60) ** 2 + ((yy - c[1]) / 70) ** 2 + ((xx - c[2]) / 90) ** 2
    rng = np.random.default_rng(7)
    lesions = [
        (
            rng.uniform(20, shape[0] * SPACING[0] - 20),
            rng.uniform(30, 370),
            rng.uniform(30, 370),
            rng.uniform(4, 15),
        )
        for _ in range(7)
    ]
    reads = []
    for reader in (0, 1):
        m = (organ + _noise(shape, 11 + reader, 0.04)) < 1.0
        for i, (lz, ly, lx, r) in enumerate(lesions):
            if reader == 1 and i == 3:
                continue  # the second reader misses one lesion
            rr = r + (rng.uniform(-1.5, 1.5) if reader else 0.0)
            m |= ((zz - lz) ** 2 + (yy - ly) ** 2 + (xx - lx) ** 2) < rr**2
        reads.append(m)
    return reads[0], reads[1]


def _best(fn: Any, repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/results/annotate.json"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import surface_distance as sdl
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    torch.set_num_threads(1)
    a, b = make_pair(args.slices, args.size)
    console.print(f"pair {a.shape}, voxels {int(a.sum()):,} / {int(b.sum()):,}, spacing {SPACING}")

    def ours(conv: str) -> dict[str, float]:
        sd = surface_distances(a, b, SPACING, conv)  # type: ignore[arg-type]
        return {
            "hd95": sd.hd(95),
            "assd": sd.assd(),
            "sdice": sd.surface_dice(TOL),
            "means": sd.directed_means(),
        }

    def deepmind() -> dict[str, Any]:
        d = sdl.compute_surface_distances(a, b, SPACING)
        means = sdl.compute_average_surface_distance(d)
        return {
            "hd95": sdl.compute_robust_hausdorff(d, 95),
            "sdice": sdl.compute_surface_dice_at_tolerance(d, TOL),
            "means": means,
        }

    ta = torch.from_numpy(a[None, None]).float()
    tb = torch.from_numpy(b[None, None]).float()

    def monai_hd() -> float:
        return float(compute_hausdorff_distance(tb, ta, percentile=95, spacing=SPACING).item())

    def monai_all() -> dict[str, float]:
        two_a, two_b = torch.cat([1 - ta, ta], 1), torch.cat([1 - tb, tb], 1)
        return {
            "hd95": monai_hd(),
            "assd": float(compute_average_surface_distance(tb, ta, symmetric=True, spacing=SPACING).item()),
            "sdice": float(compute_surface_dice(two_b, two_a, [TOL], spacing=SPACING).item()),
        }

    rows: list[dict[str, Any]] = []
    t_sv, mine_s = _best(lambda: ours("surfel"), args.repeats)
    t_dm, ref_dm = _best(deepmind, args.repeats)
    t_vx, mine_v = _best(lambda: ours("voxel"), args.repeats)
    t_mo, ref_mo = _best(monai_all, args.repeats)
    t_mh, _ = _best(monai_hd, args.repeats)
    diff_dm = max(
        abs(mine_s["hd95"] - ref_dm["hd95"]),
        abs(mine_s["sdice"] - ref_dm["sdice"]),
        *(abs(x - y) for x, y in zip(mine_s["means"], ref_dm["means"], strict=True)),
    )
    diff_mo = max(abs(mine_v[k] - ref_mo[k]) for k in ("hd95", "assd", "sdice"))
    fastest = min(t_dm, t_mo, t_mh)
    rows = [
        {
            "tool": "curata surfel",
            "seconds": t_sv,
            "hd95_mm": mine_s["hd95"],
            "assd_mm": mine_s["assd"],
            "surface_dice": mine_s["sdice"],
        },
        {
            "tool": "surface-distance",
            "seconds": t_dm,
            "hd95_mm": ref_dm["hd95"],
            "assd_mm": None,
            "surface_dice": ref_dm["sdice"],
            "max_abs_diff_vs_curata": diff_dm,
        },
        {
            "tool": "curata voxel",
            "seconds": t_vx,
            "hd95_mm": mine_v["hd95"],
            "assd_mm": mine_v["assd"],
            "surface_dice": mine_v["sdice"],
        },
        {
            "tool": "monai",
            "seconds": t_mo,
            "hd95_mm": ref_mo["hd95"],
            "assd_mm": ref_mo["assd"],
            "surface_dice": ref_mo["sdice"],
            "max_abs_diff_vs_curata": diff_mo,
        },
        {"tool": "monai hd95 only", "seconds": t_mh},
    ]
    print_ratio_table(
        rows,
        title="agreement metrics, 512x512x300 pair (best of repeats)",
        reference="curata surfel",
        columns=[
            ("tool", "tool"),
            ("seconds", "s"),
            ("hd95_mm", "HD95 mm"),
            ("assd_mm", "ASSD mm"),
            ("surface_dice", "sDice@2mm"),
        ],
        ratio_of=["seconds"],
    )
    result = {
        "shape": list(a.shape),
        "spacing_mm": SPACING,
        "cores": cores(),
        "rows": rows,
        "speedup_surfel_vs_surface_distance": t_dm / t_sv,
        "speedup_voxel_vs_monai": t_mo / t_vx,
        "speedup_voxel_vs_monai_hd95_only": t_mh / t_vx,
        "speedup_vs_fastest_reference": fastest / min(t_sv, t_vx),
        "max_abs_diff_surfel_vs_surface_distance_mm": diff_dm,
        "max_abs_diff_voxel_vs_monai_mm": diff_mo,
    }
    console.print({k: v for k, v in result.items() if k != "rows"})
    write_json(args.out, result)


if __name__ == "__main__":
    main()

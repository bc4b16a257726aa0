"""QC benchmark: the cost of `curata qc run` beside the bare cost of reading the same pixels, the noise
estimators' accuracy on synthetic noise, and the validation table (sensitivity and false-positive rate
per defect class).

    .venv/bin/python bench/qc.py [--series N] [--slices N] [--rows N] [--workers N]
                                 [--validate] [--seeds N] [--out bench/results/qc.json]

Speed rows, timed in this one run on this machine, same series, same worker count, same warm page cache:
- ``bare read``: every series' files read with pydicom and decoded to numpy (``ds.pixel_array``), in the
  same process pool QC uses: the floor any pixel QC pays;
- ``qc run``: ``run_qc`` on a workspace whose measurements were dropped (measures, decides, writes the
  catalog); ``qc run (cached)``: the re-run, which measures nothing;
- ``geometry``: header-only metrics per series (headers read with stop_before_pixels + the geometry
  code): the "0.2 s or less per series" goal.
Each speed row is the best of ``--repeats`` runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pydicom
from rich.table import Table
from sqlalchemy import delete, select

from _common import console, cores, print_ratio_table, write_json
from curata.catalog import Instance, Series
from curata.collect.ingest import Ingestor
from curata.runtime import imap_unordered
from curata.select.metrics.ct_mr import header_of, images_of, measure
from curata.select.metrics.geometry import geometry_metrics
from curata.select.models import QcMeasurement, QcVerdict
from curata.select.phantoms import DEFECTS, VARIABLE_SPACING, Spec, build, clean_specs, make_series, save
from curata.select.rules import apply, default_ruleset
from curata.select.service import run_qc
from curata.workspace import Workspace


def _read_pixels(paths: list[str]) -> int:
    total = 0
    for p in paths:
        arr = pydicom.dcmread(p).pixel_array
        total += int(arr.shape[0])
    return total


def _geometry(paths: list[str]) -> float:
    t = time.perf_counter()
    geometry_metrics([header_of(pydicom.dcmread(p, stop_before_pixels=True)) for p in paths])
    return time.perf_counter() - t


def speed(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    ws = Workspace.init(root / "ws", site="bench")
    src = root / "in"
    for k in range(args.series):
        modality = "CT" if k % 3 else "MR"
        rows = args.rows if modality == "CT" else args.rows // 2
        save(
            build(Spec(modality, rows, args.slices, noise=12.0 if modality == "CT" else 15.0, seed=k)),
            src / f"s{k}",
        )
    Ingestor(ws, deidentify=False, workers=args.workers).ingest_paths([src])
    with ws.catalog.session() as s:
        by_series: dict[int, list[str]] = {}
        for sid, digest in s.execute(select(Instance.series_id, Instance.blob_digest)):
            by_series.setdefault(sid, []).append(str(ws.store.local_path(digest)))
        n_images = s.query(Instance).count()
        n_series = s.query(Series).count()
    jobs = list(by_series.values())
    _ = [_read_pixels(j) for j in jobs[:1]]  # warm the page cache for both

    def bare() -> None:
        for _ in imap_unordered(_read_pixels, jobs, workers=args.workers):
            pass

    def qc() -> None:
        with ws.catalog.session() as s:
            s.execute(delete(QcVerdict))
            s.execute(delete(QcMeasurement))
        summary = run_qc(ws, workers=args.workers, quiet=True)
        assert summary.counts["measured"] == n_series, summary.counts

    def cached() -> None:
        summary = run_qc(ws, workers=args.workers, quiet=True)
        assert summary.counts["measured"] == 0

    times: dict[str, list[float]] = {"bare read": [], "qc run": [], "qc run (cached)": []}
    for _ in range(args.repeats):
        for name, fn in (("bare read", bare), ("qc run", qc), ("qc run (cached)", cached)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    geo = [_geometry(j) for j in jobs]
    rows = [
        {
            "tool": name,
            "seconds": min(ts),
            "series_per_s": n_series / min(ts),
            "images_per_s": n_images / min(ts),
        }
        for name, ts in times.items()
    ]
    rows.append(
        {
            "tool": "geometry (headers only)",
            "seconds": sum(geo),
            "per_series_s": max(geo),
            "series_per_s": len(geo) / sum(geo),
        }
    )
    print_ratio_table(
        rows,
        title=f"QC speed: {n_series} series, {n_images} images ({args.rows}x{args.rows} CT, "
        f"{args.rows // 2}x{args.rows // 2} MR), {args.workers} workers",
        reference="bare read",
        columns=[
            ("tool", "run"),
            ("seconds", "seconds"),
            ("series_per_s", "series/s"),
            ("images_per_s", "images/s"),
        ],
        ratio_of=["seconds"],
    )
    console.print(
        f"geometry from headers: worst series {max(geo):.3f} s, median {statistics.median(geo):.3f} s"
    )
    return rows


def noise_accuracy(rows: int) -> list[dict[str, Any]]:
    out = []
    for modality, sigmas in (("CT", (5.0, 10.0, 20.0, 40.0, 80.0)), ("MR", (5.0, 15.0, 40.0))):
        for sigma in sigmas:
            m, _ = measure(images_of(build(Spec(modality, rows, 16, noise=sigma, seed=int(sigma)))))
            keys = ("noise_hu", "noise_air_hu") if modality == "CT" else ("noise_background", "noise_tissue")
            row: dict[str, Any] = {"modality": modality, "true_sigma": sigma}
            for k in keys:
                row[k] = m[k]
                row[f"{k}_err_pct"] = round(100 * (m[k] - sigma) / sigma, 2)
            out.append(row)
    table = Table(title=f"noise estimates vs planted sigma ({rows}x{rows}, 16 slices)")
    for col in ("modality", "true sigma", "estimator", "estimate", "error %"):
        table.add_column(col, justify="right")
    for r in out:
        for k in [k for k in r if k.endswith("_err_pct")]:
            base = k.removesuffix("_err_pct")
            table.add_row(r["modality"], f"{r['true_sigma']:.0f}", base, f"{r[base]:.2f}", f"{r[k]:+.2f}")
    console.print(table)
    return out


def _judge(item: tuple[str, float, int, int, int]) -> tuple[str, float, set[str], bool]:
    name, severity, seed, rows, slices = item
    if name.startswith("clean"):
        spec = clean_specs(rows=rows, slices=slices, count=int(severity) + 1, seed=seed)[int(severity)]
        series = build(spec)
    else:
        defect = next(d for d in [*DEFECTS, VARIABLE_SPACING] if d.name == name)
        series = make_series(defect, severity, rows=rows, slices=slices, seed=seed)
    metrics, _ = measure(images_of(series))
    record = {"modality": metrics["modality"], **{f"qc.{k}": v for k, v in metrics.items()}}
    passed, _, firings = apply(default_ruleset(), record)
    extra = metrics.get("missing_slices", 0) == 0 if name == "variable_spacing" else True
    return name, severity, {f.rule for f in firings}, passed and extra


def validate(args: argparse.Namespace) -> dict[str, Any]:
    """Every defect class at every severity (and just under its threshold), and clean series."""
    items: list[tuple[str, float, int, int, int]] = []
    for seed in range(args.seeds):
        for d in [*DEFECTS, VARIABLE_SPACING]:
            items += [(d.name, s, seed, args.rows, args.val_slices) for s in (*d.severities, *d.below)]
        items += [
            (f"clean{seed}", float(k), 100 + seed, args.rows, args.val_slices) for k in range(args.clean)
        ]
    results = [r for _, r in imap_unordered(_judge, items, workers=args.workers)]
    clean = [r for r in results if r[0].startswith("clean")]
    rows = []
    for d in [*DEFECTS, VARIABLE_SPACING]:
        mine = [r for r in results if r[0] == d.name and r[1] not in d.below]
        under = [r for r in results if r[0] == d.name and r[1] in d.below]
        hits = [r for r in mine if set(d.rules) <= r[2]]
        fp = [r for r in clean if set(d.rules) & r[2]]
        by_sev = {}
        for s in d.severities:
            got = [r for r in mine if r[1] == s]
            by_sev[str(s)] = f"{sum(set(d.rules) <= r[2] for r in got)}/{len(got)}"
        below = {}
        for b in d.below:
            got = [r for r in under if r[1] == b]
            below[str(b)] = f"{sum(bool(set(d.rules) & r[2]) for r in got)}/{len(got)}"
        rows.append(
            {
                "class": d.name,
                "modality": d.modality,
                "severity unit": d.unit,
                "by severity": by_sev,
                "sensitivity": len(hits) / len(mine),
                "false-positive rate": len(fp) / len(clean),
                "below threshold flagged": below,
                "planted": len(mine),
                "clean": len(clean),
            }
        )
    excluded_clean = sum(not r[3] for r in clean)
    table = Table(
        title=f"QC validation: {len(results)} series ({args.rows}x{args.rows}x{args.val_slices}), {len(clean)} clean"
    )
    for col in (
        "class",
        "mod",
        "detected/planted by severity",
        "sens.",
        "FP rate (clean)",
        "flagged below threshold",
    ):
        table.add_column(col)
    for r in rows:
        sev = ", ".join(f"{k}: {v}" for k, v in r["by severity"].items())
        below_txt = ", ".join(f"{k}: {v}" for k, v in r["below threshold flagged"].items()) or "-"
        table.add_row(
            r["class"],
            r["modality"],
            f"{sev} ({r['severity unit']})",
            f"{r['sensitivity']:.2f}",
            f"{r['false-positive rate']:.2f}",
            below_txt,
        )
    console.print(table)
    console.print(f"clean series excluded: {excluded_clean}/{len(clean)}")
    return {"classes": rows, "clean_excluded": excluded_clean, "clean": len(clean)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=6)
    ap.add_argument("--slices", type=int, default=80)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--workers", type=int, default=cores())
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--validate", action="store_true", help="also run the full validation corpus")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--clean", type=int, default=12, help="clean series per seed")
    ap.add_argument("--val-slices", type=int, default=40)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "qc.json")
    args = ap.parse_args()
    result: dict[str, Any] = {
        "cores": cores(),
        "workers": args.workers,
        "args": vars(args) | {"out": str(args.out)},
    }
    if not args.skip_speed:
        with tempfile.TemporaryDirectory() as tmp:
            result["speed"] = speed(args, Path(tmp))
        bare = next(r for r in result["speed"] if r["tool"] == "bare read")["seconds"]
        qc = next(r for r in result["speed"] if r["tool"] == "qc run")["seconds"]
        result["qc_over_bare_read"] = round(qc / bare, 3)
        console.print(f"[bold]qc run / bare read = {qc / bare:.2f}x[/] (goal: at most 1.5x)")
    result["noise"] = noise_accuracy(args.rows)
    worst = max(abs(v) for r in result["noise"] for k, v in r.items() if k.endswith("_err_pct"))
    console.print(f"[bold]worst noise estimate error: {worst:.2f}%[/] (goal: within 5%)")
    if args.validate:
        result["validation"] = validate(args)
    write_json(args.out, result)
    console.print(f"written {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

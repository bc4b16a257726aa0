"""A demo's QC verdicts against the generator's ground truth (its hospital-export manifest).

The same comparison as ``tests/demo/test_demo_end_to_end.py`` makes on the small demo, for any demo
output folder (the full-size one included): the site key maps each true series UID to its
pseudonymous catalog UID, so every verdict is matched to its planted truth.

    .venv/bin/python bench/demo_qc.py /work/fulldemo-out

Prints clean series excluded (by reason), defective series caught (by defect) and localizers, then
every disagreement; writes ``bench/results/demo_qc.json``. Exit status 1 when a verdict disagrees.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sqlalchemy import select

from _common import console, write_json
from curata.catalog import Series
from curata.collect.deid.pseudonyms import Pseudonymizer
from curata.demo.synth import ExportManifest
from curata.select.models import QcVerdict
from curata.workspace import Workspace

RESULTS = Path(__file__).resolve().parent / "results" / "demo_qc.json"


def _reason_names(reasons: list[Any]) -> list[str]:
    names = []
    for r in reasons or []:
        if isinstance(r, dict):
            names.append(str(r.get("rule") or r.get("name") or r.get("metric") or r))
        else:
            names.append(str(r).split(":")[0].split(" (")[0])
    return names


def compare(out: Path) -> dict[str, Any]:
    ws = Workspace.open(out / "workspace")
    manifest = ExportManifest.load(out / "hospital-export.manifest.json")
    to_catalog = Pseudonymizer(ws.site_key()).uid
    truth = {to_catalog(s.series_uid): s for s in manifest.series}
    with ws.catalog.session() as s:
        rows = s.execute(
            select(Series.series_uid, QcVerdict.passed, QcVerdict.reasons)
            .join(QcVerdict, QcVerdict.series_id == Series.id)
            .where(Series.modality != "SM")
        ).all()
    verdicts = {uid: (passed, reasons) for uid, passed, reasons in rows}
    clean = Counter[str]()
    clean_excluded: dict[str, list[str]] = defaultdict(list)
    caught = Counter[str]()
    caught_by: dict[str, Counter[str]] = defaultdict(Counter)
    planted = Counter[str]()
    localizers = Counter[str]()
    wrong: list[dict[str, Any]] = []
    for uid, rec in truth.items():
        if uid not in verdicts:
            wrong.append({"series": f"{rec.kind} {rec.description}", "problem": "no QC verdict"})
            continue
        passed, reasons = verdicts[uid]
        expected = not rec.defects and rec.kind != "ct_localizer"
        if rec.kind == "ct_localizer":
            localizers["excluded" if not passed else "passed"] += 1
        elif rec.defects:
            for d in rec.defects:
                planted[d] += 1
                caught[d] += 0 if passed else 1
                caught_by[d].update(_reason_names(reasons))
        else:
            key = f"{rec.kind} {rec.description}"
            clean[key] += 1
            if not passed:
                for name in _reason_names(reasons) or ["(no reason)"]:
                    clean_excluded[name].append(key)
        if passed != expected:
            wrong.append(
                {
                    "series": f"{rec.kind} {rec.description}",
                    "defects": rec.defects,
                    "passed": passed,
                    "reasons": reasons,
                }
            )
    return {
        "demo": str(out),
        "size": manifest.size,
        "series": len(truth),
        "verdicts": len(verdicts),
        "clean": dict(clean),
        "clean_series": sum(clean.values()),
        "clean_excluded": {k: len(v) for k, v in clean_excluded.items()},
        "clean_excluded_series": sorted({s for v in clean_excluded.values() for s in v}),
        "defects_planted": dict(planted),
        "defects_caught": dict(caught),
        "defect_reasons": {d: dict(c) for d, c in caught_by.items()},
        "localizers": dict(localizers),
        "disagreements": wrong,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a demo output folder (workspace/ and the manifest)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    res = compare(args.out.resolve())
    console.print(
        f"[bold]{res['demo']}[/] ({res['size']}): {res['series']} series, {res['verdicts']} verdicts"
    )
    console.print(f"clean series: {res['clean_series']}  {res['clean']}")
    n_excl = sum(1 for d in res["disagreements"] if d.get("passed") is False)
    console.print(f"clean series excluded: {n_excl}  by reason: {res['clean_excluded'] or '{}'}")
    for d, n in sorted(res["defects_planted"].items()):
        why = res["defect_reasons"].get(d, {})
        console.print(f"defect {d:<24} planted {n:>3}  caught {res['defects_caught'].get(d, 0):>3}  by {why}")
    console.print(f"localizers: {res['localizers']}")
    for d in res["disagreements"]:
        console.print(f"[red]disagrees[/] {d}")
    if not args.no_save:
        write_json(RESULTS, res)
    return 1 if res["disagreements"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Page timings of the web platform on a demo workspace (goal: every page under 300 ms).

    .venv/bin/python bench/web.py [--workspace .demo/workspace] [--repeats 7] [--out bench/results/web.json]

Runs `curata serve`'s app in a real uvicorn on a loopback port and requests every page of the demo
project as the role that uses it (an API token of that demo account, minted here), plus the DICOMweb
calls the viewer makes first (QIDO studies, a series' metadata, a frame, a thumbnail). Each row is the
median and the worst of ``--repeats`` requests after one warm-up, in this one run on this machine;
/healthz is the floor (the HTTP round trip with no work).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import uvicorn
from sqlalchemy import func, select

from _common import console, free_port, write_json
from curata.server import service
from curata.server.app import create_app
from curata.server.ohif import find_ohif
from curata.workspace import Workspace


def _serve(app: Any) -> tuple[uvicorn.Server, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def _time(client: httpx.Client, url: str, headers: dict[str, str], repeats: int) -> dict[str, Any]:
    r = client.get(url, headers=headers)  # warm-up (first thumbnail render, caches)
    if r.status_code != 200:
        raise SystemExit(f"{url}: HTTP {r.status_code} {r.text[:200]}")
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = client.get(url, headers=headers)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, url
    return {
        "ms_median": round(statistics.median(times), 1),
        "ms_max": round(max(times), 1),
        "bytes": len(r.content),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workspace", type=Path, default=Path(".demo/workspace"))
    ap.add_argument("--project", default="demo")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("bench/results/web.json"))
    args = ap.parse_args()

    from curata.catalog import Instance, Series, Study

    ws = Workspace.open(args.workspace)
    tokens = {
        u: service.create_token(ws, u, "bench/web.py", days=1).token
        for u in ("demo-curator", "demo-site", "demo-licensee", "demo-annotator")
    }
    with ws.catalog.session() as s:
        n_series = s.scalar(select(func.count(Series.id))) or 0
        study, series = s.execute(
            select(Study.study_uid, Series.series_uid)
            .join(Series, Series.study_id == Study.id)
            .where(Series.modality == "CT")
            .limit(1)
        ).one()
        sop = s.scalar(
            select(Instance.sop_instance_uid)
            .join(Series, Instance.series_id == Series.id)
            .where(Series.series_uid == series)
            .limit(1)
        )
    release = next(iter(service.licences_of(ws, service.get_user(ws, "demo-licensee").id)), None)
    p = f"/ui/p/{args.project}"
    dw = f"/projects/{args.project}/dicomweb"
    rows: list[tuple[str, str, str]] = [
        ("floor: /healthz", "/healthz", "demo-curator"),
        ("sign-in page", "/ui/login", "demo-curator"),
        ("projects", "/ui/", "demo-curator"),
        ("project overview", f"{p}/", "demo-curator"),
        ("catalog (first 100 series)", f"{p}/catalog", "demo-curator"),
        ("catalog filtered (CT, excluded)", f"{p}/catalog?modality=CT&qc=excluded", "demo-curator"),
        ("catalog, last page", f"{p}/catalog?offset={max(n_series - 1, 0) // 100 * 100}", "demo-curator"),
        ("catalog text search", f"{p}/catalog?text=T1", "demo-curator"),
        ("catalog (site account)", f"{p}/catalog", "demo-site"),
        ("QC review (excluded montage)", f"{p}/qc", "demo-curator"),
        ("cohorts", f"{p}/cohorts", "demo-curator"),
        ("cohort preview with plots", f"{p}/cohorts?where=modality+%3D+CT+and+qc.passed", "demo-curator"),
        ("pre-processing runs", f"{p}/runs", "demo-curator"),
        ("releases", f"{p}/releases", "demo-curator"),
        ("ledger", f"{p}/ledger", "demo-curator"),
        ("ledger inclusion proof", f"{p}/ledger/1", "demo-curator"),
        ("revenue statement", f"{p}/revenue?period={time.gmtime().tm_year}", "demo-site"),
        ("releases (licensee)", f"{p}/releases", "demo-licensee"),
        ("project overview (annotator)", f"{p}/", "demo-annotator"),
        ("viewer config (app-config.js)", "/app-config.js", "demo-curator"),
        ("QIDO studies", f"{dw}/studies", "demo-curator"),
        ("WADO series metadata", f"{dw}/studies/{study}/series/{series}/metadata", "demo-curator"),
        ("WADO frame", f"{dw}/studies/{study}/series/{series}/instances/{sop}/frames/1", "demo-curator"),
        ("series thumbnail", f"{dw}/studies/{study}/series/{series}/thumbnail", "demo-curator"),
    ]
    if release:
        at = next(i for i, r in enumerate(rows) if r[0] == "ledger")
        rows[at:at] = [
            ("release detail", f"{p}/releases/{release.label}", "demo-curator"),
            ("release card", f"{p}/releases/{release.label}/card", "demo-curator"),
        ]
    app = create_app(ws, ohif_dir=find_ohif())
    server, base = _serve(app)
    results = []
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            for name, url, user in rows:
                t = _time(client, url, {"Authorization": f"Bearer {tokens[user]}"}, args.repeats)
                results.append({"page": name, "url": url, "as": user, **t})
                console.print(f"{name:40s} {t['ms_median']:8.1f} ms  (max {t['ms_max']:.1f})")
    finally:
        server.should_exit = True
    for user in tokens:  # the bench tokens (demo accounts have no others)
        service.revoke_tokens(ws, user)
    pages = [r for r in results if r["url"].startswith("/ui/")]
    out = {
        "workspace_series": n_series,
        "repeats": args.repeats,
        "goal_ms": 300,
        "pages_over_goal": [r["page"] for r in pages if r["ms_median"] > 300],
        "pages_worst_over_goal": [r["page"] for r in pages if r["ms_max"] > 300],
        "rows": results,
    }
    write_json(args.out, out)
    console.print(
        f"{len(pages)} pages, over 300 ms: {out['pages_over_goal'] or 'none'}; written to {args.out}"
    )


if __name__ == "__main__":
    main()

"""The QC report: one self-contained HTML file (plots and thumbnails inlined as base64 PNG).

Sections: pass rates by site and by scanner; the distribution of every numeric metric by site and by
scanner (strip plots); how often each rule fired; a montage of every excluded series with its reasons.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from curata._io import atomic_write
from curata.catalog import Series, Site, join_series_to_site
from curata.select.metrics.registry import METRICS
from curata.select.models import QcMeasurement, QcVerdict
from curata.workspace import Workspace


def _rows(ws: Workspace) -> list[dict[str, Any]]:
    with ws.catalog.session() as session:
        q = (
            join_series_to_site(select(Series, Site.name, QcVerdict, QcMeasurement))
            .join(QcVerdict, QcVerdict.series_id == Series.id)
            .join(QcMeasurement, QcMeasurement.qc_key == QcVerdict.qc_key)
            .order_by(Site.name, Series.series_uid)
        )
        out = []
        for series, site, verdict, meas in session.execute(q):
            scanner = " ".join(x for x in (series.manufacturer, series.model) if x) or "unknown"
            out.append(
                {
                    "uid": series.series_uid,
                    "modality": series.modality or "?",
                    "description": series.description or "",
                    "site": site,
                    "scanner": scanner,
                    "passed": verdict.passed,
                    "warned": verdict.warned,
                    "reasons": verdict.reasons,
                    "metrics": meas.metrics or {},
                    "thumbnail": meas.thumbnail_digest,
                }
            )
        return out


def _png(fig: Any, *, tight: bool = True) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight" if tight else None)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _pass_rates(rows: list[dict[str, Any]]) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    for ax, key in zip(axes, ("site", "scanner"), strict=True):
        groups: dict[str, list[bool]] = defaultdict(list)
        for r in rows:
            groups[r[key]].append(r["passed"])
        names = sorted(groups)
        rates = [100 * sum(groups[n]) / len(groups[n]) for n in names]
        ax.barh(names, rates, color="#4c9f70")
        for i, n in enumerate(names):
            ax.text(min(rates[i], 95), i, f" {sum(groups[n])}/{len(groups[n])}", va="center", fontsize=8)
        ax.set_xlim(0, 100)
        ax.set_xlabel("passed (%)")
        ax.set_title(f"pass rate by {key}")
    return _png(fig)


def _distributions(rows: list[dict[str, Any]]) -> tuple[list[str], str]:
    """One figure, one panel per numeric metric: strip plots by site, then by scanner."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    names = [
        n
        for n, m in METRICS.items()
        if m.kind == "num" and any(isinstance(r["metrics"].get(n), int | float) for r in rows)
    ]
    if not names:
        return [], ""
    sites = sorted({r["site"] for r in rows})
    scanners = sorted({r["scanner"] for r in rows})
    labels = [f"site {x}" for x in sites] + [f"scanner {x}" for x in scanners]
    ncols = 3
    nrows = (len(names) + ncols - 1) // ncols
    height = 0.9 + 0.22 * len(labels)
    fig, axes = plt.subplots(nrows, ncols, figsize=(13, height * nrows), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // ncols][k % ncols]
        for i, label in enumerate(labels):
            key, value = ("site", label[5:]) if i < len(sites) else ("scanner", label[8:])
            pts = [
                (float(r["metrics"][name]), r["passed"])
                for r in rows
                if r[key] == value
                and isinstance(r["metrics"].get(name), int | float)
                and not isinstance(r["metrics"].get(name), bool)
            ]
            if not pts:
                continue
            vals = np.array([v for v, _ in pts])
            ok = np.array([p for _, p in pts])
            y = i + (np.random.default_rng(i).random(len(vals)) - 0.5) * 0.3
            ax.scatter(vals[ok], y[ok], s=10, color="#2b7bb9")
            ax.scatter(vals[~ok], y[~ok], s=14, color="#d9534f", marker="x")
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.axhline(len(sites) - 0.5, color="#bbb", lw=0.5)
        ax.set_title(f"{name} ({METRICS[name].unit or 'value'})", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.tick_params(axis="x", labelsize=6)
    for k in range(len(names), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    fig.subplots_adjust(left=0.1, right=0.99, top=0.98, bottom=0.02, hspace=0.6, wspace=0.6)
    return names, _png(fig, tight=False)


def _thumb(ws: Workspace, digest: str | None) -> str:
    if not digest or not ws.store.exists(digest):
        return ""
    return base64.b64encode(ws.store.get_bytes(digest)).decode()


def render_html(ws: Workspace, rows: list[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    esc = html.escape
    passed = sum(r["passed"] for r in rows)
    fired = Counter(x["rule"] for r in rows for x in r["reasons"])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Curata QC report</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.tile{display:inline-block;width:220px;"
        "vertical-align:top;margin:6px;font-size:12px}.tile img{width:200px;background:#000}"
        ".exc{color:#b52b27}.warn{color:#a66d00}</style></head><body>",
        f"<h1>QC report: {esc(ws.site_name)}</h1>",
        f"<p>{len(rows)} series judged, {passed} passed, {len(rows) - passed} excluded. "
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>",
    ]
    if rows:
        parts.append(
            f"<h2>Pass rates</h2><img alt='pass rates' src='data:image/png;base64,{_pass_rates(rows)}'>"
        )
        parts.append("<h2>Rules that fired</h2><table><tr><th>rule</th><th>action</th><th>series</th></tr>")
        actions = {x["rule"]: x["action"] for r in rows for x in r["reasons"]}
        for rule, n in fired.most_common():
            parts.append(f"<tr><td>{esc(rule)}</td><td>{esc(actions[rule])}</td><td>{n}</td></tr>")
        parts.append("</table>")
        excluded = [r for r in rows if not r["passed"]]
        parts.append(f"<h2>Excluded series ({len(excluded)})</h2><div>")
        for r in excluded:
            img = _thumb(ws, r["thumbnail"])
            pic = (
                f"<img alt='thumbnail' src='data:image/png;base64,{img}'>" if img else "<div>(no image)</div>"
            )
            reasons = "".join(
                f"<li class='{'exc' if x['action'] == 'exclude' else 'warn'}'>{esc(x['rule'])}: {esc(x['reason'])}</li>"
                for x in r["reasons"]
            )
            parts.append(
                f"<div class='tile'>{pic}<br><b>{esc(r['modality'])}</b> {esc(r['description'][:40])}<br>"
                f"{esc(r['site'])} · {esc(r['scanner'])}<br><code>{esc(r['uid'][-24:])}</code><ul>{reasons}</ul></div>"
            )
        slides = [r for r in rows if r["modality"] == "SM"]
        if slides:
            parts.append(f"<h2>Slides ({len(slides)})</h2><div class='slides'>")
            for r in slides:
                img = _thumb(ws, r["thumbnail"])
                pic = (
                    f"<img alt='slide' src='data:image/png;base64,{img}'>" if img else "<div>(no image)</div>"
                )
                verdict = "passed" if r["passed"] else "excluded"
                fired_rules = ", ".join(x["rule"] for x in r["reasons"]) or "no rule fired"
                parts.append(
                    f"<div class='tile slide'>{pic}<br><b>{verdict}</b> {esc(r['description'][:40])}<br>"
                    f"{esc(r['site'])}<br><small>{esc(fired_rules)}</small></div>"
                )
            parts.append("</div>")
        names, png = _distributions(rows)
        parts.append(
            "</div><h2>Metric distributions by site and scanner</h2>"
            "<p>Blue dots passed, red crosses were excluded.</p>"
        )
        if png:
            parts.append(f"<img alt='metric distributions' src='data:image/png;base64,{png}'>")
        parts.append(
            "<h3>Metric definitions</h3><table><tr><th>metric</th><th>unit</th><th>definition</th></tr>"
        )
        for name in names:
            m = METRICS[name]
            parts.append(f"<tr><td>{esc(name)}</td><td>{esc(m.unit)}</td><td>{esc(m.definition)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No series judged yet: run <code>curata qc run</code>.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(ws: Workspace, out_html: Path) -> Path:
    """Write the report atomically; returns its path."""
    return atomic_write(Path(out_html), render_html(ws, _rows(ws)))

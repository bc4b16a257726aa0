"""The dataset card: who is in the data, compared with its baseline, with imbalances flagged.

The *baseline* is the population the release was drawn from: the catalog's image series of the
release's modalities at the sites the release's series come from (``CardInput.baseline_scope`` names
them), never the whole catalog. A card is read by everyone who may see the release (its project's
members, its licensees), who may hold nothing else of the catalog: another site's name, scanners or
counts are no part of it.

Patient-level groups (sex, age band, site, region, country) count patients; acquisition groups (scanner
vendor and model, slice thickness, modality) count series. A group is flagged *under-represented* when
its share of the release is below ``UNDER`` times its share of the baseline, or when it is absent from
the release although the baseline holds it. Markdown and HTML carry the same tables; the HTML embeds the
plots (PNG files beside it, drawn with matplotlib).

Small cells (statistical disclosure control, outside review F7a): a card is published aggregate data, so
no count under ``min_cell`` (default ``MIN_CELL`` = 5, at least ``MIN_CELL_FLOOR``) is shown, in the
release column or the baseline column: it reads ``<5`` and its share, plot bar and flag sentence hide
the number too. Each table's total is known (the patients per split, the series), so where the hidden
counts could be worked out from it (one hidden count; two hidden ones of 1; a ``<5`` beside a hidden 5),
the next smallest counts are hidden as well (``suppressed``). The card says the rule it applied. There is
one card per release, the one in its manifest: the web UI shows that same file to the project's
members, so internal reviewers see the suppressed card too (exact counts are theirs through the catalog
and cohort tools, inside the data controller). The card is a file of the release (its digest is in the
manifest and the Merkle root): releases built before this rule keep their cards; only new versions carry
suppressed ones.
"""

from __future__ import annotations

import html
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

UNDER = 0.5  # flag when release share < UNDER x baseline share
MIN_BASELINE_SHARE = 0.02  # groups this rare in the baseline are not flagged
MIN_CELL = 5  # counts under this are shown as "<5" (small-cell suppression)
MIN_CELL_FLOOR = 2  # a threshold under this would hide nothing


def cell_threshold(min_cell: int) -> int:
    if min_cell < MIN_CELL_FLOOR:
        raise ValueError(f"the small-cell threshold must be at least {MIN_CELL_FLOOR}, not {min_cell}")
    return min_cell


def small_cell_rule(min_cell: int = MIN_CELL) -> str:
    """The rule in words, said on the card and on the clinical summary."""
    return (
        f"Counts under {min_cell} are shown as <{min_cell} and their shares are not shown; where a hidden "
        "count could be worked out from a total, the next smallest counts are hidden too (shown as hidden)"
    )


def suppressed(counts: Mapping[str, int], min_cell: int = MIN_CELL, *, total_known: bool = True) -> set[str]:
    """The groups whose counts are hidden: every count from 1 to ``min_cell - 1`` (primary), and, when the
    table's total is published, the next smallest shown counts until no hidden count can be worked out
    from it (secondary; ``_pinned``). Zero is shown."""
    hidden = {g for g, n in counts.items() if 0 < n < min_cell}
    if not hidden or not total_known:
        return hidden
    rest = sorted((n, g) for g, n in counts.items() if n > 0 and g not in hidden)
    while rest and _pinned({g: counts[g] for g in hidden}, min_cell, rest[0][0]):
        hidden.add(rest.pop(0)[1])
    return hidden


def _pinned(hidden: Mapping[str, int], min_cell: int, smallest_shown: int) -> bool:
    """Whether a reader who knows the rule can work out one of the hidden counts: they know the hidden
    counts' sum (the total less what is shown), that a ``<5`` count is 1 to 4, and that a count hidden
    for the total is 5 or more and no more than the smallest shown count."""
    total = sum(hidden.values())
    bounds = {g: (1, min_cell - 1) if n < min_cell else (min_cell, smallest_shown) for g, n in hidden.items()}
    low, high = sum(b[0] for b in bounds.values()), sum(b[1] for b in bounds.values())
    # each count lies within its bounds and within what the sum leaves once the others take theirs
    return any(min(hi, total - (low - lo)) <= max(lo, total - (high - hi)) for lo, hi in bounds.values())


def shown(n: int, hide: bool, min_cell: int = MIN_CELL) -> str:
    """A count as published: ``<5`` under the threshold, ``hidden`` when hidden for a total (it is not
    under the threshold, and ``<5`` would be untrue)."""
    if not hide:
        return str(n)
    return f"<{min_cell}" if n < min_cell else "hidden"


BASELINE_TEXT = (
    "The baseline columns count the population the release was drawn from: every image series (and its "
    "patients) of the release's modalities at the sites the release's series come from, withdrawn "
    "patients left out; nothing of any other site"
)

PATIENT_DIMENSIONS = (
    ("sex", "Sex"),
    ("age", "Age band"),
    ("site", "Site"),
    ("region", "Region"),
    ("country", "Country"),
)
SERIES_DIMENSIONS = (
    ("modality", "Modality"),
    ("vendor", "Scanner vendor"),
    ("model", "Scanner model"),
    ("thickness", "Slice thickness"),
    ("organ", "Organ / body part"),
    ("stain", "Stain (slides)"),
)


def slide_groups(modality: str | None, body_part: str | None, description: str | None) -> dict[str, str]:
    """Organ (body part) for every series; the stain for slides, which carry it as their series
    description (``H&E breast``: stain, then organ)."""
    out = {"organ": (body_part or "unknown").upper()}
    if modality == "SM":
        words = (description or "").split()
        organ = (body_part or "").lower()
        stain = " ".join(w for w in words if w.lower() != organ) or "unknown"
        out["stain"] = stain
    else:
        out["stain"] = "n/a"
    return out


def thickness_band(value: float | None) -> str:
    if value is None:
        return "unknown"
    for limit, label in ((1.0, "<=1 mm"), (2.5, "1-2.5 mm"), (5.0, "2.5-5 mm")):
        if value <= limit:
            return label
    return ">5 mm"


@dataclass
class Composition:
    """Counts per dimension and group, for the release or for its baseline."""

    patients: dict[str, Counter[str]] = field(default_factory=dict)
    series: dict[str, Counter[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, patients: Sequence[Mapping[str, Any]], series: Sequence[Mapping[str, Any]]) -> Composition:
        comp = cls()
        for key, _ in PATIENT_DIMENSIONS:
            comp.patients[key] = Counter(str(p.get(key) or "unknown") for p in patients)
        for key, _ in SERIES_DIMENSIONS:
            comp.series[key] = Counter(str(s.get(key) or "unknown") for s in series)
        return comp

    def counter(self, key: str) -> Counter[str]:
        return self.patients.get(key) or self.series.get(key) or Counter()


@dataclass
class Row:
    group: str
    release: int
    release_share: float
    baseline: int
    baseline_share: float
    flagged: bool
    release_hidden: bool = False  # small cell: shown as "<min_cell", share hidden
    baseline_hidden: bool = False


def compare(release: Counter[str], baseline: Counter[str], min_cell: int = MIN_CELL) -> list[Row]:
    r_total, b_total = sum(release.values()) or 1, sum(baseline.values()) or 1
    r_hidden, b_hidden = suppressed(release, min_cell), suppressed(baseline, min_cell)
    rows = []
    for group in sorted(set(release) | set(baseline)):
        rs, bs = release[group] / r_total, baseline[group] / b_total
        flagged = group != "unknown" and bs >= MIN_BASELINE_SHARE and rs < UNDER * bs
        rows.append(
            Row(group, release[group], rs, baseline[group], bs, flagged, group in r_hidden, group in b_hidden)
        )
    return rows


def _share(share: float, hide: bool) -> str:
    return "-" if hide else f"{share:.0%}"


def _said(n: int, share: float, hide: bool, k: int, unit: str) -> str:
    """A share in a flag's sentence: ``<5 patients`` or ``a hidden share`` where the count is hidden."""
    if not hide:
        return f"{share:.0%}"
    return f"<{k} {unit}" if n < k else "a hidden share"


@dataclass
class CardInput:
    name: str
    version: int
    release: Composition
    baseline: Composition  # the population the release was drawn from (module docstring)
    splits: dict[str, int]  # split -> patients (persons: one pseudonym, whatever site saw them)
    qc: dict[str, tuple[int, int]] | None = None  # group -> (passed, assessed); None when QC never ran
    labels: dict[str, tuple[int, float]] = field(default_factory=dict)  # label -> (cases, total ml)
    n_cases: int = 0
    n_labelled: int = 0
    # what the baseline covers, in words: "sites a, b; modalities CT" (said on the card)
    baseline_scope: str = "the release's own series"
    # from the annotation stage: {"project", "labels": [{label, reads, pairs, dice{...}, ..., adjudication_rate}]}
    annotation: dict[str, Any] | None = None
    n_patients: int | None = None  # persons; the sum of ``splits`` when not given
    multi_site: dict[int, int] = field(default_factory=dict)  # sites seen at -> persons (2 or more sites)
    min_cell: int = MIN_CELL  # small-cell threshold (module docstring)


def _patients_text(card: CardInput) -> str:
    """How many patients, and that none is in two splits, counting a person seen at several sites once."""
    n = card.n_patients if card.n_patients is not None else sum(card.splits.values())
    split_text = ", ".join(f"{k}: {v}" for k, v in card.splits.items())
    text = (
        f"{n} patient{'s' if n != 1 else ''}; patients per split: {split_text}. No patient is in two splits"
    )
    k_min = cell_threshold(card.min_cell)  # how many were seen at several sites is a small cell too
    seen = [
        f"{shown(p, p < k_min, k_min)} patient{'s' if p != 1 or p < k_min else ''} seen at {k} sites"
        for k, p in sorted(card.multi_site.items())
    ]
    if seen:
        text += (
            f" ({', '.join(seen)}: a patient is one pseudonym, counted once and kept in one split; the "
            "per-site counts count them at each site)"
        )
    return text + (
        ". Pseudonyms under different site prefixes cannot be linked: such records count as different patients."
    )


def flags(card: CardInput) -> list[str]:
    """One sentence per under-represented group; a hidden count is said as ``<5 patients``, never a share."""
    k = cell_threshold(card.min_cell)
    out = []
    for key, title in (*PATIENT_DIMENSIONS, *SERIES_DIMENSIONS):
        unit = "patients" if key in card.release.patients else "series"
        for row in compare(card.release.counter(key), card.baseline.counter(key), k):
            if row.flagged:
                rel = _said(row.release, row.release_share, row.release_hidden, k, unit)
                base = _said(row.baseline, row.baseline_share, row.baseline_hidden, k, unit)
                out.append(
                    f"{title} '{row.group}' is under-represented: {rel} of the release vs {base} of the baseline."
                )
    return out


def _plot(key: str, title: str, rows: list[Row], min_cell: int = MIN_CELL) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(6, 2.8), dpi=72)
    ax = fig.add_axes((0.1, 0.25, 0.88, 0.63))  # fixed layout: tight_layout costs a second per plot
    groups = [r.group for r in rows]
    x = range(len(groups))
    # a hidden count draws no bar (its height would give the count away), only "<5"
    rel = [0.0 if r.release_hidden else 100 * r.release_share for r in rows]
    base = [0.0 if r.baseline_hidden else 100 * r.baseline_share for r in rows]
    ax.bar([i - 0.2 for i in x], rel, 0.4, label="release")
    ax.bar([i + 0.2 for i in x], base, 0.4, label="baseline", alpha=0.6)
    for i, r in enumerate(rows):
        for dx, hide in ((-0.2, r.release_hidden), (0.2, r.baseline_hidden)):
            if hide:
                ax.annotate(f"<{min_cell}", (i + dx, 0), ha="center", va="bottom", fontsize=7)
        if r.flagged:
            ax.annotate("under", (i - 0.2, rel[i]), ha="center", va="bottom", color="red", fontsize=8)
    ax.set_xticks(list(x), groups, rotation=20, fontsize=8)
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    # no timestamps in the PNG, so the same card is the same bytes
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _cells(r: Row, k: int) -> list[str]:
    return [
        shown(r.release, r.release_hidden, k),
        _share(r.release_share, r.release_hidden),
        shown(r.baseline, r.baseline_hidden, k),
        _share(r.baseline_share, r.baseline_hidden),
    ]


def _table_md(rows: list[Row], k: int = MIN_CELL) -> list[str]:
    lines = ["| group | release | share | baseline | share | |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        flag = "**under-represented**" if r.flagged else ""
        lines.append(f"| {r.group} | {' | '.join(_cells(r, k))} | {flag} |")
    return lines


def _table_html(rows: list[Row], k: int = MIN_CELL) -> str:
    out = [
        "<table><tr><th>group</th><th>release</th><th>share</th><th>baseline</th><th>share</th><th></th></tr>"
    ]
    for r in rows:
        flag = '<b class="flag">under-represented</b>' if r.flagged else ""
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r, k))
        out.append(f"<tr><td>{html.escape(r.group)}</td>{cells}<td>{flag}</td></tr>")
    out.append("</table>")
    return "".join(out)


def render(card: CardInput) -> dict[str, bytes]:
    """card/README.md, card/card.html and card/<dimension>.png."""
    files: dict[str, bytes] = {}
    k = cell_threshold(card.min_cell)
    title = f"{card.name}@{card.version}"
    md = [f"# Dataset card: {title}", ""]
    hx = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Dataset card: {html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px}.flag{color:#b00}</style></head><body>",
        f"<h1>Dataset card: {html.escape(title)}</h1>",
    ]
    patients_text = _patients_text(card)
    md += [
        f"{card.n_cases} cases ({card.n_labelled} with label maps); {patients_text}",
        f"{BASELINE_TEXT} ({card.baseline_scope}).",
        "",
        f"{small_cell_rule(k)}.",
        "",
    ]
    hx.append(
        f"<p>{card.n_cases} cases ({card.n_labelled} with label maps); {html.escape(patients_text)} "
        f"{html.escape(BASELINE_TEXT)} "
        f"({html.escape(card.baseline_scope)}).</p>"
    )
    hx.append(f"<p class='rule'>{html.escape(small_cell_rule(k))}.</p>")
    found = flags(card)
    md += ["## Representation flags", ""] + ([f"- {f}" for f in found] or ["- none"]) + [""]
    hx.append("<h2>Representation flags</h2><ul>")
    hx += [f"<li class='flag'>{html.escape(f)}</li>" for f in found] or ["<li>none</li>"]
    hx.append("</ul>")
    for key, dim_title in (*PATIENT_DIMENSIONS, *SERIES_DIMENSIONS):
        rows = compare(card.release.counter(key), card.baseline.counter(key), k)
        unit = "patients" if key in card.release.patients else "series"
        png = f"{key}.png"
        files[f"card/{png}"] = _plot(key, f"{dim_title} ({unit})", rows, k)
        md += [f"## {dim_title} ({unit})", "", f"![{dim_title}]({png})", "", *_table_md(rows, k), ""]
        hx += [
            f"<h2>{html.escape(dim_title)} ({unit})</h2>",
            f"<img src='{png}' alt='{html.escape(dim_title)}'>",
            _table_html(rows, k),
        ]
    md += ["## Quality control", ""]
    hx.append("<h2>Quality control</h2>")
    if card.qc is None:
        md += ["QC has not been run on these series.", ""]
        hx.append("<p>QC has not been run on these series.</p>")
    else:
        md += ["| group | passed | assessed | rate |", "|---|---:|---:|---:|"]
        hx.append("<table><tr><th>group</th><th>passed</th><th>assessed</th><th>rate</th></tr>")
        for group, (passed, assessed) in sorted(card.qc.items()):
            rate = passed / assessed if assessed else 0.0
            md.append(f"| {group} | {passed} | {assessed} | {rate:.0%} |")
            hx.append(
                f"<tr><td>{html.escape(group)}</td><td>{passed}</td><td>{assessed}</td><td>{rate:.0%}</td></tr>"
            )
        md.append("")
        hx.append("</table>")
    md += ["## Labels", ""]
    hx.append("<h2>Labels</h2>")
    if not card.labels:
        md += ["No label maps in this release.", ""]
        hx.append("<p>No label maps in this release.</p>")
    else:
        md += ["| label | cases | total volume (ml) |", "|---|---:|---:|"]
        hx.append("<table><tr><th>label</th><th>cases</th><th>total volume (ml)</th></tr>")
        for label, (n, ml) in sorted(card.labels.items()):
            md.append(f"| {label} | {n} | {ml:.2f} |")
            hx.append(f"<tr><td>{html.escape(label)}</td><td>{n}</td><td>{ml:.2f}</td></tr>")
        md.append("")
        hx.append("</table>")
    if card.annotation:
        _annotation_section(card.annotation, md, hx)
    hx.append("</body></html>")
    files["card/README.md"] = "\n".join(md).encode()
    files["card/card.html"] = "\n".join(hx).encode()
    return files


def _annotation_section(ann: dict[str, Any], md: list[str], hx: list[str]) -> None:
    """Per label: reads, the agreement distribution between readers, and the adjudication rate."""

    def q(d: dict[str, Any] | None) -> str:
        if not d or d.get("median") is None:
            return "-"
        return f"{d['median']:.3f} [{d['p25']:.3f}, {d['p75']:.3f}]"

    def rate(v: float | None) -> str:
        return "-" if v is None else f"{v:.0%}"

    head = [
        "label",
        "reads",
        "reader pairs",
        "Dice",
        "HD95 (mm)",
        "ASSD (mm)",
        "surface Dice",
        "detection F1",
        "adjudicated",
    ]
    intro = (
        f"Labels from annotation project {ann.get('project', '?')}: every case read by at least two "
        "readers, blinded; only accepted labels are released. Agreement between readers as median "
        "[25th, 75th percentile]."
    )
    md += ["## Annotation", "", intro, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    hx += [
        f"<h2>Annotation</h2><p>{html.escape(intro)}</p><table><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr>"
    ]
    for row in ann.get("labels", []):
        cells = [
            str(row["label"]),
            str(row["reads"]),
            str(row["pairs"]),
            q(row.get("dice")),
            q(row.get("hd95_mm")),
            q(row.get("assd_mm")),
            q(row.get("surface_dice")),
            q(row.get("detection_f1")),
            rate(row.get("adjudication_rate")),
        ]
        md.append("| " + " | ".join(cells) + " |")
        hx.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    md.append("")
    hx.append("</table>")

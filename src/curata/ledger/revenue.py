"""Licences, usage events and revenue statements, computed from the log alone.

Entries this module reads and writes (payloads):

- ``release`` (written by publish): ``{"release": NAME, "version": V, ..., "site_patients": {SITE: n},
  "site_annotated_cases": {SITE: n}}``, or the nested form ``"sites": {SITE: {"patients": n,
  "annotated_cases": n}}`` (a bare int per site means patients); ``"release": "NAME@V"`` also works.
- ``licence``: ``{"licensee", "release": "NAME@V", "terms", "fee_cents", "currency", "date"}``.
- ``usage`` / ``export``: ``{"licensee", "release", "action", ...}`` (metered, never billed here).

The statement rule: each licence whose ``date`` falls in the period has its fee split among the sites
of its release in proportion to their weight (patients by default, or annotated cases), in integer
cents by the largest-remainder rule: every site first gets ``floor(fee·wᵢ/W)``, and the cents left
over go one each to the largest remainders ``fee·wᵢ mod W`` (ties to the site name, alphabetically).
So the shares of every licence add up to its fee exactly, and the statement reconciles to the cent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from curata.ledger.log import Ledger, LedgerEntry, LedgerError

RULES = ("patients", "annotated_cases")


def parse_period(period: str) -> tuple[date, date]:
    """``2026``, ``2026-Q4`` or ``2026-11`` to a [start, end) pair of dates."""
    m = re.fullmatch(r"(\d{4})(?:-(?:Q([1-4])|(\d{2})))?", period.strip())
    if not m:
        raise LedgerError(f"period {period!r} is not YYYY, YYYY-Qn or YYYY-MM", hint="e.g. 2026-Q4")
    year = int(m.group(1))
    if m.group(2):
        q = int(m.group(2))
        start, end_month = date(year, 3 * q - 2, 1), 3 * q + 1
    elif m.group(3):
        month = int(m.group(3))
        if not 1 <= month <= 12:
            raise LedgerError(f"period {period!r}: no month {month}")
        start, end_month = date(year, month, 1), month + 1
    else:
        start, end_month = date(year, 1, 1), 13
    end = date(year + 1, 1, 1) if end_month == 13 else date(year, end_month, 1)
    return start, end


def largest_remainder(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Split ``total`` cents by integer ``weights``; the parts add up to ``total`` exactly."""
    weight = sum(weights.values())
    if total < 0 or any(w < 0 for w in weights.values()):
        raise LedgerError("fees and weights must not be negative")
    if weight == 0:
        raise LedgerError("nothing to share by: every weight is zero")
    shares = {k: total * w // weight for k, w in weights.items()}
    left = total - sum(shares.values())
    by_remainder = sorted(weights, key=lambda k: (-(total * weights[k] % weight), k))
    for k in by_remainder[:left]:
        shares[k] += 1
    return shares


def add_licence(
    ledger: Ledger,
    licensee: str,
    release: str,
    fee_cents: int,
    *,
    currency: str = "EUR",
    terms: str = "",
    on: date | None = None,
) -> LedgerEntry:
    if "@" not in release:
        raise LedgerError(f"release {release!r} must name a version, NAME@V")
    if find_release(ledger, release) is None:
        raise LedgerError(
            f"release {release} is not in the log", hint="create it with `curata release create`"
        )
    if fee_cents < 0:
        raise LedgerError("a licence fee cannot be negative")
    when = on or datetime.now(UTC).date()
    payload = {
        "licensee": licensee,
        "release": release,
        "terms": terms,
        "fee_cents": int(fee_cents),
        "currency": currency.upper(),
        "date": when.isoformat(),
    }
    return ledger.append("licence", payload)


def record_usage(ledger: Ledger, licensee: str, release: str, action: str, **detail: Any) -> LedgerEntry:
    return ledger.append("usage", {"licensee": licensee, "release": release, "action": action, **detail})


def _release_name(payload: dict[str, Any]) -> str | None:
    release, version = payload.get("release"), payload.get("version")
    if isinstance(release, str):
        return release if "@" in release or version is None else f"{release}@{version}"
    if "name" in payload and version is not None:
        return f"{payload['name']}@{version}"
    return None


def find_release(ledger: Ledger, release: str) -> LedgerEntry | None:
    found = None
    for e in ledger.entries("release"):
        if _release_name(e.payload) == release:
            found = e
    return found


def site_weights(release_payload: dict[str, Any], rule: str) -> dict[str, int]:
    if rule not in RULES:
        raise LedgerError(f"unknown revenue rule {rule!r}", hint=f"use one of {', '.join(RULES)}")
    sites = release_payload.get("sites")
    if not sites:  # publish's form: one mapping per rule, site -> count
        sites = {k: {rule: v} for k, v in (release_payload.get(f"site_{rule}") or {}).items()}
    if not sites:
        raise LedgerError(f"the release entry gives no per-site {rule.replace('_', ' ')}")
    if isinstance(sites, list):
        sites = {s["site"]: s for s in sites}
    out = {}
    for site, counts in sites.items():
        if isinstance(counts, int):
            counts = {"patients": counts}
        out[str(site)] = int(counts.get(rule, 0) or 0)
    return out


@dataclass
class LicenceLine:
    index: int
    licensee: str
    release: str
    date: str
    currency: str
    fee_cents: int
    shares: dict[str, int]
    weights: dict[str, int]
    unallocated_cents: int = 0
    problem: str = ""


@dataclass
class Statement:
    period: str
    rule: str
    log_size: int
    log_root: str
    licences: list[LicenceLine] = field(default_factory=list)

    def totals(self) -> dict[str, dict[str, int]]:
        """Per currency: each site's share, ``_unallocated`` and ``_fees`` (the licences' sum)."""
        out: dict[str, dict[str, int]] = {}
        for line in self.licences:
            cur = out.setdefault(line.currency, {"_fees": 0, "_unallocated": 0})
            cur["_fees"] += line.fee_cents
            cur["_unallocated"] += line.unallocated_cents
            for site, cents in line.shares.items():
                cur[site] = cur.get(site, 0) + cents
        return out

    @property
    def reconciles(self) -> bool:
        for line in self.licences:
            if sum(line.shares.values()) + line.unallocated_cents != line.fee_cents:
                return False
        for cur in self.totals().values():
            sites = sum(v for k, v in cur.items() if not k.startswith("_"))
            if sites + cur["_unallocated"] != cur["_fees"]:
                return False
        return True

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "rule": self.rule,
            "log": {"size": self.log_size, "root": self.log_root},
            "reconciles": self.reconciles,
            "totals": self.totals(),
            "licences": [line.__dict__ for line in self.licences],
        }


def statement(ledger: Ledger, period: str, *, rule: str = "patients") -> Statement:
    """The period's revenue statement from the log's licence and release entries, up to a fresh checkpoint.

    Refused (``LedgerError``) unless the whole log verifies against its signed checkpoints and tiles.
    """
    if rule not in RULES:
        raise LedgerError(f"unknown revenue rule {rule!r}", hint=f"use one of {', '.join(RULES)}")
    start, end = parse_period(period)
    try:  # refuses to sign a log that contradicts its signed checkpoints
        cp = ledger.checkpoint()
    except LedgerError as exc:
        raise LedgerError(
            f"the log does not verify, no statement made: {exc.message}", hint=exc.hint
        ) from exc
    report = ledger.verify()
    if not report.ok:
        raise LedgerError(
            "the log does not verify, no statement made: " + "; ".join(report.problems[:5]),
            hint="`curata ledger verify` lists every problem; restore the ledger folder from a backup",
        )
    releases: dict[str, LedgerEntry] = {}
    out = Statement(period, rule, cp.size, cp.root_hash.hex())
    for e in ledger.entries():
        if e.index >= cp.size:
            break
        if e.kind == "release" and (name := _release_name(e.payload)):
            releases[name] = e
        if e.kind != "licence":
            continue
        p = e.payload
        on = date.fromisoformat(str(p.get("date") or e.time[:10]))
        if not start <= on < end:
            continue
        fee = int(p["fee_cents"])
        line = LicenceLine(e.index, p["licensee"], p["release"], on.isoformat(), p["currency"], fee, {}, {})
        rel = releases.get(p["release"])
        try:
            if rel is None:
                raise LedgerError(f"release {p['release']} is not logged before licence {e.index}")
            line.weights = site_weights(rel.payload, rule)
            line.shares = largest_remainder(fee, line.weights)
        except LedgerError as exc:
            line.unallocated_cents, line.problem = fee, exc.message
        out.licences.append(line)
    return out

"""Patient-level, stratified, seeded splits.

The unit is the patient: all of a patient's studies and series go to one split, so no patient is ever in
two. Patients are ordered by stratum (e.g. sex, age band, site) and, within a stratum, by a seeded
shuffle; each is then given to the split furthest below its target share of the whole at that point
(systematic sampling over the stratum-sorted list), so the whole, and every stratum, matches the
requested fractions to within about one patient. Assignments carried over from earlier versions are kept
(release.py passes every earlier version's, the latest holding a patient winning), so a withdrawal, an
added patient or a patient who drops out of a version in between never reshuffles anyone.

A patient is a person: the key is the pseudonym, whatever site saw them (the site key is shared, so one
PatientID gets one pseudonym at every site). Pseudonyms under different site prefixes cannot be linked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from curata.errors import ConfigError

SPLIT_NAMES = ("train", "validation", "test")
DEFAULT_SPLIT = "70,15,15"  # train, validation, test shares when none are given
STRATA = ("sex", "age", "site", "region", "country", "vendor", "modality")
AGE_BANDS = ((0, 18, "0-17"), (18, 40, "18-39"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+"))


def age_band(age: float | None) -> str:
    if age is None:
        return "unknown"
    for low, high, label in AGE_BANDS:
        if low <= age < high:
            return label
    return "unknown"


@dataclass(frozen=True)
class SplitSpec:
    """Fractions per split name (summing to 1), the stratification fields and the seed."""

    fractions: tuple[tuple[str, float], ...]
    stratify: tuple[str, ...] = ()
    seed: int = 0

    @classmethod
    def parse(
        cls, split: str | Sequence[float] = DEFAULT_SPLIT, stratify: str | Sequence[str] = (), seed: int = 0
    ) -> SplitSpec:
        if isinstance(split, str):
            try:
                values = [float(v) for v in split.split(",") if v.strip()]
            except ValueError as exc:
                raise ConfigError(f"--split {split!r}: expected numbers like 70,15,15") from exc
        else:
            values = [float(v) for v in split]
        if not 1 <= len(values) <= 3 or any(v < 0 for v in values) or sum(values) <= 0:
            raise ConfigError(
                f"--split {split!r}: give one to three non-negative shares (train,validation,test)",
                hint="for example --split 70,15,15 or --split 80,20",
            )
        total = sum(values)
        fractions = tuple((SPLIT_NAMES[i], v / total) for i, v in enumerate(values))
        fields = tuple(
            s.strip() for s in (stratify.split(",") if isinstance(stratify, str) else stratify) if s.strip()
        )
        unknown = [f for f in fields if f not in STRATA]
        if unknown:
            raise ConfigError(
                f"--stratify: unknown field(s) {', '.join(unknown)}", hint=f"choose from {', '.join(STRATA)}"
            )
        return cls(fractions=fractions, stratify=fields, seed=seed)

    def as_dict(self) -> dict[str, object]:
        return {"fractions": dict(self.fractions), "stratify": list(self.stratify), "seed": self.seed}


@dataclass
class PatientInfo:
    """What stratification needs to know about one patient (already pseudonymous)."""

    key: str  # stable identifier: the person's pseudonym (the same at every site that saw them)
    attributes: Mapping[str, str] = field(default_factory=dict)


def _order_key(seed: int, stratum: tuple[str, ...], key: str) -> str:
    return hashlib.sha256(f"{seed}|{'|'.join(stratum)}|{key}".encode()).hexdigest()


def assign_splits(
    patients: Sequence[PatientInfo], spec: SplitSpec, previous: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Patient key -> split name. Deterministic for a seed; keeps ``previous`` assignments."""
    previous = previous or {}
    names = [n for n, _ in spec.fractions]
    target = dict(spec.fractions)
    keys = {p.key for p in patients}
    out = {k: v for k, v in previous.items() if k in keys and v in target}
    counts = dict.fromkeys(names, 0)
    for split in out.values():
        counts[split] += 1

    def stratum(p: PatientInfo) -> tuple[str, ...]:
        return tuple(str(p.attributes.get(f) or "unknown") for f in spec.stratify)

    todo = sorted(
        (p for p in patients if p.key not in out),
        key=lambda p: (stratum(p), _order_key(spec.seed, stratum(p), p.key)),
    )
    # Per-stratum counts too, so a stratum that arrives later is still balanced within itself.
    strat_counts: dict[tuple[str, ...], dict[str, int]] = {}
    for p in patients:
        if p.key in out:
            strat_counts.setdefault(stratum(p), dict.fromkeys(names, 0))[out[p.key]] += 1
    for p in todo:
        sc = strat_counts.setdefault(stratum(p), dict.fromkeys(names, 0))
        n_total, n_strat = sum(counts.values()) + 1, sum(sc.values()) + 1

        def deficit(
            name: str, sc: dict[str, int] = sc, n_total: int = n_total, n_strat: int = n_strat
        ) -> tuple[float, float, int]:
            # the whole first: walking the stratum-sorted list, this is systematic sampling, so every
            # stratum (a contiguous run) also lands within one patient of its share, and small strata
            # cannot all fall into train; the stratum breaks ties, then split order (train first)
            return (
                round(target[name] * n_total - counts[name], 9),
                target[name] * n_strat - sc[name],
                -names.index(name),
            )

        choice = max((n for n in names if target[n] > 0), key=deficit)
        out[p.key] = choice
        counts[choice] += 1
        sc[choice] += 1
    return out

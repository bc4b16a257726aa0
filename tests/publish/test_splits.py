"""Patient-level, stratified, seeded splits."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curata.errors import ConfigError
from curata.publish.splits import PatientInfo, SplitSpec, age_band, assign_splits


def _patients(n: int, strata: int = 2) -> list[PatientInfo]:
    return [PatientInfo(f"site/P{i:03d}", {"sex": "FM"[i % strata], "site": f"s{i % 3}"}) for i in range(n)]


def test_fractions_are_met_within_one_patient() -> None:
    spec = SplitSpec.parse("70,15,15")
    out = assign_splits(_patients(100), spec)
    counts = Counter(out.values())
    assert (
        abs(counts["train"] - 70) <= 1
        and abs(counts["validation"] - 15) <= 1
        and abs(counts["test"] - 15) <= 1
    )


def test_every_stratum_is_split_in_proportion() -> None:
    spec = SplitSpec.parse("50,50", stratify="sex")
    patients = _patients(40)
    out = assign_splits(patients, spec)
    for sex in "FM":
        counts = Counter(out[p.key] for p in patients if p.attributes["sex"] == sex)
        assert counts["train"] == counts["validation"] == 10


def test_seeded_and_deterministic() -> None:
    patients = _patients(50)
    a = assign_splits(patients, SplitSpec.parse("70,15,15", seed=1))
    b = assign_splits(list(reversed(patients)), SplitSpec.parse("70,15,15", seed=1))
    c = assign_splits(patients, SplitSpec.parse("70,15,15", seed=2))
    assert a == b
    assert a != c


def test_previous_assignments_are_kept() -> None:
    spec = SplitSpec.parse("70,15,15", stratify="sex")
    patients = _patients(30)
    first = assign_splits(patients, spec)
    grown = assign_splits([*patients[1:], *_patients(40)[30:]], spec, previous=first)
    assert all(grown[p.key] == first[p.key] for p in patients[1:])
    assert patients[0].key not in grown


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    seed=st.integers(0, 10_000),
    shares=st.lists(st.integers(0, 10), min_size=1, max_size=3),
)
def test_every_patient_gets_exactly_one_split(n: int, seed: int, shares: list[int]) -> None:
    if sum(shares) == 0:
        shares = [1]
    spec = SplitSpec.parse(shares, stratify="sex,site", seed=seed)
    out = assign_splits(_patients(n), spec)
    assert len(out) == n
    allowed = {name for name, frac in spec.fractions if frac > 0}
    assert set(out.values()) <= allowed


@pytest.mark.parametrize("bad", ["", "a,b", "-1,2", "1,2,3,4", "0,0"])
def test_bad_split_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        SplitSpec.parse(bad)


def test_unknown_stratum_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        SplitSpec.parse("70,30", stratify="sex,shoe_size")


def test_age_bands() -> None:
    assert [age_band(a) for a in (None, 5, 18, 39.9, 64, 80, 101)] == [
        "unknown",
        "0-17",
        "18-39",
        "18-39",
        "60-79",
        "80+",
        "80+",
    ]


def test_many_small_strata_still_fill_every_split() -> None:
    """Singleton strata (e.g. sex x site on a handful of patients) must not all land in train."""
    patients = [PatientInfo(f"s/P{i}", {"sex": "FM"[i % 2], "site": f"site{i}"}) for i in range(20)]
    out = assign_splits(patients, SplitSpec.parse("70,15,15", stratify="sex,site"))
    counts = Counter(out.values())
    assert (
        abs(counts["train"] - 14) <= 1 and abs(counts["validation"] - 3) <= 1 and abs(counts["test"] - 3) <= 1
    )


def test_large_strata_are_each_split_in_proportion() -> None:
    spec = SplitSpec.parse("70,15,15", stratify="site")
    patients = [PatientInfo(f"s/P{i}", {"site": "abc"[i % 3]}) for i in range(300)]
    out = assign_splits(patients, spec)
    for site in "abc":
        counts = Counter(out[p.key] for p in patients if p.attributes["site"] == site)
        assert (
            abs(counts["train"] - 70) <= 2
            and abs(counts["validation"] - 15) <= 2
            and abs(counts["test"] - 15) <= 2
        )

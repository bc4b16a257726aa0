"""Licences and revenue statements: computed from the log alone, reconciling to the cent."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curata.ledger import Ledger, LedgerError
from curata.ledger.revenue import (
    add_licence,
    largest_remainder,
    parse_period,
    record_usage,
    statement,
)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(tmp_path / "ledger", tmp_path / "ledger.key", origin="curata/hub/ledger")
    ledger.append(
        "release",
        {
            "release": "chest-ct@1",
            "name": "chest-ct",
            "version": 1,
            "manifest_root": "00" * 32,
            "sites": {
                "hopital-a": {"patients": 1, "annotated_cases": 1},
                "klinik-b": {"patients": 1, "annotated_cases": 0},
                "ospedale-c": {"patients": 1, "annotated_cases": 2},
            },
        },
    )
    ledger.append("release", {"name": "brain-mr", "version": 2, "sites": {"hopital-a": 30, "klinik-b": 10}})
    # the form `curata release create` logs
    ledger.append(
        "release",
        {"release": "liver", "version": 3, "manifest_sha256": "11" * 32, "site_patients": {"x": 2, "y": 5}},
    )
    return ledger


def test_largest_remainder_examples() -> None:
    assert largest_remainder(100, {"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    assert largest_remainder(1000, {"a": 2, "b": 1}) == {"a": 667, "b": 333}
    assert largest_remainder(5, {"b": 1, "a": 1}) == {"a": 3, "b": 2}  # ties go alphabetically
    with pytest.raises(LedgerError):
        largest_remainder(100, {"a": 0})


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(0, 10**12),
    weights=st.dictionaries(st.text(min_size=1, max_size=6), st.integers(0, 10**6), min_size=1, max_size=12),
)
def test_largest_remainder_reconciles_and_is_fair(total: int, weights: dict[str, int]) -> None:
    if sum(weights.values()) == 0:
        return
    shares = largest_remainder(total, weights)
    assert sum(shares.values()) == total
    w = sum(weights.values())
    for k, share in shares.items():
        exact = total * weights[k] / w
        assert abs(share - exact) < 1 + 1e-9 * exact  # never more than one cent from the exact share


def test_periods() -> None:
    assert parse_period("2026-Q4") == (date(2026, 10, 1), date(2027, 1, 1))
    assert parse_period("2026-02") == (date(2026, 2, 1), date(2026, 3, 1))
    assert parse_period("2026") == (date(2026, 1, 1), date(2027, 1, 1))
    with pytest.raises(LedgerError):
        parse_period("Q4-2026")


def test_statement_pro_rata_to_patients(ledger: Ledger) -> None:
    add_licence(ledger, "acme-ai", "chest-ct@1", 100_000_00, on=date(2026, 11, 3), terms="research only")
    add_licence(ledger, "beta-labs", "brain-mr@2", 999, on=date(2026, 12, 31))
    add_licence(ledger, "acme-ai", "chest-ct@1", 777, on=date(2027, 1, 1))  # next period
    add_licence(ledger, "gamma", "chest-ct@1", 5000, currency="usd", on=date(2026, 10, 1))
    record_usage(ledger, "acme-ai", "chest-ct@1", "export", files=3)
    st_ = statement(ledger, "2026-Q4")
    assert st_.reconciles
    assert [line.licensee for line in st_.licences] == ["acme-ai", "beta-labs", "gamma"]
    eur = st_.totals()["EUR"]
    # 100000.00 / 3 -> 33333.34 + 33333.33 + 33333.33; 9.99 * 30/40 and 10/40 -> 7.49 + 2.50
    assert eur["hopital-a"] == 33_333_34 + 7_49
    assert eur["klinik-b"] == 33_333_33 + 2_50
    assert eur["ospedale-c"] == 33_333_33
    assert eur["_fees"] == 100_000_00 + 999 and eur["_unallocated"] == 0
    assert st_.totals()["USD"]["_fees"] == 5000
    assert st_.log_size == ledger.size  # computed against a checkpoint of the whole log


def test_statement_weighted_by_annotated_cases(ledger: Ledger) -> None:
    add_licence(ledger, "acme-ai", "chest-ct@1", 1000, on=date(2026, 11, 3))
    st_ = statement(ledger, "2026-Q4", rule="annotated_cases")
    # 1000 x 1/3 = 333.3 and 1000 x 2/3 = 666.7: the left-over cent goes to the larger remainder
    assert st_.licences[0].shares == {"hopital-a": 333, "klinik-b": 0, "ospedale-c": 667}
    assert st_.reconciles


def test_licence_needs_a_logged_release(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="not in the log"):
        add_licence(ledger, "acme-ai", "nothing@1", 100)
    with pytest.raises(LedgerError, match="NAME@V"):
        add_licence(ledger, "acme-ai", "chest-ct", 100)
    with pytest.raises(LedgerError, match="rule"):
        statement(ledger, "2026-Q4", rule="vibes")


def test_statement_reads_the_release_entries_publish_writes(ledger: Ledger) -> None:
    add_licence(ledger, "acme-ai", "liver@3", 700, on=date(2026, 12, 1))
    st_ = statement(ledger, "2026-Q4")
    assert st_.licences[0].shares == {"x": 200, "y": 500} and st_.reconciles
    by_cases = statement(ledger, "2026-Q4", rule="annotated_cases")
    # no per-site annotated cases logged: the fee stays unallocated, the statement still reconciles
    assert by_cases.licences[0].unallocated_cents == 700 and "annotated cases" in by_cases.licences[0].problem
    assert by_cases.reconciles

"""Catalog provenance reaches the log once, as digests and commitments only."""

from __future__ import annotations

import json

from curata.catalog import provenance
from curata.ledger import Ledger
from curata.ledger.events import kind_for_step, log_provenance


def test_provenance_rows_are_logged_once_without_identifiers(workspace) -> None:  # type: ignore[no-untyped-def]
    src, out = "a" * 64, "b" * 64
    with workspace.catalog.session() as s:
        provenance.record(
            s,
            "deid",
            [src],
            {"profile": "research"},
            {"blob": out, "record": {"pseudonym": "PSEUDO-123", "PatientName": "DOE^JANE"}},
        )
        provenance.record(
            s, "qc.decide", ["2.25.1234", out], {"ruleset": "r"}, {"passed": False, "decision": "exclude"}
        )
    assert log_provenance(workspace) == 2
    assert log_provenance(workspace) == 0  # idempotent
    ledger = Ledger.open(workspace)
    entries = list(ledger.entries())
    assert [e.kind for e in entries] == ["deid", "qc-decision"]
    deid = entries[0].payload
    assert deid["inputs"] == [src] and deid["outputs"] == [out]
    assert len(deid["record_sha256"]) == 64
    raw = b"".join(e.data for e in entries)
    assert b"PSEUDO-123" not in raw and b"DOE" not in raw and b"exclude" not in raw
    # the QC decision is there as a commitment the site can reproduce
    assert ledger.commit("exclude") in entries[1].payload["outputs"]
    assert entries[1].payload["values"] == {"passed": False}
    assert entries[1].payload["inputs"] == [ledger.commit("2.25.1234"), out]  # UIDs only as commitments
    with workspace.catalog.session() as s:
        provenance.record(s, "ingest", ["c" * 64], {}, {"blob": "d" * 64})
        assert log_provenance(workspace, s) == 1
    assert json.loads(Ledger.open(workspace).entry(2).data)["kind"] == "ingest"
    assert Ledger.open(workspace).verify().ok


def test_kinds_for_steps() -> None:
    assert kind_for_step("deid") == "deid"
    assert kind_for_step("qc") == "qc-decision"
    assert kind_for_step("resample") == "provenance"

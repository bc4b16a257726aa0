"""The witness cosigns consistent checkpoints and refuses forks, rollbacks and forged signatures."""

from __future__ import annotations

from pathlib import Path

import pytest

from curata.ledger import Ledger
from curata.ledger import verify_standalone as vs
from curata.ledger.witness import Witness, WitnessRefusal, witness_checkpoint


def make(root: Path, key: Path) -> Ledger:
    return Ledger(root, key, origin="curata/site-a/ledger")


def add(ledger: Ledger, start: int, n: int) -> None:
    ledger.append_many([("ingest", {"blob": f"{i:064x}"}) for i in range(start, start + n)])


def test_witness_cosigns_a_growing_log(tmp_path: Path) -> None:
    ledger = make(tmp_path / "log", tmp_path / "log.key")
    witness = Witness.init(tmp_path / "witness", "hospital-b.example/witness")
    add(ledger, 0, 10)
    cp = witness_checkpoint(ledger, witness)
    add(ledger, 10, 7)
    cp2 = witness_checkpoint(ledger, witness)
    assert (cp.size, cp2.size) == (10, 17)
    assert witness.last_seen(ledger.origin).size == 17
    stored = (tmp_path / "log" / "checkpoint").read_text()
    head = vs.verify_checkpoint(stored, ledger.verifier.vkey, [witness.vkey])
    assert head["witnesses"] == ["hospital-b.example/witness"] and head["size"] == 17
    # a receipt issued now carries the cosignature, and a verifier can demand it
    receipt = ledger.receipt(12).decode()
    assert vs.verify_receipt(receipt, ledger.verifier.vkey, witnesses=[witness.vkey])["index"] == 12
    assert ledger.verify().ok


def test_witness_refuses_a_forked_history(tmp_path: Path) -> None:
    key = tmp_path / "log.key"
    honest = make(tmp_path / "log", key)
    witness = Witness.init(tmp_path / "witness", "hospital-b.example/witness")
    add(honest, 0, 10)
    witness_checkpoint(honest, witness)
    # the operator (same key) presents a history where entry 4 was rewritten
    fork = make(tmp_path / "fork", key)
    fork.append_many([("ingest", {"blob": f"{(i if i != 4 else 999):064x}"}) for i in range(12)])
    forged = fork.checkpoint()
    with pytest.raises(WitnessRefusal, match="inconsistent"):
        witness.cosign(forged.note, fork.verifier.vkey, fork.consistency(10, 12))
    with pytest.raises(WitnessRefusal, match="inconsistent"):
        witness_checkpoint(fork, witness)
    assert witness.last_seen(honest.origin).size == 10  # the refusal changed nothing


def test_witness_refuses_rollback_and_bad_signatures(tmp_path: Path) -> None:
    key = tmp_path / "log.key"
    ledger = make(tmp_path / "log", key)
    witness = Witness.init(tmp_path / "witness", "hospital-b.example/witness")
    add(ledger, 0, 10)
    witness_checkpoint(ledger, witness)
    smaller = make(tmp_path / "old", key)
    add(smaller, 0, 6)
    with pytest.raises(WitnessRefusal):
        witness.cosign(smaller.checkpoint().note, smaller.verifier.vkey, [])
    note = ledger.checkpoint().note
    tampered = note.replace("\n10\n", "\n11\n")
    with pytest.raises(WitnessRefusal, match="signature"):
        witness.cosign(tampered, ledger.verifier.vkey, [])
    impostor = Ledger(tmp_path / "imp", tmp_path / "imp.key", origin="curata/site-a/ledger")
    add(impostor, 0, 12)
    with pytest.raises(WitnessRefusal, match="changed its key"):
        witness.cosign(impostor.checkpoint().note, impostor.verifier.vkey, [])

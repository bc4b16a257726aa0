"""The durable log: appends survive reopen and SIGKILL, torn tails are repaired, tampering is caught."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curata.errors import KeyFileError
from curata.ledger import Ledger, LedgerError
from curata.ledger import verify_standalone as vs
from curata.ledger.merkle import MerkleTree


def make(tmp_path: Path, **kw: object) -> Ledger:
    return Ledger(tmp_path / "ledger", tmp_path / "keys" / "ledger.key", origin="curata/test/ledger", **kw)  # type: ignore[arg-type]


def blob(i: int) -> dict[str, str]:
    return {"blob": f"{i:064x}"}


def test_append_reopen_and_entries(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    first = ledger.append("ingest", blob(0))
    more = ledger.append_many([("deid", blob(i)) for i in range(1, 5)])
    assert first.index == 0 and [e.index for e in more] == [1, 2, 3, 4]
    again = make(tmp_path)
    assert again.size == 5
    assert again.entry(3).payload == blob(3) and again.entry(3).kind == "deid"
    assert again.tree.root() == MerkleTree(e.leaf_hash for e in again.entries()).root()
    assert (tmp_path / "keys" / "ledger.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ledger" / "log.vkey").read_text().strip() == again.verifier.vkey


def test_entries_refuse_patient_data_and_unknown_kinds(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    with pytest.raises(LedgerError, match="no patient data"):
        ledger.append("deid", {"record": {"PatientName": "DOE^JANE"}})
    with pytest.raises(LedgerError, match="no patient data"):
        ledger.append("release", {"patients": [{"pseudonym": "P-123"}]})
    with pytest.raises(LedgerError, match="unknown entry kind"):
        ledger.append("gossip", {})
    assert ledger.size == 0


def test_commitments_are_keyed(tmp_path: Path) -> None:
    a = make(tmp_path, commitment_key=b"k" * 32)
    b = Ledger(tmp_path / "l2", tmp_path / "k2", commitment_key=b"j" * 32)
    assert a.commit("P-1") == a.commit("P-1") != a.commit("P-2")
    assert a.commit("P-1") != b.commit("P-1")  # nobody without the site secret can test guesses
    with pytest.raises(KeyFileError):
        make(tmp_path / "x").commit("P-1")


def test_a_foreign_key_cannot_take_over_a_log(tmp_path: Path) -> None:
    make(tmp_path).append("ingest", blob(1))
    (tmp_path / "keys" / "ledger.key").unlink()
    with pytest.raises(KeyFileError, match="does not match"):
        make(tmp_path)


def test_torn_tails_are_repaired(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    ledger.append_many([("ingest", blob(i)) for i in range(10)])
    ledger.checkpoint()
    entries = tmp_path / "ledger" / "data" / "entries.bin"
    index = tmp_path / "ledger" / "data" / "index.bin"
    good_entries, good_index = entries.stat().st_size, index.stat().st_size
    # 1. a torn entry record (killed mid-write): truncated away
    with open(entries, "ab") as fh:
        fh.write(struct.pack(">I", 500) + b'{"half an entry')
    # 2. a torn index record as well
    with open(index, "ab") as fh:
        fh.write(b"\x00" * 17)
    reopened = make(tmp_path)
    assert reopened.size == 10
    assert entries.stat().st_size == good_entries and index.stat().st_size == good_index
    assert reopened.verify().ok
    # 3. a complete entry record whose index record never made it: replayed into the index
    data = json.dumps(
        {"v": 1, "kind": "ingest", "time": "2026-11-22T00:00:00Z", "payload": blob(10)}
    ).encode()
    import hashlib

    head = struct.pack(">I", len(data))
    with open(entries, "ab") as fh:
        fh.write(head + data + hashlib.sha256(head + data).digest()[:8])
    replayed = make(tmp_path)
    assert replayed.size == 11 and replayed.entry(10).payload == blob(10)
    # never acknowledged, so never signed: verify names it until a checkpoint covers it
    assert [p.split(":")[0] for p in replayed.verify().problems] == ["entry 10"]
    replayed.checkpoint()
    assert replayed.verify().ok
    # 4. a record whose checksum fails is a torn write too: dropped
    with open(entries, "ab") as fh:
        fh.write(head + data + b"\x00" * 8)
    assert make(tmp_path).size == 11


WRITER = r"""
import sys
from pathlib import Path
from curata.ledger import Ledger
root = Path(sys.argv[1]); start = int(sys.argv[2])
ledger = Ledger(root / "ledger", root / "keys" / "ledger.key", origin="curata/test/ledger")
i = start
while True:
    batch = [("ingest", {"blob": f"{j:064x}", "pad": "x" * (j % 900)}) for j in range(i, i + 1 + i % 7)]
    ledger.append_many(batch)
    i += len(batch)
    print(i, flush=True)
"""


@pytest.mark.parametrize("rounds", [4])
def test_sigkill_mid_appends_never_leaves_a_torn_log(tmp_path: Path, rounds: int) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    acknowledged = 0
    for r in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(acknowledged)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line and int(line) >= acknowledged + 60 + 37 * r:
                break
        os.kill(proc.pid, signal.SIGKILL)  # mid-append, somewhere
        proc.wait()
        acked_now = int(line)
        ledger = make(tmp_path)
        # everything acknowledged survived, in order; anything past it is whole or gone
        assert ledger.size >= acked_now
        for i in (0, acked_now // 2, acked_now - 1):
            assert ledger.entry(i).payload["blob"] == f"{i:064x}"
        # acknowledged entries were signed before the writer printed them; a batch written but not yet
        # signed when the kill came is whole, and verify names it as covered by no checkpoint
        signed = ledger.load_checkpoint()
        assert signed is not None and signed.size >= acked_now
        report = ledger.verify()
        assert all("no signed checkpoint covers" in p for p in report.problems), report.problems
        assert report.ok == (signed.size == ledger.size)
        acknowledged = ledger.size
        ledger.checkpoint()
    assert acknowledged >= 60


def test_tampering_with_any_entry_is_detected(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    ledger.append_many([("ingest", blob(i)) for i in range(40)])
    ledger.checkpoint()
    entries = tmp_path / "ledger" / "data" / "entries.bin"
    pristine = entries.read_bytes()
    for i in (0, 17, 39):
        off = ledger._offsets[i] + 20  # a byte inside entry i's JSON
        data = bytearray(pristine)
        data[off] ^= 0x01
        entries.write_bytes(bytes(data))
        report = make(tmp_path).verify()
        assert not report.ok
        assert any(f"entry {i}:" in p for p in report.problems)
    entries.write_bytes(pristine)
    assert make(tmp_path).verify().ok


def test_a_rewritten_history_contradicts_the_signed_checkpoints(tmp_path: Path) -> None:
    """Even rewriting entries *and* index consistently fails: the signed roots no longer match."""
    ledger = make(tmp_path)
    ledger.append_many([("ingest", blob(i)) for i in range(8)])
    old_note = ledger.checkpoint().note
    forged_root = tmp_path / "forged"
    forged = Ledger(forged_root, tmp_path / "keys" / "ledger.key")
    forged.append_many([("ingest", blob(i if i != 3 else 99)) for i in range(8)])
    for name in ("entries.bin", "index.bin"):
        (tmp_path / "ledger" / "data" / name).write_bytes((forged_root / "data" / name).read_bytes())
    report = make(tmp_path).verify()
    assert not report.ok
    assert any("signed checkpoint of size 8" in p for p in report.problems)
    # and a party holding the old checkpoint sees the rewrite with --from even if checkpoints vanish
    for p in (tmp_path / "ledger" / "checkpoints").iterdir():
        p.unlink()
    (tmp_path / "ledger" / "checkpoint").unlink()
    report = make(tmp_path).verify(old_note)
    assert any("not consistent" in p for p in report.problems)


def test_verify_from_a_later_checkpoint_catches_rollback(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    ledger.append_many([("ingest", blob(i)) for i in range(5)])
    early = ledger.checkpoint().note
    ledger.append("usage", {"licensee": "acme", "release": "x@1", "action": "download"})
    late = ledger.checkpoint().note
    assert ledger.verify(early).ok and ledger.verify(late).ok
    rolled_back = Ledger(tmp_path / "old", tmp_path / "keys" / "ledger.key")
    rolled_back.append_many([("ingest", blob(i)) for i in range(5)])
    assert any("rolled back" in p for p in rolled_back.verify(late).problems)


def test_proofs_and_receipts(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    ledger.append_many([("ingest", blob(i)) for i in range(300)])
    proof = ledger.prove(123)  # signs a covering checkpoint on demand
    assert proof.size == 300
    proof.verify(ledger.verifier)
    vs.verify_inclusion(proof.leaf_hash, 123, proof.hashes, proof.checkpoint.note, ledger.verifier.vkey)
    with pytest.raises(vs.VerificationError):
        vs.verify_inclusion(proof.leaf_hash, 124, proof.hashes, proof.checkpoint.note, ledger.verifier.vkey)
    ledger.append("ingest", blob(300))
    c = ledger.consistency(300, 301)
    vs.verify_consistency_proof(300, 301, ledger.tree.root(300), ledger.tree.root(301), c)
    receipt = ledger.receipt(300).decode()
    assert receipt.startswith("c2sp.org/tlog-proof@v1\nextra ") and "\nindex 300\n" in receipt
    out = vs.verify_receipt(receipt, ledger.verifier.vkey)
    assert out["index"] == 300 and out["size"] == 301 and out["entry"]["payload"] == blob(300)


CONCURRENT = r"""
import sys
from pathlib import Path
from curata.ledger import Ledger
root, who = Path(sys.argv[1]), sys.argv[2]
ledger = Ledger(root / "ledger", root / "keys" / "ledger.key", origin="curata/test/ledger", fsync=False)
for i in range(150):
    ledger.append("usage", {"licensee": who, "n": i})
"""


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    """Two processes opening a fresh log and appending at once: one key, every entry, a valid tree."""
    script = tmp_path / "concurrent.py"
    script.write_text(CONCURRENT)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), who]) for who in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    ledger = make(tmp_path)
    assert ledger.size == 300
    seen = sorted((e.payload["licensee"], e.payload["n"]) for e in ledger.entries())
    assert seen == sorted((w, i) for w in "ab" for i in range(150))
    assert ledger.verify().ok

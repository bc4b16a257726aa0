"""No entry outlives its command unsigned; nothing is signed over a log that contradicts its checkpoints.

The tampering here is the careful kind (outside review 16, F5 F6): entries *and* index rewritten
consistently, record checksums and leaf hashes recomputed, so only the signed checkpoints can tell.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from datetime import date
from pathlib import Path

import pytest

from curata.ledger import Ledger, LedgerError
from curata.ledger.revenue import add_licence, statement

RELEASE = {"release": "chest-ct@1", "sites": {"site-a": 2, "site-b": 1}}


def make(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger", tmp_path / "keys" / "ledger.key", origin="curata/test/ledger")


def _records(data: Path) -> tuple[bytes, list[tuple[int, bytes]]]:
    idx = (data / "index.bin").read_bytes()
    return (data / "entries.bin").read_bytes(), [
        struct.unpack_from(">Q32s", idx, k) for k in range(0, len(idx), 40)
    ]


def _write(data: Path, bodies: list[bytes], *, index: bool = True) -> None:
    out, newidx = bytearray(), bytearray()
    for body in bodies:
        head = struct.pack(">I", len(body))
        newidx += struct.pack(">Q32s", len(out), hashlib.sha256(b"\x00" + body).digest())
        out += head + body + hashlib.sha256(head + body).digest()[:8]
    (data / "entries.bin").write_bytes(bytes(out))
    if index:
        (data / "index.bin").write_bytes(bytes(newidx))


def _bodies(data: Path) -> list[bytes]:
    ent, recs = _records(data)
    return [ent[off + 4 : off + 4 + struct.unpack_from(">I", ent, off)[0]] for off, _ in recs]


def truncate_last(ledger: Ledger) -> None:
    """Remove the last entry from entries.bin and index.bin together (a clean, consistent cut)."""
    _write(ledger.data, _bodies(ledger.data)[:-1])


def edit(ledger: Ledger, i: int, old: str, new: str, *, index: bool = True) -> None:
    """Rewrite entry ``i`` with its checksum and (``index``) its leaf hash recomputed."""
    bodies = _bodies(ledger.data)
    assert old.encode() in bodies[i]
    bodies[i] = bodies[i].replace(old.encode(), new.encode(), 1)
    _write(ledger.data, bodies, index=index)


def smuggle(ledger: Ledger, kind: str, payload: dict[str, object]) -> None:
    """Add a well-formed entry to the files behind the log's back (nothing signs it)."""
    body = json.dumps(
        {"v": 1, "kind": kind, "time": "2026-11-20T00:00:00Z", "payload": payload},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    _write(ledger.data, [*_bodies(ledger.data), body])


def licensed(tmp_path: Path) -> Ledger:
    ledger = make(tmp_path)
    ledger.append("release", RELEASE)
    add_licence(ledger, "acme", "chest-ct@1", 10000, on=date(2026, 11, 20))
    ledger.checkpoint()  # a no-op where the append signed already
    return ledger


# -- F5: every command's entries are signed when it returns ----------------------------------------
def test_every_append_returns_signed(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    ledger.append("release", RELEASE)
    assert ledger.load_checkpoint().size == 1  # type: ignore[union-attr]
    add_licence(ledger, "acme", "chest-ct@1", 5000, on=date(2026, 11, 20))
    assert ledger.load_checkpoint().size == 2  # type: ignore[union-attr]
    ledger.append_many([("ingest", {"blob": f"{i:064x}"}) for i in range(50)])
    assert ledger.load_checkpoint().size == 52  # type: ignore[union-attr]
    # one checkpoint per call, not per entry: a batch of 50 signs once
    assert ledger.checkpoint_sizes() == [1, 2, 52]
    assert make(tmp_path).verify().ok


def test_removing_the_last_licence_is_caught(tmp_path: Path) -> None:
    """licence 100, checkpoint, licence 50, cut the 50 off consistently: verify must see it."""
    ledger = licensed(tmp_path)
    add_licence(ledger, "acme", "chest-ct@1", 5000, on=date(2026, 11, 21))
    truncate_last(ledger)
    reopened = make(tmp_path)
    assert reopened.size == 2
    report = reopened.verify()
    assert not report.ok
    assert any("size 3" in p and "2" in p for p in report.problems), report.problems
    with pytest.raises(LedgerError, match="does not verify"):
        statement(reopened, "2026")


def test_a_log_shorter_than_the_latest_checkpoint_is_caught(tmp_path: Path) -> None:
    """Deleting checkpoints/<size> is not enough: the latest checkpoint file still names the size."""
    ledger = licensed(tmp_path)
    add_licence(ledger, "acme", "chest-ct@1", 5000, on=date(2026, 11, 21))
    ledger.checkpoint()
    truncate_last(ledger)
    (ledger.folder / "checkpoints" / "3").unlink()
    report = make(tmp_path).verify()
    assert not report.ok
    assert any("latest checkpoint" in p and "3" in p for p in report.problems), report.problems


def test_entries_no_checkpoint_covers_are_a_finding(tmp_path: Path) -> None:
    ledger = licensed(tmp_path)
    smuggle(ledger, "licence", {"licensee": "x", "release": "chest-ct@1", "fee_cents": 1, "currency": "EUR",
                                "date": "2026-11-22", "terms": ""})  # fmt: skip
    report = make(tmp_path).verify()
    assert report.size == 3 and not report.ok
    assert any("entry 2" in p and "no signed checkpoint" in p for p in report.problems), report.problems


# -- F6: nothing is signed, and no statement made, over a log that contradicts its checkpoints -----
def test_checkpoint_refuses_to_sign_over_an_edited_entry(tmp_path: Path) -> None:
    ledger = licensed(tmp_path)
    signed = ledger.load_checkpoint()
    assert signed is not None and signed.size == 2
    edit(ledger, 1, '"fee_cents":10000', '"fee_cents":990000')
    tampered = make(tmp_path)
    with pytest.raises(LedgerError, match="checkpoint"):
        tampered.checkpoint()
    with pytest.raises(LedgerError, match="checkpoint"):
        tampered.append("usage", {"licensee": "acme", "release": "chest-ct@1", "action": "download"})
    assert tampered.size == 2 and make(tmp_path).size == 2  # nothing appended onto the rewrite
    assert tampered.checkpoint_sizes() == [1, 2]
    assert tampered.load_checkpoint() == signed


def test_checkpoint_refuses_an_edit_hidden_behind_a_new_entry(tmp_path: Path) -> None:
    """The edit and an extra entry: the new head would differ in size, still not signed."""
    ledger = licensed(tmp_path)
    edit(ledger, 1, '"fee_cents":10000', '"fee_cents":990000')
    smuggle(ledger, "usage", {"licensee": "acme", "release": "chest-ct@1", "action": "download"})
    tampered = make(tmp_path)
    assert tampered.size == 3
    with pytest.raises(LedgerError, match="not consistent"):
        tampered.checkpoint()
    assert tampered.checkpoint_sizes() == [1, 2]


def test_statement_refuses_a_rewritten_fee(tmp_path: Path) -> None:
    ledger = licensed(tmp_path)
    assert statement(ledger, "2026").totals()["EUR"]["_fees"] == 10000
    edit(ledger, 1, '"fee_cents":10000', '"fee_cents":990000')
    with pytest.raises(LedgerError, match="does not verify"):
        statement(make(tmp_path), "2026")
    assert make(tmp_path).checkpoint_sizes() == [1, 2]


def test_statement_refuses_entries_edited_under_an_intact_index(tmp_path: Path) -> None:
    ledger = licensed(tmp_path)
    edit(ledger, 1, '"fee_cents":10000', '"fee_cents":990000', index=False)
    with pytest.raises(LedgerError, match="does not verify"):
        statement(make(tmp_path), "2026")


# -- the same through the CLI: exit codes ---------------------------------------------------------
def test_cli_catches_a_removed_licence_and_refuses_a_statement(workspace) -> None:  # type: ignore[no-untyped-def]
    from tests.ledger.test_cli import cli

    ws = str(workspace.root)
    Ledger.open(workspace).append("release", RELEASE)
    add = ("licence", "add", "--licensee", "acme", "--release", "chest-ct@1", "--date", "2026-11-20")
    assert cli(*add, "--fee", "100", "-w", ws)[0] == 0
    assert cli("ledger", "checkpoint", "-w", ws)[0] == 0
    assert cli(*add, "--fee", "50", "-w", ws)[0] == 0
    code, out = cli("licence", "list", "--json", "-w", ws)
    assert code == 0 and [r["fee_cents"] for r in json.loads(out)] == [10000, 5000]
    ledger = Ledger.open(workspace)
    truncate_last(ledger)
    code, out = cli("ledger", "verify", "--json", "-w", ws)
    assert code == 1 and any("size 3" in p for p in json.loads(out)["problems"]), out
    code, out = cli("revenue", "statement", "--period", "2026", "--json", "-w", ws)
    assert code != 0 and "does not verify" in out


def test_cli_statement_refuses_an_edited_fee(workspace) -> None:  # type: ignore[no-untyped-def]
    from tests.ledger.test_cli import cli

    ws = str(workspace.root)
    ledger = Ledger.open(workspace)
    ledger.append("release", RELEASE)
    add = ("licence", "add", "--licensee", "acme", "--release", "chest-ct@1", "--date", "2026-11-20")
    assert cli(*add, "--fee", "100", "-w", ws)[0] == 0
    edit(ledger, 1, '"fee_cents":10000', '"fee_cents":990000')
    code, out = cli("revenue", "statement", "--period", "2026", "--json", "-w", ws)
    assert code != 0 and "does not verify" in out and "990000" not in out
    assert Ledger.open(workspace).checkpoint_sizes() == [1, 2]


# -- the limit: a wholesale rollback of log and checkpoints, caught only by a copy held elsewhere ----
def test_a_wholesale_rollback_needs_a_copy_held_elsewhere(tmp_path: Path) -> None:
    from curata.ledger.witness import Witness, WitnessRefusal, witness_checkpoint

    ledger = licensed(tmp_path)
    witness = Witness.init(tmp_path / "witness", "hospital-b.example/witness")
    witness_checkpoint(ledger, witness)
    earlier = tmp_path / "earlier"  # the folder as it was at the signed state of size 2
    shutil.copytree(ledger.folder, earlier)
    add_licence(ledger, "acme", "chest-ct@1", 5000, on=date(2026, 11, 21))
    later = witness_checkpoint(ledger, witness).note
    # roll everything in the folder back to the signed state of size 2 (the folder kept no narrower
    # partial tiles: the attacker restores the earlier copy whole)
    shutil.rmtree(ledger.folder)
    shutil.copytree(earlier, ledger.folder)
    rolled = make(tmp_path)
    assert rolled.verify().ok  # the folder alone cannot tell (README: the limit)
    assert any("rolled back" in p for p in rolled.verify(later).problems)  # a licensee's copy can
    rolled.append("usage", {"licensee": "acme", "release": "chest-ct@1", "action": "download"})
    with pytest.raises(WitnessRefusal, match="inconsistent"):  # and so can the witness
        witness_checkpoint(rolled, witness)

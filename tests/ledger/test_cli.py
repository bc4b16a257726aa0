"""`curata ledger`, `curata licence` and `curata revenue` end to end on a real workspace."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from curata.cli import app
from curata.errors import CurataError
from curata.ledger import Ledger
from curata.ledger import verify_standalone as vs

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if isinstance(result.exception, CurataError):  # `curata` (cli.main) prints these and exits
        return result.exception.exit_code, str(result.exception)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_ledger_commands(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = str(workspace.root)
    ledger = Ledger.open(workspace)
    ledger.append("release", {"release": "chest-ct@1", "sites": {"site-a": 2, "site-b": 1}})
    code, out = cli("licence", "add", "--licensee", "acme-ai", "--release", "chest-ct@1", "--fee", "100.00",
                    "--date", "2026-11-20", "--json", "-w", ws)  # fmt: skip
    assert code == 0 and json.loads(out)["payload"]["fee_cents"] == 10000
    code, out = cli(
        "licence", "add", "--licensee", "x", "--release", "chest-ct@1", "--fee", "1.005", "-w", ws
    )
    assert code != 0 and "whole number of cents" in out
    code, out = cli("revenue", "statement", "--period", "2026-Q4", "--json", "-w", ws)
    assert code == 0, out
    st = json.loads(out)
    assert (
        st["reconciles"] and st["totals"]["EUR"]["site-a"] == 6667 and st["totals"]["EUR"]["site-b"] == 3333
    )

    code, out = cli("ledger", "checkpoint", "-w", ws)
    assert code == 0 and out.startswith(f"{ledger.origin}\n2\n")
    code, vkey = cli("ledger", "key", "-w", ws)
    receipt = tmp_path / "licence.tlog-proof"
    code, out = cli("ledger", "proof", "1", "-o", str(receipt), "-w", ws)
    assert code == 0 and receipt.exists()
    assert vs.verify_receipt(receipt.read_text(), vkey.strip())["entry"]["kind"] == "licence"
    code, out = cli("ledger", "entries", "--json", "-w", ws)
    assert [e["kind"] for e in json.loads(out)] == ["release", "licence"]

    witness = tmp_path / "witness"
    code, out = cli("ledger", "witness", "init", str(witness), "--name", "hospital-b.example/witness")
    assert code == 0
    code, out = cli("ledger", "witness", "cosign", str(witness), "-w", ws)
    assert code == 0 and "— hospital-b.example/witness " in out
    early = tmp_path / "early.checkpoint"
    early.write_text(out)
    # a second, remote witness: cosigns a checkpoint file, the log stores the cosignature
    remote = tmp_path / "remote"
    cli("ledger", "witness", "init", str(remote), "--name", "clinic-c.example/witness")
    code, out = cli(
        "ledger", "witness", "cosign", str(remote), "--checkpoint", str(early), "--log-key", vkey.strip()
    )
    assert code == 0
    (tmp_path / "cosigned").write_text(out)
    code, out = cli("ledger", "add-cosignature", str(tmp_path / "cosigned"), "-w", ws)
    assert code == 0 and "— clinic-c.example/witness " in out and "— hospital-b.example/witness " in out

    code, out = cli("ledger", "verify", "--from", str(early), "--json", "-w", ws)
    assert code == 0 and json.loads(out)["ok"]
    code, wkey = cli("ledger", "witness", "key", str(witness))
    code, out = cli("ledger", "verify", "--witness", wkey.strip(), "--json", "-w", ws)
    assert code == 0, out
    ledger.append("usage", {"licensee": "acme-ai", "release": "chest-ct@1", "action": "download"})
    cli("ledger", "checkpoint", "-w", ws)  # a newer head nobody has cosigned yet
    code, out = cli("ledger", "verify", "--witness", wkey.strip(), "--json", "-w", ws)
    assert code == 1 and "has not cosigned" in out
    entries = workspace.root / "ledger" / "data" / "entries.bin"
    data = bytearray(entries.read_bytes())
    data[30] ^= 1
    entries.write_bytes(bytes(data))
    code, out = cli("ledger", "verify", "--json", "-w", ws)
    assert code == 1 and any("entry 0" in p for p in json.loads(out)["problems"])


def test_append_events_command(workspace) -> None:  # type: ignore[no-untyped-def]
    from curata.catalog import provenance

    with workspace.catalog.session() as s:
        provenance.record(s, "deid", ["a" * 64], {}, {"blob": "b" * 64})
    code, out = cli("ledger", "append-events", "--json", "-w", str(workspace.root))
    assert code == 0 and json.loads(out)["appended"] == 1

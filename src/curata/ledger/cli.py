"""`curata ledger ...`, `curata licence ...` and `curata revenue ...`: the log from the command line."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from curata.cli_common import finish, workspace_option
from curata.console import RunSummary, console, print_table, status
from curata.errors import InputError

ledger_app = typer.Typer(
    help="The transparency log: verify, prove, checkpoint, witness.", no_args_is_help=True
)
witness_app = typer.Typer(
    help="Run a witness that cosigns only consistent checkpoints.", no_args_is_help=True
)
licence_app = typer.Typer(help="Licences of releases, recorded in the log.", no_args_is_help=True)
revenue_app = typer.Typer(help="Revenue statements computed from the log.", no_args_is_help=True)
ledger_app.add_typer(witness_app, name="witness")

WS = workspace_option()
JSON = typer.Option(False, "--json", help="Print JSON.")


def _ledger(workspace: Path | None):  # type: ignore[no-untyped-def]
    from curata.ledger import Ledger
    from curata.workspace import Workspace

    return Ledger.open(Workspace.find(workspace))


@ledger_app.command("verify")
def verify_cmd(
    from_checkpoint: Path = typer.Option(
        None, "--from", help="A checkpoint seen earlier: the log must still extend it."
    ),
    witness: list[str] = typer.Option(
        [], "--witness", help="A witness vkey that must have cosigned the latest checkpoint (repeatable)."
    ),
    as_json: bool = JSON,
    workspace: Path | None = WS,
) -> None:
    """Re-read every entry and check the tree against every signed checkpoint and published tile."""
    from curata.ledger.note import Verifier

    ledger = _ledger(workspace)
    note = from_checkpoint.read_text() if from_checkpoint else None
    with status("verifying the log"):
        report = ledger.verify(note)
    if witness:
        latest = ledger.load_checkpoint()
        verifiers = [Verifier.from_vkey(v) for v in witness]
        cosigned = latest.cosigners(verifiers) if latest else []
        for v in verifiers:
            if v.name not in cosigned:
                report.problems.append(f"witness {v.name} has not cosigned the latest checkpoint")
    summary = RunSummary("ledger verify", failure_keys=("problems",))
    summary.add("entries", report.entries_checked)
    summary.add("checkpoints", report.checkpoints_checked)
    summary.add("problems", len(report.problems))
    summary.extra["root"] = report.root
    if as_json:
        finish(report.as_dict(), as_json=True)
    else:
        for p in report.problems:
            console.print(f"[red]problem[/] {p}")
        summary.render()
    finish(None, failed=not report.ok)


@ledger_app.command("proof")
def proof_cmd(
    entry: int = typer.Argument(..., help="The entry's index in the log."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the .tlog-proof receipt here."),
    as_json: bool = JSON,
    workspace: Path | None = WS,
) -> None:
    """An inclusion proof of ENTRY in the latest signed checkpoint, as a .tlog-proof receipt."""
    ledger = _ledger(workspace)
    receipt = ledger.receipt(entry)
    if out:
        from curata.ledger.tiles import write_atomic

        write_atomic(out, receipt)
    if as_json:
        finish(
            {**ledger.prove(entry).as_dict(), "entry": ledger.entry(entry).as_dict(), "file": out},
            as_json=True,
        )
    elif not out:
        typer.echo(receipt.decode(), nl=False)
    else:
        console.print(f"receipt for entry {entry} written to {out}")
        console.print(f"check it: python verify_standalone.py receipt {out} --key '{ledger.verifier.vkey}'")


@ledger_app.command("checkpoint")
def checkpoint_cmd(as_json: bool = JSON, workspace: Path | None = WS) -> None:
    """Sign the current tree head and publish the tiles; prints the signed checkpoint."""
    ledger = _ledger(workspace)
    cp = ledger.checkpoint()
    if as_json:
        finish(
            {"origin": cp.origin, "size": cp.size, "root": cp.root_hash.hex(), "note": cp.note}, as_json=True
        )
    else:
        typer.echo(cp.note, nl=False)


@ledger_app.command("key")
def key_cmd(workspace: Path | None = WS) -> None:
    """Print the log's public key (vkey), the one verifiers need."""
    typer.echo(_ledger(workspace).verifier.vkey)


@ledger_app.command("entries")
def entries_cmd(
    kind: str = typer.Option(None, "--kind", help="Only entries of this kind."),
    limit: int = typer.Option(50, "--limit", help="The last N entries (0: all)."),
    as_json: bool = JSON,
    workspace: Path | None = WS,
) -> None:
    """List the log's entries."""
    rows = [e.as_dict() for e in _ledger(workspace).entries(kind)]
    rows = rows[-limit:] if limit else rows
    if as_json:
        finish(rows, as_json=True)
    else:
        print_table(
            [{**r, "leaf_hash": r["leaf_hash"][:16], "payload": str(r["payload"])[:80]} for r in rows],
            title="ledger entries",
            columns=["index", "kind", "time", "leaf_hash", "payload"],
        )


@ledger_app.command("append-events")
def append_events_cmd(as_json: bool = JSON, workspace: Path | None = WS) -> None:
    """Append an entry for every catalog provenance record (deid, ingest, QC...) not logged yet."""
    from curata.ledger.events import log_provenance
    from curata.workspace import Workspace

    summary = RunSummary("ledger append-events")
    summary.add("appended", log_provenance(Workspace.find(workspace)))
    finish(summary, as_json=as_json)


@witness_app.command("init")
def witness_init(
    folder: Path = typer.Argument(..., help="The witness's own folder (at the hospital running it)."),
    name: str = typer.Option(..., "--name", help="Witness name, e.g. hospital-b.example/witness."),
) -> None:
    """Create a witness: a cosigning key and an empty memory of the logs it watches."""
    from curata.ledger.witness import Witness

    w = Witness.init(folder, name)
    console.print(f"witness {w.name} ready; its public key:")
    typer.echo(w.vkey)


@witness_app.command("cosign")
def witness_cosign(
    folder: Path = typer.Argument(..., help="The witness's folder."),
    checkpoint: Path = typer.Option(
        None, "--checkpoint", help="A signed checkpoint file (default: the workspace log's latest)."
    ),
    proof: Path = typer.Option(
        None, "--proof", help="Consistency proof file (hex hashes, one a line) from the last size seen."
    ),
    log_key: str = typer.Option(None, "--log-key", help="The log's vkey (default: the workspace's)."),
    workspace: Path | None = WS,
) -> None:
    """Cosign a checkpoint if it is consistent with the last one this witness saw; refuse otherwise.

    Without --checkpoint the witness talks to the workspace's log directly and the cosignature is
    stored with the checkpoint; with it, the cosigned note is printed.
    """
    from curata.ledger.witness import Witness, witness_checkpoint

    w = Witness(folder)
    if checkpoint is None:
        cp = witness_checkpoint(_ledger(workspace), w)
        typer.echo(cp.note, nl=False)
        return
    if not log_key:
        log_key = _ledger(workspace).verifier.vkey
    hashes = [bytes.fromhex(x) for x in proof.read_text().split()] if proof else []
    note = checkpoint.read_text()
    typer.echo(note + w.cosign(note, log_key, hashes), nl=False)


@ledger_app.command("add-cosignature")
def add_cosignature_cmd(
    cosigned: Path = typer.Argument(
        ..., help="A checkpoint note a witness cosigned (`witness cosign` output)."
    ),
    workspace: Path | None = WS,
) -> None:
    """Store a remote witness's cosignature with the checkpoint it cosigned."""
    cp = _ledger(workspace).add_cosignature(cosigned.read_text())
    typer.echo(cp.note, nl=False)


@witness_app.command("key")
def witness_key(folder: Path = typer.Argument(...)) -> None:
    """Print the witness's public key (vkey)."""
    from curata.ledger.witness import Witness

    typer.echo(Witness(folder).vkey)


def _cents(fee: str) -> int:
    try:
        cents = Decimal(fee) * 100
    except InvalidOperation as exc:
        raise InputError(f"fee {fee!r} is not a number", hint="e.g. --fee 12500.00") from exc
    if cents != cents.to_integral_value() or cents < 0:
        raise InputError(f"fee {fee!r} is not a whole number of cents")
    return int(cents)


@licence_app.command("add")
def licence_add(
    licensee: str = typer.Option(..., "--licensee", help="Who licenses the release."),
    release: str = typer.Option(..., "--release", help="NAME@V"),
    fee: str = typer.Option(..., "--fee", help="The fee, e.g. 12500.00"),
    currency: str = typer.Option("EUR", "--currency"),
    terms: str = typer.Option("", "--terms", help="Terms, or a reference to them."),
    on: str = typer.Option(None, "--date", help="Effective date YYYY-MM-DD (default: today)."),
    as_json: bool = JSON,
    workspace: Path | None = WS,
) -> None:
    """Record a licence (licensee, release, terms, fee) in the log."""
    from curata.ledger.revenue import add_licence

    when = date.fromisoformat(on) if on else None
    e = add_licence(
        _ledger(workspace), licensee, release, _cents(fee), currency=currency, terms=terms, on=when
    )
    if as_json:
        finish(e.as_dict(), as_json=True)
    else:
        console.print(f"licence logged as entry {e.index} ({licensee}, {release}, {fee} {currency.upper()})")


@licence_app.command("list")
def licence_list(as_json: bool = JSON, workspace: Path | None = WS) -> None:
    """The licences in the log."""
    rows: list[Mapping[str, Any]] = [
        {"index": e.index, **e.payload} for e in _ledger(workspace).entries("licence")
    ]
    if as_json:
        finish(rows, as_json=True)
    else:
        print_table(rows, title="licences")


@revenue_app.command("statement")
def revenue_statement(
    period: str = typer.Option(..., "--period", help="2026-Q4, 2026-11 or 2026."),
    rule: str = typer.Option(
        None,
        "--rule",
        help=escape("patients (default) or annotated_cases; else [revenue] rule in curata.toml."),
    ),
    as_json: bool = JSON,
    workspace: Path | None = WS,
) -> None:
    """Each contributing site's share of the period's licence revenue, from the log alone."""
    from curata.ledger import Ledger
    from curata.ledger.revenue import statement
    from curata.workspace import Workspace

    ws = Workspace.find(workspace)
    rule = rule or ws.settings.revenue.rule
    st = statement(Ledger.open(ws), period, rule=rule)
    if as_json:
        finish(st.as_dict(), as_json=True)
    else:
        rows: list[Mapping[str, Any]] = []
        for currency, totals in st.totals().items():
            for site, cents in sorted(totals.items()):
                if not site.startswith("_"):
                    rows.append({"currency": currency, "site": site, "amount": f"{cents / 100:.2f}"})
            rows.append(
                {
                    "currency": currency,
                    "site": "(unallocated)",
                    "amount": f"{totals['_unallocated'] / 100:.2f}",
                }
            )
            rows.append(
                {"currency": currency, "site": "TOTAL fees", "amount": f"{totals['_fees'] / 100:.2f}"}
            )
        print_table(rows, title=f"revenue {period} (rule: {rule}; log size {st.log_size})")
        for line in st.licences:
            if line.problem:
                console.print(f"[red]licence {line.index}[/]: {line.problem}")
        if not st.licences:
            console.print(f"no licence in the log is dated in {period}")
        console.print("reconciles to the cent" if st.reconciles else "[red]DOES NOT RECONCILE[/]")
    finish(None, failed=not st.reconciles or any(line.problem for line in st.licences))


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(licence_app, name="licence")
    app.add_typer(revenue_app, name="revenue")

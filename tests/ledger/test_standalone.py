"""Receipts verify with verify_standalone.py alone: a copy run in a separate interpreter, importing
nothing but the standard library and cryptography; a one-byte change anywhere fails it."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curata.ledger import Ledger
from curata.ledger import verify_standalone as vs

STANDALONE = Path(vs.__file__)


def test_standalone_imports_only_stdlib_and_cryptography() -> None:
    tree = ast.parse(STANDALONE.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - {"cryptography", "__future__"} <= set(sys.stdlib_module_names)
    assert "curata" not in roots


@pytest.fixture
def receipt_setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    ledger = Ledger(tmp_path / "ledger", tmp_path / "ledger.key", origin="curata/site-a/ledger")
    ledger.append_many([("ingest", {"blob": f"{i:064x}"}) for i in range(50)])
    entry = ledger.append("release", {"release": "chest-ct@1", "manifest_root": "ab" * 32, "sites": {"a": 3}})
    ledger.append("usage", {"licensee": "acme", "release": "chest-ct@1", "action": "export"})
    receipt = tmp_path / "release.tlog-proof"
    receipt.write_bytes(ledger.receipt(entry.index))
    folder = tmp_path / "shipped"
    folder.mkdir()
    shutil.copy(STANDALONE, folder / "verify_release.py")
    return ledger, receipt, folder / "verify_release.py"


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -I: isolated mode, no PYTHONPATH and no current folder on the path
    return subprocess.run(
        [sys.executable, "-I", str(script), *args], capture_output=True, text=True, cwd=script.parent
    )


def test_receipt_verifies_standalone(receipt_setup) -> None:  # type: ignore[no-untyped-def]
    ledger, receipt, script = receipt_setup
    ok = run(script, "receipt", str(receipt), "--key", ledger.verifier.vkey)
    assert ok.returncode == 0, ok.stderr
    assert '"verified": true' in ok.stdout and '"index": 50' in ok.stdout
    keyfile = receipt.parent / "log.vkey"
    keyfile.write_text(ledger.verifier.vkey + "\n")
    assert run(script, "receipt", str(receipt), "--key", f"@{keyfile}").returncode == 0
    assert (
        run(script, "checkpoint", str(ledger.folder / "checkpoint"), "--key", f"@{keyfile}").returncode == 0
    )


def test_any_one_byte_change_fails(receipt_setup) -> None:  # type: ignore[no-untyped-def]
    ledger, receipt, script = receipt_setup
    pristine = receipt.read_bytes()
    text = pristine.decode()
    # one byte in each part: the entry (extra), the index, a proof hash, the root, the log signature
    lines = text.split("\n")
    starts = [sum(len(x) + 1 for x in lines[:n]) for n in range(len(lines))]
    extra, index, proof_hash = 1, 2, 3
    root = lines.index("curata/site-a/ledger") + 2
    signature = next(n for n, line in enumerate(lines) if line.startswith("— "))
    positions = [starts[n] + len(lines[n]) // 2 for n in (extra, proof_hash, root, signature)]
    positions.append(starts[index] + len(lines[index]) - 1)  # the index's last digit
    for pos in positions:
        data = bytearray(pristine)
        data[pos] = ord("1") if data[pos] == ord("0") else (ord("A") if data[pos] != ord("A") else ord("B"))
        receipt.write_bytes(bytes(data))
        bad = run(script, "receipt", str(receipt), "--key", ledger.verifier.vkey)
        assert bad.returncode == 1, f"a change at byte {pos} was not caught"
        assert "FAILED" in bad.stderr
    receipt.write_bytes(pristine)
    other = Ledger(receipt.parent / "other", receipt.parent / "other.key", origin="curata/site-a/ledger")
    assert run(script, "receipt", str(receipt), "--key", other.verifier.vkey).returncode == 1


def test_a_published_log_audits_from_its_tiles_alone(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger", tmp_path / "ledger.key", origin="curata/site-a/ledger", fsync=False)
    for n in (1, 255, 300, 66000 - 556):  # partial tiles, full tiles, a level-2 tile
        ledger.append_many([("ingest", {"blob": f"{i:064x}"}) for i in range(n)])
        ledger.checkpoint()
        out = vs.verify_tiles(str(ledger.folder), ledger.verifier.vkey)
        assert out["entries"] == ledger.size
    assert ledger.size == 66000
    bundle = ledger.folder / "tile" / "entries" / "100"
    pristine = bundle.read_bytes()
    bundle.write_bytes(pristine.replace(b'"blob":"0', b'"blob":"1', 1))
    with pytest.raises(vs.VerificationError, match="tile tile/0/100 does not match"):
        vs.verify_tiles(str(ledger.folder), ledger.verifier.vkey)
    bundle.write_bytes(pristine)
    upper = ledger.folder / "tile" / "1" / "000"
    data = bytearray(upper.read_bytes())
    data[40] ^= 1
    upper.write_bytes(bytes(data))
    with pytest.raises(vs.VerificationError, match="tile tile/1/000 does not match"):
        vs.verify_tiles(str(ledger.folder), ledger.verifier.vkey)


def test_signing_every_append_keeps_one_partial_tile_per_tile(tmp_path: Path) -> None:
    """Each append is signed, and publishes the tiles that grew: a wider partial tile replaces the
    narrower ones of its index (C2SP tlog-tiles lets a log delete them), so 600 single appends leave a
    few tile files, not one per width per append (outside review 17: 8,015 files, 114 MB for 4,000),
    and the published log still audits from its tiles alone."""
    ledger = Ledger(tmp_path / "ledger", tmp_path / "ledger.key", origin="curata/site-a/ledger", fsync=False)
    for i in range(600):
        ledger.append("access", {"action": "dicomweb-get", "target": f"1.2.3.{i}"})
    files = [p for p in (ledger.folder / "tile").rglob("*") if p.is_file()]
    # level 0: two full tiles and one partial (and their entry bundles); level 1: one partial
    assert len(files) <= 8, sorted(str(p.relative_to(ledger.folder)) for p in files)
    partial = sorted(
        str(p.relative_to(ledger.folder / "tile")) for p in files if p.parent.name.endswith(".p")
    )
    assert partial == ["0/002.p/88", "1/000.p/2", "entries/002.p/88"]  # 600 = 2 * 256 + 88; 600 >> 8 = 2
    assert vs.verify_tiles(str(ledger.folder), ledger.verifier.vkey)["entries"] == 600
    assert ledger.verify().ok

"""One RFC 6962 module; the standalone verifier carries a verbatim, checked copy of it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import curata.ledger.verify_standalone as vs
import curata.rfc6962 as rfc
from curata.ledger.merkle import MerkleTree
from curata.publish.manifest import merkle_root

ROOT = Path(__file__).resolve().parents[1]


def _vendor_tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("vendor_rfc6962", ROOT / "scripts" / "vendor_rfc6962.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_standalone_verifier_carries_an_exact_copy() -> None:
    tool = _vendor_tool()
    shared = tool.shared_block(Path(rfc.__file__).read_text())
    vendored = tool.vendored_block(Path(vs.__file__).read_text())
    assert vendored == shared, "run `python scripts/vendor_rfc6962.py` after changing curata/rfc6962.py"
    assert "import curata" not in vendored and "from curata" not in vendored


def test_the_copy_check_notices_an_edit(tmp_path: Path) -> None:
    tool = _vendor_tool()
    text = Path(vs.__file__).read_text().replace('b"\\x01" + left + right', 'b"\\x01" + right + left', 1)
    assert tool.vendored_block(text) != tool.shared_block(Path(rfc.__file__).read_text())


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 13, 31])
def test_every_user_computes_the_same_root(n: int) -> None:
    leaves = [f"leaf {i}".encode() for i in range(n)]
    root = rfc.merkle_tree_hash(leaves)
    assert MerkleTree(rfc.leaf_hash(x) for x in leaves).root() == root
    assert vs.merkle_tree_hash(leaves) == root
    assert merkle_root(leaves) == root.hex()


def test_the_standalone_file_runs_without_curata(tmp_path: Path) -> None:
    copy = tmp_path / "verify_standalone.py"
    copy.write_text(Path(vs.__file__).read_text())
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import runpy; m = runpy.run_path({str(copy)!r}); print(m['merkle_tree_hash']([b'a']).hex())",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == rfc.leaf_hash(b"a").hex()

"""RFC 6962 hashing and proofs: the published Certificate Transparency vectors, and an independent
implementation from PyPI (pymerkle) as an oracle for roots and proofs on every small tree shape."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curata.ledger import verify_standalone as vs
from curata.ledger.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.conftest import require_module

# RFC 6962 reference data as published with certificate-transparency / transparency-dev/merkle.
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (index, size, proof)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CONSISTENCY = [  # (old size, new size, proof)
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip


@pytest.fixture
def reference_tree() -> MerkleTree:
    return MerkleTree(leaf_hash(d) for d in LEAVES)


def test_empty_root_and_reference_roots(reference_tree: MerkleTree) -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    for size, want in enumerate(ROOTS):
        assert reference_tree.root(size).hex() == want


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_reference_inclusion_proofs(
    reference_tree: MerkleTree, index: int, size: int, proof: list[str]
) -> None:
    want = [bytes.fromhex(h) for h in proof]
    assert reference_tree.inclusion_proof(index, size) == want
    leaf = leaf_hash(LEAVES[index])
    root = bytes.fromhex(ROOTS[size])
    verify_inclusion(leaf, index, size, want, root)
    assert vs.root_from_inclusion_proof(leaf, index, size, want) == root
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, want[:-1], root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b"other"), index, size, want, root)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_reference_consistency_proofs(
    reference_tree: MerkleTree, old: int, new: int, proof: list[str]
) -> None:
    want = [bytes.fromhex(h) for h in proof]
    assert reference_tree.consistency_proof(old, new) == want
    old_root, new_root = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    verify_consistency(old, new, old_root, new_root, want)
    vs.verify_consistency_proof(old, new, old_root, new_root, want)
    with pytest.raises(ProofError):
        verify_consistency(old, new, old_root, bytes.fromhex(ROOTS[new - 1]), want)
    with pytest.raises(vs.VerificationError):
        vs.verify_consistency_proof(
            old, new, bytes.fromhex(ROOTS[old - 1] if old > 1 else ROOTS[2]), new_root, want
        )


def test_against_pymerkle_oracle() -> None:
    """Roots, inclusion paths and consistency on every tree of up to 40 leaves agree with pymerkle."""
    pymerkle = require_module("pymerkle")
    oracle = pymerkle.InmemoryTree(algorithm="sha256")
    tree = MerkleTree()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for i in range(40):
            data = f"entry {i}".encode()
            oracle.append_entry(data)
            tree.append(leaf_hash(data))
            n = i + 1
            assert oracle.get_state(n) == tree.root(n)
            for j in range(n):
                oracle_path = oracle.prove_inclusion(j + 1, n).serialize()["path"]
                # pymerkle's path starts with the leaf itself, then the RFC 6962 audit path
                assert [bytes.fromhex(h) for h in oracle_path[1:]] == tree.inclusion_proof(j, n)
            for m in range(1, n + 1):
                pymerkle.verify_consistency(tree.root(m), tree.root(n), oracle.prove_consistency(m, n))
                verify_consistency(m, n, tree.root(m), tree.root(n), tree.consistency_proof(m, n))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_proofs_verify_and_reject_tampering(n: int, data: st.DataObject) -> None:
    tree = MerkleTree(leaf_hash(i.to_bytes(4, "big")) for i in range(n))
    index = data.draw(st.integers(0, n - 1))
    size = data.draw(st.integers(index + 1, n))
    proof = tree.inclusion_proof(index, size)
    root = tree.root(size)
    verify_inclusion(tree.levels[0][index], index, size, proof, root)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[k] = bytes([bad[k][0] ^ 1]) + bad[k][1:]
        with pytest.raises(ProofError):
            verify_inclusion(tree.levels[0][index], index, size, bad, root)
        assert vs.root_from_inclusion_proof(tree.levels[0][index], index, size, bad) != root
    old = data.draw(st.integers(0, size))
    cproof = tree.consistency_proof(old, size)
    verify_consistency(old, size, tree.root(old), root, cproof)
    vs.verify_consistency_proof(old, size, tree.root(old), root, cproof)
    if 0 < old < size:
        with pytest.raises(ProofError):
            verify_consistency(old, size, leaf_hash(b"forged"), root, cproof)


def test_truncate_and_bad_requests() -> None:
    tree = MerkleTree(leaf_hash(bytes([i])) for i in range(10))
    root7 = tree.root(7)
    tree.truncate(7)
    assert tree.size == 7 and tree.root() == root7
    tree.append(leaf_hash(b"\x07"))
    assert tree.root(8) == MerkleTree(leaf_hash(bytes([i])) for i in range(8)).root()
    with pytest.raises(ProofError):
        tree.inclusion_proof(8, 8)
    with pytest.raises(ProofError):
        tree.consistency_proof(5, 4)
    with pytest.raises(ProofError):
        tree.root(9)

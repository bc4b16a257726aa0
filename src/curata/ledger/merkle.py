"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.

Leaves are hashed ``SHA-256(0x00 || data)`` and interior nodes ``SHA-256(0x01 || left || right)``; a tree
of ``n`` leaves splits at the largest power of two strictly below ``n`` (RFC 6962 §2.1). Every left
subtree in that recursion is a perfect, aligned subtree, so :class:`MerkleTree` keeps the hashes of
all perfect aligned subtrees (one list per height) and answers roots and proofs for any past size in
O(log² n) hash operations without rehashing the leaves.

The hashing and the verification functions (RFC 9162 §2.1.3.2 and §2.1.4.2) live in
:mod:`curata.rfc6962`, the one copy the standalone verifier vendors; the tests cross-check both against
an independent implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from curata.rfc6962 import (
    EMPTY_ROOT,
    HASH_SIZE,
    ProofError,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    split_point,
    verify_consistency,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "ProofError",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_of",
    "split_point",
    "verify_consistency",
    "verify_inclusion",
]


class MerkleTree:
    """An append-only tree over leaf hashes, keeping every perfect aligned subtree hash."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> int:
        """Add a leaf *hash*; returns its index."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash is 32 bytes")
        index = len(self.levels[0])
        self.levels[0].append(leaf)
        level, i = 0, index
        while i & 1:  # the right child of a pair: complete the parent
            row = self.levels[level]
            parent = node_hash(row[i - 1], row[i])
            level += 1
            i >>= 1
            if len(self.levels) <= level:
                self.levels.append([])
            self.levels[level].append(parent)
        return index

    def truncate(self, size: int) -> None:
        """Forget every leaf from ``size`` on (used when a torn log tail is dropped)."""
        for level, row in enumerate(self.levels):
            del row[size >> level :]

    # -- subtree hashes ----------------------------------------------------------------------
    def _hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]); ``start`` is always aligned to the subtree sizes the recursion uses."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            return self.levels[level][start >> level]
        k = split_point(n)
        return node_hash(self._hash(start, start + k), self._hash(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        self._check_size(size)
        return self._hash(0, size)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is beyond the log's {self.size} entries")

    # -- proofs ------------------------------------------------------------------------------
    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(m, D[0:size]) of RFC 6962 §2.1.1, leaf sibling first."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ProofError(f"entry {index} is not in a tree of size {size}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = split_point(end - start)
            if index < start + k:
                proof.append(self._hash(start + k, end))
                end = start + k
            else:
                proof.append(self._hash(start, start + k))
                start += k
        proof.reverse()
        return proof

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(m, D[0:n]) of RFC 6962 §2.1.2."""
        new_size = self.size if new_size is None else new_size
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ProofError(f"cannot prove size {old_size} consistent with the smaller {new_size}")
        if old_size == 0 or old_size == new_size:
            return []
        return self._subproof(old_size, 0, new_size, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self._hash(start, end)]
        k = split_point(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, complete), self._hash(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self._hash(start, start + k)]


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    return MerkleTree(leaf_hashes).root()


# -- verification (RFC 9162 §2.1.3.2 and §2.1.4.2; the hashing lives in curata.rfc6962) ----------
def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf hash ``leaf`` at ``index`` under ``root``."""
    if root_from_inclusion_proof(leaf, index, size, proof) != root:
        raise ProofError(f"entry {index} is not included in the tree of size {size} with that root")

#!/usr/bin/env python3
"""Verify Curata transparency-log proofs offline, with nothing but Python and ``cryptography``.

This file is self-contained on purpose: Curata copies it into every exported release (as
``verify_release.py``), so that anyone can check a receipt or a release without installing Curata.

    python verify_standalone.py receipt ENTRY.tlog-proof --key 'curata/site/ledger+1a2b3c4d+AQ...'
    python verify_standalone.py checkpoint CHECKPOINT --key KEY [--witness VKEY ...]
    python verify_standalone.py tiles LOG_FOLDER --key KEY     (audit every entry of a published log)

Formats: RFC 6962 Merkle trees; C2SP signed-note, tlog-checkpoint, tlog-cosignature and tlog-proof.
A key is a C2SP vkey string (``name+keyid+base64``), ``@FILE`` holding one, or 32 raw Ed25519 bytes.
Exit status 0 means verified; 1 means a check failed (the reason is printed).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import struct
import sys
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PROOF_HEADER = "c2sp.org/tlog-proof@v1"
SIG_PREFIX = "\u2014 "


class VerificationError(Exception):
    """A signature, proof, receipt or file does not verify."""


# -- RFC 6962: a verbatim copy of curata/rfc6962.py (scripts/vendor_rfc6962.py refreshes it) -------
# ---- VENDOR-START (copied verbatim into curata/ledger/verify_standalone.py) ----
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof does not verify, or was asked for sizes or indexes the tree does not have."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def merkle_tree_hash(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 §2.1 over the leaves' *data* (not their hashes)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = split_point(len(leaves))
    return node_hash(merkle_tree_hash(leaves[:k]), merkle_tree_hash(leaves[k:]))


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof implies for leaf hash ``leaf`` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_SIZE:
            raise ProofError("a proof hash is not 32 bytes")
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    return r


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows the old tree is a prefix of the new one
    (RFC 9162 §2.1.4.2)."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"size {old_size} is larger than {new_size}: the log went backwards")
    if old_size == new_size:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same size {new_size}: a split view")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("a proof hash is not 32 bytes")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != old_root or sr != new_root:
        raise ProofError(f"the tree of size {new_size} does not extend the tree of size {old_size}")


# ---- VENDOR-END


def verify_consistency_proof(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise unless the old tree is a prefix of the new one."""
    try:
        verify_consistency(old_size, new_size, old_root, new_root, proof)
    except ProofError as exc:
        raise VerificationError(str(exc)) from exc


def _root(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    try:
        return root_from_inclusion_proof(leaf, index, size, proof)
    except ProofError as exc:
        raise VerificationError(str(exc)) from exc


# -- C2SP signed notes and checkpoints --------------------------------------------------------
def _key_id(name: str, alg: int, raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + raw).digest()[:4]


def parse_vkey(vkey: str) -> tuple[str, int, bytes]:
    """(name, signature type, 32-byte public key) from a vkey string, checking its key ID."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise VerificationError(f"{vkey!r} is not a verifier key (name+keyid+base64)")
    try:
        raw = base64.b64decode(parts[2], validate=True)
        kid = bytes.fromhex(parts[1])
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"verifier key {vkey!r}: {exc}") from exc
    if len(raw) != 33 or _key_id(parts[0], raw[0], raw[1:]) != kid:
        raise VerificationError(f"verifier key {vkey!r} is malformed or its key ID is wrong")
    return parts[0], raw[0], raw[1:]


def _public_key(public_key: Any, default_name: str) -> tuple[str, int, bytes]:
    if isinstance(public_key, str):
        if public_key.startswith("@"):
            with open(public_key[1:], encoding="utf-8") as fh:
                public_key = fh.read()
        return parse_vkey(public_key)
    if isinstance(public_key, Ed25519PublicKey):
        return default_name, 1, public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    if isinstance(public_key, bytes | bytearray) and len(public_key) == 32:
        return default_name, 1, bytes(public_key)
    raise VerificationError("a public key is a vkey string, @FILE, an Ed25519PublicKey or 32 bytes")


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """The note text and its (name, key ID, signature) lines."""
    if "\n\n" not in note or not note.endswith("\n"):
        raise VerificationError("not a signed note")
    cut = note.rindex("\n\n")
    text, sigs = note[: cut + 1], []
    for line in note[cut + 2 : -1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise VerificationError(f"malformed signature line {line!r}")
        name, _, b64 = line[len(SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error as exc:
            raise VerificationError(f"signature of {name!r} is not base64") from exc
        if len(raw) < 5:
            raise VerificationError(f"malformed signature line {line!r}")
        sigs.append((name, raw[:4], raw[4:]))
    return text, sigs


def _check_signature(alg: int, raw_key: bytes, text: bytes, sig: bytes) -> bool:
    key = Ed25519PublicKey.from_public_bytes(raw_key)
    if alg == 4:  # tlog-cosignature/v1: u64 timestamp || signature over a timestamped message
        if len(sig) != 72:
            return False
        (ts,) = struct.unpack(">Q", sig[:8])
        text, sig = b"cosignature/v1\ntime %d\n" % ts + text, sig[8:]
    try:
        key.verify(sig, text)
    except InvalidSignature:
        return False
    return True


def parse_checkpoint_text(text: str) -> tuple[str, int, bytes]:
    lines = text.split("\n")
    if len(lines) < 4 or not lines[1].isdigit():
        raise VerificationError("not a checkpoint (origin, size, root hash)")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error as exc:
        raise VerificationError("the checkpoint's root hash is not base64") from exc
    if len(root) != 32:
        raise VerificationError("the checkpoint's root hash is not 32 bytes")
    return lines[0], int(lines[1]), root


def verify_checkpoint(checkpoint_text: str, public_key: Any, witnesses: Sequence[str] = ()) -> dict[str, Any]:
    """Check the log's signature (and any named witnesses' cosignatures) on a signed checkpoint.

    Returns ``{"origin", "size", "root", "witnesses"}``; raises :class:`VerificationError`.
    """
    text, sigs = split_note(checkpoint_text)
    origin, size, root = parse_checkpoint_text(text)
    name, alg, raw_key = _public_key(public_key, origin)
    kid = _key_id(name, alg, raw_key)
    mine = [s for n, k, s in sigs if n == name and k == kid]
    if not mine:
        raise VerificationError(f"the checkpoint carries no signature by {name}")
    if not _check_signature(alg, raw_key, text.encode(), mine[0]):
        raise VerificationError("the log's signature on the checkpoint does not verify: it was altered")
    if name != origin:
        raise VerificationError(f"the checkpoint is for log {origin!r}, the key for {name!r}")
    cosigned = []
    for vkey in witnesses:
        wname, walg, wkey = parse_vkey(vkey)
        wid = _key_id(wname, walg, wkey)
        found = [s for n, k, s in sigs if n == wname and k == wid]
        if not found or not _check_signature(walg, wkey, text.encode(), found[0]):
            raise VerificationError(f"witness {wname} did not cosign this checkpoint")
        cosigned.append(wname)
    return {"origin": origin, "size": size, "root": root.hex(), "witnesses": cosigned}


def verify_inclusion(
    leaf_hash: bytes, index: int, proof: list[bytes], checkpoint_text: str, public_key: Any
) -> None:
    """Raise unless ``leaf_hash`` sits at ``index`` in the tree the signed checkpoint commits to."""
    head = verify_checkpoint(checkpoint_text, public_key)
    root = _root(leaf_hash, index, head["size"], proof)
    if root.hex() != head["root"]:
        raise VerificationError(f"entry {index} is not in the signed tree of size {head['size']}")


# -- .tlog-proof receipts ---------------------------------------------------------------------
def parse_receipt(text: str) -> dict[str, Any]:
    """Split a c2sp.org/tlog-proof@v1 text into index, extra, proof hashes and checkpoint."""
    lines = text.split("\n")
    if not lines or lines[0] != PROOF_HEADER:
        raise VerificationError(f"not a {PROOF_HEADER} receipt")
    pos, extra = 1, None
    if pos < len(lines) and lines[pos].startswith("extra "):
        try:
            extra = base64.b64decode(lines[pos][6:], validate=True)
        except binascii.Error as exc:
            raise VerificationError("the receipt's extra data is not base64") from exc
        pos += 1
    if pos >= len(lines) or not lines[pos].startswith("index ") or not lines[pos][6:].isdigit():
        raise VerificationError("the receipt has no index line")
    index, pos, proof = int(lines[pos][6:]), pos + 1, []
    while pos < len(lines) and lines[pos]:
        try:
            proof.append(base64.b64decode(lines[pos], validate=True))
        except binascii.Error as exc:
            raise VerificationError("a proof line is not base64") from exc
        pos += 1
    checkpoint = "\n".join(lines[pos + 1 :])
    return {"index": index, "extra": extra, "proof": proof, "checkpoint": checkpoint}


def verify_receipt(
    text: str, public_key: Any, entry: bytes | None = None, witnesses: Sequence[str] = ()
) -> dict[str, Any]:
    """Verify a receipt; the entry is ``entry`` or else the receipt's extra data. Returns a summary."""
    r = parse_receipt(text)
    data = entry if entry is not None else r["extra"]
    if data is None:
        raise VerificationError("the receipt carries no entry; pass the entry bytes")
    head = verify_checkpoint(r["checkpoint"], public_key, witnesses)
    root = _root(leaf_hash(data), r["index"], head["size"], r["proof"])
    if root.hex() != head["root"]:
        raise VerificationError(f"entry {r['index']} is not in the signed tree of size {head['size']}")
    out: dict[str, Any] = {**head, "index": r["index"], "leaf_hash": leaf_hash(data).hex()}
    try:
        out["entry"] = json.loads(data)
    except ValueError:
        out["entry"] = None
    return out


# -- C2SP tlog-tiles: audit a whole published log from its static files -----------------------
def _tile_path(level: str, n: int, width: int) -> str:
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    base = f"tile/{level}/" + "/".join(reversed(parts))
    return base if width == 256 else f"{base}.p/{width}"


def _read(folder: str, rel: str) -> bytes:
    path = os.path.join(folder, *rel.split("/"))
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise VerificationError(f"missing {rel}") from exc


def verify_tiles(folder: str, public_key: Any, witnesses: Sequence[str] = ()) -> dict[str, Any]:
    """Audit a log published as tiles: every entry bundle, every Merkle tile, the signed root.

    Reads ``checkpoint``, ``tile/entries/...`` and ``tile/<L>/...`` under ``folder``; raises unless
    the entries hash to the tiles and the tiles to the root the log signed.
    """
    head = verify_checkpoint(_read(folder, "checkpoint").decode(), public_key, witnesses)
    size = head["size"]
    level_hashes: list[bytes] = []
    for n in range((size + 255) // 256):
        width = min(256, size - 256 * n)
        raw, pos, count = _read(folder, _tile_path("entries", n, width)), 0, 0
        while pos < len(raw):
            if pos + 2 > len(raw):
                raise VerificationError(f"entry bundle {n} is truncated")
            (length,) = struct.unpack_from(">H", raw, pos)
            if pos + 2 + length > len(raw):
                raise VerificationError(f"entry bundle {n} is truncated")
            level_hashes.append(leaf_hash(raw[pos + 2 : pos + 2 + length]))
            pos += 2 + length
            count += 1
        if count != width:
            raise VerificationError(f"entry bundle {n} holds {count} entries, not {width}")
    nodes, level = level_hashes, 0
    while nodes:
        for n in range((len(nodes) + 255) // 256):
            width = min(256, len(nodes) - 256 * n)
            if _read(folder, _tile_path(str(level), n, width)) != b"".join(nodes[256 * n : 256 * n + width]):
                raise VerificationError(f"tile {_tile_path(str(level), n, width)} does not match the entries")
        for _ in range(8):  # the perfect subtrees 8 levels up
            nodes = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
        level += 1
    # the root: fold the perfect subtrees of the size's binary decomposition, right to left
    stack: list[bytes] = []
    for i, h in enumerate(level_hashes):
        stack.append(h)
        j = i + 1
        while j & 1 == 0:
            right, left = stack.pop(), stack.pop()
            stack.append(node_hash(left, right))
            j >>= 1
    root = stack.pop() if stack else hashlib.sha256(b"").digest()
    while stack:
        root = node_hash(stack.pop(), root)
    if root.hex() != head["root"]:
        raise VerificationError("the published entries do not give the root the log signed")
    return {**head, "entries": size}


# -- command line -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Verify Curata transparency-log receipts and checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("receipt", help="verify a .tlog-proof receipt")
    rec.add_argument("receipt")
    rec.add_argument("--key", required=True, help="the log's vkey, or @FILE")
    rec.add_argument("--entry", help="file with the entry bytes (default: the receipt's extra data)")
    rec.add_argument("--witness", action="append", default=[], help="a witness vkey that must cosign")
    cp = sub.add_parser("checkpoint", help="verify a signed checkpoint")
    cp.add_argument("checkpoint")
    cp.add_argument("--key", required=True)
    cp.add_argument("--witness", action="append", default=[])
    tl = sub.add_parser("tiles", help="audit a whole log published as tlog-tiles (a folder)")
    tl.add_argument("folder")
    tl.add_argument("--key", required=True)
    tl.add_argument("--witness", action="append", default=[])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "receipt":
            with open(args.receipt, encoding="utf-8") as fh:
                text = fh.read()
            entry = None
            if args.entry:
                with open(args.entry, "rb") as fb:
                    entry = fb.read()
            result = verify_receipt(text, args.key, entry, args.witness)
        elif args.command == "tiles":
            result = verify_tiles(args.folder, args.key, args.witness)
        else:
            with open(args.checkpoint, encoding="utf-8") as fh:
                result = verify_checkpoint(fh.read(), args.key, args.witness)
    except (VerificationError, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"verified": True, **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The durable, append-only log: entries on disk, an RFC 6962 tree over them, signed checkpoints.

Files under ``WORKSPACE/ledger/``::

    log.vkey                    the log's public key (C2SP vkey); its name is the log's origin
    checkpoint                  the latest signed checkpoint (tlog-checkpoint), cosignatures included
    checkpoints/<size>          every checkpoint the log has signed, kept for witnesses and audits
    tile/...                    the tree and the entries as C2SP tlog-tiles (see ``tiles.py``)
    data/entries.bin            the entries, each ``u32 length || bytes || sha256(length||bytes)[:8]``
    data/index.bin              per entry ``u64 offset || 32-byte leaf hash``: the tree state

The signing key is ``WORKSPACE/.curata/ledger.key`` (mode 0600), never published.

Crash safety is write-ahead: an append writes and fsyncs the entry record first, then its index record.
Opening the log under the writer lock repairs what a killed writer can leave: a torn index record is
cut off, complete entry records the index lacks are replayed into it, and a torn entry record (a short
or mis-checksummed tail) is truncated. An entry is durable once ``append`` returns.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curata._io import atomic_write, fsync_dir
from curata.errors import CurataError, KeyFileError
from curata.ledger import tiles
from curata.ledger.checkpoint import Checkpoint, CheckpointError
from curata.ledger.merkle import MerkleTree, ProofError, leaf_hash, verify_consistency, verify_inclusion
from curata.ledger.note import Signer, Verifier

if TYPE_CHECKING:
    from curata.workspace import Workspace

KINDS = (
    "deid",
    "ingest",
    "qc-decision",
    "release",
    "export",
    "withdrawal",
    "licence",
    "usage",
    "provenance",
    "access",  # platform: logins, views of a series, downloads, changes (users as commitments)
)
ENTRY_VERSION = 1
_HEAD = struct.Struct(">I")
_CHECK = 8
_INDEX = struct.Struct(">Q32s")
# Keys that would carry patient data. Entries hold digests and salted commitments only.
_FORBIDDEN_KEYS = {
    "patientname",
    "patientsname",
    "patientid",
    "otherpatientids",
    "patientbirthdate",
    "birthdate",
    "dateofbirth",
    "dob",
    "mrn",
    "ssn",
    "address",
    "phone",
    "email",
    "pseudonym",
    "patientpseudonym",
    "accessionnumber",
}


class LedgerError(CurataError):
    """The log cannot be written or read, or does not verify."""


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@lru_cache(maxsize=4096)
def _forbidden(key: str) -> bool:
    return re.sub(r"[^a-z]", "", key.lower()) in _FORBIDDEN_KEYS


def _check_payload(payload: Any, where: str = "payload") -> None:
    if isinstance(payload, dict):
        for key, value in payload.items():
            if not isinstance(key, str):
                raise LedgerError(f"{where}: keys must be strings, not {key!r}")
            if _forbidden(key):
                raise LedgerError(
                    f"{where}.{key}: the log holds no patient data",
                    hint="log a digest or `ledger.commit(value)` (a salted commitment) instead",
                )
            _check_payload(value, f"{where}.{key}")
    elif isinstance(payload, list):
        for i, value in enumerate(payload):
            _check_payload(value, f"{where}[{i}]")
    elif not (payload is None or isinstance(payload, str | int | float | bool)):
        raise LedgerError(f"{where}: {type(payload).__name__} is not JSON data")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "site"


@dataclass(frozen=True)
class LedgerEntry:
    index: int
    kind: str
    time: str
    payload: dict[str, Any]
    data: bytes = field(repr=False)

    @property
    def leaf_hash(self) -> bytes:
        return leaf_hash(self.data)

    @classmethod
    def decode(cls, index: int, data: bytes) -> LedgerEntry:
        try:
            obj = json.loads(data)
            return cls(index, obj["kind"], obj["time"], obj["payload"], data)
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerError(f"entry {index} is not a ledger entry: {exc}") from exc

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "time": self.time,
            "leaf_hash": self.leaf_hash.hex(),
            "payload": self.payload,
        }


@dataclass(frozen=True)
class InclusionProof:
    index: int
    size: int
    leaf_hash: bytes
    hashes: list[bytes]
    checkpoint: Checkpoint

    def verify(self, verifier: Verifier) -> None:
        """Raise unless the checkpoint is signed by ``verifier`` and the proof reaches its root."""
        cp = Checkpoint.from_note(self.checkpoint.note, [verifier])
        if cp.size != self.size:
            raise ProofError(f"proof is for size {self.size}, the checkpoint for {cp.size}")
        verify_inclusion(self.leaf_hash, self.index, self.size, self.hashes, cp.root_hash)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tree_size": self.size,
            "leaf_hash": self.leaf_hash.hex(),
            "proof": [h.hex() for h in self.hashes],
            "checkpoint": self.checkpoint.note,
        }


@dataclass
class VerifyReport:
    size: int = 0
    root: str = ""
    entries_checked: int = 0
    checkpoints_checked: int = 0
    tiles_checked: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "root": self.root,
            "entries_checked": self.entries_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "tiles_checked": self.tiles_checked,
            "problems": self.problems,
        }


def load_or_create_signer(key_path: Path, origin: str) -> Signer:
    """The log's signing key, generated (0600) on first use."""
    if key_path.exists():
        if key_path.stat().st_mode & 0o077:
            raise KeyFileError(f"{key_path} is readable by other users", hint=f"run `chmod 600 {key_path}`")
        try:
            return Signer.from_skey(key_path.read_text())
        except ValueError as exc:
            raise KeyFileError(f"{key_path} is not a ledger signing key: {exc}") from exc
    signer = Signer.generate(origin)
    atomic_write(key_path, signer.to_skey() + "\n", mode=0o600, durable_name=True)
    return signer


class Ledger:
    """One site's transparency log. Safe to use from several processes (a file lock serialises writers)."""

    def __init__(
        self,
        folder: Path,
        key_path: Path,
        *,
        origin: str = "curata/site/ledger",
        commitment_key: bytes | None = None,
        fsync: bool = True,
    ) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        (folder / "checkpoints").mkdir(exist_ok=True)
        self._commitment_key = commitment_key
        self._fsync = fsync
        self._entries_path = self.data / "entries.bin"
        self._index_path = self.data / "index.bin"
        self.tree = MerkleTree()
        self._offsets: list[int] = []
        self._end = 0  # byte length of the valid entries
        self._index_bytes = 0
        with self._flock():  # first opens may race: one key, one set of files
            self.signer = load_or_create_signer(key_path, origin)
            self.verifier = self.signer.verifier
            self.origin = self.signer.name
            vkey_path = folder / "log.vkey"
            if vkey_path.exists():
                if vkey_path.read_text().strip() != self.verifier.vkey:
                    raise KeyFileError(
                        f"{key_path} does not match the published key {vkey_path}",
                        hint="restore the ledger key that signed this log; a new key starts a new log",
                    )
            else:
                tiles.write_atomic(vkey_path, (self.verifier.vkey + "\n").encode())
            if not self._entries_path.exists() or not self._index_path.exists():
                for p in (self._entries_path, self._index_path):
                    p.touch(exist_ok=True)
                fsync_dir(self.data)  # the files' names are durable before any entry is
            self._sync_from_disk()  # opening under the lock recovers a torn tail

    @classmethod
    def open(cls, ws: Workspace, *, fsync: bool = True) -> Ledger:
        origin = f"curata/{_slug(ws.site_name)}/ledger"
        try:
            site_key = ws.site_key()
        except CurataError:
            site_key = None
        return cls(
            ws.root / "ledger",
            ws.root / ".curata" / "ledger.key",
            origin=origin,
            commitment_key=site_key,
            fsync=fsync,
        )

    # -- durability --------------------------------------------------------------------------
    @contextmanager
    def _flock(self) -> Iterator[None]:
        with open(self.data / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The writer lock, with the in-memory state caught up with the files."""
        with self._flock():
            self._sync_from_disk()
            yield

    def _sync_from_disk(self) -> None:
        """Catch up with entries other processes appended; repair a torn tail. Caller holds the lock."""
        size = self._index_path.stat().st_size
        if size % _INDEX.size:  # a torn index record: drop it, the entry replays below
            size -= size % _INDEX.size
            os.truncate(self._index_path, size)
        if size > self._index_bytes:
            with open(self._index_path, "rb") as fh:
                fh.seek(self._index_bytes)
                raw = fh.read(size - self._index_bytes)
            for off, h in _INDEX.iter_unpack(raw):
                self._offsets.append(off)
                self.tree.append(h)
            self._index_bytes = size
        elif size < self._index_bytes:
            raise LedgerError(f"{self._index_path} shrank: the log was truncated by something else")
        self._end = self._record_end(len(self._offsets) - 1) if self._offsets else 0
        data_size = self._entries_path.stat().st_size
        if data_size < self._end:
            raise LedgerError(
                f"{self._entries_path} is shorter than its index: entries were lost",
                hint="restore the ledger folder from a backup; `curata ledger verify` shows the damage",
            )
        if data_size > self._end:
            self._replay_tail(data_size)

    def _record_end(self, index: int) -> int:
        off = self._offsets[index]
        with open(self._entries_path, "rb") as fh:
            fh.seek(off)
            head = fh.read(_HEAD.size)
        if len(head) < _HEAD.size:
            raise LedgerError(f"entry {index} is missing from {self._entries_path}")
        return off + _HEAD.size + _HEAD.unpack(head)[0] + _CHECK

    def _replay_tail(self, data_size: int) -> None:
        """Index complete records past the indexed end; truncate the first torn one."""
        with open(self._entries_path, "rb") as fh:
            fh.seek(self._end)
            tail = fh.read(data_size - self._end)
        pos, new = 0, []
        while pos + _HEAD.size <= len(tail):
            (n,) = _HEAD.unpack_from(tail, pos)
            stop = pos + _HEAD.size + n + _CHECK
            if stop > len(tail):
                break
            body = tail[pos + _HEAD.size : pos + _HEAD.size + n]
            if tail[stop - _CHECK : stop] != _record_check(tail[pos : pos + _HEAD.size], body):
                break
            new.append((self._end + pos, leaf_hash(body)))
            pos = stop
        if pos < len(tail):
            os.truncate(self._entries_path, self._end + pos)
        if new:
            self._write_index(new)
        self._end += pos

    def _write_index(self, records: Sequence[tuple[int, bytes]]) -> None:
        with open(self._index_path, "ab") as fh:
            fh.write(b"".join(_INDEX.pack(off, h) for off, h in records))
            fh.flush()
            if self._fsync:
                os.fdatasync(fh.fileno())
        for off, h in records:
            self._offsets.append(off)
            self.tree.append(h)
        self._index_bytes += _INDEX.size * len(records)

    # -- writing -----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.tree.size

    def commit(self, value: str) -> str:
        """A salted commitment to ``value`` (e.g. a pseudonym): HMAC-SHA256 under the site secret.

        Only the site can recompute (and so later prove) it; nobody can test guesses against it.
        """
        if self._commitment_key is None:
            raise KeyFileError("this ledger has no site secret to make commitments with")
        mac = hmac.new(self._commitment_key, b"curata/ledger-commitment/v1\n" + value.encode(), "sha256")
        return "hmac-sha256:" + mac.hexdigest()

    def _encode(self, kind: str, payload: dict[str, Any], when: str) -> tuple[bytes, str]:
        if kind not in KINDS:
            raise LedgerError(f"unknown entry kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
        if not isinstance(payload, dict):
            raise LedgerError("an entry's payload is a dict")
        _check_payload(payload)
        data = _canonical({"v": ENTRY_VERSION, "kind": kind, "time": when, "payload": payload})
        if len(data) > tiles.MAX_ENTRY_SIZE:
            raise LedgerError(f"a {kind} entry of {len(data)} bytes is too large (65535 at most)")
        return data, when

    def append(self, kind: str, payload: dict[str, Any], *, time: datetime | None = None) -> LedgerEntry:
        """Append one entry; durable, and covered by a signed checkpoint, when this returns."""
        return self.append_many([(kind, payload)], time=time)[0]

    def append_many(
        self, items: Sequence[tuple[str, dict[str, Any]]], *, time: datetime | None = None
    ) -> list[LedgerEntry]:
        """Append several entries with one pair of fsyncs and one checkpoint (all durable and signed when
        this returns).

        Refused, nothing written, where the log contradicts its latest signed checkpoint: an entry is
        never appended onto, nor signed over, a rewritten or truncated past.
        """
        when = (time or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        encoded = [self._encode(kind, payload, when) for kind, payload in items]
        hashes = [leaf_hash(data) for data, _ in encoded]
        with self._locked():
            latest = self._check_against_signed()
            first = self.size
            records, blob, pos = [], bytearray(), self._end
            for (data, _), h in zip(encoded, hashes, strict=True):
                head = _HEAD.pack(len(data))
                blob += head + data + _record_check(head, data)
                records.append((pos, h))
                pos += _HEAD.size + len(data) + _CHECK
            with open(self._entries_path, "r+b") as fh:
                fh.seek(self._end)
                fh.write(blob)
                fh.flush()
                if self._fsync:
                    os.fdatasync(fh.fileno())
            self._end = pos
            self._write_index(records)
            self._sign(latest)
        return [
            LedgerEntry(first + i, kind, when, payload, data)
            for i, ((kind, payload), (data, when)) in enumerate(zip(items, encoded, strict=True))
        ]

    # -- reading -----------------------------------------------------------------------------
    def refresh(self) -> None:
        with self._locked():
            pass

    def entry_bytes(self, start: int, end: int | None = None) -> list[bytes]:
        end = self.size if end is None else end
        if not 0 <= start <= end <= self.size:
            raise LedgerError(f"entries {start}..{end} are not in a log of {self.size} entries")
        if start == end:
            return []
        stop = self._offsets[end] if end < self.size else self._end
        with open(self._entries_path, "rb") as fh:
            fh.seek(self._offsets[start])
            raw = fh.read(stop - self._offsets[start])
        out, pos = [], 0
        for _ in range(end - start):
            (n,) = _HEAD.unpack_from(raw, pos)
            out.append(raw[pos + _HEAD.size : pos + _HEAD.size + n])
            pos += _HEAD.size + n + _CHECK
        return out

    def entry(self, index: int) -> LedgerEntry:
        self.refresh()
        if not 0 <= index < self.size:
            raise LedgerError(f"no entry {index}: the log has {self.size} entries")
        return LedgerEntry.decode(index, self.entry_bytes(index, index + 1)[0])

    def entries(self, kind: str | None = None) -> Iterator[LedgerEntry]:
        self.refresh()
        size, step = self.size, 4096
        for start in range(0, size, step):
            for i, data in enumerate(self.entry_bytes(start, min(size, start + step))):
                e = LedgerEntry.decode(start + i, data)
                if kind is None or e.kind == kind:
                    yield e

    # -- checkpoints and proofs --------------------------------------------------------------
    def _checkpoint_path(self, size: int) -> Path:
        return self.folder / "checkpoints" / str(size)

    def checkpoint_sizes(self) -> list[int]:
        return sorted(int(p.name) for p in (self.folder / "checkpoints").iterdir() if p.name.isdigit())

    def load_checkpoint(self, size: int | None = None) -> Checkpoint | None:
        """A checkpoint this log signed (the latest without ``size``), verified against its key."""
        path = self.folder / "checkpoint" if size is None else self._checkpoint_path(size)
        if not path.exists():
            return None
        try:
            return Checkpoint.from_note(path.read_text(), [self.verifier], origin=self.origin)
        except CheckpointError as exc:
            raise LedgerError(f"{path}: {exc}") from exc

    def checkpoint(self) -> Checkpoint:
        """Sign the current tree head, publish the new tiles, then the checkpoint (tiles first).

        Refused (``LedgerError``) unless the log extends its latest signed checkpoint (an RFC 6962
        consistency proof from it to the current head) and the entries since then hash to their leaves.
        """
        with self._locked():
            return self._sign(self._check_against_signed())

    def _check_against_signed(self) -> Checkpoint | None:
        """Raise unless the current log extends the latest signed checkpoint. Caller holds the lock."""
        latest = self.load_checkpoint()  # `verify` also compares it with checkpoints/ (a rolled-back file)
        if latest is None:
            self._check_leaves(0, self.size)
            return None
        hint = "run `curata ledger verify`; restore the ledger folder from a backup or a witness's copy"
        if latest.size > self.size:
            raise LedgerError(
                f"the log has {self.size} entries, its latest signed checkpoint {latest.size}: "
                "entries were removed; no checkpoint is signed over it",
                hint=hint,
            )
        try:
            proof = self.tree.consistency_proof(latest.size, self.size)
            verify_consistency(latest.size, self.size, latest.root_hash, self.tree.root(), proof)
        except ProofError as exc:
            raise LedgerError(
                f"the log is not consistent with its signed checkpoint of size {latest.size} "
                f"(entries before it were rewritten): {exc}; no checkpoint is signed over it",
                hint=hint,
            ) from exc
        self._check_leaves(latest.size, self.size)
        return latest

    def _check_leaves(self, start: int, end: int) -> None:
        """The entries about to be signed first (``start`` to ``end``) must hash to the tree's leaves."""
        step = 4096
        for lo in range(start, end, step):
            for i, data in enumerate(self.entry_bytes(lo, min(end, lo + step)), lo):
                if leaf_hash(data) != self.tree.levels[0][i]:
                    raise LedgerError(
                        f"entry {i} differs from its leaf in the index; no checkpoint is signed over it",
                        hint="run `curata ledger verify`",
                    )

    def _sign(self, latest: Checkpoint | None) -> Checkpoint:
        """Sign the head over ``latest`` (checked by ``_check_against_signed``). Caller holds the lock."""
        if latest is not None and latest.size == self.size:
            return latest
        size = self.size
        cp = Checkpoint(self.origin, size, self.tree.root(size)).signed(self.signer)
        old = latest.size if latest is not None else 0
        tiles.publish(self.folder, self.tree, self.entry_bytes, old, size, fsync=self._fsync)
        note = cp.note.encode()
        tiles.write_atomic(self._checkpoint_path(size), note, fsync=self._fsync)
        tiles.write_atomic(self.folder / "checkpoint", note, fsync=self._fsync)
        return cp

    def add_cosignature(self, cosigned: str) -> Checkpoint:
        """Store a witness's cosignature lines on the checkpoint they cosign."""
        cp = Checkpoint.from_note(cosigned, [self.verifier], origin=self.origin)
        with self._locked():
            mine = self.load_checkpoint(cp.size)
            if mine is None or mine.text != cp.text:
                raise LedgerError(f"this log never signed the cosigned checkpoint of size {cp.size}")
            merged = mine
            for line in cosigned.split("\n\n")[-1].splitlines(keepends=True):
                merged = merged.with_signature_line(line)
            note = merged.note.encode()
            tiles.write_atomic(self._checkpoint_path(cp.size), note, fsync=self._fsync)
            latest = self.load_checkpoint()
            if latest is not None and latest.size == cp.size:
                tiles.write_atomic(self.folder / "checkpoint", note, fsync=self._fsync)
            return merged

    def _covering_checkpoint(self, index: int) -> Checkpoint:
        latest = self.load_checkpoint()
        if latest is None or latest.size <= index:
            latest = self.checkpoint()
        return latest

    def prove(self, index: int, checkpoint: Checkpoint | None = None) -> InclusionProof:
        """Inclusion proof of entry ``index`` in the latest checkpoint (signed now if needed)."""
        self.refresh()
        if not 0 <= index < self.size:
            raise LedgerError(f"no entry {index}: the log has {self.size} entries")
        cp = checkpoint or self._covering_checkpoint(index)
        hashes = self.tree.inclusion_proof(index, cp.size)
        return InclusionProof(index, cp.size, self.tree.levels[0][index], hashes, cp)

    def consistency(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        self.refresh()
        try:
            return self.tree.consistency_proof(old_size, new_size)
        except ProofError as exc:
            raise LedgerError(str(exc)) from exc

    def receipt(self, index: int) -> bytes:
        """A one-entry ``.tlog-proof`` receipt, with the entry itself as its extra data."""
        from curata.ledger.receipts import make_receipt

        proof = self.prove(index)
        return make_receipt(proof, self.entry_bytes(index, index + 1)[0])

    # -- verification ------------------------------------------------------------------------
    def verify(self, from_checkpoint: str | None = None) -> VerifyReport:
        """Re-read every entry, rebuild the tree and check it against every signed checkpoint and tile.

        ``from_checkpoint`` is a checkpoint note the caller saw earlier (e.g. a licensee's copy):
        the log must still contain that tree, with the same root, as a prefix.
        """
        report = VerifyReport()
        with self._locked():
            size = self.size
            tree = MerkleTree()
            data_ok = True
            with open(self._entries_path, "rb") as fh:
                raw = fh.read(self._end)
            for i in range(size):
                off = self._offsets[i]
                (n,) = _HEAD.unpack_from(raw, off)
                body = raw[off + _HEAD.size : off + _HEAD.size + n]
                stop = off + _HEAD.size + n
                if raw[stop : stop + _CHECK] != _record_check(raw[off : off + _HEAD.size], body):
                    report.problems.append(f"entry {i}: record checksum fails (bytes altered on disk)")
                    data_ok = False
                h = leaf_hash(body)
                if h != self.tree.levels[0][i]:
                    report.problems.append(f"entry {i}: its hash differs from the tree's leaf")
                    data_ok = False
                tree.append(h)
                try:
                    entry = LedgerEntry.decode(i, body)
                    if entry.kind not in KINDS:
                        report.problems.append(f"entry {i}: unknown kind {entry.kind!r}")
                except LedgerError as exc:
                    report.problems.append(str(exc))
                report.entries_checked += 1
            report.size = size
            report.root = tree.root().hex()
            for cp_size in self.checkpoint_sizes():
                report.checkpoints_checked += 1
                try:
                    cp = self.load_checkpoint(cp_size)
                except LedgerError as exc:
                    report.problems.append(str(exc))
                    continue
                assert cp is not None
                if cp.size != cp_size or cp.size > size:
                    report.problems.append(f"checkpoint {cp_size} names size {cp.size}; the log has {size}")
                elif tree.root(cp.size) != cp.root_hash:
                    report.problems.append(
                        f"the signed checkpoint of size {cp.size} has a root the entries no longer give"
                    )
            if from_checkpoint is not None:
                report.problems.extend(self._check_earlier(from_checkpoint, tree))
            latest = None
            try:
                latest = self.load_checkpoint()
            except LedgerError as exc:
                report.problems.append(str(exc))
            report.problems.extend(self._check_coverage(latest, size))
            if latest is not None and data_ok and latest.size <= size:
                problems = tiles.check(self.folder, tree, self.entry_bytes, latest.size)
                report.problems.extend(problems)
                report.tiles_checked = True
        return report

    def _check_coverage(self, latest: Checkpoint | None, size: int) -> list[str]:
        """The latest checkpoint against the log and the stored checkpoints; entries none covers."""
        problems = []
        sizes = self.checkpoint_sizes()
        stored = sizes[-1] if sizes else 0
        named = latest.size if latest is not None else 0
        if named > size:
            problems.append(
                f"the latest checkpoint names size {named}; the log has {size} entries: entries were removed"
            )
        if stored != named:
            problems.append(
                f"the latest checkpoint names size {named}, checkpoints/ holds one of size {stored}: "
                "one of them was rolled back or removed"
            )
        covered = max(named, stored)
        if size > covered:
            which = f"entry {covered}" if size == covered + 1 else f"entries {covered} to {size - 1}"
            problems.append(
                f"{which}: no signed checkpoint covers it (appended around curata, or by a writer stopped "
                "before it signed; if genuine, `curata ledger checkpoint` signs it)"
            )
        return problems

    def _check_earlier(self, note: str, tree: MerkleTree) -> list[str]:
        try:
            old = Checkpoint.from_note(note, [self.verifier], origin=self.origin)
        except CheckpointError as exc:
            return [f"the given checkpoint does not verify: {exc}"]
        if old.size > tree.size:
            return [f"the given checkpoint has {old.size} entries; the log only {tree.size}: rolled back"]
        try:
            proof = tree.consistency_proof(old.size, tree.size)
            verify_consistency(old.size, tree.size, old.root_hash, tree.root(), proof)
        except ProofError as exc:
            return [f"the log is not consistent with the given checkpoint: {exc}"]
        return []


def _record_check(head: bytes, body: bytes) -> bytes:
    return hashlib.sha256(head + body).digest()[:_CHECK]

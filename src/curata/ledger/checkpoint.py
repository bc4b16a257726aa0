"""C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): the signed head of a log.

The note text is three lines: the log's origin, the tree size in decimal, the base64 root hash;
optional extension lines may follow. The log signs it as a signed note; witnesses add cosignatures.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from curata.ledger.note import NoteError, Signer, Verifier, open_note, parse, sign


class CheckpointError(ValueError):
    """A checkpoint is malformed, unsigned by the expected key, or for another log."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()
    note: str = field(default="", compare=False)  # the signed note, signatures included

    @property
    def text(self) -> str:
        root = base64.b64encode(self.root_hash).decode()
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions))

    def signed(self, signer: Signer) -> Checkpoint:
        return Checkpoint(self.origin, self.size, self.root_hash, self.extensions, sign(self.text, [signer]))

    def with_signature_line(self, line: str) -> Checkpoint:
        """The same checkpoint with one more signature line (a witness cosignature) appended."""
        if not self.note:
            raise CheckpointError("sign the checkpoint before adding cosignatures")
        if line in self.note.split("\n\n", 1)[-1]:
            return self
        return Checkpoint(self.origin, self.size, self.root_hash, self.extensions, self.note + line)

    @classmethod
    def parse_text(cls, text: str, note: str = "") -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointError("a checkpoint has an origin, a size and a root hash, each on a line")
        origin, size_s, root_s, *ext = lines[:-1]
        if not origin:
            raise CheckpointError("the checkpoint's origin line is empty")
        if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
            raise CheckpointError(f"tree size {size_s!r} is not a decimal number")
        try:
            root = base64.b64decode(root_s, validate=True)
        except binascii.Error as exc:
            raise CheckpointError("the root hash is not base64") from exc
        if len(root) != 32:
            raise CheckpointError("the root hash is not 32 bytes")
        return cls(origin, int(size_s), root, tuple(ext), note)

    @classmethod
    def from_note(cls, note: str, verifiers: list[Verifier], *, origin: str | None = None) -> Checkpoint:
        """Parse and verify a signed checkpoint; raise unless a trusted key signed it."""
        try:
            parsed, _good = open_note(note, verifiers)
        except NoteError as exc:
            raise CheckpointError(str(exc)) from exc
        cp = cls.parse_text(parsed.text, note)
        if origin is not None and cp.origin != origin:
            raise CheckpointError(f"checkpoint is for log {cp.origin!r}, not {origin!r}")
        return cp

    @classmethod
    def from_note_unverified(cls, note: str) -> Checkpoint:
        try:
            parsed = parse(note)
        except NoteError as exc:
            raise CheckpointError(str(exc)) from exc
        return cls.parse_text(parsed.text, note)

    def cosigners(self, verifiers: list[Verifier]) -> list[str]:
        """Names of the given witnesses whose cosignatures on this checkpoint verify."""
        parsed = parse(self.note)
        raw = parsed.text.encode()
        names = []
        for v in verifiers:
            for s in parsed.signatures:
                if (s.name, s.key_id) == (v.name, v.key_id) and v.verify(raw, s.signature):
                    names.append(v.name)
                    break
        return names

"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A note is UTF-8 text ending in a newline, a blank line, then one line per signature::

    — <key name> base64(key ID[4] || signature)

The key ID is ``SHA-256(name || "\\n" || type || public key)[:4]``: type ``0x01`` for a note signature,
``0x04`` for a witness cosignature (https://c2sp.org/tlog-cosignature, whose signed message also
carries a timestamp). Verifier keys travel as ``vkey`` strings ``name+hex(key ID)+base64(type||key)``.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
SIG_PREFIX = "— "  # U+2014 EM DASH, then a space
MAX_SIGNATURES = 100


class NoteError(ValueError):
    """A note or key is malformed, or no trusted signature on a note verifies."""


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    name: str
    alg: int
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.alg, raw_public(self.public_key))

    @property
    def vkey(self) -> str:
        raw = bytes([self.alg]) + raw_public(self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(raw).decode()}"

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError(f"verifier key {vkey!r} is not name+keyid+base64key")
        name, hex_id, b64 = parts
        _check_name(name)
        try:
            raw = base64.b64decode(b64, validate=True)
            want_id = bytes.fromhex(hex_id)
        except ValueError as exc:
            raise NoteError(f"verifier key {vkey!r}: {exc}") from exc
        if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise NoteError(f"verifier key {vkey!r} is not an Ed25519 key")
        verifier = cls(name, raw[0], Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_id != want_id:
            raise NoteError(f"verifier key {vkey!r}: the key ID does not match the key")
        return verifier

    def verify(self, text: bytes, sig: bytes) -> bool:
        """Check one signature's bytes (key ID already stripped) over the note text."""
        if self.alg == ALG_COSIGNATURE_V1:
            if len(sig) != 72:
                return False
            (timestamp,) = struct.unpack(">Q", sig[:8])
            message = cosignature_message(text, timestamp)
            sig = sig[8:]
        else:
            message = text
        try:
            self.public_key.verify(sig, message)
        except InvalidSignature:
            return False
        return True


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    return b"cosignature/v1\ntime %d\n" % timestamp + text


@dataclass(frozen=True)
class Signer:
    name: str
    private_key: Ed25519PrivateKey
    alg: int = ALG_ED25519

    def __post_init__(self) -> None:
        _check_name(self.name)

    @classmethod
    def generate(cls, name: str, alg: int = ALG_ED25519) -> Signer:
        return cls(name, Ed25519PrivateKey.generate(), alg)

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.alg, self.private_key.public_key())

    def signature_line(self, text: bytes, *, timestamp: int | None = None) -> str:
        if self.alg == ALG_COSIGNATURE_V1:
            if timestamp is None:
                raise ValueError("a cosignature needs a timestamp")
            sig = struct.pack(">Q", timestamp) + self.private_key.sign(cosignature_message(text, timestamp))
        else:
            sig = self.private_key.sign(text)
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.verifier.key_id + sig).decode()}\n"

    # skey form: PRIVATE+KEY+name+keyid+base64(type || 32-byte seed), as the Go reference writes it
    def to_skey(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        raw = base64.b64encode(bytes([self.alg]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{raw}"

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("not a signing key (PRIVATE+KEY+name+keyid+key)")
        raw = base64.b64decode(parts[4])
        if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise NoteError("the signing key is not an Ed25519 key")
        return cls(parts[2], Ed25519PrivateKey.from_private_bytes(raw[1:]), raw[0])


@dataclass(frozen=True)
class SignatureLine:
    name: str
    key_id: bytes
    signature: bytes  # after the key ID

    def line(self) -> str:
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


@dataclass(frozen=True)
class Note:
    text: str  # ends with a newline
    signatures: tuple[SignatureLine, ...]

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def sign(text: str, signers: list[Signer]) -> str:
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("note text must end with a newline and hold no blank line")
    raw = text.encode()
    return text + "\n" + "".join(s.signature_line(raw) for s in signers)


def parse(note: str) -> Note:
    if "\n\n" not in note:
        raise NoteError("not a signed note: no blank line before the signatures")
    cut = note.rindex("\n\n")
    text, sig_block = note[: cut + 1], note[cut + 2 :]
    if not sig_block.endswith("\n"):
        raise NoteError("the signature block must end with a newline")
    sigs = []
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"malformed signature line {line!r}")
        name, _, b64 = line[len(SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError as exc:
            raise NoteError(f"signature of {name!r} is not base64") from exc
        if not name or len(raw) < 5:
            raise NoteError(f"malformed signature line {line!r}")
        sigs.append(SignatureLine(name, raw[:4], raw[4:]))
    if not sigs or len(sigs) > MAX_SIGNATURES:
        raise NoteError("a note carries between 1 and 100 signatures")
    return Note(text, tuple(sigs))


def open_note(note: str, verifiers: list[Verifier]) -> tuple[Note, list[Verifier]]:
    """Parse ``note`` and return it with the verifiers whose signatures verify.

    Signatures from unknown keys are ignored; a signature from a known key that fails rejects the
    whole note (as the specification requires); a note with no verified signature is rejected.
    """
    parsed = parse(note)
    raw = parsed.text.encode()
    known = {(v.name, v.key_id): v for v in verifiers}
    good: list[Verifier] = []
    for sig in parsed.signatures:
        v = known.get((sig.name, sig.key_id))
        if v is None or v in good:
            continue
        if not v.verify(raw, sig.signature):
            raise NoteError(f"the signature of {sig.name} does not verify: the note was altered")
        good.append(v)
    if not good:
        raise NoteError("no signature on the note is from a trusted key")
    return parsed, good

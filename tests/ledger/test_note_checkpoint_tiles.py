"""C2SP signed notes (the Go reference's published example), checkpoints, cosignatures and tiles."""

from __future__ import annotations

import base64
import struct

import pytest

from curata.ledger import tiles
from curata.ledger import verify_standalone as vs
from curata.ledger.checkpoint import Checkpoint, CheckpointError
from curata.ledger.merkle import MerkleTree, leaf_hash
from curata.ledger.note import ALG_COSIGNATURE_V1, NoteError, Signer, Verifier, open_note, sign

# The example of golang.org/x/mod/sumdb/note and c2sp.org/signed-note.
GO_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
GO_NOTE = (
    "This is an example message.\n\n"
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def test_reference_note_verifies_with_both_implementations() -> None:
    verifier = Verifier.from_vkey(GO_VKEY)
    assert verifier.vkey == GO_VKEY
    note, good = open_note(GO_NOTE, [verifier])
    assert note.text == "This is an example message.\n" and good == [verifier]
    text, sigs = vs.split_note(GO_NOTE)
    _name, alg, raw = vs.parse_vkey(GO_VKEY)
    assert vs._check_signature(alg, raw, text.encode(), sigs[0][2])
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_NOTE.replace("example message", "example massage"), [verifier])


def test_wrong_key_id_and_unknown_signers_are_rejected() -> None:
    with pytest.raises(NoteError, match="key ID"):
        Verifier.from_vkey(GO_VKEY.replace("530d903a", "530d903b"))
    other = Signer.generate("example.com/foo")
    with pytest.raises(NoteError, match="no signature"):
        open_note(GO_NOTE, [other.verifier])


def test_sign_roundtrip_and_skey() -> None:
    signer = Signer.generate("curata/test/ledger")
    again = Signer.from_skey(signer.to_skey())
    note = sign("hello\nworld\n", [again])
    _, good = open_note(note, [signer.verifier])
    assert good[0].vkey == signer.verifier.vkey
    with pytest.raises(NoteError):
        sign("no newline", [signer])
    with pytest.raises(ValueError):
        Signer.generate("bad name")


def test_checkpoint_format_and_cosignature() -> None:
    log = Signer.generate("curata/site-a/ledger")
    witness = Signer.generate("hospital-b.example/witness", ALG_COSIGNATURE_V1)
    cp = Checkpoint("curata/site-a/ledger", 20852163, bytes(range(32))).signed(log)
    assert cp.text == f"curata/site-a/ledger\n20852163\n{base64.b64encode(bytes(range(32))).decode()}\n"
    line = witness.signature_line(cp.text.encode(), timestamp=1679315147)
    cosigned = cp.with_signature_line(line)
    # the cosignature is base64(key ID || u64 timestamp || signature) over the timestamped message
    raw = base64.b64decode(line.split(" ")[-1])
    assert raw[:4] == witness.verifier.key_id and struct.unpack(">Q", raw[4:12])[0] == 1679315147
    parsed = Checkpoint.from_note(cosigned.note, [log.verifier], origin="curata/site-a/ledger")
    assert parsed.size == 20852163 and parsed.cosigners([witness.verifier]) == [witness.name]
    head = vs.verify_checkpoint(cosigned.note, log.verifier.vkey, [witness.verifier.vkey])
    assert head["witnesses"] == [witness.name]
    with pytest.raises(vs.VerificationError, match="did not cosign"):
        vs.verify_checkpoint(cp.note, log.verifier.vkey, [witness.verifier.vkey])
    with pytest.raises(CheckpointError, match="not 'other'"):
        Checkpoint.from_note(cp.note, [log.verifier], origin="other")
    with pytest.raises(CheckpointError):
        Checkpoint.parse_text("origin\n012\nAAAA\n")


@pytest.mark.parametrize(
    ("n", "path"), [(0, "000"), (5, "005"), (1000, "x001/000"), (1234067, "x001/x234/067")]
)
def test_tile_index_encoding(n: int, path: str) -> None:
    assert tiles.encode_index(n) == path


def test_published_tiles_match_the_tree(tmp_path) -> None:  # type: ignore[no-untyped-def]
    entries = [f"e{i}".encode() for i in range(70000)]
    tree = MerkleTree(leaf_hash(e) for e in entries)

    def get(a: int, b: int) -> list[bytes]:
        return entries[a:b]

    tiles.publish(tmp_path, tree, get, 0, 300)
    assert (tmp_path / "tile/0/000").stat().st_size == 256 * 32
    assert (tmp_path / "tile/0/001.p/44").stat().st_size == 44 * 32
    assert (tmp_path / "tile/1/000.p/1").read_bytes() == tree.root(256)
    assert tiles.unbundle((tmp_path / "tile/entries/001.p/44").read_bytes()) == entries[256:300]
    tiles.publish(tmp_path, tree, get, 300, 70000, fsync=False)  # incremental: only the grown tail is written
    assert tiles.check(tmp_path, tree, get, 70000) == []
    assert (tmp_path / "tile/2/000.p/1").read_bytes() == tree.root(65536)
    # a level-1 tile entry is the root of its 256-leaf subtree
    assert tiles.read_hashes(tmp_path, 1, 0, 256)[3] == MerkleTree(tree.levels[0][768:1024]).root()
    tampered = tmp_path / "tile/0/100"
    data = bytearray(tampered.read_bytes())
    data[5] ^= 1
    tampered.write_bytes(bytes(data))
    assert tiles.check(tmp_path, tree, get, 70000) == ["tile tile/0/100 differs from the log"]

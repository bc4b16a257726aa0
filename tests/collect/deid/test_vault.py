"""The re-identification vault: encrypted, append-only, safe under several writer processes."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from curata.collect.deid import Deidentifier, Vault, load_profile
from curata.errors import KeyFileError

from .conftest import KEY, OTHER_KEY, read, to_bytes


def test_round_trip_and_encrypted_at_rest(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "v", KEY)
    ds = read("CT_small.dcm")
    ds.PatientID = "PID-4471123"
    ds.PatientName = "Quixote^Alonso"
    res = Deidentifier(KEY, load_profile("research"), vault=vault, ocr=False).deidentify_bytes(to_bytes(ds))
    blob = vault.path.read_bytes()
    assert b"PID-4471123" not in blob and b"Quixote" not in blob
    recs = vault.lookup(res.record.patient_pseudonym)
    assert recs == [
        {"kind": "patient", "pseudonym": res.record.patient_pseudonym, "patient_id": "PID-4471123",
         "patient_name": "Quixote^Alonso"}
    ]  # fmt: skip
    with pytest.raises(KeyFileError):
        list(Vault(tmp_path / "v", OTHER_KEY).records())


def _writer(folder: str, n: int, worker: int) -> None:
    vault = Vault(Path(folder), KEY)
    for i in range(n):
        vault.append([{"kind": "patient", "pseudonym": f"W{worker}-{i}", "patient_id": "x" * 300}])


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 200, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    recs = list(Vault(tmp_path, KEY).records())
    assert len(recs) == 800
    assert {r["pseudonym"] for r in recs} == {f"W{w}-{i}" for w in range(4) for i in range(200)}


def test_append_only_duplicates_skipped_per_process(tmp_path: Path) -> None:
    vault = Vault(tmp_path, KEY)
    rec = {"kind": "patient", "pseudonym": "P", "patient_id": "1", "patient_name": "A"}
    assert vault.append([rec]) == 1
    assert vault.append([rec]) == 0
    size = vault.path.stat().st_size
    Vault(tmp_path, KEY).append([{**rec, "patient_name": "B"}])
    assert vault.path.stat().st_size > size  # appended, never rewritten
    assert vault.path.stat().st_mode & 0o077 == 0


def test_a_vault_removed_or_replaced_midway_stops_appends(tmp_path: Path) -> None:
    """A vault folder removed while a process writes to it (or the file replaced by another writer
    that made the folder again) raises VaultError on every later append, never a silent 0: the
    records written before are gone, and the caller must not release the file."""
    import shutil

    from curata.errors import VaultError

    first, second = Vault(tmp_path / "v", KEY), Vault(tmp_path / "v", KEY)
    first.append([{"pseudonym": "A", "original": "a"}])
    shutil.rmtree(tmp_path / "v")
    for _ in range(2):  # the failed records are not taken for written
        with pytest.raises(VaultError, match="vault folder"):
            first.append([{"pseudonym": "B", "original": "b"}])
    assert not (tmp_path / "v").exists()  # not made again behind the operator's back
    second.append([{"pseudonym": "C", "original": "c"}])  # its first append: makes the folder
    with pytest.raises(VaultError, match="vault file"):
        first.append([{"pseudonym": "B", "original": "b"}])
    assert [r["pseudonym"] for r in Vault(tmp_path / "v", KEY).records()] == ["C"]


def test_a_failed_append_is_retried_in_full(tmp_path: Path) -> None:
    """Records whose line was not written count as unwritten: the next append writes them (they
    were taken for written, and a retry by the engine's next lane released the file without them)."""
    vault = Vault(tmp_path / "v", KEY)
    vault.path.parent.mkdir()
    vault.path.mkdir()  # the file's name taken by a folder: the open fails
    with pytest.raises(IsADirectoryError):
        vault.append([{"pseudonym": "B", "original": "b"}])
    vault.path.rmdir()
    assert vault.append([{"pseudonym": "B", "original": "b"}]) == 1
    assert [r["pseudonym"] for r in vault.records()] == ["B"]

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from curata.errors import BlobNotFound, StoreError
from curata.store import FsspecStore, LocalStore, open_store


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    import uuid

    return FsspecStore(f"memory://curata-{uuid.uuid4().hex}")


def test_put_is_content_addressed_and_deduplicated(store) -> None:  # type: ignore[no-untyped-def]
    data = b"\x00DICM" * 1000
    d1 = store.put_bytes(data)
    d2 = store.put_bytes(data)
    assert d1 == d2 == hashlib.sha256(data).hexdigest()
    assert list(store.digests()) == [d1]
    assert store.get_bytes(d1) == data
    assert store.size(d1) == len(data)


def test_put_file_streams_and_matches_put_bytes(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    digest = store.put_file(src)
    assert digest == hashlib.sha256(src.read_bytes()).hexdigest()
    assert store.exists(digest)


def test_missing_blob_is_a_clear_error(store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BlobNotFound, match="not in the store"):
        store.get_bytes("0" * 64)
    with pytest.raises(StoreError, match="not a sha256"):
        store.exists("../../etc/passwd")


def test_local_layout_is_sharded_and_read_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    digest = store.put_bytes(b"abc")
    path = store.local_path(digest)
    assert path == tmp_path / "s" / "sha256" / digest[:2] / digest[2:4] / digest
    assert path is not None
    assert oct(path.stat().st_mode & 0o777) == "0o444"
    assert list((tmp_path / "s" / "tmp").iterdir()) == []


def test_verify_reports_corrupt_and_missing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    good = store.put_bytes(b"good")
    bad = store.put_bytes(b"will be damaged")
    path = store.local_path(bad)
    assert path is not None
    os.chmod(path, 0o644)
    path.write_bytes(b"will be damagEd")
    report = store.verify(expected={good, bad, "f" * 64})
    assert report.checked == 2
    assert report.corrupt == [bad]
    assert report.missing == ["f" * 64]
    assert not report.ok


def test_stale_temp_files_are_swept_and_never_listed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    (tmp_path / "s" / "tmp" / "put-dead").write_bytes(b"half a blob")
    assert list(store.digests()) == []
    assert store.sweep_temp() == 1


def test_open_store_picks_backend(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path / "a")), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path / 'b'}"), LocalStore)
    assert isinstance(open_store("memory://zzz"), FsspecStore)


def test_a_blob_staged_over_a_kept_file_reuses_it_and_keeps_nothing_of_it(tmp_path: Path) -> None:
    """``stage_bytes(over=...)`` (the spool's drain): the blob is written over a file that is no
    longer needed, on its inode, and cut to its own length: not one byte of the old content stays."""
    store = LocalStore(tmp_path / "store")
    old = tmp_path / "store" / "kept.dcm"
    old.write_bytes(b"Doe^Jane PAT-0001 " * 4096)  # longer than the blob
    inode = old.stat().st_ino
    blob = b"de-identified" * 100
    digest, tmp = store.stage_bytes(blob, sync=False, over=old)
    assert tmp == old and tmp.stat().st_ino == inode
    assert tmp.read_bytes() == blob
    store.commit_staged([(digest, tmp)], synced=False)
    assert not old.exists()
    assert store.get_bytes(digest) == blob and digest == hashlib.sha256(blob).hexdigest()
    assert (tmp_path / "store" / "sha256" / digest[:2] / digest[2:4] / digest).stat().st_ino == inode
    # a blob stored already leaves the kept file as it is (for the next one)
    again = tmp_path / "store" / "kept2.dcm"
    again.write_bytes(b"x")
    assert store.stage_bytes(blob, over=again) == (digest, None)
    assert again.read_bytes() == b"x"
    # a kept file that is gone: a new temp file is written instead
    gone = tmp_path / "store" / "gone.dcm"
    _digest2, tmp2 = store.stage_bytes(b"other", over=gone)
    assert tmp2 is not None and tmp2 != gone and tmp2.read_bytes() == b"other"

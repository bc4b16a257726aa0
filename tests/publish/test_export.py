"""Exports: fingerprinted copies that change no voxel, verify_release.py, trace, the loader, the CLI."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from curata.errors import ConfigError, IntegrityError
from curata.publish import export_release, trace_file
from curata.publish import fingerprint as fp
from curata.publish.loader import ReleaseDataset, ReleaseDirectory, torch_dataset
from curata.publish.manifest import Manifest
from curata.publish.release import get_version
from tests.conftest import require_module

# The exported script must work without Curata: run it with every `curata` import blocked.
_NO_CURATA = (
    "import runpy, sys; sys.modules['curata'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _verify(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-c", _NO_CURATA, str(folder / "verify_release.py"), str(folder), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_curata_blocker_works(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text("import curata\n")
    probe = subprocess.run(
        [sys.executable, "-I", "-c", _NO_CURATA, str(script)], capture_output=True, text=True
    )
    assert probe.returncode != 0 and "curata" in probe.stderr


@pytest.fixture
def copy_of_export(released, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    _, _, export = released
    target = tmp_path / "copy"
    shutil.copytree(export, target)
    return target


def test_verify_release_passes_on_a_fresh_export(released) -> None:  # type: ignore[no-untyped-def]
    _, _, export = released
    result = _verify(export)
    assert result.returncode == 0, result.stderr
    assert "OK: lungs@1 for ACME AI" in result.stdout


@pytest.mark.parametrize("kind", ["dicom", "nifti", "json", "card"])
def test_one_byte_changed_in_any_file_is_caught(copy_of_export: Path, kind: str) -> None:
    pattern = {
        "dicom": "dicom/**/*.dcm",
        "nifti": "nifti/**/*.nii.gz",
        "json": "datalist.json",
        "card": "card/*.png",
    }[kind]
    victim = sorted(copy_of_export.glob(pattern))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    result = _verify(copy_of_export)
    assert result.returncode == 1
    assert victim.relative_to(copy_of_export).as_posix() in result.stderr


def test_one_byte_changed_in_the_manifest_is_caught(copy_of_export: Path) -> None:
    manifest = copy_of_export / "manifest.json"
    text = manifest.read_text()
    # change one size digit of one file entry: the JSON stays valid, the sha256 does not
    i = text.index('"size":') + len('"size":')
    digit = text[i]
    manifest.write_text(text[:i] + ("1" if digit != "1" else "2") + text[i + 1 :])
    result = _verify(copy_of_export)
    assert result.returncode == 1 and "FAILED" in result.stderr


def test_a_manifest_rewritten_to_match_a_changed_file_is_caught(copy_of_export: Path) -> None:
    """A forger who fixes the manifest after changing a file still fails: the log holds the old one."""
    import hashlib

    from curata.publish.manifest import merkle_root

    victim = sorted(copy_of_export.glob("nifti/**/*.nii.gz"))[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    doc = json.loads((copy_of_export / "manifest.json").read_bytes())
    rel = victim.relative_to(copy_of_export).as_posix()
    for f in doc["files"]:
        if f["path"] == rel:
            f["sha256"], f["size"] = hashlib.sha256(victim.read_bytes()).hexdigest(), victim.stat().st_size
    doc["merkle_root"] = merkle_root(
        [f"{f['sha256']} {f['size']} {f['path']}\n".encode() for f in doc["files"]]
    )
    (copy_of_export / "manifest.json").write_bytes(
        json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    )
    result = _verify(copy_of_export)
    assert result.returncode == 1
    assert "not the manifest the log recorded" in result.stderr


def test_an_added_file_is_caught(copy_of_export: Path) -> None:
    (copy_of_export / "nifti" / "images" / "extra.nii.gz").write_bytes(b"not ours")
    result = _verify(copy_of_export)
    assert result.returncode == 1 and "not in the manifest: nifti/images/extra.nii.gz" in result.stderr


def test_a_foreign_log_key_is_refused(copy_of_export: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    result = _verify(copy_of_export, "--key", raw.hex())
    assert result.returncode != 0


def test_marks_change_no_voxel_and_differ_per_licensee(released, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, release, acme = released
    other = Path(export_release(ws, release.ref, tmp_path / "globex", licensee="Globex").directory)
    with ws.catalog.session() as s:
        original = Manifest.from_bytes(ws.store.get_bytes(get_version(s, release.ref).manifest_digest))
    dicoms = [f for f in original.files if f.path.endswith(".dcm") and "/seg-" not in f.path]
    for f in dicoms[:6]:
        src = pydicom.dcmread(io.BytesIO(ws.store.get_bytes(f.sha256)))
        a, b = pydicom.dcmread(acme / f.path), pydicom.dcmread(other / f.path)
        assert a.PixelData == b.PixelData == src.PixelData
        assert len({a.SOPInstanceUID, b.SOPInstanceUID, src.SOPInstanceUID}) == 3
        assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
        assert (a.StudyInstanceUID, a.SeriesInstanceUID) == (src.StudyInstanceUID, src.SeriesInstanceUID)
        assert fp.dicom_mark(a) != fp.dicom_mark(b)
    # the SEG still points at the remapped image instances of the same copy
    seg_path = next(f.path for f in original.files if "/seg-" in f.path)
    seg = pydicom.dcmread(acme / seg_path)
    refs = {
        str(item.ReferencedSOPInstanceUID)
        for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    images = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        for p in (acme / seg_path).parent.glob("*.dcm")
        if "seg-" not in p.name
    }
    assert refs == images
    for f in [f for f in original.files if f.path.endswith(".nii.gz")][:4]:
        src = ws.store.get_bytes(f.sha256)
        a, b = (acme / f.path).read_bytes(), (other / f.path).read_bytes()
        assert fp.voxel_bytes_nifti(a) == fp.voxel_bytes_nifti(b) == fp.voxel_bytes_nifti(src)
        assert fp.nifti_mark(a) != fp.nifti_mark(b) and fp.nifti_mark(src) is None
    assert trace_file(ws, other / dicoms[0].path).matches[0].licensee == "Globex"


def test_trace_names_the_licensee(released, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, _, acme = released
    dcm = sorted(acme.glob("dicom/**/*.dcm"))[0]
    found = trace_file(ws, dcm)
    assert found.unique and found.matches[0].licensee == "ACME AI"
    assert found.how == "DICOM private attribute"
    # a leaker strips private attributes: the keyed UID still names them
    ds = pydicom.dcmread(dcm)
    ds.remove_private_tags()
    stripped = tmp_path / "stripped.dcm"
    ds.save_as(stripped)
    found = trace_file(ws, stripped)
    assert found.how == "fingerprinted instance UID" and found.matches[0].licensee == "ACME AI"
    nii = sorted(acme.glob("nifti/images/*.nii.gz"))[0]
    assert trace_file(ws, nii).matches[0].licensee == "ACME AI"


def test_export_refuses_a_non_empty_folder_and_no_licensee(released, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, release, _ = released
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        export_release(ws, release.ref, tmp_path / "full", licensee="A")
    with pytest.raises(ConfigError, match="licensee"):
        export_release(ws, release.ref, tmp_path / "new", licensee=" ")


def test_loader_iterates_a_split_and_checks_hashes(copy_of_export: Path) -> None:
    release = ReleaseDirectory(copy_of_export)
    assert release.ref == "lungs@1"
    train = ReleaseDataset(release, split="train")
    items = list(train)
    assert len(items) == len(release.datalist("train")) > 0
    for item in items:
        assert item["image"].shape == (4, 16, 16) and item["label"].shape == (4, 16, 16)
        assert int(item["label"].sum()) == 60
    patients = {i["patient"] for i in items}
    assert all(release.splits()[p] == "train" for p in patients)
    victim = copy_of_export / release.datalist("train", absolute=False)[0]["image"]
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        train[0]
    data = require_module("torch.utils.data")
    as_torch = torch_dataset(release, "validation", verify=False)
    assert isinstance(as_torch, data.Dataset) and len(as_torch) == len(release.datalist("validation"))
    batches = list(data.DataLoader(as_torch, batch_size=1, collate_fn=lambda b: b))
    assert [b[0]["case_id"] for b in batches] == [i["case_id"] for i in release.datalist("validation")]


def test_monai_datalist_paths_resolve(released) -> None:  # type: ignore[no-untyped-def]
    _, _, export = released
    datalist = json.loads((export / "datalist.json").read_text())
    for key in ("training", "validation", "test"):
        for item in datalist[key]:
            assert (export / item["image"]).is_file()
            assert "label" not in item or (export / item["label"]).is_file()


def test_cli_ls_show_trace_and_errors(released) -> None:  # type: ignore[no-untyped-def]
    from curata.cli import app

    ws, release, acme = released
    runner = CliRunner()
    out = runner.invoke(app, ["release", "ls", "-w", str(ws.root), "--json"])
    assert out.exit_code == 0, out.output
    assert "lungs@1" in {r["ref"] for r in json.loads(out.stdout)}
    out = runner.invoke(app, ["release", "show", "lungs@1", "-w", str(ws.root), "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["patients"] == release.patients
    dcm = sorted(acme.glob("dicom/**/*.dcm"))[0]
    out = runner.invoke(app, ["trace", str(dcm), "-w", str(ws.root), "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["matches"][0]["licensee"] == "ACME AI"
    out = runner.invoke(app, ["release", "show", "lungs@99", "-w", str(ws.root)])
    assert out.exit_code != 0


def test_cli_create_and_export(released, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from curata.cli import app

    ws, _, _ = released
    runner = CliRunner()
    args = [
        "release",
        "create",
        "cli",
        "--format",
        "dicom,monai",
        "--split",
        "2,1",
        "-w",
        str(ws.root),
        "--json",
    ]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["ref"] == "cli@1" and sum(result["splits"].values()) == result["patients"]
    target = tmp_path / "exp"
    out = runner.invoke(
        app, ["release", "export", "cli@1", str(target), "--licensee", "L", "-w", str(ws.root)]
    )
    assert out.exit_code == 0, out.output
    assert _verify(target).returncode == 0
    out = runner.invoke(app, ["release", "create", "cli", "--split", "1,2,3,4", "-w", str(ws.root)])
    assert out.exit_code != 0


def test_task_layout_puts_each_volume_alone_and_first(released) -> None:  # type: ignore[no-untyped-def]
    from curata.publish.export import CHUNK, _fingerprint_kinds, _jobs
    from curata.publish.formats import Fingerprint

    ws, release, _ = released
    with ws.catalog.session() as session:
        manifest = Manifest.from_bytes(ws.store.get_bytes(get_version(session, release.ref).manifest_digest))
    by_digest: dict[str, list[str]] = {}
    for f in manifest.files:
        by_digest.setdefault(f.sha256, []).append(f.path)
    items = _fingerprint_kinds(by_digest)
    jobs = _jobs(items, {f.sha256: f.size for f in manifest.files})
    flat = [item for job in jobs for item in job]
    assert sorted(d for d, _, _ in flat) == sorted(by_digest)  # every object once, none lost
    volumes = [job for job in jobs if any(kind is Fingerprint.NIFTI for _, _, kind in job)]
    assert volumes and all(len(job) == 1 for job in volumes)
    assert jobs[: len(volumes)] == volumes  # the costly ones start first
    assert all(len(job) <= CHUNK for job in jobs)


def test_export_bytes_do_not_depend_on_the_workers(released, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from curata.workspace import Workspace

    ws, release, export = released
    monkeypatch.setenv("CURATA_RUNTIME__WORKERS", "1")
    serial = export_release(Workspace.open(ws.root), release.ref, tmp_path / "serial", licensee="ACME AI")
    assert (Path(serial.directory) / "manifest.json").read_bytes() == (export / "manifest.json").read_bytes()


# -- a stored object changed after the release: the export is refused as a whole (outside review 16, F2)
@pytest.fixture
def own_workspace(released, tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    """A copy of the released workspace this test may damage (the session's one stays intact)."""
    from curata.workspace import Workspace

    ws, release, _ = released
    monkeypatch.delenv("CURATA_DATABASE_URL", raising=False)
    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    shutil.copytree(ws.root, tmp_path / "ws")
    return Workspace.open(tmp_path / "ws"), release


def _release_files(ws, ref: str) -> list:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as session:
        digest = get_version(session, ref).manifest_digest
    return Manifest.from_bytes(ws.store.get_bytes(digest)).files


def _tamper(ws, digest: str) -> None:  # type: ignore[no-untyped-def]
    """Change a stored object in place so that it stays well-formed: one byte of a DICOM or JSON file
    (its size kept), one voxel byte inside a gzipped NIfTI (re-compressed: its CRC is right)."""
    import gzip

    path = ws.store.local_path(digest)
    data = path.read_bytes()
    gz = data[:2] == b"\x1f\x8b"
    body = bytearray(gzip.decompress(data) if gz else data)
    body[-3 if gz else len(body) // 2] ^= 0x20
    path.chmod(0o644)
    path.write_bytes(gzip.compress(bytes(body)) if gz else bytes(body))


def _ledger_size(ws) -> int:  # type: ignore[no-untyped-def]
    from curata.ledger import Ledger

    return Ledger.open(ws).size


@pytest.mark.parametrize(
    "pattern", ["dicom/*/*/*.dcm", "nifti/*.nii.gz", "datalist.json"], ids=["dicom", "nifti", "derived"]
)
def test_export_refuses_a_stored_object_changed_since_the_release(
    own_workspace, tmp_path: Path, pattern: str
) -> None:  # type: ignore[no-untyped-def]
    import fnmatch

    ws, release = own_workspace
    files = _release_files(ws, release.ref)
    victim = sorted((f for f in files if fnmatch.fnmatch(f.path, pattern)), key=lambda f: f.path)[0]
    _tamper(ws, victim.sha256)
    before = _ledger_size(ws)
    out = tmp_path / "out"
    with pytest.raises(IntegrityError) as caught:
        export_release(ws, release.ref, out, licensee="Tamper Test")
    # named by its release path, in `release verify`'s words
    assert f"corrupt in the store: {victim.path}" in caught.value.message
    assert _ledger_size(ws) == before  # nothing logged as exported
    assert not out.exists() and not out.with_name("out.partial").exists()  # no folder left
    assert [p.name for p in tmp_path.iterdir()] == ["ws"]


def test_export_refuses_a_missing_stored_object(own_workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, release = own_workspace
    victim = sorted(_release_files(ws, release.ref), key=lambda f: f.path)[-1]
    ws.store.local_path(victim.sha256).unlink()
    before = _ledger_size(ws)
    with pytest.raises(IntegrityError, match=f"missing from the store: {victim.path}"):
        export_release(ws, release.ref, tmp_path / "out", licensee="Tamper Test")
    assert _ledger_size(ws) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ws"]


def test_export_refuses_a_changed_release_manifest(own_workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, release = own_workspace
    with ws.catalog.session() as session:
        digest = get_version(session, release.ref).manifest_digest
    # still a well-formed manifest (its Merkle root recomputed): one DICOM's entry vouches for another's bytes
    manifest = Manifest.from_bytes(ws.store.get_bytes(digest))
    dicom = sorted((f for f in manifest.files if f.path.endswith(".dcm")), key=lambda f: f.path)
    other = dicom[1]
    manifest.files = [
        dataclasses.replace(f, sha256=other.sha256, size=other.size) if f.path == dicom[0].path else f
        for f in manifest.files
    ]
    path = ws.store.local_path(digest)
    path.chmod(0o644)
    path.write_bytes(manifest.to_bytes())
    before = _ledger_size(ws)
    with pytest.raises(IntegrityError, match="manifest: its bytes no longer hash"):
        export_release(ws, release.ref, tmp_path / "out", licensee="Tamper Test")
    assert _ledger_size(ws) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ws"]


def test_cli_export_of_a_tampered_release_fails_and_an_intact_one_verifies(
    own_workspace, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from curata.cli import app

    ws, release = own_workspace
    good = tmp_path / "good"
    runner = CliRunner()
    args = ["release", "export", release.ref, "--licensee", "Tamper Test", "--workspace", str(ws.root)]
    ok = runner.invoke(app, [*args[:3], str(good), *args[3:]])
    assert ok.exit_code == 0, ok.output
    assert _verify(good).returncode == 0  # as the licensee runs it
    dicom = sorted(
        (f for f in _release_files(ws, release.ref) if f.path.endswith(".dcm")), key=lambda f: f.path
    )
    _tamper(ws, dicom[0].sha256)
    before = _ledger_size(ws)
    bad = runner.invoke(app, [*args[:3], str(tmp_path / "bad"), *args[3:]])
    assert bad.exit_code != 0 and isinstance(bad.exception, IntegrityError)  # `main` prints its message
    assert f"corrupt in the store: {dicom[0].path}" in bad.exception.message
    assert _ledger_size(ws) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "ws"]


def test_export_refuses_a_manifest_its_log_entry_does_not_vouch_for(own_workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A substitute manifest, stored intact and named by the catalog, is not the one the release entry logged."""
    ws, release = own_workspace
    with ws.catalog.session() as session:
        version = get_version(session, release.ref)
        manifest = Manifest.from_bytes(ws.store.get_bytes(version.manifest_digest))
        manifest.files = manifest.files[1:]
        version.manifest_digest = ws.store.put_bytes(manifest.to_bytes())
        version.merkle_root = manifest.merkle_root()
        index = version.ledger_index
        session.commit()
    before = _ledger_size(ws)
    with pytest.raises(IntegrityError, match=f"log entry {index} is not this version's manifest"):
        export_release(ws, release.ref, tmp_path / "out", licensee="Tamper Test")
    assert _ledger_size(ws) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ws"]

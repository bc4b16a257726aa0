"""A licensee's copy of a release: fingerprinted files, their manifest, a log receipt and the verifier.

The copy is written into ``DIR.partial`` and renamed to ``DIR`` when complete, so a half-written export
never looks finished. Every stored object is hashed as it is read and must match the release manifest's
sha256 (the manifest the version's ``release`` log entry vouches for): an object changed or lost in the
store since the release refuses the export as a whole, before anything is logged, and the partial folder
is removed. The export manifest is kept in the store (for ``curata trace``), logged as an
``export`` entry, and the entry's receipt ships in ``ledger/export.tlog-proof`` with the log's public key.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from sqlalchemy import select

from curata._io import fsync_file
from curata.errors import BlobNotFound, ConfigError, InputError, IntegrityError
from curata.publish import fingerprint as fp
from curata.publish.formats import FORMATS, Fingerprint, check_files
from curata.publish.formats import clinical as clinical_fp
from curata.publish.manifest import Manifest, ManifestFile
from curata.publish.models import ReleaseExport
from curata.publish.records import ExportResult, TraceMatch, TraceResult
from curata.publish.release import ReleaseError, ensure_logged, get_version
from curata.publish.verify_release import script_source
from curata.runtime import imap_unordered
from curata.workspace import Workspace


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def _fsync_tree(root: Path, only: tuple[str, ...]) -> None:
    for name in only:
        target = root / name
        paths = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
        for path in paths:
            fsync_file(path)


# -- fingerprinting in worker processes ---------------------------------------------------------
CHUNK = 32
BIG = 4 << 20  # bytes: an object this size or larger is a task of its own


@dataclass
class _ExportContext:
    store_url: str
    key: bytes
    mark: str
    root: str
    store: Any = None
    remap: Any = None
    rows: bytes = b""


_CTX: _ExportContext | None = None

# `release verify`'s words for a release file whose stored object no longer matches its manifest
CORRUPT = "corrupt in the store"
MISSING = "missing from the store"
READ = 1 << 20


@dataclass(frozen=True)
class _StoreFault:
    """A stored object refused as read: ``CORRUPT`` or ``MISSING``."""

    reason: str


def _read_checked(store: Any, digest: str) -> bytes | _StoreFault:
    """The object's bytes, hashed as they are read (one pass): the release manifest's sha256 is the
    object's store key, so bytes that no longer hash to it were changed in the store since the release."""
    h = hashlib.sha256()
    parts: list[bytes] = []
    try:
        with store.open(digest) as fh:
            while chunk := fh.read(READ):
                h.update(chunk)
                parts.append(chunk)
    except (BlobNotFound, FileNotFoundError):
        return _StoreFault(MISSING)
    if h.hexdigest() != digest:
        return _StoreFault(CORRUPT)
    return b"".join(parts)


def _init_export(ctx: _ExportContext) -> None:
    global _CTX
    from curata.store import open_store

    ctx.store = open_store(ctx.store_url)
    ctx.remap = fp.uid_mapper(ctx.key, ctx.mark)
    ctx.rows = clinical_fp.row_key(ctx.key, ctx.mark)
    _CTX = ctx


def _export_one(
    ctx: _ExportContext, digest: str, paths: list[str], kind: Fingerprint
) -> tuple[str, int] | str | _StoreFault:
    data = _read_checked(ctx.store, digest)
    if isinstance(data, _StoreFault):
        return data  # nothing of it is written
    try:
        if kind is Fingerprint.DICOM:
            data = fp.fingerprint_dicom(data, ctx.mark, ctx.remap)
        elif kind is Fingerprint.NIFTI:
            data = fp.fingerprint_nifti(data, ctx.mark)
        elif kind is Fingerprint.TABLE:
            data = clinical_fp.fingerprint_table(data, paths[0], ctx.rows, ctx.mark)
        elif kind is Fingerprint.VCF:
            data = clinical_fp.fingerprint_vcf(data, ctx.mark)
    except Exception as exc:  # reported against the file; the export as a whole then fails
        return f"{type(exc).__name__}: {exc}"
    root = Path(ctx.root).resolve()
    for rel in paths:
        target = (root / rel).resolve()
        if not target.is_relative_to(root) or target == root:
            # paths are built from data (UIDs, series names): one holding ".." must not climb out
            return "a path built from the data leaves the export folder; refused"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return hashlib.sha256(data).hexdigest(), len(data)


def _export_chunk(
    job: list[tuple[str, list[str], Fingerprint]],
) -> list[tuple[list[str], tuple[str, int] | str | _StoreFault]]:
    assert _CTX is not None
    return [(paths, _export_one(_CTX, digest, paths, kind)) for digest, paths, kind in job]


def _fingerprint_kinds(paths_by_digest: dict[str, list[str]]) -> list[tuple[str, list[str], Fingerprint]]:
    """Each stored object with its paths and the one way to mark it; a file no registered format
    declares, or one object claimed as two kinds, fails before any byte is written."""
    kinds = check_files([p for paths in paths_by_digest.values() for p in paths], FORMATS)
    out = []
    for digest, paths in paths_by_digest.items():
        found = {kinds[p] for p in paths}
        if len(found) != 1:
            raise ReleaseError(f"{', '.join(paths)}: one object declared as {sorted(found)} by its formats")
        out.append((digest, paths, found.pop()))
    return out


def _jobs(
    items: list[tuple[str, list[str], Fingerprint]], sizes: dict[str, int]
) -> list[list[tuple[str, list[str], Fingerprint]]]:
    """The pool's tasks: every NIfTI or large object alone, largest first, then the rest in chunks.

    A NIfTI volume costs seconds (gunzip, mark, re-gzip) where a DICOM instance costs milliseconds; in
    path order the volumes sat together in one or two chunks at the end, so one worker re-compressed
    them all while the others idled. Alone and first, they spread over every worker."""

    def alone(item: tuple[str, list[str], Fingerprint]) -> bool:
        return item[2] is Fingerprint.NIFTI or sizes.get(item[0], 0) >= BIG

    big = sorted(filter(alone, items), key=lambda i: (-sizes.get(i[0], 0), i[0]))
    small = [i for i in items if not alone(i)]
    return [[i] for i in big] + [small[k : k + CHUNK] for k in range(0, len(small), CHUNK)]


def _refused(label: str, problems: list[str]) -> IntegrityError:
    shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    return IntegrityError(
        f"{label}: export refused, the store no longer holds the release as logged: {shown}",
        hint=f"run `curata release verify {label}` for every file, and restore the store from a backup",
    )


def _check_logged(ws: Workspace, label: str, index: int | None, digest: str) -> None:
    """The version's ``release`` log entry must vouch for the manifest the export is built from."""
    if index is None:
        return
    from curata.ledger import Ledger

    entry = Ledger.open(ws).entry(index)
    if entry.kind != "release" or entry.payload.get("manifest_sha256") != digest:
        raise _refused(label, [f"log entry {index} is not this version's manifest"])


def _write_files(
    ws: Workspace,
    label: str,
    release_manifest: Manifest,
    key: bytes,
    mark: str,
    partial: Path,
    on_file: Callable[[], None] | None,
) -> list[ManifestFile]:
    """Every release file, fingerprinted, into ``partial``; each stored object checked as it is read.

    One task per stored object (nnU-Net shares the NIfTI files' bytes), in chunks over the pool. The
    first object changed or lost in the store stops the export (the pool's tasks in flight end first)."""
    by_digest: dict[str, list[str]] = {}
    for f in release_manifest.files:
        by_digest.setdefault(f.sha256, []).append(f.path)
    sizes = {f.sha256: f.size for f in release_manifest.files}
    jobs = _jobs(_fingerprint_kinds(by_digest), sizes)
    ctx = _ExportContext(ws.store_url, key, mark, str(partial))
    workers = ws.workers()
    written: dict[str, tuple[str, int]] = {}
    errors: list[str] = []
    faults: list[str] = []
    results = imap_unordered(
        _export_chunk,
        jobs,
        workers=workers if len(jobs) > 1 else 1,
        initializer=_init_export,
        initargs=(ctx,),
    )
    try:
        for _job, chunk in results:
            for paths, outcome in chunk:
                if isinstance(outcome, _StoreFault):
                    faults.extend(f"{outcome.reason}: {p}" for p in sorted(paths))
                elif isinstance(outcome, str):
                    errors.append(f"{paths[0]}: {outcome}")
                else:
                    for path in paths:
                        written[path] = outcome
                        if on_file:
                            on_file()
            if faults:
                break
    finally:
        close = getattr(results, "close", None)  # a stop ends the pool's tasks in flight first
        if close is not None:
            close()
    if faults:
        raise _refused(label, faults)
    if errors:
        raise ReleaseError(f"{len(errors)} file(s) could not be fingerprinted: {'; '.join(errors[:3])}")
    return [ManifestFile(p, *written[p]) for p in sorted(written)]


def export_release(
    ws: Workspace, ref: str, out_dir: Path | str, licensee: str, on_file: Callable[[], None] | None = None
) -> ExportResult:
    """Write ``licensee``'s fingerprinted copy of ``NAME@V`` into ``out_dir`` and log the export.

    Refused as a whole (``IntegrityError``, nothing logged, no folder left) where the release manifest
    or any object it lists no longer hashes to what the version's log entry vouches for."""
    licensee = licensee.strip()
    if not licensee:
        raise ConfigError("--licensee is required: every export names who receives it")
    out = Path(out_dir).resolve()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty", hint="export into a new folder")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    with ws.catalog.session() as session:
        version = get_version(session, ref)
        label = f"{version.release.name}@{version.version}"
        raw = ws.store.get_bytes(version.manifest_digest)
        if hashlib.sha256(raw).hexdigest() != version.manifest_digest:
            raise _refused(label, ["manifest: its bytes no longer hash to the digest the catalog records"])
        # a version a kill left unlogged is logged before it leaves; a logged one, as this manifest
        _check_logged(ws, label, ensure_logged(ws, session, version), version.manifest_digest)
        release_manifest = Manifest.from_bytes(raw)
        key = ws.site_key()
        mark = fp.make_mark(key, label, licensee)
        try:
            files = _write_files(ws, label, release_manifest, key, mark, partial, on_file)
            manifest = Manifest(
                release_manifest.release,
                release_manifest.version,
                files,
                {"licensee": licensee, "release_manifest_sha256": version.manifest_digest},
            )
            manifest_bytes = manifest.to_bytes()
            manifest_sha = ws.store.put_bytes(manifest_bytes)  # kept for `curata trace`
            _write(partial / "manifest.json", manifest_bytes)
            _write(partial / "verify_release.py", script_source().encode())

            # every export is logged: the receipt ties the licensee to this manifest
            from curata.ledger import Ledger

            ledger = Ledger.open(ws)
            entry = ledger.append(
                "export",
                {
                    "release": version.release.name,
                    "version": version.version,
                    "licensee": licensee,
                    "manifest_sha256": manifest_sha,
                    "release_manifest_sha256": version.manifest_digest,
                    "files": len(files),
                    "bytes": manifest.total_size,
                },
            )
            index = entry.index
            ledger.checkpoint()
            receipt = ledger.receipt(index)
            vkey = (ledger.folder / "log.vkey").read_text()
            _write(partial / "ledger" / "export.tlog-proof", receipt)
            _write(partial / "ledger" / "log.vkey", vkey.encode())
            _fsync_tree(partial, only=("manifest.json", "verify_release.py", "ledger"))
            if out.exists():
                out.rmdir()
            partial.rename(out)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)  # a refused or failed copy leaves no folder
            raise

        existing = session.scalar(select(ReleaseExport).where(ReleaseExport.mark == mark))
        if existing is None:
            session.add(
                ReleaseExport(
                    version_id=version.id,
                    licensee=licensee,
                    mark=mark,
                    manifest_sha256=manifest_sha,
                    ledger_index=index,
                )
            )
        else:
            existing.manifest_sha256, existing.ledger_index = manifest_sha, index
    return ExportResult(
        ref=label,
        licensee=licensee,
        directory=str(out),
        files=len(files),
        bytes=manifest.total_size,
        manifest_sha256=manifest_sha,
        ledger_index=index,
    )


# -- tracing a leaked file ---------------------------------------------------------------------
def trace_file(ws: Workspace, path: Path | str) -> TraceResult:
    """Name the licensee whose copy ``path`` came from: by its mark (DICOM private attribute or NIfTI
    header), by its fingerprinted instance UID where the private attribute was stripped, or else by its
    exact bytes in an export manifest."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    mark, how, sop_uid = None, None, None
    low = path.name.lower()
    table = low.endswith((".parquet", ".csv"))
    if table or low.endswith((".vcf.gz", ".vcf")):
        try:
            if table:
                mark, how = clinical_fp.table_mark(data, low), "Parquet metadata mark"
            else:
                mark, how = clinical_fp.vcf_mark(data), "VCF header mark"
        except (OSError, ValueError):  # pyarrow's errors are both
            mark = None
    elif data[:2] == b"\x1f\x8b" or path.name.endswith(".nii"):
        try:
            mark, how = fp.nifti_mark(data), "NIfTI header mark"
        except (OSError, EOFError):
            mark = None
    else:
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            mark, how = fp.dicom_mark(ds), "DICOM private attribute"
            sop_uid = str(ds.get("SOPInstanceUID", "")) or None
        except Exception:  # not DICOM: fall through to the byte match
            mark = None
    digest = hashlib.sha256(data).hexdigest()
    with ws.catalog.session() as session:
        exports = list(session.scalars(select(ReleaseExport).order_by(ReleaseExport.id)))
        found = [e for e in exports if mark and e.mark == mark]
        if not found and sop_uid:
            found = _by_uid(ws, session, exports, sop_uid)
            how = "fingerprinted instance UID"
        if not found and table:
            key = ws.site_key()
            found = [e for e in exports if _ordered_for(data, low, clinical_fp.row_key(key, e.mark))]
            how = "row order keyed for the licensee"
        if not found:
            found = [e for e in exports if _manifest_has(ws, e.manifest_sha256, digest)]
            how = "exact bytes in an export manifest"
        matches = [
            TraceMatch(
                licensee=e.licensee,
                release=f"{e.version.release.name}@{e.version.version}",
                exported_at=e.created_at.isoformat() if e.created_at else None,
                ledger_index=e.ledger_index,
            )
            for e in found
        ]
    if not matches:
        raise ReleaseError(f"{path}: no export of this workspace carries this file or its mark")
    return TraceResult(str(path), digest, how, len(matches) == 1, matches)


def _by_uid(ws: Workspace, session: Any, exports: list[ReleaseExport], uid: str) -> list[ReleaseExport]:
    from curata.catalog.models import Instance
    from curata.publish.models import ReleaseMember

    key = ws.site_key()
    out = []
    for e in exports:
        remap = fp.uid_mapper(key, e.mark)
        uids = session.scalars(
            select(Instance.sop_instance_uid)
            .join(ReleaseMember, ReleaseMember.series_id == Instance.series_id)
            .where(ReleaseMember.version_id == e.version_id)
        )
        if any(remap(u) == uid for u in uids):
            out.append(e)
    return out


def _ordered_for(data: bytes, name: str, key: bytes) -> bool:
    try:
        return clinical_fp.in_keyed_order(data, name, key)
    except (OSError, ValueError):
        return False


def _manifest_has(ws: Workspace, manifest_sha: str, digest: str) -> bool:
    try:
        manifest = Manifest.from_bytes(ws.store.get_bytes(manifest_sha))
    except Exception:
        return False
    return any(f.sha256 == digest for f in manifest.files)

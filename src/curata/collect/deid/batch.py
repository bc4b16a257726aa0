"""De-identify a folder tree into another, on every core, quarantining what cannot be made clean."""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curata import _io
from curata.collect.deid import _leftovers
from curata.collect.deid.engine import CODE_VERSION, Deidentifier
from curata.collect.deid.pixels import ReviewNeeded
from curata.collect.deid.profile import Profile
from curata.collect.deid.vault import Vault
from curata.collect.reasons import is_disk_full, safe_reason, sanitize, sweep_private, write_private
from curata.errors import ConfigError, CurataError, DeidError, VaultError, is_fatal

REPORT_NAME = "deid-report.json"


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, rename into place."""
    _io.atomic_write(path, data)


def inside(root: Path, relative: str) -> Path:
    """``root / relative``, refused unless it lies inside ``root`` (paths built from data)."""
    return _inside_resolved(Path(root).resolve(), relative)


def _inside_resolved(root: Path, relative: str) -> Path:
    """``inside`` for a root already resolved (a worker resolves OUTPUT once, not per file)."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise ConfigError("a path built from the data leaves the output folder; refused")
    return target


def iter_input_files(root: Path, exclude: list[Path]) -> Iterator[Path]:
    """Every regular file under ``root`` (or ``root`` itself), skipping the excluded folders."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    skip = {p.resolve() for p in exclude}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if (here / d).resolve() not in skip)
        for name in sorted(filenames):
            path = here / name
            if path.is_file():
                yield path


# --- worker side (one Deidentifier per process) ------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(
    key: bytes,
    profile: Profile,
    vault_dir: str,
    output: str,
    quarantine: str,
    ocr: bool,
    started: float | None = None,
) -> None:
    _WORKER["deid"] = Deidentifier(key, profile, Vault(Path(vault_dir), key), ocr=ocr)
    _WORKER["output"] = Path(output).resolve()
    _WORKER["quarantine"] = Path(quarantine)
    # OUTPUT-relative folder -> (its resolved path, whether this worker made it in this run)
    _WORKER["folders"] = {"": (_WORKER["output"], False)}
    _WORKER["pid"] = os.getpid()  # in the temporary names (not asked of the kernel per file)
    _WORKER["started"] = time.time() if started is None else started  # the run's, for the sweep


def _process_one(path_str: str) -> dict[str, Any]:
    """One file, its output durable (fsynced) before it is named."""
    return _process_chunk([path_str])[0]


_TMP_COUNTER = itertools.count()
_SYNC_THREADS = 8  # fsyncs waiting together (see _sync)


@dataclass
class _Staged:
    """An output written under a temporary name (its descriptor still open), not yet durable nor named."""

    path: Path
    tmp: Path
    fd: int | None
    result: dict[str, Any]
    input: tuple[Path, bytes, str]


def _process_chunk(paths: list[str]) -> list[dict[str, Any]]:
    """Several files: each output written under a temporary name, all made durable, then each named
    by a hard link. A crash leaves temporary files, never a named partial one."""
    results: list[dict[str, Any] | _Staged] = []
    try:
        for p in paths:
            results.append(_stage_one(p))
        staged = [r for r in results if isinstance(r, _Staged)]
        with _disk_full_is_fatal():
            _sync(staged)
        return [_publish(r) if isinstance(r, _Staged) else r for r in results]
    finally:
        for r in results:
            if isinstance(r, _Staged):
                if r.fd is not None:
                    os.close(r.fd)
                with contextlib.suppress(OSError):
                    os.unlink(r.tmp)


def _sync(staged: list[_Staged]) -> None:
    """An fsync each, on the descriptor the bytes were written through, several at once: the file
    system commits its journal once for the fsyncs that wait together, where one after another each
    waits for a commit of its own (the wait, not the CPU, was a fifth of a 960-file run). One
    ``syncfs`` per chunk was tried: on a shared file system it waits for every other process's dirty
    data, and made a 960-file batch twenty times slower."""
    fds = [s.fd for s in staged if s.fd is not None]
    if len(fds) > 1:
        pool = _WORKER.get("syncer")
        if pool is None:  # made in the process that syncs (a pool worker), never inherited
            pool = _WORKER["syncer"] = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="deid-fsync")
        list(pool.map(os.fsync, fds))
    else:
        for fd in fds:
            os.fsync(fd)
    for s in staged:
        if s.fd is not None:
            os.close(s.fd)
            s.fd = None


def _stage_one(path_str: str) -> dict[str, Any] | _Staged:
    deid: Deidentifier = _WORKER["deid"]
    path = Path(path_str)
    try:
        raw = path.read_bytes()
    except OSError as exc:  # not read, so neither quarantined nor named by a digest: counted as failed
        why = exc.strerror or type(exc).__name__
        return {"status": "failed", "reason": f"could not read the input ({why})", "error": "ReadError",
                "source": path_str}  # fmt: skip
    sha = hashlib.sha256(raw).hexdigest()
    try:
        res = deid.deidentify_bytes(raw, input_sha256=sha)
    except ReviewNeeded as exc:
        return _quarantine(path, raw, sha, str(exc), "ReviewNeeded", review=True)
    except VaultError:  # not this file's fault, and no file goes out without its vault records
        raise
    except CurataError as exc:
        return _quarantine(path, raw, sha, safe_reason(exc), type(exc).__name__)
    except BaseException as exc:  # a bug (or a decoder's panic) must not stop the batch, nor pass the file
        if is_fatal(exc):
            raise  # an interrupt, an exit
        return _quarantine(path, raw, sha, safe_reason(exc), "InternalError")
    rel = res.relative_path
    ok = {"status": "ok", "output": rel, "record": res.record.as_dict(), "same_as_existing": False}
    with _disk_full_is_fatal():
        target, fresh = _output_path(rel)
        # in a folder this worker made in this run nothing was there before; elsewhere an earlier
        # run (or file) may have made it: never rewritten
        if not fresh and target.exists():
            return _settled(target, res.output_bytes, ok, (path, raw, sha))
        # unique per file: two inputs of one chunk may name the same output
        tmp = target.with_name(f".{target.name}.{_WORKER['pid']}.{next(_TMP_COUNTER)}.tmp")
        fd = _write(tmp, res.output_bytes, sync=False, keep_open=True)
    return _Staged(target, tmp, fd, ok, (path, raw, sha))


def _output_path(relative: str) -> tuple[Path, bool]:
    """``_inside_resolved(OUTPUT, relative)``, its folder made, and whether this worker made that
    folder in this run. A folder is made with one call and its resolved path derived from its
    parent's (a folder just made is no link); one found existing is resolved, and refused if it leads
    out. A file name in an existing folder that is a link is resolved whole, as before."""
    folder, _, name = relative.rpartition("/")
    parent, fresh = _folder(folder)
    target = parent / name
    if name in ("", ".", "..") or (not fresh and target.is_symlink()):
        return _inside_resolved(_WORKER["output"], relative), False
    return target, fresh


def _folder(relative: str) -> tuple[Path, bool]:
    """The resolved path of an OUTPUT-relative folder, made if missing, remembered per worker: the
    files of a series share their folder, and each folder costs one ``mkdir`` and no lookups."""
    known: dict[str, tuple[Path, bool]] = _WORKER["folders"]
    hit = known.get(relative)
    if hit is not None:
        return hit
    parent_rel, _, name = relative.rpartition("/")
    if name in ("", ".", ".."):  # not a plain name: resolved whole, made as before
        path = _inside_resolved(_WORKER["output"], relative)
        path.mkdir(parents=True, exist_ok=True)
        known[relative] = (path, False)
        return known[relative]
    parent, _ = _folder(parent_rel)
    path = parent / name
    try:
        os.mkdir(path)
        made = True
    except FileExistsError:  # there before (an earlier run, another worker): it may be a link
        path = _inside_resolved(_WORKER["output"], relative)
        if not path.is_dir():
            raise
        made = False
        # an earlier run's folder: a killed one may have left its staged files here
        _leftovers.sweep(path, _WORKER["started"])
    known[relative] = (path, made)
    return known[relative]


def _publish(s: _Staged) -> dict[str, Any]:
    with _disk_full_is_fatal():
        try:
            os.link(s.tmp, s.path)
        except FileExistsError:
            return _settled(s.path, s.tmp.read_bytes(), s.result, s.input)
    return s.result


def _settled(
    target: Path, data: bytes, ok: dict[str, Any], source: tuple[Path, bytes, str]
) -> dict[str, Any]:
    """The output name exists already: the same bytes (a re-run, a duplicate input), or a conflict."""
    if target.read_bytes() == data:
        return {**ok, "same_as_existing": True}
    # another input of this batch became the same object: never overwrite
    return _quarantine(
        *source,
        "duplicate SOP Instance UID: another input with different content maps to the same output",
        "DuplicateUID",
    )


@contextlib.contextmanager
def _disk_full_is_fatal() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise DeidError(
                f"no space left on the device writing OUTPUT ({exc.strerror})",
                hint="free space or choose another OUTPUT, and run again: finished files are kept",
            ) from exc
        raise


def _write(path: Path, data: bytes, *, sync: bool, keep_open: bool = False) -> int | None:
    """Write ``data`` to a new ``path``; with ``keep_open`` the descriptor is returned, for the
    caller to fsync and close (a staged output is synced later without opening it again)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    if keep_open:
        return fd
    os.close(fd)
    return None


def _quarantine(
    path: Path, raw: bytes, sha: str, reason: str, kind: str, *, review: bool = False
) -> dict[str, Any]:
    """Keep the raw input on site, private (folder 0700, files 0600), with a sanitised reason; the
    note names the input by its sha256, not by its path (folder names often hold the patient's)."""
    qdir: Path = _WORKER["quarantine"]
    reason = sanitize(reason)
    try:
        write_private(qdir / f"{sha}.input", raw)
        note: dict[str, Any] = {
            "input_sha256": sha,
            "reason": reason,
            "error": kind,
            "code_version": CODE_VERSION,
        }
        if review:  # a thumbnail for the reviewer, on site beside the input (never in OUTPUT)
            note["review"] = "pending"
            try:
                import pydicom

                from curata.collect.deid.pixels import thumbnail_png

                png = thumbnail_png(pydicom.dcmread(io.BytesIO(raw), force=True))
                write_private(qdir / f"{sha}.png", png)
                note["thumbnail"] = f"{sha}.png"
            except OSError:
                raise
            except Exception as exc:  # the review still lists it, without a picture
                note["thumbnail_error"] = type(exc).__name__
        write_private(qdir / f"{sha}.json", json.dumps(note, indent=2).encode())
    except OSError as exc:
        if is_disk_full(exc):
            raise DeidError(
                "no space left on the device writing the quarantine folder",
                hint="free space and run again: finished files are kept",
            ) from exc
        raise
    return {
        "status": "quarantined",
        "input_sha256": sha,
        "reason": reason,
        "error": kind,
        "quarantine_file": f"{sha}.input",
        "source": str(path),
    }


# --- coordinator ---------------------------------------------------------------------------------
@dataclass
class BatchReport:
    counts: dict[str, int] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)  # inputs that could not be read

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def check_layout(input_path: Path, output: Path, vault_dir: Path, quarantine: Path) -> None:
    out = output.resolve()
    for name, p in (("vault", vault_dir), ("quarantine folder", quarantine)):
        rp = p.resolve()
        if rp == out or out in rp.parents:
            raise ConfigError(
                f"the {name} {p} lies inside OUTPUT {output}",
                hint="re-identification data and raw inputs must never sit beside released files",
            )
    if not input_path.exists():
        raise ConfigError(f"INPUT {input_path} does not exist")


def run_batch(
    input_path: Path,
    output: Path,
    *,
    key: bytes,
    profile: Profile,
    vault_dir: Path,
    quarantine: Path,
    workers: int = 1,
    ocr: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> BatchReport:
    """De-identify every file under ``input_path`` into ``output``; writes ``output/deid-report.json``."""
    check_layout(input_path, output, vault_dir, quarantine)
    started = time.time()
    output.mkdir(parents=True, exist_ok=True)
    _leftovers.sweep(output, started, report=True)  # the folders below: by the workers, as they go
    sweep_private(quarantine, started)  # a refused input a killed run left under its temporary name
    paths = [str(p) for p in iter_input_files(input_path, [output, vault_dir, quarantine])]
    report = BatchReport()
    seen: set[str] = set()
    init_args = (key, profile, str(vault_dir), str(output), str(quarantine), ocr, started)

    def consume(results: Iterator[dict[str, Any]]) -> None:
        for done, res in enumerate(results, 1):
            status = res["status"]
            if status == "ok":
                if res["output"] in seen or (res.get("same_as_existing") and res["output"] in seen):
                    report.add("duplicates")
                else:
                    seen.add(res["output"])
                    report.add("deidentified")
                    if res["record"]["pixels"] == "cleaned":
                        report.add("pixels_cleaned")
                    report.files.append({"output": res["output"], **res["record"]})
            elif status == "quarantined":
                report.add("quarantined")
                if res.get("error") == "ReviewNeeded":
                    report.add("review")
                report.quarantined.append(res)
            else:  # not read: nothing of it was kept, so it is no quarantine
                report.add("failed")
                report.failed.append(res)
            if on_progress:
                on_progress(done, len(paths))

    # files go in chunks: a worker syncs each chunk's outputs once (see _process_chunk)
    if workers <= 1 or len(paths) < 8:
        _init_worker(*init_args)
        chunks = [paths[i : i + 64] for i in range(0, len(paths), 64)]
        consume(r for c in chunks for r in _process_chunk(c))
    else:
        size = max(1, min(64, len(paths) // (workers * 4)))
        chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
        from curata.runtime import start_worker

        with ProcessPoolExecutor(
            max_workers=workers, initializer=start_worker, initargs=(os.getpid(), _init_worker, init_args)
        ) as pool:
            try:
                consume(r for part in pool.map(_process_chunk, chunks) for r in part)
            except BaseException:  # a fatal error (vault, full disk): the chunks not begun are not
                pool.shutdown(cancel_futures=True)
                raise
    Vault(vault_dir, key).sync()
    write_report(output, profile, report)
    return report


def write_report(output: Path, profile: Profile, report: BatchReport) -> Path:
    """The machine-readable report inside OUTPUT: pseudonymous records and reasons, no input paths."""
    body = {
        "code_version": CODE_VERSION,
        "profile": profile.as_dict(),
        "counts": report.counts,
        "files": report.files,
        "quarantined": [
            {k: v for k, v in q.items() if k not in ("source", "status")} for q in report.quarantined
        ],
        "failed": [{k: v for k, v in f.items() if k not in ("source", "status")} for f in report.failed],
    }
    path = output / REPORT_NAME
    atomic_write(path, json.dumps(body, indent=2, sort_keys=True).encode())
    return path


_sanitized = sanitize  # the old private name, still used by tests


def default_vault_dir(key_file: Path) -> Path:
    return Path(key_file).resolve().parent / "curata-vault"


def default_quarantine_dir(vault_dir: Path) -> Path:
    return Path(vault_dir).resolve().parent / "curata-quarantine"


# --- review of objects that may carry burned-in text ---------------------------------------------
@dataclass
class ReviewItem:
    input_sha256: str
    reason: str
    thumbnail: str | None  # path of the PNG on site
    state: str  # pending, accept, mask, drop
    output: str | None = None


def _note_path(quarantine: Path, sha: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ConfigError(f"{sha!r} is not an input sha256 from the review list")
    return Path(quarantine) / f"{sha}.json"


def review_list(quarantine: Path, *, pending_only: bool = True) -> list[ReviewItem]:
    """Objects held for review (burned-in text possible, nothing proved it absent)."""
    out = []
    for note_file in sorted(Path(quarantine).glob("*.json")):
        try:
            note = json.loads(note_file.read_text())
        except (OSError, ValueError):
            continue
        state = note.get("review")
        if not state or (pending_only and state != "pending"):
            continue
        thumb = note.get("thumbnail")
        out.append(
            ReviewItem(
                input_sha256=note["input_sha256"],
                reason=note.get("reason", ""),
                thumbnail=str(Path(quarantine) / thumb) if thumb else None,
                state=state,
                output=note.get("output"),
            )
        )
    return out


def review_decide(
    quarantine: Path, sha: str, action: str, *, deid: Deidentifier | None = None, output: Path | None = None
) -> ReviewItem:
    """``accept`` (pixels released as they are), ``mask`` (the fallback header/footer bands) or
    ``drop`` (never released; the input is deleted from the quarantine)."""
    if action not in ("accept", "mask", "drop"):
        raise ConfigError(f"unknown review action {action!r}", hint="accept, mask or drop")
    note_file = _note_path(quarantine, sha)
    if not note_file.exists():
        raise ConfigError(f"no quarantined input {sha} in {quarantine}")
    note = json.loads(note_file.read_text())
    if note.get("review") != "pending":
        raise ConfigError(f"input {sha} is not waiting for review (state: {note.get('review')})")
    raw_file = Path(quarantine) / f"{sha}.input"
    if action == "drop":
        raw_file.unlink(missing_ok=True)
        (Path(quarantine) / f"{sha}.png").unlink(missing_ok=True)
        note.pop("thumbnail", None)
    else:
        if deid is None or output is None:
            raise ConfigError(f"{action} needs the site key and OUTPUT")
        res = deid.deidentify_bytes(raw_file.read_bytes(), pixel_decision=action)
        atomic_write(inside(Path(output), res.relative_path), res.output_bytes)
        note["output"] = res.relative_path
    note["review"] = action
    atomic_write(note_file, json.dumps(note, indent=2).encode())
    return ReviewItem(sha, note.get("reason", ""), None, action, note.get("output"))

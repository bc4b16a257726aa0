"""De-identify a folder tree into another, on every core, quarantining what cannot be made clean."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curata import _io
from curata.collect.deid.engine import CODE_VERSION, Deidentifier
from curata.collect.deid.profile import Profile
from curata.collect.deid.vault import Vault
from curata.errors import ConfigError, CurataError, InputError

REPORT_NAME = "deid-report.json"


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, rename into place."""
    _io.atomic_write(path, data)


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
    key: bytes, profile: Profile, vault_dir: str, output: str, quarantine: str, ocr: bool
) -> None:
    _WORKER["deid"] = Deidentifier(key, profile, Vault(Path(vault_dir), key), ocr=ocr)
    _WORKER["output"] = Path(output)
    _WORKER["quarantine"] = Path(quarantine)


def _process_one(path_str: str) -> dict[str, Any]:
    deid: Deidentifier = _WORKER["deid"]
    path = Path(path_str)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return {"status": "failed", "reason": f"cannot read input ({exc.strerror})", "source": path_str}
    sha = hashlib.sha256(raw).hexdigest()
    try:
        res = deid.deidentify_bytes(raw)
    except CurataError as exc:
        reason = exc.reason if isinstance(exc, InputError) else str(exc)
        return _quarantine(path, raw, sha, reason, type(exc).__name__)
    except Exception as exc:  # a bug must not stop the batch, and must not let the file through
        return _quarantine(path, raw, sha, f"internal error ({type(exc).__name__}: {exc})", "InternalError")
    rel = res.relative_path
    atomic_write(_WORKER["output"] / rel, res.output_bytes)
    return {"status": "ok", "output": rel, "record": res.record.as_dict()}


def _quarantine(path: Path, raw: bytes, sha: str, reason: str, kind: str) -> dict[str, Any]:
    qdir: Path = _WORKER["quarantine"]
    atomic_write(qdir / f"{sha}.input", raw)
    note = {
        "source": str(path),
        "input_sha256": sha,
        "reason": reason,
        "error": kind,
        "code_version": CODE_VERSION,
    }
    atomic_write(qdir / f"{sha}.json", json.dumps(note, indent=2).encode())
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
    output.mkdir(parents=True, exist_ok=True)
    paths = [str(p) for p in iter_input_files(input_path, [output, vault_dir, quarantine])]
    report = BatchReport()
    seen: set[str] = set()
    init_args = (key, profile, str(vault_dir), str(output), str(quarantine), ocr)

    def consume(results: Iterator[dict[str, Any]]) -> None:
        for done, res in enumerate(results, 1):
            status = res["status"]
            if status == "ok":
                if res["output"] in seen:
                    report.add("duplicates")
                else:
                    seen.add(res["output"])
                    report.add("deidentified")
                    if res["record"]["pixels"] == "cleaned":
                        report.add("pixels_cleaned")
                    report.files.append({"output": res["output"], **res["record"]})
            else:
                report.add("quarantined" if status == "quarantined" else "failed")
                report.quarantined.append(res)
            if on_progress:
                on_progress(done, len(paths))

    if workers <= 1 or len(paths) < 8:
        _init_worker(*init_args)
        consume(_process_one(p) for p in paths)
    else:
        chunk = max(1, min(64, len(paths) // (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=init_args) as pool:
            consume(pool.map(_process_one, paths, chunksize=chunk))
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
    }
    path = output / REPORT_NAME
    atomic_write(path, json.dumps(body, indent=2, sort_keys=True).encode())
    return path


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|<[^>]*>|\[[^\]]*\]")
_LONG_NUMBER = re.compile(r"\d[\d.\-/]{4,}")


def _sanitized(reason: str) -> str:
    """A quarantine reason fit for OUTPUT: parser messages can quote the offending value, so quoted
    text and long numbers (dates, IDs, UIDs) go. The full reason stays in the on-site quarantine."""
    return _LONG_NUMBER.sub("#", _QUOTED.sub("'…'", reason))


def default_vault_dir(key_file: Path) -> Path:
    return Path(key_file).resolve().parent / "curata-vault"


def default_quarantine_dir(vault_dir: Path) -> Path:
    return Path(vault_dir).resolve().parent / "curata-quarantine"

"""Release verification: every file against the manifest, and the manifest against the signed log.

Exported releases carry this as ``verify_release.py``: the log verifier
(``curata/ledger/verify_standalone.py``) followed by this module, so it needs nothing but Python and
``cryptography``:

    python verify_release.py [EXPORT_DIR] [--key VKEY|@FILE]

Checks, in order: ``manifest.json`` parses and its Merkle root matches its files; every listed file exists
with its size and sha256; no file is there that the manifest does not list; the receipt
``ledger/export.tlog-proof`` verifies against the log's key (``--key``, else ``ledger/log.vkey``: pin the
key the publisher announced, since a forger could ship their own), its entry is this export and names
the sha256 of this very ``manifest.json``. Exit 0: verified; 1: something does not match.
"""

from __future__ import annotations

import argparse as _argparse
import contextlib as _contextlib
import hashlib as _hashlib
import json as _json
import os as _os
import sys as _sys
from collections.abc import Sequence as _Sequence
from typing import Any as _Any

# Inside Curata this imports the log verifier; in an export its code sits above this block.
with _contextlib.suppress(ImportError):
    from curata.ledger.verify_standalone import VerificationError, merkle_tree_hash, verify_receipt

RELEASE_FILES = {"manifest.json", "verify_release.py"}
RECEIPT = "ledger/export.tlog-proof"
VKEY = "ledger/log.vkey"


def _sha256_file(path: str) -> str:
    h = _hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_files(root: str) -> tuple[dict[str, _Any], bytes, list[str]]:
    """(manifest, its bytes, problems) for the files under ``root``."""
    path = _os.path.join(root, "manifest.json")
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        manifest = _json.loads(raw)
        files = manifest["files"]
        leaves = [
            f"{f['sha256']} {f['size']} {f['path']}\n".encode()
            for f in sorted(files, key=lambda f: f["path"])
        ]
    except (ValueError, KeyError, TypeError) as exc:
        return {}, raw, [f"manifest.json is not a manifest: {exc}"]
    problems = []
    if merkle_tree_hash(leaves).hex() != manifest.get("merkle_root"):
        problems.append("manifest.json: merkle_root does not match the files it lists")
    listed = set()
    for f in files:
        rel = f["path"]
        listed.add(rel)
        full = _os.path.join(root, *rel.split("/"))
        if ".." in rel.split("/") or rel.startswith("/"):
            problems.append(f"unsafe path in manifest: {rel}")
        elif not _os.path.isfile(full):
            problems.append(f"missing: {rel}")
        elif _os.path.getsize(full) != int(f["size"]):
            problems.append(f"size differs: {rel}")
        elif _sha256_file(full) != f["sha256"]:
            problems.append(f"content differs: {rel}")
    for folder, _dirs, names in _os.walk(root):
        for name in names:
            rel = _os.path.relpath(_os.path.join(folder, name), root).replace(_os.sep, "/")
            if (
                rel not in listed
                and rel not in RELEASE_FILES
                and not rel.startswith("ledger/")
                and "__pycache__" not in rel
            ):
                problems.append(f"not in the manifest: {rel}")
    return manifest, raw, problems


def check_log(root: str, manifest_bytes: bytes, key: str | None) -> tuple[dict[str, _Any], list[str]]:
    receipt_path = _os.path.join(root, *RECEIPT.split("/"))
    if not _os.path.isfile(receipt_path):
        return {}, [f"no log receipt ({RECEIPT})"]
    if key is None:
        with open(_os.path.join(root, *VKEY.split("/")), encoding="utf-8") as fh:
            key = fh.read().strip()
    with open(receipt_path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        result = verify_receipt(text, key)
    except VerificationError as exc:
        return {}, [f"log receipt: {exc}"]
    entry = result.get("entry") or {}
    payload = entry.get("payload") or {}
    problems = []
    if entry.get("kind") != "export":
        problems.append(f"the receipt's entry is a {entry.get('kind')!r}, not an export")
    if payload.get("manifest_sha256") != _hashlib.sha256(manifest_bytes).hexdigest():
        problems.append("manifest.json is not the manifest the log recorded for this export")
    return result, problems


def verify_release(root: str, key: str | None = None) -> dict[str, _Any]:
    manifest, raw, problems = check_files(root)
    log: dict[str, _Any] = {}
    if manifest:
        log, more = check_log(root, raw, key)
        problems += more
    return {
        "verified": not problems,
        "release": f"{manifest.get('release')}@{manifest.get('version')}" if manifest else None,
        "licensee": manifest.get("licensee") if manifest else None,
        "files": len(manifest.get("files", [])) if manifest else 0,
        "log_index": log.get("index"),
        "checkpoint_size": log.get("size"),
        "problems": problems,
    }


def release_main(argv: _Sequence[str] | None = None) -> int:
    parser = _argparse.ArgumentParser(description="Verify an exported Curata release.")
    here = _os.path.dirname(_os.path.abspath(__file__))
    parser.add_argument("directory", nargs="?", default=here)
    parser.add_argument("--key", help="the log's vkey (or @FILE); default: the shipped ledger/log.vkey")
    args = parser.parse_args(argv)
    try:
        result = verify_release(args.directory, args.key)
    except OSError as exc:
        print(f"FAILED: {exc}", file=_sys.stderr)
        return 1
    if result["verified"]:
        print(
            f"OK: {result['release']} for {result['licensee']}: {result['files']} files match the manifest; "
            f"the manifest is entry {result['log_index']} of the signed log (size {result['checkpoint_size']})"
        )
        return 0
    for problem in result["problems"]:
        print(f"FAILED: {problem}", file=_sys.stderr)
    return 1


def script_source() -> str:
    """The text of ``verify_release.py``: the log verifier, then this module, then its entry point."""
    from pathlib import Path

    import curata.ledger.verify_standalone as standalone

    head = Path(standalone.__file__).read_text()
    head = head.split('\nif __name__ == "__main__":', 1)[0].rstrip() + "\n"
    tail = Path(__file__).read_text()
    tail = tail.replace("from __future__ import annotations\n", "", 1)
    tail = tail.split('\nif __name__ == "__main__":', 1)[0].rstrip() + "\n"
    return (
        head
        + "\n\n# ---- release verification (curata/publish/verify_release.py) ----\n"
        + tail
        + '\n\nif __name__ == "__main__":\n    sys.exit(release_main())\n'
    )


if __name__ == "__main__":
    _sys.exit(release_main())

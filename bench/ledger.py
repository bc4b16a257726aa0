"""Transparency-log benchmark: appends/s and proofs verified/s, Curata's log beside pymerkle.

    .venv/bin/python bench/ledger.py [--entries N] [--proofs N] [--out bench/results/ledger.json]

Rows, each timed in this one run on this machine:
- appends: one ``Ledger.append`` per entry, each durable (two fsyncs) and signed (a checkpoint and its
  tiles: four more fsyncs); ``append_many`` in batches of 1,000 (two fsyncs and one checkpoint a
  batch); the same without fsync (the page-cache ceiling); pymerkle's
  ``InmemoryTree.append_entry`` (in memory, nothing durable) and ``SqliteTree.append_entries`` (its
  durable backend) as the peers;
- checkpoint: a log's first checkpoint over N entries: every entry re-hashed against its leaf, the
  head signed, every tile published;
- proofs: inclusion proofs made/s, and verified/s three ways: the RFC 9162 hash walk alone (Curata and
  pymerkle's ``verify_inclusion``), and a full receipt check with ``verify_standalone.verify_receipt``
  (parse, Ed25519 signature on the checkpoint, hash walk): what a licensee's script does per file.
Proof rows are the best of three runs (the machine is shared). Ratios are relative to Curata's row
of the same kind.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import console, print_ratio_table, rate, write_json
from curata.ledger import Ledger
from curata.ledger import verify_standalone as vs
from curata.ledger.merkle import verify_inclusion


def best_of(fn: Any, repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs: the machine is shared, and the minimum is the least disturbed."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def payload(i: int) -> dict[str, Any]:
    return {"blob": f"{i:064x}", "step": "deid", "inputs": [f"{i + 1:064x}"]}


def bench_appends(root: Path, n: int) -> list[dict[str, Any]]:
    rows = []
    single = min(n, 2000)
    ledger = Ledger(root / "single", root / "k1", origin="bench/ledger")
    t = time.perf_counter()
    for i in range(single):
        ledger.append("deid", payload(i))
    rows.append(
        {"tool": "curata append (fsync + sign each)", "count": single, "seconds": time.perf_counter() - t}
    )

    ledger = Ledger(root / "batched", root / "k2", origin="bench/ledger")
    t = time.perf_counter()
    for start in range(0, n, 1000):
        ledger.append_many([("deid", payload(i)) for i in range(start, min(n, start + 1000))])
    rows.append({"tool": "curata append_many (1000/fsync)", "count": n, "seconds": time.perf_counter() - t})
    for p in [ledger.folder / "checkpoint", *(ledger.folder / "checkpoints").iterdir()]:
        p.unlink()  # every batch signed: time the first checkpoint over all N from scratch
    shutil.rmtree(ledger.folder / "tile")
    t = time.perf_counter()
    cp = ledger.checkpoint()
    rows.append(
        {"tool": "curata checkpoint + all tiles", "count": cp.size, "seconds": time.perf_counter() - t}
    )

    ledger = Ledger(root / "nosync", root / "k3", origin="bench/ledger", fsync=False)
    t = time.perf_counter()
    for start in range(0, n, 1000):
        ledger.append_many([("deid", payload(i)) for i in range(start, min(n, start + 1000))])
    rows.append({"tool": "curata append_many (no fsync)", "count": n, "seconds": time.perf_counter() - t})

    try:
        import json

        import pymerkle

        tree = pymerkle.InmemoryTree(algorithm="sha256")
        datas = [json.dumps(payload(i), sort_keys=True).encode() for i in range(n)]
        t = time.perf_counter()
        for d in datas:
            tree.append_entry(d)
        rows.append({"tool": "pymerkle InmemoryTree", "count": n, "seconds": time.perf_counter() - t})
        with pymerkle.SqliteTree(str(root / "pymerkle.db"), algorithm="sha256") as db:
            t = time.perf_counter()
            db.append_entries(datas, chunksize=1000)
            rows.append(
                {"tool": "pymerkle SqliteTree (batched)", "count": n, "seconds": time.perf_counter() - t}
            )
    except ImportError:
        console.print("[yellow]pymerkle not installed: peer rows skipped (pip install '.[dev]')[/]")
    for r in rows:
        r["per_second"] = rate(r["count"], r["seconds"])
    return rows


def bench_proofs(root: Path, n: int, proofs: int) -> list[dict[str, Any]]:
    ledger = Ledger(root / "batched", root / "k2", origin="bench/ledger")
    cp = ledger.checkpoint()
    rng = random.Random(7)
    picks = [rng.randrange(cp.size) for _ in range(proofs)]
    rows = []
    made = [ledger.tree.inclusion_proof(i, cp.size) for i in picks]
    secs = best_of(lambda: [ledger.tree.inclusion_proof(i, cp.size) for i in picks])
    rows.append({"tool": "curata make proof", "count": proofs, "seconds": secs})
    leaves = [ledger.tree.levels[0][i] for i in picks]
    triples = list(zip(picks, leaves, made, strict=True))

    def walk() -> None:
        for i, leaf, proof in triples:
            verify_inclusion(leaf, i, cp.size, proof, cp.root_hash)

    rows.append({"tool": "curata verify (hash walk)", "count": proofs, "seconds": best_of(walk)})

    def standalone() -> None:
        for i, leaf, proof in triples:
            vs.verify_inclusion(leaf, i, proof, cp.note, ledger.verifier.vkey)

    rows.append(
        {"tool": "standalone verify_inclusion (+Ed25519)", "count": proofs, "seconds": best_of(standalone)}
    )
    few = picks[: max(1, proofs // 10)]
    receipts = [ledger.receipt(i).decode() for i in few]
    secs = best_of(lambda: [vs.verify_receipt(text, ledger.verifier.vkey) for text in receipts])
    rows.append({"tool": "standalone verify_receipt", "count": len(few), "seconds": secs})
    try:
        import json

        import pymerkle

        tree = pymerkle.InmemoryTree(algorithm="sha256")
        for i in range(cp.size):
            tree.append_entry(json.dumps(payload(i), sort_keys=True).encode())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            root_hash = tree.get_state(cp.size)
        oracle = [tree.prove_inclusion(i + 1, cp.size) for i in picks]
        secs = best_of(lambda: [tree.prove_inclusion(i + 1, cp.size) for i in picks])
        rows.append({"tool": "pymerkle make proof", "count": proofs, "seconds": secs})
        pairs = list(zip([tree.get_leaf(i + 1) for i in picks], oracle, strict=True))
        secs = best_of(lambda: [pymerkle.verify_inclusion(b, root_hash, p) for b, p in pairs])
        rows.append({"tool": "pymerkle verify_inclusion", "count": proofs, "seconds": secs})
    except ImportError:
        pass
    for r in rows:
        r["per_second"] = rate(r["count"], r["seconds"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--proofs", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ledger.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="curata-bench-ledger-") as tmp:
        root = Path(tmp)
        appends = bench_appends(root, args.entries)
        proofs = bench_proofs(root, args.entries, args.proofs)
    cols = [("tool", "what"), ("count", "n"), ("seconds", "s"), ("per_second", "per s")]
    print_ratio_table(appends, title="appends", reference="curata append_many (1000/fsync)", columns=cols,
                      ratio_of=["per_second"])  # fmt: skip
    print_ratio_table(proofs, title="inclusion proofs", reference="curata verify (hash walk)", columns=cols,
                      ratio_of=["per_second"])  # fmt: skip
    write_json(
        args.out,
        {"entries": args.entries, "proofs": args.proofs, "appends": appends, "proofs_rows": proofs},
    )
    console.print(f"results: {args.out}")


if __name__ == "__main__":
    main()

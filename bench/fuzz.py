"""Long mutation-fuzz campaign over real DICOM files and zip archives through `curata ingest`'s path.

    .venv/bin/python bench/fuzz.py [--budget 5000] [--seed 1] [--out bench/results/fuzz.json]

The same fuzzer the tests run on a small budget (tests/reliability/fuzzing.py): pydicom's test files
(CT, MR in five transfer syntaxes, JPEG, JPEG 2000, deflated, SR, RTSTRUCT, private sequences) and
zip archives of them, mutated by bit flips, interesting 32-bit values in length and tag fields,
truncation, chunk duplication/deletion and VR swaps, then ingested with de-identification on. A
mutant holds when its batch does not crash and every input is accounted for with a clean reason.
Prints the class | tried | held | failed table and writes it as JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _common import console, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fuzz.json")
    args = ap.parse_args()

    from tests.reliability.fuzzing import run

    from curata.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="curata-fuzz-") as tmp:
        ws = Workspace.init(Path(tmp) / "ws", site="fuzz")
        result = run(ws, Path(tmp) / "mutants", args.budget, seed=args.seed)
    rows = [
        {"class": cls, "tried": n, "held": result.held[cls], "failed": n - result.held[cls]}
        for cls, n in result.tried.items()
    ]
    console.print("class | tried | held | failed")
    for r in rows:
        console.print(f"{r['class']} | {r['tried']} | {r['held']} | {r['failed']}")
    console.print(f"outcomes: {dict(result.statuses)}; {result.seconds:.1f} s")
    for line in result.failures[:20]:
        console.print(f"[red]{line}[/]")
    write_json(
        args.out,
        {
            "budget": args.budget,
            "seed": args.seed,
            "rows": rows,
            "outcomes": dict(result.statuses),
            "seconds": round(result.seconds, 1),
            "failures": result.failures,
        },
    )
    if result.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

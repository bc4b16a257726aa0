"""A small mutation fuzzer over real DICOM files (pydicom's test data) and zip archives of them.

Each mutant goes through the real ingest path (de-identification on). It holds when the batch
does not crash and every input comes back ingested, present, skipped, quarantined or failed, with
a reason for the last three, no traceback in it, and the counts add up to the inputs given.
``python bench/fuzz.py --budget N`` runs a longer campaign; the tests run a small one.
"""

from __future__ import annotations

import io
import random
import struct
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEEDS = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "JPEG2000.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "image_dfl.dcm",
    "test-SR.dcm",
    "rtstruct.dcm",
    "nested_priv_SQ.dcm",
)
ALLOWED = {"ingested", "present", "skipped", "quarantined", "failed"}


def seed_files() -> list[tuple[str, bytes]]:
    from pydicom.data import get_testdata_file

    out = []
    for name in SEEDS:
        path = get_testdata_file(name)
        if path is not None:
            out.append((name, Path(path).read_bytes()))
    return out


def _flip(rng: random.Random, b: bytearray) -> str:
    for _ in range(rng.randint(1, 8)):
        k = rng.randrange(len(b))
        b[k] ^= 1 << rng.randrange(8)
    return "bit flips"


def _interesting(rng: random.Random, b: bytearray) -> str:
    k = rng.randrange(max(1, len(b) - 4))
    b[k : k + 4] = struct.pack("<I", rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFF, 1]))
    return "interesting 32-bit value (a length, a tag)"


def _truncate(rng: random.Random, b: bytearray) -> str:
    del b[rng.randrange(1, len(b)) :]
    return "truncated"


def _chunk(rng: random.Random, b: bytearray) -> str:
    a = rng.randrange(len(b))
    n = rng.randint(1, 64)
    if rng.random() < 0.5:
        b[a:a] = b[a : a + n] * rng.randint(1, 4)
        return "duplicated chunk"
    del b[a : a + n]
    return "deleted chunk"


def _vr(rng: random.Random, b: bytearray) -> str:
    """Replace a VR code with another (explicit VR files), the classic parser trap."""
    vrs = [b"PN", b"SQ", b"UN", b"OB", b"UT", b"DS", b"IS", b"AT", b"LO", b"US"]
    spots = [k for k in range(132, len(b) - 2) if bytes(b[k : k + 2]) in vrs]
    if not spots:
        return _flip(rng, b)
    k = rng.choice(spots)
    b[k : k + 2] = rng.choice(vrs)
    return "VR swapped"


MUTATORS: list[Callable[[random.Random, bytearray], str]] = [_flip, _interesting, _truncate, _chunk, _vr]


def mutate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    b = bytearray(data)
    how = rng.choice(MUTATORS)(rng, b)
    return bytes(b), how


def mutate_zip(rng: random.Random, members: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    b = bytearray(buf.getvalue())
    how = rng.choice(MUTATORS)(rng, b)
    return bytes(b), "zip: " + how


@dataclass
class FuzzResult:
    tried: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def run(ws: Any, workdir: Path, budget: int, *, seed: int = 1, zip_share: float = 0.25) -> FuzzResult:
    """Fuzz ``budget`` mutants (a share of them zip archives) through ingest into ``ws``."""
    from curata.collect.ingest import Ingestor
    from curata.collect.sources import iter_sources

    rng = random.Random(seed)
    seeds = seed_files()
    result = FuzzResult()
    t0 = time.perf_counter()
    ingestor = Ingestor(ws, workers=1)
    batch = max(1, min(50, budget // 4))
    done = 0
    round_no = 0
    while done < budget:
        folder = workdir / f"round{round_no}"
        folder.mkdir(parents=True)
        kinds: list[str] = []
        for i in range(min(batch, budget - done)):
            if rng.random() < zip_share:
                members = rng.sample(seeds, k=min(3, len(seeds)))
                data, how = mutate_zip(rng, [(n, d) for n, d in members])
                (folder / f"m{i:04d}.zip").write_bytes(data)
            else:
                _name, original = rng.choice(seeds)
                data, how = mutate(rng, original)
                (folder / f"m{i:04d}.dcm").write_bytes(data)
            kinds.append(how)
        done += len(kinds)
        round_no += 1
        try:
            sources = list(iter_sources([folder]))
            summary, problems = ingestor.ingest_sources(sources)
        except Exception as exc:  # the batch crashed: every mutant of it failed the property
            for how in kinds:
                result.tried["DICOM/zip mutants: " + how.split(":")[0]] += 1
            result.failures.append(f"round {round_no}: batch crashed: {type(exc).__name__}: {exc}")
            continue
        ok = sum(summary.counts.get(k, 0) for k in ALLOWED) == len(sources)
        bad = [p for p in problems if not p.reason or "Traceback" in p.reason]
        result.statuses.update({k: v for k, v in summary.counts.items() if v})
        for how in kinds:
            cls = "zip archive mutants" if how.startswith("zip") else "DICOM mutants"
            result.tried[cls] += 1
            if ok and not bad:
                result.held[cls] += 1
        if not ok:
            result.failures.append(f"round {round_no}: counts {summary.counts} != {len(sources)} inputs")
        if bad:
            result.failures.append(f"round {round_no}: {len(bad)} problems without a clean reason")
    result.seconds = time.perf_counter() - t0
    return result

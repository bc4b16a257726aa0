"""Engine micro-benchmark: ``python -m curata.collect.deid._speed [N]``.

CPU time of one process, in memory (no disk), on N small real files (pydicom-data's CT_small and
MR_small with varied patients), side by side with pydicom's bare read+write and dicognito when
installed. The cross-tool benchmark with leak counts is ``bench/deid.py``.
"""

from __future__ import annotations

import io
import sys
import time
import warnings
from collections.abc import Callable

import pydicom
import pydicom.data
from pydicom.uid import generate_uid

from curata.collect.deid import Deidentifier, load_profile


def corpus(n: int) -> list[bytes]:
    out = []
    names = ["CT_small.dcm", "MR_small.dcm"]
    for i in range(n):
        ds = pydicom.dcmread(str(pydicom.data.get_testdata_file(names[i % 2])))
        ds.PatientID = f"PID{i:06d}"
        ds.PatientName = f"Patient^Number{i}"
        ds.SOPInstanceUID = generate_uid()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def rate(raws: list[bytes], fn: Callable[[bytes], object]) -> float:
    fn(raws[0])
    start = time.process_time()
    for raw in raws:
        fn(raw)
    return len(raws) / max(time.process_time() - start, 1e-9)


def engines(profile: str) -> list[tuple[str, Deidentifier]]:
    """The default engine (native lane, then raw lane, then the whole engine) and the same engine
    with its lanes turned off one by one, so one run shows what each step gives."""
    key = bytes(range(32))
    default = Deidentifier(key, load_profile(profile), ocr=False)
    raw_lane = Deidentifier(key, load_profile(profile), ocr=False)
    raw_lane.native_lane = False
    whole = Deidentifier(key, load_profile(profile), ocr=False)
    whole.raw_lane = False
    return [
        (f"curata {profile}", default),
        ("  raw lane only", raw_lane),
        ("  whole engine", whole),
    ]


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    raws = corpus(int(argv[0]) if argv else 400)

    def bare(raw: bytes) -> None:
        ds = pydicom.dcmread(io.BytesIO(raw))
        ds.save_as(io.BytesIO(), enforce_file_format=True)

    tools: list[tuple[str, Callable[[bytes], object]]] = [("pydicom read+write", bare)]
    try:
        from dicognito.anonymizer import Anonymizer

        anonymizer = Anonymizer()

        def dicognito(raw: bytes) -> None:
            ds = pydicom.dcmread(io.BytesIO(raw))
            anonymizer.anonymize(ds)
            ds.save_as(io.BytesIO())

        tools.append(("dicognito", dicognito))
    except ImportError:
        pass
    for profile in ("research", "basic"):
        tools += [(name, deid.deidentify_bytes) for name, deid in engines(profile)]
    # three rounds, interleaved, best of each: the machine is shared and its load moves
    best: dict[str, float] = {}
    for _ in range(3):
        for name, fn in tools:
            best[name] = max(best.get(name, 0.0), rate(raws, fn))
    base = best["curata research"]
    print(f"{len(raws)} small files, one process, CPU time (best of 3 interleaved rounds)")
    for name, value in best.items():
        print(f"  {name:20s} {value:7.0f} files per CPU-second  (x{value / base:.2f} of curata research)")


if __name__ == "__main__":
    main(sys.argv[1:])

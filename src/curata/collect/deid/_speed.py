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


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    raws = corpus(int(argv[0]) if argv else 400)

    def bare(raw: bytes) -> None:
        ds = pydicom.dcmread(io.BytesIO(raw))
        ds.save_as(io.BytesIO(), enforce_file_format=True)

    rows = [("pydicom read+write", rate(raws, bare))]
    try:
        from dicognito.anonymizer import Anonymizer

        anonymizer = Anonymizer()

        def dicognito(raw: bytes) -> None:
            ds = pydicom.dcmread(io.BytesIO(raw))
            anonymizer.anonymize(ds)
            ds.save_as(io.BytesIO())

        rows.append(("dicognito", rate(raws, dicognito)))
    except ImportError:
        pass
    key = bytes(range(32))
    for profile in ("research", "basic"):
        deid = Deidentifier(key, load_profile(profile), ocr=False)
        rows.append((f"curata {profile}", rate(raws, deid.deidentify_bytes)))
    base = dict(rows)["curata research"]
    print(f"{len(raws)} small files, one process, CPU time")
    for name, value in rows:
        print(f"  {name:20s} {value:7.0f} files per CPU-second  (x{value / base:.2f} of curata research)")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The fast path and the full path give the same answer, file for file.

The lean reader (``_reader.read``) builds the data set of a plain little-endian file by a struct walk;
anything unusual it declines, and ``dcmread`` reads it. Here every object of pydicom-data, as it
comes and with identifiers planted in every element, plus a planted corpus grouped by patient, goes
through one engine with the fast reader and one without: the released bytes, the ledger record and
the vault's records are identical, or both paths refuse the object for the same reason. The reader
must also have taken a real share of the files, or the comparison would prove nothing.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest

from curata.collect.deid import Deidentifier, _reader, load_profile
from curata.demo.phi import make_planted_corpus
from curata.errors import CurataError

from .conftest import KEY
from .planting import PATIENTS, corpus_files, plant_everywhere


def _outcome(deid: Deidentifier, raw: bytes) -> tuple[str, object]:
    try:
        res = deid.deidentify_bytes(raw)
    except CurataError as exc:
        return "refused", (type(exc).__name__, str(exc))
    return "released", (res.output_bytes, res.record.as_dict(), res.reid, res.relative_path)


def _inputs(tmp: Path) -> list[tuple[str, bytes]]:
    out = []
    for i, path in enumerate(corpus_files()):
        raw = Path(path).read_bytes()
        out.append((Path(path).name, raw))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            plant_everywhere(ds, PATIENTS[i % len(PATIENTS)])
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
        out.append((f"{Path(path).name} planted", buf.getvalue()))
    for p, _ in make_planted_corpus(tmp / "corpus", 40, 2026):
        out.append((p.name, p.read_bytes()))
    return out


@pytest.mark.parametrize("profile", ["research", "basic", "research-strict"])
def test_fast_reader_and_dcmread_give_identical_results(profile: str, tmp_path: Path) -> None:
    fast = Deidentifier(KEY, load_profile(profile), ocr=False)
    full = Deidentifier(KEY, load_profile(profile), ocr=False)
    full.fast_read = False
    inputs = _inputs(tmp_path)
    taken = released = 0
    for name, raw in inputs:
        if _reader.read(raw) is not None:
            taken += 1
        a, b = _outcome(fast, raw), _outcome(full, raw)
        assert a == b, f"{name}: the fast path and the full path differ ({a[0]} vs {b[0]})"
        released += a[0] == "released"
    # the fast reader took most of the files (everything saved by pydicom is plain), and many
    # were released, so the equality above covers real work
    assert taken >= len(inputs) // 2, (taken, len(inputs))
    assert released >= len(inputs) // 4, (released, len(inputs))


def test_fast_reader_declines_what_is_not_plain() -> None:
    raw = Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes()
    assert _reader.read(raw) is not None
    assert _reader.read(raw[:-3]) is None  # a truncated value: dcmread reports it
    assert _reader.read(raw[128:]) is None  # no preamble
    big = Path(pydicom.data.get_testdata_file("MR_small_bigendian.dcm")).read_bytes()
    assert _reader.read(big) is None
    deflated = Path(pydicom.data.get_testdata_file("image_dfl.dcm")).read_bytes()
    assert _reader.read(deflated) is None
    encapsulated = Path(pydicom.data.get_testdata_file("JPEG2000.dcm")).read_bytes()
    assert _reader.read(encapsulated) is not None  # undefined-length pixel data, read as dcmread does
    assert _reader.read(encapsulated[:-8]) is None  # its sequence delimiter missing

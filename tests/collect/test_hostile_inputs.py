"""Inputs that used to crash a batch, hang it, exhaust memory or shrink it silently.

Every input found is ingested, present, quarantined, skipped with a reason or failed with one, and
the counts add up to what was found. Refused raw inputs are private (0700 / 0600) and no reason or
quarantine note carries the source path or a quoted value.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from curata.collect.ingest import Ingestor
from curata.collect.reasons import safe_reason, sanitize
from curata.collect.sources import InputLimits, iter_sources
from curata.errors import InputError
from tests.conftest import make_ct

PHI_FOLDER = "DOE^JOHN_12345"


def _ct_bytes(index: int = 0, **kw) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    make_ct(index=index, **kw).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _truncated_before_pixels() -> bytes:
    raw = _ct_bytes(7)
    at = raw.rfind(b"\xe0\x7f\x10\x00")
    assert at > 0
    cut = raw[:at]
    ds = pydicom.dcmread(io.BytesIO(cut))  # parses cleanly: pydicom cannot tell
    assert "PixelData" not in ds and ds.Rows == 16
    return cut


def _hostile_tree(root: Path) -> dict[str, int]:
    """A folder of good and hostile inputs; returns how many inputs each kind contributes."""
    base = root / PHI_FOLDER
    (base / "good").mkdir(parents=True)
    for i in range(3):
        (base / "good" / f"IM{i}.dcm").write_bytes(_ct_bytes(i))
    os.mkfifo(base / "a-fifo.dcm")
    (base / "zero.dcm").symlink_to("/dev/zero")
    (base / "truncated.dcm").write_bytes(_truncated_before_pixels())
    weird = base / "odd [/] name [bold]"
    weird.mkdir(parents=True)
    (weird / "garbage.dcm").write_bytes(b"not dicom at all " * 10)
    # a zip: two members with the same name (different content), one corrupt member, one bomb
    with zipfile.ZipFile(base / "study.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("IM.dcm", _ct_bytes(10))
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("IM.dcm", _ct_bytes(11))
        zf.writestr("corrupt.dcm", _ct_bytes(12))
        zf.writestr("bomb.dcm", b"\0" * (8 << 20))  # 8 MiB of zeros: ~8 KB compressed
    data = bytearray((base / "study.zip").read_bytes())
    with zipfile.ZipFile(base / "study.zip") as zf:
        info = zf.getinfo("corrupt.dcm")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for k in range(start + 20, start + 60):  # damage the deflate stream, not the directory
        data[k] ^= 0xFF
    (base / "study.zip").write_bytes(bytes(data))
    return {"good": 3, "fifo": 1, "zero": 1, "truncated": 1, "garbage": 1, "zip": 4}


def test_hostile_folder_every_input_accounted_for(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kinds = _hostile_tree(tmp_path / "in")
    found = sum(kinds.values())
    limits = InputLimits(max_zip_ratio=100)
    sources = list(iter_sources([tmp_path / "in"], limits))
    assert len(sources) == found
    summary, problems = Ingestor(workspace, workers=1).ingest_sources(sources)
    c = summary.counts
    assert sum(c[k] for k in ("ingested", "present", "skipped", "quarantined", "failed")) == found, c
    assert c["ingested"] == 5  # 3 good + both members named IM.dcm
    assert c["skipped"] == 2  # the FIFO and the /dev/zero link, with their reason
    assert c["quarantined"] == 2  # garbage, truncated
    assert c["failed"] == 2  # corrupt member, zip bomb
    reasons = {p.source.rsplit("/", 1)[-1]: p.reason for p in problems}
    assert any("corrupt zip member" in r for r in reasons.values()), reasons
    assert any("inflates" in r for r in reasons.values()), reasons
    assert any("without pixel data" in r for r in reasons.values()), reasons
    # nothing the zip bomb held reached the quarantine or the store
    q = workspace.quarantine_path
    assert sum(f.stat().st_size for f in q.iterdir()) < 1 << 20
    # private at rest, and no source path or folder name in what is kept
    assert stat.S_IMODE(q.stat().st_mode) == 0o700
    for f in q.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        if f.suffix == ".json":
            note = json.loads(f.read_text())
            assert "source" not in note and PHI_FOLDER not in f.read_text()
    for p in problems:
        assert PHI_FOLDER not in (p.reason or "")
    # a rerun resumes: nothing new, the same accounting
    again, _ = Ingestor(workspace, workers=1).ingest_sources(list(iter_sources([tmp_path / "in"], limits)))
    assert again.counts["ingested"] == 0 and sum(again.counts.values()) == found


def test_cli_output_survives_markup_in_paths_and_hides_them(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from curata.cli import app

    folder = tmp_path / "in" / PHI_FOLDER / "[/]" / "[red]x[/red]"
    folder.mkdir(parents=True)
    (folder / "bad.dcm").write_bytes(b"garbage")
    (folder / "ok.dcm").write_bytes(_ct_bytes(1))
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(tmp_path / "in"), "-w", str(workspace.root), "-j", "1"])
    assert res.exit_code == 1, res.output  # one quarantined: non-zero, but no crash
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "sha256:" in res.output and PHI_FOLDER not in res.output
    res = runner.invoke(
        app, ["ingest", str(tmp_path / "in"), "-w", str(workspace.root), "-j", "1", "--show-paths"]
    )
    assert res.exit_code == 1 and "[/]" in res.output and "[red]x[/red]" in res.output


def test_unreadable_folder_is_reported_not_skipped(tmp_path: Path) -> None:
    """As an unprivileged user (root reads everything), an unreadable folder is a failed input."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")  # CI and test.sh run as root
    top = Path(tempfile.mkdtemp(prefix="curata-unreadable-"))
    try:
        os.chmod(top, 0o755)
        (top / "ok").mkdir()
        (top / "ok" / "a.dcm").write_bytes(b"x")
        (top / "locked").mkdir()
        (top / "locked" / "b.dcm").write_bytes(b"x")
        os.chmod(top / "locked", 0o000)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child drops to nobody and lists the tree
            try:
                os.close(read_end)
                os.setgid(65534)
                os.setuid(65534)
                rows = [[s.name, s.problem] for s in iter_sources([top])]
                os.write(write_end, json.dumps(rows).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as fh:
            output = fh.read()
        os.waitpid(pid, 0)
        rows = json.loads(output)
        assert [r[1] for r in rows if r[0].endswith("a.dcm")] == [None]
        locked = [r for r in rows if r[1]]
        assert len(locked) == 1 and "cannot list folder" in locked[0][1] and "denied" in locked[0][1]
    finally:
        os.chmod(top / "locked", 0o700)
        subprocess.run(["rm", "-rf", str(top)], check=False)


def test_reasons_are_sanitised() -> None:
    leaky = InputError("bad value 'DOE^JOHN' in (0010,0010) from /data/DOE^JOHN_12345/x.dcm on 19600101")
    text = safe_reason(leaky)
    assert "DOE" not in text and "19600101" not in text and "(0010,0010)" in text
    assert "JOHN" not in safe_reason(ValueError("Invalid value 'JOHN^SMITH' for PN"))
    assert "internal error (ValueError" in safe_reason(ValueError("Invalid value 'JOHN^SMITH'"))
    assert sanitize("tag [PatientName] <Smith> rule X") == "tag '…' '…' rule X"


def test_deid_duplicate_sop_uids_never_overwrite(tmp_path: Path) -> None:
    """Two different inputs with one SOP Instance UID: the first is written, the second refused
    with its reason; the report describes the file that is in OUTPUT."""
    from curata.cli import app
    from curata.collect.keys import generate_key_file

    src = tmp_path / "in"
    same = {"sop_uid": "1.2.826.0.1.3680043.8.498.1", "study_uid": "1.2.3.4", "series_uid": "1.2.3.4.5"}
    make_ct(src / "a.dcm", index=1, seed=1, **same)
    make_ct(src / "b.dcm", index=2, seed=2, **same)
    key = tmp_path / "site.key"
    generate_key_file(key)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["deid", str(src), str(out), "--key-file", str(key), "-j", "1", "--json"])
    report = json.loads((out / "deid-report.json").read_text())
    assert report["counts"].get("deidentified") == 1 and report["counts"].get("quarantined") == 1, report[
        "counts"
    ]
    assert "duplicate SOP Instance UID" in report["quarantined"][0]["reason"]
    written = [p for p in out.rglob("*.dcm")]
    assert len(written) == 1
    ds = pydicom.dcmread(written[0])
    assert str(report["files"][0]["output"]) in str(written[0].relative_to(out))
    assert ds.InstanceNumber in (2, 3)  # whichever input won, it is the one described
    assert res.exit_code != 0  # something was refused
    qdir = tmp_path / "curata-quarantine"
    assert stat.S_IMODE(qdir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in qdir.iterdir())


def test_a_decoder_that_panics_on_corrupt_pixels_quarantines_the_file_and_the_run_goes_on(
    workspace, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A Rust decoder (pylibjpeg-rle) panics on an RLE segment that decodes past its frame: pyo3's
    PanicException is a BaseException, which ``except Exception`` lets through to stop the whole run."""
    import warnings

    import pydicom.data
    from pydicom.encaps import encapsulate, generate_frames

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("SC_rgb_rle_32bit_2frame.dcm"))
    frames = list(generate_frames(ds.PixelData, number_of_frames=2))
    first = bytearray(frames[0])
    last = int.from_bytes(first[4 + 4 * 11 : 8 + 4 * 11], "little")  # the 12th (last) segment's offset
    first[last:] = b"\x81\x00" * ((len(first) - last) // 2)  # runs of 128 bytes: far past the frame
    ds.PixelData = encapsulate([bytes(first), frames[1]])
    ds.PatientName, ds.PatientID = "DOE^JOHN", "12345678"
    folder = tmp_path / "in"
    folder.mkdir()
    ds.save_as(folder / "a-corrupt.dcm", enforce_file_format=True)
    (folder / "b-ok.dcm").write_bytes(_ct_bytes(1))
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([folder])
    assert summary.counts["ingested"] == 1 and summary.counts["quarantined"] == 1, (summary.counts, problems)
    assert "DOE" not in (problems[0].reason or "") and "pixel" in (problems[0].reason or "")


def test_deid_quarantines_a_screen_capture_whose_decoder_panics(tmp_path: Path) -> None:
    """``curata deid`` decodes a screen capture's pixels to look for burned-in text: the Rust RLE
    decoder's panic on a damaged frame quarantines that file, the CT beside it goes out."""
    from curata.cli import app
    from curata.collect.keys import generate_key_file
    from tests.conftest import corrupt_rle

    src = tmp_path / "in"
    make_ct(src / "ct.dcm")
    sc = make_ct(patient_name="MUSTERMANN^ERIKA", seed=3)
    sc.SOPClassUID = sc.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    corrupt_rle(sc).save_as(src / "sc.dcm", enforce_file_format=True)
    key = tmp_path / "site.key"
    generate_key_file(key)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["deid", str(src), str(out), "--key-file", str(key), "-j", "2", "--json"])
    assert not isinstance(res.exception, BaseException) or isinstance(res.exception, SystemExit), (
        res.exception
    )
    report = json.loads((out / "deid-report.json").read_text())
    assert report["counts"].get("deidentified") == 1 and report["counts"].get("quarantined") == 1, report[
        "counts"
    ]
    reason = report["quarantined"][0]["reason"]
    assert "cannot decode pixel data" in reason and "MUSTERMANN" not in reason
    assert len(list(out.rglob("*.dcm"))) == 1


def test_decoding_turns_a_real_panic_into_a_decode_error_and_lets_interrupts_pass() -> None:
    from curata.errors import DecodeError, decoding, is_fatal

    ds = pydicom.dcmread(io.BytesIO(_ct_bytes(0)))
    from tests.conftest import corrupt_rle

    corrupt_rle(ds)
    with (
        pytest.raises(DecodeError, match="cannot decode pixel data") as caught,
        decoding("pixel data", path="x.dcm"),
    ):
        ds.pixel_array  # noqa: B018
    assert caught.value.path == "x.dcm" and not is_fatal(caught.value.__cause__)  # type: ignore[arg-type]
    for stop in (KeyboardInterrupt(), SystemExit(3)):
        with pytest.raises(type(stop)), decoding("pixel data"):
            raise stop
        assert is_fatal(stop)
    with pytest.raises(ValueError), decoding("pixel data"):  # an ordinary error: the caller's to word
        raise ValueError("not a panic")


def test_decoding_ordinary_words_a_decoder_error_and_lets_interrupts_pass() -> None:
    """``ordinary=True``: pixel data cut short (pydicom's ValueError) becomes a DecodeError whose reason
    keeps the error's words but no quoted value or path; an interrupt still stops the run."""
    from curata.errors import DecodeError, decoding
    from tests.conftest import truncate_pixels

    ds = truncate_pixels(pydicom.dcmread(io.BytesIO(_ct_bytes(0))))
    with (
        pytest.raises(DecodeError, match="cannot decode pixel data: the pixel data is damaged") as caught,
        decoding("pixel data", path="/data/MUSTERMANN/x.dcm", ordinary=True),
    ):
        ds.pixel_array  # noqa: B018
    assert isinstance(caught.value.__cause__, ValueError) and "ValueError" in caught.value.reason
    assert "less than expected" in caught.value.reason and "MUSTERMANN" not in caught.value.reason
    with (
        pytest.raises(DecodeError, match=r"RuntimeError: codec says '…' at <path>"),
        decoding("x", ordinary=True),
    ):
        raise RuntimeError("codec says 'MUSTERMANN^HANS' at /data/MUSTERMANN/x.dcm")
    for stop in (KeyboardInterrupt(), SystemExit(3)):
        with pytest.raises(type(stop)), decoding("pixel data", ordinary=True):
            raise stop

"""Parsers quote what they choke on: their warnings and log records must not carry the patient's values.

pydicom warns *and* logs ``Invalid value for VR UI: '<the value>'``; at a site that logs (the gateway's
``-v``) or on the console of ``curata ingest`` that value is the patient's name or ID. Each input below
plants the patient's own identifiers in an element whose value pydicom quotes when reading it (file meta
UI, dataset UI, IS) under a folder named after the patient, and the real CLI ingests it in this process
and in worker processes, with the root logger on and pydicom's logger at DEBUG (it quotes file names
there). Nothing the process prints may hold any spelling of the identity.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.dataelem import DataElement
from pydicom.uid import ImplicitVRLittleEndian

SPELLINGS = [
    "Okonkwo-Bello",
    "OKONKWO",
    "okonkwobello",
    "Adaeze",
    "MRN-77123",
    "MRN77123",
    "77123",
    "19480614",
]
# keyword -> a value pydicom quotes back when it reads it (the VR comes from the dictionary: implicit VR)
PLANTS = {
    "FrameOfReferenceUID": "Okonkwo.Bello.77123",
    "InstanceNumber": "MRN77123",
    "SeriesInstanceUID": "Adaeze.19480614",
}
_RUN = (
    "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr); "
    "logging.getLogger('pydicom').setLevel(logging.DEBUG); "
    "sys.argv = ['curata', *sys.argv[1:]]; from curata.cli import main; main()"
)


def _norm(text: str) -> str:
    return re.sub(r"[\s^,.\-_'/\\:|;]+", "", text.lower())


def _inputs(root: Path) -> Path:
    folder = root / "OKONKWO-BELLO_ADAEZE_MRN-77123" / "CT 1948-06-14"
    folder.mkdir(parents=True)
    for keyword, value in PLANTS.items():
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "OKONKWO-BELLO^ADAEZE", "MRN-77123", "19480614"
        tag = pydicom.datadict.tag_for_keyword(keyword)
        ds[tag] = DataElement(tag, "LO", value)  # written as text; read back under its own VR
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(folder / f"Okonkwo-Bello_{keyword}.dcm", implicit_vr=True, little_endian=True)
    # a broken file whose broken part (file meta UI) is the patient's name
    meta_ui = b"\x02\x00\x10\x00UI\x0e\x00Okonkwo.Bello\x00"
    (folder / "OKONKWO ADAEZE broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + meta_ui)
    return root


def _curata(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return subprocess.run(
        [sys.executable, "-c", _RUN, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(cwd)},
        timeout=300,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_parser_warnings_and_logs_do_not_quote_the_input(tmp_path: Path, workers: str) -> None:
    inputs = _inputs(tmp_path / "export")
    assert _curata("init", str(tmp_path / "ws"), cwd=tmp_path).returncode == 0
    run = _curata("ingest", str(inputs), "-j", workers, "-w", str(tmp_path / "ws"), cwd=tmp_path)
    printed = run.stdout + run.stderr
    assert "Invalid value for VR" in printed, "the fixture must make the parser complain"
    assert "WARNING:pydicom" in printed, "and log its complaint"
    seen = _norm(printed)
    assert [s for s in SPELLINGS if _norm(s) in seen] == []


def test_a_library_traceback_keeps_its_frames_and_loses_the_value(tmp_path: Path) -> None:
    script = (
        "import logging, sys; logging.basicConfig(stream=sys.stderr); "
        "from curata.console import guard_library_output; guard_library_output(); "
        "log = logging.getLogger('somelib')\n"
        "try:\n    raise ValueError(\"Invalid value for VR PN: 'OKONKWO-BELLO^ADAEZE' in /export/MRN-77123/a.dcm\")\n"
        "except ValueError:\n    log.exception('reading %s failed', '/export/OKONKWO_ADAEZE/a.dcm')\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={"PYTHONPATH": src}
    )
    assert "Traceback" in run.stderr and 'File "<string>", line' in run.stderr
    assert "ValueError: Invalid value for VR PN" in run.stderr and "reading" in run.stderr
    seen = _norm(run.stderr)
    assert [s for s in SPELLINGS if _norm(s) in seen] == []


@pytest.mark.parametrize("front_end,workers", [("python", "2"), ("dcmtk", "1"), ("dcmtk", "2")])
def test_the_gateway_does_not_quote_what_it_receives(tmp_path: Path, front_end: str, workers: str) -> None:
    """The same inputs sent over DICOM to `gateway serve -v` (its listener, de-identification pool or
    drain processes, with logging on): nothing it prints holds the identity."""
    import os
    import signal
    import socket
    import time

    from tests.conftest import require_programs

    require_programs("storescu", "echoscu")
    inputs = _inputs(tmp_path / "export")
    (next(inputs.rglob("*broken.dcm"))).unlink()  # storescu cannot send a file it cannot read
    assert _curata("init", str(tmp_path / "ws"), cwd=tmp_path).returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src, "COLUMNS": "200", "HOME": str(tmp_path)}
    env.pop("CURATA_WORKSPACE", None)
    args = [
        "gateway",
        "serve",
        "-v",
        "--json",
        "--port",
        port,
        "--front-end",
        front_end,
        "--workers",
        workers,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN, *args, "-w", str(tmp_path / "ws")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            ["echoscu", "-aec", "CURATA", "127.0.0.1", port], capture_output=True
        ).returncode:
            assert proc.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        sent = subprocess.run(  # the python front end answers a refusal with a failure status
            ["storescu", "-nh", "-aec", "CURATA", "127.0.0.1", port, "+sd", "+r", str(inputs)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Association Request Failed" not in sent.stderr, sent.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=180)
    import json

    summary = json.loads(out[out.index("{") :])
    received = summary["stored"] + summary["present"] + summary["refused"]
    assert received == len(PLANTS), summary  # each one was received (filed, a re-send, or refused)
    printed = out + err
    seen = _norm(printed)
    assert [s for s in SPELLINGS if _norm(s) in seen] == []


def test_htslib_does_not_print_a_vcf_header_it_chokes_on(tmp_path: Path) -> None:
    """htslib (pysam) writes its warnings and errors straight to the process's stderr, quoting the
    header line it could not read: a ``##SAMPLE`` line without its ``>`` holds the patient's ID and
    name, a tumour/normal pair named by the same MRN twice is "Duplicated sample name 'MRN'". The real
    CLI ingests both; nothing it prints holds the identity."""
    from tests.collect.clinical._fixtures import VCF_HEADER, vcf_text

    drop = tmp_path / "drop"
    drop.mkdir()
    header = [line[:-1] if line.startswith("##SAMPLE") else line for line in VCF_HEADER]
    assert header != VCF_HEADER, "the fixture's header must have a ##SAMPLE line to break"
    (drop / "tumour.vcf").write_text(vcf_text("MRN-77123", header))
    pair = vcf_text("MRN-77123").replace("FORMAT\tMRN-77123", "FORMAT\tMRN-77123\tMRN-77123")
    (drop / "pair.vcf").write_text(pair.replace("0/1:0.42:58,42", "0/1:0.42:58,42\t0/0:0:99,0"))
    assert _curata("init", str(tmp_path / "ws"), cwd=tmp_path).returncode == 0
    run = _curata("ingest", str(drop), "-j", "1", "-w", str(tmp_path / "ws"), "--json", cwd=tmp_path)
    printed = run.stdout + run.stderr
    assert "quarantined" in printed  # the pair at least: two samples of one name
    assert "[W::" not in printed and "[E::" not in printed
    seen = _norm(printed)
    assert [s for s in [*SPELLINGS, "Okonkwo-Bello Adaeze", "Adaeze Okonkwo"] if _norm(s) in seen] == []


def test_an_unforeseen_error_is_reported_without_its_message(tmp_path: Path) -> None:
    """An exception no stage turned into its own error used to end the command with Python's report,
    whose last line quotes what the code choked on (``could not convert string to float: 'MRN-77123'``).
    The command says the error's type and where it happened; CURATA_TRACEBACK=1 shows the report."""
    script = (
        "import sys; sys.argv = ['curata', 'version']\n"
        "import curata.cli as cli\n"
        "def boom(command):\n"
        "    def run():\n"
        "        float('OKONKWO-BELLO^ADAEZE MRN-77123')\n"
        "    return run\n"
        "cli.build_app = boom\n"
        "cli.main()\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {"PYTHONPATH": src, "PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert run.returncode == 1
    assert "ValueError" in run.stderr and "internal error" in run.stderr and "Traceback" not in run.stderr
    seen = _norm(run.stdout + run.stderr)
    assert [s for s in SPELLINGS if _norm(s) in seen] == []
    shown = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**env, "CURATA_TRACEBACK": "1"}
    )
    assert "Traceback" in shown.stderr and "MRN-77123" in shown.stderr

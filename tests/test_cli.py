"""The command line as a user meets it: init, status, ls, show, store verify, exit codes, --json."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curata.cli import app
from curata.workspace import Workspace

runner = CliRunner()


def _run(*args: str, ok: bool = True):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def ws_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CURATA_DATABASE_URL", raising=False)
    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    d = tmp_path / "ws"
    _run("init", str(d), "--site", "accra-1")
    return d


def test_init_creates_a_private_site_key_and_config(ws_dir: Path) -> None:
    key = ws_dir / ".curata" / "site.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ws = Workspace.open(ws_dir)
    assert ws.site_name == "accra-1"
    assert len(ws.site_key()) == 32
    before = key.read_bytes()
    _run("init", str(ws_dir))  # re-running init keeps the key: pseudonyms must stay stable
    assert key.read_bytes() == before


def test_ingest_status_ls_show_and_verify(ws_dir: Path, ct_series) -> None:  # type: ignore[no-untyped-def]
    folder = ct_series(3, deidentified=True)
    out = _run("ingest", str(folder), "-w", str(ws_dir), "--verified-deidentified", "--json", "-j", "1")
    summary = json.loads(out.stdout)
    assert summary["ingested"] == 3 and summary["quarantined"] == 0 and summary["seconds"] >= 0
    status = json.loads(_run("status", "-w", str(ws_dir), "--json").stdout)
    assert (status["patients"], status["studies"], status["series"], status["instances"]) == (1, 1, 1, 3)
    series = json.loads(_run("ls", "series", "-w", str(ws_dir), "--json", "--modality", "ct").stdout)
    assert len(series) == 1 and series[0]["instances"] == 3 and series[0]["site"] == "accra-1"
    assert json.loads(_run("ls", "series", "-w", str(ws_dir), "--json", "--modality", "MR").stdout) == []
    shown = json.loads(_run("show", series[0]["series_uid"], "-w", str(ws_dir), "--json").stdout)
    assert shown["kind"] == "series" and shown["rows"] == 16
    verify = json.loads(_run("store", "verify", "-w", str(ws_dir), "--json").stdout)
    assert verify["ok"] and verify["checked"] == 3


def test_ingest_exits_non_zero_when_anything_is_quarantined(ws_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    result = _run("ingest", str(tmp_path / "junk"), "-w", str(ws_dir), "--verified-deidentified", ok=False)
    assert result.exit_code == 1
    rows = json.loads(_run("ls", "quarantine", "-w", str(ws_dir), "--json").stdout)
    assert len(rows) == 1 and "not a readable DICOM" in rows[0]["reason"]


def test_store_verify_fails_on_a_damaged_blob(ws_dir: Path, ct_series) -> None:  # type: ignore[no-untyped-def]
    _run("ingest", str(ct_series(2, deidentified=True)), "-w", str(ws_dir), "--verified-deidentified", "-q")
    blob = next((ws_dir / "store" / "sha256").glob("*/*/*"))
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    result = _run("store", "verify", "-w", str(ws_dir), "--json", ok=False)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["corrupt"] == [blob.name]


def test_show_unknown_uid_is_a_clear_error(ws_dir: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "curata.cli", "show", "1.2.3", "-w", str(ws_dir)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "nothing in the catalog is called '1.2.3'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_workspace_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    proc = subprocess.run(
        [sys.executable, "-m", "curata.cli", "status"], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "curata init" in proc.stderr


def test_database_url_env_selects_postgres(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURATA_DATABASE_URL", pg_url)
    ws = Workspace.init(tmp_path / "pgws")
    assert ws.catalog.dialect == "postgresql"
    assert not (tmp_path / "pgws" / "catalog.sqlite").exists()
    ws.catalog.dispose()


# -- the central platform (`ingest --verified-deidentified`): reviewer 8, findings 4, 8 and 9 --
_NEEDLES = (b"QF88421937", b"19470319", b"ACC5521987", b"Wendeline", b"Quillfeather")


def _files_holding(folder: Path, needles: tuple[bytes, ...]) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


def test_platform_ingest_refuses_a_marked_object_that_keeps_its_identifiers(
    ws_dir: Path, tmp_path: Path
) -> None:
    """Finding 4: marked PatientIdentityRemoved=YES by another tool, the raw MRN as PatientID and
    PatientName, the birth date, accession and institution: it was stored at the platform."""
    from tests.collect.deid.planting import falsely_marked_ct

    ds = falsely_marked_ct()
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "x.dcm")
    result = _run("ingest", str(tmp_path / "in"), "-w", str(ws_dir), "--verified-deidentified", "--json",
                  "-j", "1", ok=False)  # fmt: skip
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["ingested"] == 0 and summary["quarantined"] == 1
    assert _files_holding(ws_dir / "store", _NEEDLES) == []
    rows = json.loads(_run("ls", "quarantine", "-w", str(ws_dir), "--json").stdout)
    assert len(rows) == 1 and "PatientID" in rows[0]["reason"] and "QF88421937" not in rows[0]["reason"]


def test_platform_keeps_no_raw_copy_of_what_it_refuses(ws_dir: Path, ct_series) -> None:  # type: ignore[no-untyped-def]
    """Finding 8: a refused raw object's bytes (name, MRN, birth date) were kept in the platform's
    quarantine/. Now only the row: digest, size, reason."""
    folder = ct_series(2, deidentified=False)
    raws = sorted(p.read_bytes() for p in folder.iterdir())
    result = _run(
        "ingest", str(folder), "-w", str(ws_dir), "--verified-deidentified", "--json", "-j", "1", ok=False
    )
    assert json.loads(result.stdout)["quarantined"] == 2
    assert [p.name for p in (ws_dir / "quarantine").rglob("*")] == []
    assert _files_holding(ws_dir, (b"Doe^Jane", b"PAT-0001", b"ACC123")) == []
    rows = json.loads(_run("ls", "quarantine", "-w", str(ws_dir), "--json").stdout)
    import hashlib

    assert sorted(r["input_sha256"] for r in rows) == sorted(hashlib.sha256(r).hexdigest() for r in raws)
    assert all(r["size"] == len(raws[0]) and "PatientIdentityRemoved" in r["reason"] for r in rows)


def test_platform_ingest_refuses_raw_clinical_and_genomic_exports(ws_dir: Path, tmp_path: Path) -> None:
    """Finding 9: a raw CSV (names, address, phone, birth date) and a raw VCF (sample = MRN) were
    de-identified with the PLATFORM's key and their identities sealed in a vault made at the platform."""
    exp = tmp_path / "export"
    exp.mkdir()
    (exp / "demo.csv").write_text(
        "mrn,family,given,street,phone,dob,sex\n"
        "QF88421937,Quillfeather,Marisol,42 Bramblewood Lane,914-555-0173,1947-03-19,F\n"
    )
    (exp / "clinical-map.toml").write_text(
        '[csv]\npatient_id = "mrn"\n[csv.identifiers]\nnames = ["family", "given"]\n'
        'addresses = ["street"]\nphones = ["phone"]\nbirth_date = "dob"\n[csv.person]\nsex = "sex"\n'
    )
    (exp / "t.vcf").write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=chr7,length=159345973>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tQF88421937\n"
        "chr7\t55191822\t.\tT\tG\t50\tPASS\t.\tGT\t0/1\n"
    )
    result = _run(
        "ingest", str(exp), "-w", str(ws_dir), "--verified-deidentified", "--json", "-j", "1", ok=False
    )
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["ingested"] == 0 and summary["quarantined"] == 2, summary
    assert list((ws_dir / ".curata" / "vault").rglob("*.vault")) == []
    assert _files_holding(ws_dir, (b"QF88421937", b"Quillfeather", b"Bramblewood")) == []
    rows = json.loads(_run("ls", "quarantine", "-w", str(ws_dir), "--json").stdout)
    assert len(rows) == 2 and all("gateway" in r["reason"] for r in rows), rows

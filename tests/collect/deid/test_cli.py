"""The command-line contract: `curata keygen FILE`, `curata deid INPUT OUTPUT --key-file FILE`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom

from curata.collect.deid import Vault
from curata.collect.keys import read_key_file

from .conftest import dressed, vendor_file


def _curata(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "curata.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def _tree(tmp_path: Path) -> tuple[Path, list]:
    src = tmp_path / "in" / "Smith_John" / "study 1"
    src.mkdir(parents=True)
    planted = []
    for i, name in enumerate(["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]):
        raw, p = dressed(name, seed=40 + i)
        (src / f"IMG{i:04d}").write_bytes(raw)  # any file names, no extension
        planted.append(p)
    return tmp_path / "in", planted


def test_keygen_writes_a_0600_key(tmp_path: Path) -> None:
    r = _curata("keygen", "site.key", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    key = tmp_path / "site.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(read_key_file(key)) == 32
    again = _curata("keygen", "site.key", cwd=tmp_path)
    assert again.returncode != 0  # never overwrites a site key


def test_deid_end_to_end_clean_batch_exits_zero(tmp_path: Path) -> None:
    _curata("keygen", "site.key", cwd=tmp_path)
    inp, planted = _tree(tmp_path)
    r = _curata("deid", str(inp), "out", "--key-file", "site.key", "--workers", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "out"
    files = sorted(p for p in out.rglob("*.dcm"))
    assert len(files) == 3
    for f in files:
        rel = f.relative_to(out).parts
        assert re.fullmatch(r"CUR-[A-Z2-7]{16}", rel[0])
        assert all(re.fullmatch(r"2\.25\.\d+(\.dcm)?", part) for part in rel[1:])
        ds = pydicom.dcmread(f)
        assert f.name == f"{ds.SOPInstanceUID}.dcm" and ds.PatientIdentityRemoved == "YES"
        for p in planted:
            assert not [h for h in p.scan(f.read_bytes()) if h.kind != "device"]
    report = json.loads((out / "deid-report.json").read_text())
    assert report["counts"] == {"deidentified": 3}
    assert len(report["files"]) == 3 and all(len(f["input_sha256"]) == 64 for f in report["files"])
    assert "Smith" not in (out / "deid-report.json").read_text()  # no input paths in OUTPUT
    vault = Vault(tmp_path / "curata-vault", read_key_file(tmp_path / "site.key"))
    ids = {r["patient_id"] for r in vault.records()}
    assert {p.identity.patient_id for p in planted} <= ids


def test_deid_quarantines_bad_input_outside_output_and_exits_one(tmp_path: Path) -> None:
    _curata("keygen", "site.key", cwd=tmp_path)
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(vendor_file("CT_small.dcm"), inp / "a.dcm")
    (inp / "notes.txt").write_text("not an image")
    raw = vendor_file("MR_small.dcm").read_bytes()
    (inp / "cut.dcm").write_bytes(raw[: len(raw) // 2])
    r = _curata("deid", str(inp), "out", "--key-file", "site.key", "--profile", "basic", "--json",
                "--workers", "1", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 1
    summary = json.loads(r.stdout)
    assert summary["deidentified"] == 1 and summary["quarantined"] == 2
    report = json.loads((tmp_path / "out" / "deid-report.json").read_text())
    reasons = " ".join(q["reason"] for q in report["quarantined"])
    assert "not a DICOM" in reasons and "truncated" in reasons
    qdir = tmp_path / "curata-quarantine"
    assert len(list(qdir.glob("*.input"))) == 2 and len(list(qdir.glob("*.json"))) == 2
    assert not list((tmp_path / "out").rglob("*.input"))


def test_deid_refuses_vault_inside_output(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from curata.cli import app
    from curata.collect.keys import generate_key_file
    from curata.errors import ConfigError

    generate_key_file(tmp_path / "site.key")
    (tmp_path / "in").mkdir()
    r = CliRunner().invoke(app, ["deid", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file",
                                 str(tmp_path / "site.key"), "--vault", str(tmp_path / "out" / "vault")])  # fmt: skip
    assert r.exit_code != 0 and isinstance(r.exception, ConfigError) and "inside OUTPUT" in str(r.exception)


def test_report_reasons_never_quote_values() -> None:
    from curata.collect.deid.batch import _sanitized

    reason = "unsupported data set (ValueError: Invalid value for VR PN: 'DOE^JOHN' born 19610203)"
    clean = _sanitized(reason)
    assert "DOE" not in clean and "19610203" not in clean and clean.startswith("unsupported data set")


def test_a_binary_or_wrong_key_file_is_a_clear_error(tmp_path: Path) -> None:
    """A key made with ``head -c 32 /dev/urandom`` (not ``curata keygen``): a one-line reason, exit 2, no
    traceback, and the key's bytes never printed."""
    import pytest

    from curata.errors import KeyFileError

    key = tmp_path / "raw.key"
    key.write_bytes(bytes(range(0x80, 0xA0)))
    key.chmod(0o600)
    with pytest.raises(KeyFileError, match="binary"):
        read_key_file(key)
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(vendor_file("CT_small.dcm"), src / "a.dcm")
    run = subprocess.run(
        [sys.executable, "-m", "curata.cli", "deid", str(src), str(tmp_path / "out"), "--key-file", str(key)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr + run.stdout and "binary" in run.stderr + run.stdout


def test_refused_inputs_are_named_by_digest_not_by_their_patient_named_path(tmp_path: Path) -> None:
    """Folder and file names often hold the patient's name, ID and birth date: the console names a refused
    input by its sha256 (its quarantine file's name) unless --show-paths asks for the path."""
    _curata("keygen", "site.key", cwd=tmp_path)
    folder = tmp_path / "in" / "OKONKWO-BELLO_ADAEZE_MRN-77123" / "CT 1948-06-14"
    folder.mkdir(parents=True)
    shutil.copy(vendor_file("CT_small.dcm"), folder / "a.dcm")
    raw = vendor_file("MR_small.dcm").read_bytes()
    (folder / "Okonkwo-Bello Adaeze MRN77123.dcm").write_bytes(raw[: len(raw) // 2])
    (folder / "adaeze_okonkwo_19480614.txt").write_text("not an image")
    args = ("deid", "in", "out", "--key-file", "site.key", "--workers", "1")
    r = _curata(*args, cwd=tmp_path)
    assert r.returncode == 1 and "2 input(s) quarantined" in r.stdout
    printed = re.sub(r"[\s^,.\-_'/\\:|;]+", "", (r.stdout + r.stderr).lower())
    assert [n for n in ("okonkwo", "adaeze", "bello", "77123", "19480614") if n in printed] == []
    assert len(re.findall(r"sha256:[0-9a-f]{16}", r.stdout)) == 2
    shown = _curata(*args[:2], "out2", *args[3:], "--show-paths", cwd=tmp_path)
    assert "OKONKWO-BELLO_ADAEZE_MRN-77123" in shown.stdout.replace("\n", "")


def test_deid_loads_the_settings_only_where_one_could_set_its_workers(tmp_path: Path) -> None:
    """With ``-j N``, or with neither a workspace file nor a ``CURATA_RUNTIME*`` variable, no setting
    changes what `curata deid` does, so pydantic-settings (about 0.1 CPU-second to import) is not
    loaded; where either exists, [runtime] workers is read as by `curata ingest`."""
    _curata("keygen", "site.key", cwd=tmp_path)
    inp, _ = _tree(tmp_path)
    probe = ("import sys\nfrom curata.cli import main\nsys.argv = ['curata', *sys.argv[1:]]\n"
             "try:\n    main()\nfinally:\n"
             "    print(sorted(m for m in ('curata.settings', 'pydantic_settings') if m in sys.modules))\n")  # fmt: skip
    bare = {k: v for k, v in os.environ.items() if not k.upper().startswith("CURATA_")}
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "curata.toml").write_text("[runtime]\nworkers = 1\n")
    runs = {  # name: (extra arguments, environment, working folder)
        "named": (["-j", "1"], {**bare, "CURATA_RUNTIME__WORKERS": "1"}, tmp_path),
        "variable": ([], {**bare, "curata_runtime__workers": "1"}, tmp_path),
        "file": ([], bare, tmp_path / "ws"),
        "neither": ([], bare, tmp_path),
    }
    seen = {}
    for name, (args, env, cwd) in runs.items():
        r = subprocess.run([sys.executable, "-c", probe, "deid", str(inp), str(tmp_path / f"out-{name}"),
                            "--key-file", str(tmp_path / "site.key"), "--json", *args], cwd=cwd,
                           capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        summary = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
        seen[name] = (summary["workers"], r.stdout.strip().splitlines()[-1])
    loaded = "['curata.settings', 'pydantic_settings']"
    cores = len(os.sched_getaffinity(0))
    assert seen == {
        "named": (1, "[]"),
        "variable": (1, loaded),
        "file": (1, loaded),
        "neither": (cores, "[]"),
    }


def test_deid_imports_pydicom_without_its_download_modules(tmp_path: Path) -> None:
    """`curata deid` imports pydicom without requests and tqdm (pydicom's download of its own test
    files; about 0.05 CPU-second of each start), and de-identifies as before."""
    _curata("keygen", "site.key", cwd=tmp_path)
    inp, _ = _tree(tmp_path)
    probe = ("import sys\nfrom curata.cli import main\nsys.argv = ['curata', *sys.argv[1:]]\n"
             "try:\n    main()\nfinally:\n"
             "    print(sorted(m for m in ('pydicom', 'requests', 'tqdm', 'urllib3') if m in sys.modules))\n")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", probe, "deid", str(inp), "out", "--key-file", "site.key", "--json",
                        "-j", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
    assert summary["deidentified"] >= 1 and summary["quarantined"] == 0
    assert r.stdout.strip().splitlines()[-1] == "['pydicom']"


def _unreadable(path: Path) -> str:
    """Make ``path`` a real input that cannot be read: a file of mode 000, or, as root (whom modes do not
    stop), a link to a kernel file whose read fails (EACCES on a write-only sysfs file, EIO on
    /proc/self/mem). Returns the failure's strerror; skips where none is to be had."""
    import pytest

    if os.geteuid() != 0:
        path.write_bytes(vendor_file("CT_small.dcm").read_bytes())
        path.chmod(0)
        return "Permission denied"
    for target in ("/sys/bus/pci/rescan", "/sys/bus/platform/drivers_probe", "/proc/self/mem"):
        try:
            Path(target).read_bytes()
        except OSError as exc:
            if Path(target).is_file() and exc.strerror:
                path.symlink_to(target)
                return exc.strerror
    pytest.skip("no unreadable file to be had here")


def test_an_unreadable_input_is_reported_as_not_read_and_the_batch_goes_on(tmp_path: Path) -> None:
    """An input that cannot be read (EACCES, EIO) is neither quarantined nor a crash: the console says it
    could not be read, names it as other refused inputs are named (no patient-named path unless
    --show-paths), counts it as failed, and the exit status says so; the other inputs are de-identified."""
    _curata("keygen", "site.key", cwd=tmp_path)
    folder = tmp_path / "in" / "NWACHUKWU_CHIDINMA_MRN-88231"
    folder.mkdir(parents=True)
    shutil.copy(vendor_file("CT_small.dcm"), folder / "a.dcm")
    why = _unreadable(folder / "Nwachukwu Chidinma 19520311.dcm")
    args = ("deid", "in", "out", "--key-file", "site.key", "--workers", "1")
    r = _curata(*args, cwd=tmp_path)
    both = r.stdout + r.stderr
    assert r.returncode == 1, both
    assert "internal error" not in both and "Traceback" not in both
    assert "quarantined in" not in both  # nothing went to the quarantine
    assert "1 input(s) could not be read" in r.stdout, both
    assert f"could not read the input ({why})" in r.stdout
    printed = re.sub(r"[\s^,.\-_'/\\:|;]+", "", both.lower())
    assert [n for n in ("nwachukwu", "chidinma", "88231", "19520311") if n in printed] == []
    assert "an input (--show-paths names it)" in r.stdout
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1
    assert not list((tmp_path / "curata-quarantine").glob("*.input"))
    report = json.loads((tmp_path / "out" / "deid-report.json").read_text())
    assert report["counts"] == {"deidentified": 1, "failed": 1}
    assert report["quarantined"] == [] and [f["reason"] for f in report["failed"]] == [
        f"could not read the input ({why})"
    ]
    assert "Nwachukwu" not in (tmp_path / "out" / "deid-report.json").read_text()
    as_json = _curata(*args[:2], "out2", *args[3:], "--json", cwd=tmp_path)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["failed"] == 1
    shown = _curata(*args[:2], "out3", *args[3:], "--show-paths", cwd=tmp_path)
    assert shown.returncode == 1 and "Nwachukwu Chidinma 19520311.dcm" in shown.stdout.replace("\n", "")

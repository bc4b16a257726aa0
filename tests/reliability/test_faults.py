"""Fault injection: SIGKILL at every step boundary, disk full, concurrent writers, orphaned workers.

Each case runs the real CLI in a subprocess (``CURATA_FAULT`` names the point where it kills
itself, see ``curata.faults``), then reruns it and checks the result converged: nothing lost,
nothing twice, every log entry present exactly once, and no traceback on the way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_ct
from tests.reliability.conftest import SRC, TABLE, cli, instances_ok, small_fs

pytestmark = pytest.mark.integration


def _series(folder: Path, n: int, *, deidentified: bool = False, size: int = 16) -> Path:
    from pydicom.uid import generate_uid

    study, series = generate_uid(), generate_uid()
    for i in range(n):
        make_ct(
            folder / f"IM{i:04d}.dcm",
            study_uid=study,
            series_uid=series,
            index=i,
            deidentified=deidentified,
            rows=size,
            columns=size,
        )
    return folder


@pytest.mark.parametrize(
    ("point", "after"),
    [("ingest.after_blob", 2), ("ingest.before_commit", 0), ("ingest.after_commit", 0)],
)
def test_ingest_killed_at_each_step_converges(workspace, tmp_path: Path, point: str, after: int) -> None:  # type: ignore[no-untyped-def]
    folder = _series(tmp_path / "in", 6)
    killed = cli("ingest", folder, "-w", workspace.root, "-j", "1", fault=point, after=after)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-800:]
    again = cli("ingest", folder, "-w", workspace.root, "-j", "1", "--json")
    assert again.returncode == 0, again.stderr[-800:]
    assert "Traceback" not in again.stderr
    assert instances_ok(workspace) == 6
    TABLE.add("SIGKILL at ingest step boundary", ok=True)


def _released_ws(workspace, tmp_path: Path):  # type: ignore[no-untyped-def]
    from curata.collect.ingest import Ingestor

    folder = _series(tmp_path / "rel", 4, deidentified=True)
    summary, _ = Ingestor(workspace, deidentify=False, workers=1).ingest_paths([folder])
    assert summary.counts["ingested"] == 4
    return workspace


@pytest.mark.parametrize("point", ["release.after_catalog", "release.after_log"])
def test_release_killed_between_catalog_and_log_converges(workspace, tmp_path: Path, point: str) -> None:  # type: ignore[no-untyped-def]
    from curata.ledger import Ledger
    from curata.publish import verify_version

    ws = _released_ws(workspace, tmp_path)
    args = ("release", "create", "chest", "-w", ws.root)
    killed = cli(*args, fault=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-800:]
    again = cli(*args)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr[-800:]
    report = verify_version(ws, "chest@1")
    assert report.verified, report.problems
    entries = [e for e in Ledger.open(ws).entries("release") if e.payload.get("release") == "chest"]
    assert len(entries) == 1, "logged exactly once"
    third = cli(*args)  # and stays converged
    assert third.returncode == 0
    assert len([e for e in Ledger.open(ws).entries("release") if e.payload.get("release") == "chest"]) == 1
    TABLE.add("SIGKILL between release catalog commit and log append", ok=True)


def test_concurrent_overlapping_ingests(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _series(tmp_path / "in", 24)
    env = {**os.environ, "PYTHONPATH": SRC}
    for trial in range(2):
        cmd = [
            sys.executable,
            "-m",
            "curata.cli",
            "ingest",
            str(folder),
            "-w",
            str(workspace.root),
            "-j",
            "1",
        ]
        procs = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (_out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err[-1500:]
            assert "Traceback" not in err and "IntegrityError" not in err
        assert instances_ok(workspace) == 24
        TABLE.add("two concurrent ingests of the same 24 files", ok=True)
        if trial == 0:  # the second trial starts from scratch
            import shutil

            from curata.workspace import Workspace

            shutil.rmtree(workspace.root)
            workspace = Workspace.init(workspace.root, site="test-site")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def test_pool_workers_stop_when_the_parent_is_killed(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _series(tmp_path / "in", 150, size=128)
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "curata.cli", "ingest", str(folder), "-w", str(workspace.root), "-j", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    kids: list[int] = []
    while time.monotonic() < deadline and len(kids) < 2:
        time.sleep(0.2)
        kids = _children(proc.pid)
        assert proc.poll() is None, "ingest ended before its workers were seen"
    assert len(kids) >= 2
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{k}").exists() for k in kids):
        time.sleep(0.1)
    alive = []
    for k in kids:
        try:
            state = Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(k)
    assert not alive, f"workers {alive} outlived the killed ingest"
    TABLE.add("pool workers after the parent is killed", ok=True)


def test_disk_full_is_reported_clearly_and_the_rerun_resumes(tmp_path: Path) -> None:
    from curata.workspace import Workspace

    folder = _series(tmp_path / "in", 40, size=256)  # ~130 KB each, 5 MB in all
    with small_fs(tmp_path / "small", "3m") as mount:
        ws = Workspace.init(mount / "ws", site="test-site")
        res = cli("ingest", folder, "-w", ws.root, "-j", "1")
        assert res.returncode != 0
        text = res.stdout + res.stderr
        assert "Traceback" not in text, text[-2000:]
        assert "no space left" in text.lower() and "hint" in text, text[-2000:]
        leftovers = [p for p in ws.quarantine_path.rglob("*") if p.name.endswith(".tmp")]
        assert not leftovers, leftovers
        done = instances_ok(ws)
        assert done < 40, text[-1500:]
        # the vault and the catalog still open
        from curata.collect.deid import Vault

        list(Vault(ws.vault_path, ws.site_key()).records())
        TABLE.add("disk full during ingest (store, vault, catalog on a 3 MB filesystem)", ok=True)

        out = mount / "out"
        key = tmp_path / "site.key"
        from curata.collect.keys import generate_key_file

        generate_key_file(key)
        res = cli("deid", folder, out, "--key-file", key, "-j", "1")
        text = res.stdout + res.stderr
        assert res.returncode != 0 and "Traceback" not in text, text[-2000:]
        assert "no space left" in text.lower(), text[-2000:]
        TABLE.add("disk full during curata deid output", ok=True)
        grown = subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], capture_output=True)
        if grown.returncode == 0:  # space freed: the rerun resumes and files every input once
            again = cli("ingest", folder, "-w", ws.root, "-j", "1", "--json")
            assert again.returncode == 0, (again.stdout + again.stderr)[-1500:]
            assert instances_ok(ws) == 40
            TABLE.add("rerun after the disk full", ok=True)


def test_vault_survives_a_torn_line_and_a_full_disk(tmp_path: Path) -> None:
    from curata.collect.deid import Vault

    key = os.urandom(32)
    vault = Vault(tmp_path / "v", key)
    vault.append([{"pseudonym": f"P{i}", "original": "x"} for i in range(3)])
    with open(vault.path, "ab") as fh:  # a write cut short by a crash
        fh.write(b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    vault = Vault(tmp_path / "v", key)
    vault.append([{"pseudonym": "P9", "original": "y"}])
    records = list(vault.records())
    assert [r["pseudonym"] for r in records] == ["P0", "P1", "P2", "P9"] and vault.damaged == 1
    assert (os.stat(tmp_path / "v").st_mode & 0o777) == 0o700
    assert (os.stat(vault.path).st_mode & 0o777) == 0o600
    with small_fs(tmp_path / "small", "1m") as mount:
        v2 = Vault(mount / "v", key)
        v2.append([{"pseudonym": "A", "original": "a"}])
        with pytest.raises(OSError), open(mount / "filler", "wb") as fh:  # fill what is left
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        with pytest.raises(OSError):
            v2.append([{"pseudonym": f"B{i}", "original": "b" * 2000} for i in range(50)])
        (mount / "filler").unlink()
        v3 = Vault(mount / "v", key)
        v3.append([{"pseudonym": "C", "original": "c"}])
        got = [r["pseudonym"] for r in v3.records()]
        assert got[0] == "A" and got[-1] == "C"
    TABLE.add("vault: torn line, append on a full disk", ok=True)


def test_workspace_and_gateway_secrets_at_rest(workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tomllib

    import tomli_w

    from curata.collect.net.config import GatewayConfig
    from curata.errors import ConfigError
    from curata.workspace import CONFIG_NAME, Workspace

    cfg_path = workspace.root / CONFIG_NAME
    assert (os.stat(cfg_path).st_mode & 0o777) == 0o600
    assert (os.stat(workspace.quarantine_path).st_mode & 0o777) == 0o700
    data = tomllib.loads(cfg_path.read_text())
    data.setdefault("gateway", {})["token"] = "s3cret-token"
    cfg_path.write_text(tomli_w.dumps(data))
    os.chmod(cfg_path, 0o644)
    monkeypatch.delenv("CURATA_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="other users can read"):
        GatewayConfig.from_workspace(Workspace.open(workspace.root))
    monkeypatch.setenv("CURATA_TOKEN", "from-env")  # the environment wins: the file is not used
    assert GatewayConfig.from_workspace(Workspace.open(workspace.root)).token == "from-env"
    monkeypatch.delenv("CURATA_TOKEN")
    os.chmod(cfg_path, 0o600)
    assert GatewayConfig.from_workspace(Workspace.open(workspace.root)).token == "s3cret-token"
    TABLE.add("token in a world-readable curata.toml", ok=True)


def test_gateway_on_a_full_disk_answers_out_of_resources_and_keeps_serving(tmp_path: Path) -> None:
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, Verification

    from curata.collect.net.config import GatewayConfig
    from curata.collect.net.scp import GatewayServer
    from curata.workspace import Workspace

    with small_fs(tmp_path / "small", "3m") as mount:
        ws = Workspace.init(mount / "ws", site="test-site")
        cfg = GatewayConfig(ae_title="CURATA", port=0, bind="127.0.0.1", workers=1)
        ae = AE(ae_title="MODALITY1")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        ae.add_requested_context(Verification)
        statuses: list[int] = []
        with GatewayServer(ws, cfg) as server:
            assoc = ae.associate("127.0.0.1", server.port, ae_title="CURATA")
            for i in range(40):
                st = assoc.send_c_store(make_ct(index=i, rows=256, columns=256))
                statuses.append(int(st.Status))
                if st.Status == 0xA700:
                    assert "no space" in str(st.get("ErrorComment", "")) or "not stored" in str(
                        st.get("ErrorComment", "")
                    )
            assert assoc.send_c_echo().Status == 0  # still serving
            assoc.release()
            assert server.counts.errors > 0 and server.counts.refused == 0
        assert statuses[0] == 0 and 0xA700 in statuses and set(statuses) <= {0, 0xA700}
        assert instances_ok(ws) == statuses.count(0), "every acknowledged instance is filed"
    TABLE.add("disk full at the gateway (C-STORE answered 0xA700, no false success)", ok=True)

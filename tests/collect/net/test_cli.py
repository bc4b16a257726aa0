"""`curata gateway serve|pull|push` and `curata server` as an operator runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from curata.cli import app
from curata.errors import ConfigError
from curata.workspace import Workspace
from tests.collect.net.conftest import free_port, need
from tests.collect.net.helpers import count, record, storescu

pytestmark = pytest.mark.integration
CURATA = [sys.executable, "-m", "curata.cli"]


def _wait_echo(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        cmd = ["echoscu", "-to", "2", "-aet", "STORESCU", "-aec", "CURATA", "127.0.0.1", str(port)]
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("gateway did not come up")


def test_serve_receives_and_reports_on_ctrl_c(workspace, ct_series) -> None:  # type: ignore[no-untyped-def]
    """The real command, its worker processes (one per core) and its summary when stopped with Ctrl-C."""
    need("storescu", "echoscu")
    port = free_port()
    cmd = [*CURATA, "gateway", "serve", "-w", str(workspace.root), "--port", str(port), "--bind", "127.0.0.1"]
    proc = subprocess.Popen(
        [*cmd, "--allow", "STORESCU", "--workers", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_echo(port, proc)
        sent = storescu(port, ct_series(4))
        assert sent.returncode == 0, sent.stderr
        intruder = storescu(port, ct_series(1, folder="x"), calling="INTRUDER")
        assert intruder.returncode != 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    summary = json.loads(out)
    assert proc.returncode == 0, err.decode()
    assert summary["stored"] == 4 and summary["rejected_associations"] == 1
    assert summary["seconds"] >= 0.5  # the whole run (echoes, two pushes), not the time to stop
    assert count(workspace) == 4
    record("curata gateway serve (CLI, 2 workers) <- storescu", 4, count(workspace))


def test_pull_commands(workspace, orthanc) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    ws = str(workspace.root)
    source = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    args = ["gateway", "pull", "-w", ws, "--from", source, "--port", str(orthanc.gateway_port), "--json"]
    first = runner.invoke(app, [*args, "--match", "PatientID=PAT-0001"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["fetched"] == 7
    second = runner.invoke(app, ["gateway", "pull", "-w", ws, "--dicomweb", orthanc.dicomweb, "--json"])
    assert second.exit_code == 0, second.output
    data = json.loads(second.stdout)
    assert (data["present"], data["fetched"]) == (7, len(orthanc.instances) - 7)
    assert count(workspace) == len(orthanc.instances)
    record(
        "curata gateway pull (C-MOVE, then DICOMweb) from Orthanc", len(orthanc.instances), count(workspace)
    )


def test_pull_argument_errors(workspace) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    result = runner.invoke(app, ["gateway", "pull", "-w", str(workspace.root)])
    assert isinstance(result.exception, ConfigError)
    result = runner.invoke(app, ["gateway", "pull", "-w", str(workspace.root), "--from", "nohost"])
    assert isinstance(result.exception, ConfigError) and "AE@host:port" in str(result.exception)


def test_serve_front_end_argument_errors(workspace) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    base = ["gateway", "serve", "-w", str(workspace.root), "--port", str(free_port())]
    result = runner.invoke(app, [*base, "--front-end", "fast"])
    assert isinstance(result.exception, ConfigError) and "python or dcmtk" in str(result.exception)
    result = runner.invoke(app, [*base, "--front-end", "dcmtk", "--processes", "2"])
    assert isinstance(result.exception, ConfigError) and "one process per association" in str(
        result.exception.hint
    )


def test_server_command_and_push_command(workspace, ct_series, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from curata.collect.ingest import Ingestor

    central = Workspace.init(tmp_path / "central")
    port = free_port()
    env = {**os.environ, "CURATA_TOKEN": "tok"}
    cmd = [*CURATA, "server", "-w", str(central.root), "--port", str(port), "--verified-deidentified"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/dicomweb/studies").status_code == 401
        Ingestor(workspace, deidentify=True, workers=1).ingest_paths([ct_series(3)])
        runner = CliRunner()
        args = ["gateway", "push", "-w", str(workspace.root), "--to", f"http://127.0.0.1:{port}", "--json"]
        result = runner.invoke(app, [*args, "--token", "tok"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["pushed"] == 3
        again = runner.invoke(app, [*args, "--token", "tok"])
        assert json.loads(again.stdout)["pushed"] == 0
    finally:
        proc.terminate()
        proc.wait(30)
    assert count(central) == 3
    record("curata gateway push -> curata server (CLI)", 3, count(central))

"""`curata gateway serve --processes 2`: two listeners on one port (SO_REUSEPORT), nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.collect.net.conftest import free_port, need
from tests.collect.net.helpers import count, received_count, record, storescu
from tests.reliability.conftest import SRC

pytestmark = pytest.mark.integration


def test_two_listener_processes_share_the_port(workspace, ct_series) -> None:  # type: ignore[no-untyped-def]
    need("storescu", "echoscu")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "curata.cli", "gateway", "serve", "-w", str(workspace.root)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--processes", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        echo = ["echoscu", "-to", "2", "-aec", "CURATA", "127.0.0.1", str(port)]
        while subprocess.run(echo, capture_output=True).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.stderr.read() if proc.stderr else ""
            )
            time.sleep(0.3)
        time.sleep(3)  # the second listener binds after its de-identifier loads
        folders = [ct_series(4, folder=f"s{i}") for i in range(4)]
        sends: list[subprocess.Popen[bytes]] = []
        for f in folders:
            sends.append(
                subprocess.Popen(
                    ["storescu", "-aec", "CURATA", "127.0.0.1", str(port), "+sd", "+r", str(f)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
        codes = [s.wait(120) for s in sends]
        # two listeners file the same patient, study and series at once: the loser of the race files
        # again in a fresh transaction (it once answered a failure: UNIQUE constraint on patient)
        assert codes == [0] * len(sends), [s.stdout.read()[-800:] for s in sends if s.stdout]
        assert storescu(port, folders[0]).returncode == 0  # a re-send: present
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()  # its listeners die with it (PR_SET_PDEATHSIG)
            out, err = proc.communicate()
    assert out.strip(), (proc.returncode, err)
    summary = json.loads(out)
    assert proc.returncode == 0, err[-1500:]
    assert summary["stored"] == 16 and summary["present"] == 4, summary
    assert count(workspace) == 16 == received_count(workspace)
    record("storescu x4 -> gateway serve --processes 2", 16, count(workspace))

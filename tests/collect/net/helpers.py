"""Checks shared by the gateway tests: what the catalog holds, and that it holds no identifiers."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from typing import Any

import pydicom
from sqlalchemy import func, select

from curata.catalog import Instance, QuarantineItem
from curata.collect.net.models import GatewayReceived

COUNTS: dict[str, dict[str, int]] = {}  # test name -> sent / received, printed for the closing note


def count(ws: Any, model: Any = Instance) -> int:
    with ws.catalog.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def received_count(ws: Any) -> int:
    return count(ws, GatewayReceived)


def quarantined_count(ws: Any) -> int:
    return count(ws, QuarantineItem)


def assert_deidentified(ws: Any, planted: tuple[str, ...]) -> int:
    """Every stored instance is marked de-identified and holds none of the planted identifiers."""
    with ws.catalog.session() as s:
        digests = list(s.scalars(select(Instance.blob_digest)))
    for digest in digests:
        raw = ws.store.get_bytes(digest)
        assert hashlib.sha256(raw).hexdigest() == digest, f"blob {digest[:12]} does not hold its bytes"
        for value in planted:
            assert value.encode() not in raw, f"{value!r} survived in blob {digest[:12]}"
        ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES"
    return len(digests)


def record(name: str, sent: int, received: int) -> None:
    COUNTS[name] = {"sent": sent, "received": received}
    print(f"\n[counts] {name}: sent={sent} received={received}")


def storescu(
    port: int, *paths: Any, calling: str = "STORESCU", called: str = "CURATA"
) -> subprocess.CompletedProcess[str]:
    cmd = ["storescu", "-aet", calling, "-aec", called, "127.0.0.1", str(port), "+sd", "+r", *map(str, paths)]
    env = {**os.environ, "TCP_NODELAY": "1"}  # dcmtk: no 40 ms delayed-ACK wait per instance
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)

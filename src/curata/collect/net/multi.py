"""Several gateway processes on one port (``SO_REUSEPORT``): the kernel spreads associations over them.

Why this design (issue 10, item 10): one Python process tops out on the network layer alone
(pynetdicom's PDU and DIMSE handling hold the GIL), so extra de-identification processes behind one
listener cannot raise the rate past that ceiling. N listener processes each run the whole path
(network, de-identification, fsynced blob, catalog commit, group-committed per batch, see
``receive.py``) with no hand-over between processes, and each still answers success only after its
instance is durable; SQLite serialises their commits
(WAL, busy timeout) and PostgreSQL takes them side by side. The alternative, dcmtk's storescp
spooling to a queue drained by de-identification workers, would answer before the data is fsynced
(storescp has no fsync) and would keep identifiable files in a spool: both against the design.

The connection and association limits apply per process. Children die with the parent
(``PR_SET_PDEATHSIG``) and report their counts when stopped.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from curata.collect.net.config import GatewayConfig


def _child(root: str, cfg: dict[str, Any], deidentify: bool, ready: Any, results: Any) -> None:
    from curata.collect.net.config import AllowRule, Peer
    from curata.collect.net.scp import GatewayServer
    from curata.console import guard_library_output
    from curata.runtime import die_with_parent
    from curata.workspace import Workspace

    die_with_parent()
    guard_library_output()  # this process reads the instances: the parsers' warnings quote them
    cfg = dict(cfg)
    cfg["allow"] = [AllowRule(**a) for a in cfg["allow"]]
    cfg["peers"] = {k: Peer(**p) for k, p in cfg["peers"].items()}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = GatewayServer(
        Workspace.open(Path(root)), GatewayConfig(**cfg), deidentify=deidentify, reuse_port=True
    )
    server.start()
    ready.set()
    try:
        stop.wait()
    finally:
        server.stop()
        results.put(server.counts.as_dict())


class ProcessGroup:
    """``processes - 1`` extra listeners beside the caller's own :class:`GatewayServer`."""

    def __init__(self, root: Path, config: GatewayConfig, extra: int, *, deidentify: bool = True) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._results = self._ctx.Queue()
        cfg = asdict(config)
        self._procs = []
        self._ready = []
        for _ in range(extra):
            ready = self._ctx.Event()
            p = self._ctx.Process(
                target=_child, args=(str(root), cfg, deidentify, ready, self._results), daemon=False
            )
            self._procs.append(p)
            self._ready.append(ready)

    def start(self, timeout: float = 120) -> None:
        for p in self._procs:
            p.start()
        for p, ready in zip(self._procs, self._ready, strict=True):
            if not ready.wait(timeout) or not p.is_alive():
                self.stop()
                from curata.errors import NetworkError

                raise NetworkError(
                    "a gateway process did not start", hint="run with --processes 1 to see why"
                )

    def stop(self) -> list[dict[str, int]]:
        for p in self._procs:
            if p.is_alive() and p.pid is not None:
                p.terminate()
        counts = []
        for p in self._procs:
            p.join(60)
            if p.is_alive():
                p.kill()
                p.join()
        while not self._results.empty():
            counts.append(self._results.get_nowait())
        return counts

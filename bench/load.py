"""Load under hostile connections, loopback only: STOW-RS/QIDO-RS on `curata server`, C-STORE on
`curata gateway serve`, each measured without and then with 40 idle or hostile connections held.

    .venv/bin/python bench/load.py [--stow 120] [--qido 300] [--clients 4] [--dicom 80]
                                   [--hostile 40] [--out bench/results/load.json]

HTTP: ``--clients`` threads send single-instance STOW-RS uploads (small CT, identifiers planted,
de-identified on arrival), then QIDO-RS searches, while the hostile set holds idle sockets, slowloris
headers (a byte every 0.5 s) and uploads that announce 400 MB and stall. DICOM: ``--clients``
storescu processes push ``--dicom`` instances while stalled, trickling, oversized and garbage
sockets are held (from 127.0.0.1 and 127.0.0.2). Reported: throughput, latency p50/p95/p99, errors,
and how many hostile connections the server still held at the end. Bounded: every client has a
timeout and the run stops at its counts.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _common import console, free_port, write_json  # noqa: E402

VENV_BIN = Path(sys.executable).parent
os.environ["TCP_NODELAY"] = "1"


def _ct(i: int) -> bytes:
    from pydicom.uid import generate_uid
    from tests.conftest import make_ct

    buf = io.BytesIO()
    make_ct(index=i, study_uid=generate_uid(), rows=64, columns=64).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _pct(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    qs = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {
        "p50_ms": round(qs[49] * 1000, 1),
        "p95_ms": round(qs[94] * 1000, 1),
        "p99_ms": round(qs[98] * 1000, 1),
    }


class Hostile:
    """Idle, slowloris and stalled-upload sockets against an HTTP port, or stalled, trickling,
    oversized and garbage sockets against a DICOM port."""

    def __init__(self, port: int, n: int, kind: str) -> None:
        self.port, self.n, self.kind = port, n, kind
        self.socks: list[socket.socket] = []
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def _connect(self, source: str = "127.0.0.1") -> socket.socket | None:
        s = socket.socket()
        s.settimeout(5)
        try:
            s.bind((source, 0))
            s.connect(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return None
        self.socks.append(s)
        return s

    def _loop(self, s: socket.socket, payload: bytes, every: float) -> None:
        while not self.stop.wait(every):
            try:
                s.sendall(payload)
            except OSError:
                return

    def _spawn(self, s: socket.socket | None, first: bytes, payload: bytes, every: float) -> None:
        if s is None:
            return
        try:
            s.sendall(first)
        except OSError:
            return
        t = threading.Thread(target=self._loop, args=(s, payload, every), daemon=True)
        t.start()
        self.threads.append(t)

    def open(self) -> None:
        for i in range(self.n):
            kind = i % 4
            if self.kind == "http":
                s = self._connect()
                if kind == 1:  # slowloris headers
                    self._spawn(s, b"GET /dicomweb/studies HTTP/1.1\r\nHost: x\r\n", b"X-a: b\r\n", 0.5)
                elif kind == 2:  # a 400 MB upload that stalls after its headers
                    head = b"POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/related; "
                    head += b'type="application/dicom"; boundary=x\r\nContent-Length: 419430400\r\n\r\n'
                    self._spawn(s, head, b"\0", 1.0)
                # kinds 0 and 3: idle sockets
            else:
                s = self._connect("127.0.0.2" if i % 2 else "127.0.0.1")
                if kind == 1:
                    self._spawn(s, b"\x01\x00" + struct.pack(">L", 1000), b"\0", 0.5)
                elif kind == 2:
                    self._spawn(s, b"\x01\x00" + struct.pack(">L", 300_000_000), b"\0" * 65536, 0.01)
                elif kind == 3:
                    self._spawn(s, b"\x09\x00" + struct.pack(">L", 100) + b"x" * 100, b"", 10)

    def still_open(self) -> int:
        alive = 0
        for s in self.socks:
            try:
                s.settimeout(0.05)
                alive += s.recv(1, socket.MSG_PEEK) != b""
            except TimeoutError:
                alive += 1
            except OSError:
                pass
        return alive

    def close(self) -> None:
        self.stop.set()
        for s in self.socks:
            s.close()


def wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("curata server did not start")
        time.sleep(0.2)


def http_round(url: str, parts: list[bytes], qido: int, clients: int) -> dict[str, Any]:
    from curata.collect.dicomweb import _multipart

    stow_lat: list[float] = []
    qido_lat: list[float] = []
    errors = {"stow": 0, "qido": 0}

    def stow(raw: bytes) -> None:
        body, ctype = _multipart.encode([({}, raw)])
        t = time.perf_counter()
        try:
            r = httpx.post(
                f"{url}/dicomweb/studies", content=body, headers={"Content-Type": ctype}, timeout=60
            )
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        stow_lat.append(time.perf_counter() - t)
        errors["stow"] += not ok

    def search(i: int) -> None:
        t = time.perf_counter()
        try:
            r = httpx.get(f"{url}/dicomweb/studies", params={"limit": 20, "offset": i % 50}, timeout=60)
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        qido_lat.append(time.perf_counter() - t)
        errors["qido"] += not ok

    with ThreadPoolExecutor(clients) as pool:
        t0 = time.perf_counter()
        list(pool.map(stow, parts))
        stow_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        list(pool.map(search, range(qido)))
        qido_s = time.perf_counter() - t0
    return {
        "stow": {
            "n": len(parts),
            "per_s": round(len(parts) / stow_s, 1),
            "errors": errors["stow"],
            **_pct(stow_lat),
        },
        "qido": {"n": qido, "per_s": round(qido / qido_s, 1), "errors": errors["qido"], **_pct(qido_lat)},
    }


def run_http(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    ws = work / "http-ws"
    env = {**os.environ, "CURATA_WORKSPACE": str(ws), "PYTHONPATH": str(HERE.parent / "src")}
    env.pop("CURATA_DATABASE_URL", None)
    py = [sys.executable, "-m", "curata.cli"]
    subprocess.run([*py, "init", str(ws)], check=True, capture_output=True, env=env)
    port = free_port()
    proc = subprocess.Popen(
        [*py, "server", "--host", "127.0.0.1", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        wait_http(url, proc)
        parts = [_ct(i) for i in range(2 * args.stow)]
        out["quiet"] = http_round(url, parts[: args.stow], args.qido, args.clients)
        hostile = Hostile(port, args.hostile, "http")
        hostile.open()
        time.sleep(1)
        try:
            out["hostile"] = http_round(url, parts[args.stow :], args.qido, args.clients)
            out["hostile"]["hostile_open_at_end"] = hostile.still_open()
        finally:
            hostile.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def dicom_round(port: int, folders: list[Path]) -> dict[str, Any]:
    lat: list[float] = []
    fails = 0

    def send(folder: Path) -> None:
        nonlocal fails
        t = time.perf_counter()
        r = subprocess.run(
            [
                "storescu",
                "-aet",
                "STORESCU",
                "-aec",
                "CURATA",
                "127.0.0.1",
                str(port),
                "+sd",
                "+r",
                str(folder),
            ],
            capture_output=True,
            timeout=300,
        )
        lat.append(time.perf_counter() - t)
        fails += r.returncode != 0

    n = sum(1 for f in folders for _ in f.iterdir())
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(folders)) as pool:
        list(pool.map(send, folders))
    seconds = time.perf_counter() - t0
    return {"instances": n, "per_s": round(n / seconds, 1), "association_failures": fails, **_pct(lat)}


def run_dicom(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    ws = work / "dicom-ws"
    env = {**os.environ, "CURATA_WORKSPACE": str(ws), "PYTHONPATH": str(HERE.parent / "src")}
    env.pop("CURATA_DATABASE_URL", None)
    py = [sys.executable, "-m", "curata.cli"]
    subprocess.run([*py, "init", str(ws)], check=True, capture_output=True, env=env)
    port = free_port()
    proc = subprocess.Popen(
        [*py, "gateway", "serve", "--port", str(port), "--allow", "STORESCU", "--allow", "ECHOSCU", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    from tests.conftest import make_ct

    def folders(tag: str) -> list[Path]:
        from pydicom.uid import generate_uid

        out = []
        per = max(1, args.dicom // args.clients)
        for c in range(args.clients):
            f = work / f"{tag}{c}"
            study, series = generate_uid(), generate_uid()
            for i in range(per):
                make_ct(
                    f / f"IM{i:04d}.dcm", study_uid=study, series_uid=series, index=i, rows=256, columns=256
                )
            out.append(f)
        return out

    result: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        echo = ["echoscu", "-aet", "ECHOSCU", "-aec", "CURATA", "127.0.0.1", str(port)]
        while subprocess.run(echo, capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.3)
        result["quiet"] = dicom_round(port, folders("q"))
        hostile = Hostile(port, args.hostile, "dicom")
        hostile.open()
        time.sleep(0.5)
        try:
            result["hostile"] = dicom_round(port, folders("h"))
            result["hostile"]["hostile_open_at_end"] = hostile.still_open()
        finally:
            hostile.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
            import json

            result["server_counts"] = json.loads(out or b"{}")
        except (subprocess.TimeoutExpired, ValueError):
            proc.kill()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stow", type=int, default=120)
    ap.add_argument("--qido", type=int, default=300)
    ap.add_argument("--dicom", type=int, default=80)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--hostile", type=int, default=40)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "load.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="curata-load-") as tmp:
        work = Path(tmp)
        results = {"http": run_http(work, args), "dicom": run_dicom(work, args)}
    results["parameters"] = vars(args) | {"out": str(args.out)}
    for area in ("http", "dicom"):
        for phase in ("quiet", "hostile"):
            console.print(f"{area} {phase}: {results[area].get(phase)}")
    console.print(f"gateway counts: {results['dicom'].get('server_counts')}")
    write_json(args.out, results)
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()

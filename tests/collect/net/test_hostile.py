"""The gateway under stalled, slow, oversized and unlisted peers, while a real dcmtk sender keeps working."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from curata.collect.net.config import AllowRule, GatewayConfig
from curata.collect.net.scp import GatewayServer
from curata.errors import ConfigError
from tests.collect.net.conftest import need
from tests.collect.net.helpers import count, record, storescu

pytestmark = pytest.mark.integration


def _config(**kw) -> GatewayConfig:  # type: ignore[no-untyped-def]
    base = {"ae_title": "CURATA", "port": 0, "bind": "127.0.0.1", "workers": 1}
    return GatewayConfig(**{**base, **kw})


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def _closed_by_peer(s: socket.socket, wait: float = 0.5) -> bool:
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


class _Hostile:
    """40 hostile sockets of six kinds, from two loopback addresses, held open for as long as they can."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.socks: dict[str, list[socket.socket]] = {}
        self.oversize_sent = 0
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def open(self) -> None:
        p = self.port
        # same host as the real sender: a peer cannot be told apart by address
        self.socks["stalled"] = [_connect(p) for _ in range(8)]
        self.socks["slow"] = [_connect(p) for _ in range(4)]
        self.socks["garbage"] = [_connect(p) for _ in range(2)]
        self.socks["oversize"] = [_connect(p) for _ in range(2)]
        # another host flooding: 24 connections where 20 are allowed per host
        self.socks["flood"] = [_connect(p, "127.0.0.2") for _ in range(24)]
        for s in self.socks["garbage"]:
            s.sendall(b"\x09\x00" + struct.pack(">L", 1000) + b"x" * 100)
        for s in self.socks["slow"]:  # an association request of 1000 bytes, one byte at a time
            s.sendall(b"\x01\x00" + struct.pack(">L", 1000))
            t = threading.Thread(target=self._trickle, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)
        for s in self.socks["oversize"]:  # a 300 MB "association request"
            t = threading.Thread(target=self._flood_bytes, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)

    def _trickle(self, s: socket.socket) -> None:
        while not self.stop.wait(0.5):
            try:
                s.sendall(b"\x00")
            except OSError:
                return

    def _flood_bytes(self, s: socket.socket) -> None:
        chunk = b"\x00" * 65536
        try:
            s.sendall(b"\x01\x00" + struct.pack(">L", 300_000_000))
            while not self.stop.is_set() and self.oversize_sent < 300_000_000:
                s.sendall(chunk)
                self.oversize_sent += len(chunk)
        except OSError:
            return

    def close(self) -> None:
        self.stop.set()
        for group in self.socks.values():
            for s in group:
                s.close()
        for t in self.threads:
            t.join(5)

    @property
    def total(self) -> int:
        return sum(len(g) for g in self.socks.values())


def test_forty_hostile_sockets_do_not_stop_a_real_sender(workspace, ct_series) -> None:  # type: ignore[no-untyped-def]
    need("storescu", "echoscu")
    folder = ct_series(6)
    cfg = _config(
        allow=[AllowRule.parse("STORESCU"), AllowRule.parse("ECHOSCU")],
        request_timeout=3.0,
        network_timeout=5.0,
        max_connections_per_host=20,
    )
    with GatewayServer(workspace, cfg) as server:
        hostile = _Hostile(server.port)
        hostile.open()
        try:
            assert hostile.total == 40
            time.sleep(0.3)
            # the real sender, while all 40 are held
            t0 = time.monotonic()
            echo = subprocess.run(
                ["echoscu", "-aet", "ECHOSCU", "-aec", "CURATA", "127.0.0.1", str(server.port)],
                capture_output=True,
                timeout=30,
            )
            assert echo.returncode == 0, echo.stderr
            sent = storescu(server.port, folder)
            assert sent.returncode == 0, sent.stderr
            sender_seconds = time.monotonic() - t0
            assert server.counts.stored == 6
            # unlisted calling AE and wrong called AE: rejected after a bounded request, nothing stored
            intruder = storescu(server.port, folder, calling="INTRUDER")
            wrong_called = storescu(server.port, folder, called="OTHERPACS")
            assert intruder.returncode != 0 and wrong_called.returncode != 0
            assert server.counts.rejected_associations == 2, server.counts.as_dict()
            # the flood's extra 4 connections were closed at accept, before anything was read
            assert sum(_closed_by_peer(s, 0.2) for s in hostile.socks["flood"][20:]) == 4
            # garbage and oversized requests were dropped at once; the oversize sender could not
            # push its 300 MB (what the kernel's buffers hold is all that left it)
            assert all(_closed_by_peer(s) for s in hostile.socks["garbage"])
            time.sleep(0.5)
            assert hostile.oversize_sent < 16 << 20, hostile.oversize_sent
            # after the request deadline every stalled and slow connection is gone
            deadline = time.monotonic() + 10
            while server.open_connections() > 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert server.open_connections() == 0
            assert all(_closed_by_peer(s) for s in hostile.socks["stalled"] + hostile.socks["slow"])
            guard = server.guard_counts()
        finally:
            hostile.close()
    assert guard["refused_connections"] == 4
    assert guard["dropped_connections"] >= 8 + 4 + 2 + 2 + 20 - 4
    assert count(workspace) == 6
    record(f"dcmtk sender under 40 hostile sockets ({sender_seconds:.1f} s)", 6, count(workspace))


def test_host_allow_list_refuses_before_reading(workspace) -> None:  # type: ignore[no-untyped-def]
    cfg = _config(allow=[AllowRule.parse("PACS@127.0.0.1")])
    assert [str(n) for n in cfg.host_networks()] == ["127.0.0.1/32"]
    with GatewayServer(workspace, cfg) as server:
        other = _connect(server.port, "127.0.0.3")
        assert _closed_by_peer(other, 2.0)
        other.close()
        ok = _scu("PACS").associate("127.0.0.1", server.port, ae_title="CURATA")
        assert ok.is_established
        ok.release()
        assert server.guard_counts()["refused_connections"] == 1


def _scu(aet: str = "MODALITY1") -> AE:
    ae = AE(ae_title=aet)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 5
    return ae


def test_association_limits_per_peer_and_in_total(workspace) -> None:  # type: ignore[no-untyped-def]
    cfg = _config(max_associations=3, max_associations_per_peer=2)
    with GatewayServer(workspace, cfg) as server:
        a1 = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")
        a2 = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")
        a3 = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")  # third from the same peer
        assert a1.is_established and a2.is_established and a3.is_rejected
        b1 = _scu("OTHER").associate("127.0.0.1", server.port, ae_title="CURATA")
        b2 = _scu("THIRD").associate("127.0.0.1", server.port, ae_title="CURATA")  # 4th in total
        assert b1.is_established and b2.is_rejected
        a1.release()
        time.sleep(0.3)
        a4 = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")  # a slot came free
        assert a4.is_established and a4.send_c_echo().Status == 0
        for a in (a2, a4, b1):
            a.release()
        assert server.counts.rejected_associations == 2


def test_secure_defaults_and_bounded_limits(workspace, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg = GatewayConfig.from_workspace(workspace)
    assert cfg.bind == "127.0.0.1" and not cfg.open_to_anyone
    assert cfg.check_called_ae and cfg.max_pdu == 1 << 20 and cfg.request_timeout <= 30
    for bad in ({"max_pdu": 0}, {"request_timeout": float("inf")}, {"max_connections": -1}):
        with pytest.raises(ConfigError, match="gateway"):
            _config(**bad)
    with pytest.raises(ConfigError, match="allow_hosts"):
        _config(allow_hosts=["not-an-address"])
    wide = _config(bind="0.0.0.0")
    assert wide.open_to_anyone
    with caplog.at_level("WARNING", logger="curata.gateway"), GatewayServer(workspace, wide):
        pass
    assert "ANY host" in caplog.text


def test_an_oversized_data_set_is_dropped_before_it_is_held(workspace) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_ct

    cfg = _config(max_object_bytes=256 << 10, max_pdu=64 << 10)
    with GatewayServer(workspace, cfg) as server:
        big = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")
        assert big.is_established
        status = big.send_c_store(make_ct(rows=512, columns=512))  # 512 KB of pixels
        assert not status or status.get("Status") != 0x0000
        deadline = time.monotonic() + 10
        while big.is_established and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not big.is_established  # the connection was dropped
        ok = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")
        assert ok.send_c_store(make_ct(index=1, rows=128, columns=128)).Status == 0x0000  # 32 KB: fine
        ok.release()
        assert server.guard_counts()["dropped_connections"] == 1
    assert count(workspace) == 1

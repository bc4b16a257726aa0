"""The gateway's front door: bounded connections and PDUs before pynetdicom buffers anything.

pynetdicom reads a whole PDU into memory as soon as its 6-byte header names a length, waits on each
``recv`` for ``network_timeout`` (a peer trickling one byte a minute never times out), and counts
connections that have not sent their association request yet against ``maximum_associations``
(so stalled sockets lock allowed senders out). This module closes those holes at the socket:

* at ``accept`` (nothing read yet): the peer's address must be allowed, and the open connections
  of that host and in total must be under their caps; otherwise the socket is closed at once;
* the first PDU must be an A-ASSOCIATE-RQ of at most ``max_request_bytes``, complete within
  ``request_timeout`` seconds of the connection (a total deadline, not per read);
* every later PDU must fit the maximum PDU size we advertised and arrive, once started, within
  ``network_timeout`` seconds;
* TLS handshakes run in the connection's own thread, under the same deadline, never in the
  accepting thread.

A violation closes that connection only (pynetdicom sees a closed transport) and is counted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.transport import (
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)

log = logging.getLogger("curata.gateway")

_PDU_HEADER = struct.Struct(">BBL")
A_ASSOCIATE_RQ = 0x01
P_DATA_TF = 0x04


@dataclass
class GuardLimits:
    """The bounds the front door enforces (from :class:`~curata.collect.net.config.GatewayConfig`)."""

    max_pdu: int = 1 << 20
    max_request_bytes: int = 64 << 10
    request_timeout: float = 10.0
    network_timeout: float = 60.0
    max_connections: int = 128
    max_connections_per_host: int = 32
    allow_hosts: tuple[Any, ...] = ()  # ip_network objects; empty = any host
    max_object_bytes: int = 2 << 30  # one DIMSE data set, summed over its P-DATA fragments


@dataclass
class GuardCounts:
    refused_connections: int = 0  # closed at accept: host not allowed, or too many connections
    dropped_connections: int = 0  # closed later: oversized / wrong PDU, or too slow
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


class GuardDrop(OSError):
    """A connection closed by the front door (already logged and counted here)."""


class _QuietDrops(logging.Filter):
    """pynetdicom logs a traceback for every transport error; ours are expected and logged once."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, GuardDrop) or isinstance(getattr(exc, "__cause__", None), GuardDrop):
            return False
        return not record.getMessage().startswith(_DROP_PREFIX)


_DROP_PREFIX = "curata-guard: "
logging.getLogger("pynetdicom.dul").addFilter(_QuietDrops())


def parse_hosts(values: list[str]) -> tuple[Any, ...]:
    """IP addresses or networks (``10.0.0.5``, ``10.0.0.0/24``, ``::1``) as ip_network objects."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def host_allowed(address: str, networks: tuple[Any, ...]) -> bool:
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


class GuardedSocket(AssociationSocket):
    """An acceptor socket that checks every PDU header before pynetdicom reads the body."""

    def __init__(self, assoc: Association, client_socket: socket.socket, server: GuardedServer) -> None:
        super().__init__(assoc, client_socket=client_socket)
        self._server = server
        self._limits = server.limits
        self._host = server.peer_host(client_socket)
        self._opened = time.monotonic()
        self._first = True  # the next PDU is the association request
        self._at_header = True
        self._deadline = self._opened + self._limits.request_timeout
        self._released = False
        self._tls_pending = isinstance(client_socket, ssl.SSLSocket)
        self._pdu_type = 0
        self._object_bytes = 0  # data-set bytes of the DIMSE message being received

    def overdue(self, now: float) -> bool:
        """Still no complete association request past its deadline (a stalled or silent peer)."""
        return self._first and not self._released and now > self._deadline

    def expire(self) -> None:
        """Called by the accepting thread: wake the reader with an end-of-stream."""
        self._drop("association request not received in time")
        sock = self.socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _drop(self, why: str) -> GuardDrop:
        log.warning("closed connection from %s: %s", self._host, why)
        self._server.counts.add("dropped_connections")
        return GuardDrop(_DROP_PREFIX + why)

    def _handshake(self, sock: ssl.SSLSocket) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise self._drop("TLS handshake not done in time")
        sock.settimeout(remaining)
        try:
            sock.do_handshake()
        except (OSError, ssl.SSLError) as exc:
            raise self._drop(f"TLS handshake failed: {type(exc).__name__}") from exc
        self._tls_pending = False

    def recv(self, nr_bytes: int) -> bytearray:
        sock = self.socket
        if sock is None:
            return bytearray()
        if self._tls_pending:
            self._handshake(sock)  # type: ignore[arg-type]
        if self._at_header and not self._first:  # a new PDU starts: its own deadline
            self._deadline = time.monotonic() + self._limits.network_timeout
        data = bytearray()
        try:
            while len(data) < nr_bytes:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    raise self._drop(
                        "association request not received in time" if self._first else "PDU too slow"
                    )
                sock.settimeout(min(remaining, self._limits.network_timeout))
                chunk = sock.recv(min(65536, nr_bytes - len(data)))
                if not chunk:
                    break
                data += chunk
        except TimeoutError as exc:
            raise self._drop("timed out waiting for data") from exc
        finally:
            if self.socket is not None:
                with contextlib.suppress(OSError):
                    sock.settimeout(self._limits.network_timeout)
        if self._at_header:
            if len(data) == _PDU_HEADER.size:
                pdu_type, _, length = _PDU_HEADER.unpack(bytes(data))
                if self._first and pdu_type != A_ASSOCIATE_RQ:
                    raise self._drop(f"first PDU is type 0x{pdu_type:02X}, not an association request")
                if self._first and length > self._limits.max_request_bytes:
                    raise self._drop(
                        f"association request of {length} bytes (limit {self._limits.max_request_bytes})"
                    )
                if not self._first and length > self._limits.max_pdu + 6:
                    raise self._drop(f"PDU of {length} bytes (limit {self._limits.max_pdu})")
                self._pdu_type = pdu_type
                self._at_header = False
        else:
            self._at_header = True
            self._first = False
            if self._pdu_type == P_DATA_TF:
                self._count_pdvs(data)
        return data

    def _count_pdvs(self, body: bytearray) -> None:
        """Sum the data-set fragments of the message in flight (PS3.8 9.3.5.1, E.2): pynetdicom keeps
        them in memory until the last one, so one object is bounded by ``max_object_bytes``."""
        pos = 0
        while pos + 6 <= len(body):
            (item_len,) = struct.unpack_from(">L", body, pos)
            control = body[pos + 5]
            if not control & 0x01:  # a data-set fragment (bit 0 clear), not a command
                self._object_bytes += max(0, item_len - 2)
                if self._object_bytes > self._limits.max_object_bytes:
                    raise self._drop(f"data set over {self._limits.max_object_bytes} bytes")
                if control & 0x02:  # its last fragment: the next data set starts from zero
                    self._object_bytes = 0
            pos += 4 + item_len

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release_slot()

    def _shutdown_socket(self) -> None:
        try:
            super()._shutdown_socket()
        finally:
            self._release_slot()

    def _release_slot(self) -> None:
        if not self._released:
            self._released = True
            self._server.release(self)


class GuardedRequestHandler(RequestHandler):
    """Builds each acceptor association on a :class:`GuardedSocket`."""

    server: GuardedServer

    def _create_association(self) -> Association:
        assoc = Association(self.ae, "acceptor")
        assoc._server = self.server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        sock = GuardedSocket(assoc, self.request, self.server)
        assoc.set_socket(sock)
        self.server.track(sock)
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        # shared with the server's other associations, not deep-copied (pynetdicom copies ~170
        # contexts x 13 syntaxes per connection: ~12 ms of CPU each, rejected or not); negotiation
        # only reads them, and prefer_senders_order copies the few it reorders
        assoc.acceptor.supported_contexts = list(self.server.contexts)
        assoc.requestor.address_info = self.remote
        for event in self.server._handlers:
            if event.is_intervention and self.server._handlers[event]:
                assoc.bind(event, *self.server._handlers[event])
            elif isinstance(event, evt.NotificationEvent):
                for handler in self.server._handlers[event]:
                    assoc.bind(event, handler[0], handler[1])  # type: ignore[index]
        return assoc


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the checks above at ``accept``."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog: a burst of connects must not overflow into SYN retries

    def __init__(self, *args: Any, limits: GuardLimits, reuse_port: bool = False, **kwargs: Any) -> None:
        self.limits = limits
        self.counts = GuardCounts()
        self.reuse_port = reuse_port
        self._open: dict[str, int] = {}
        self._pending: set[GuardedSocket] = set()
        self._open_lock = threading.Lock()
        kwargs["request_handler"] = GuardedRequestHandler
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        if self.reuse_port and hasattr(socket, "SO_REUSEPORT"):
            assert self.socket is not None  # made by socketserver before it binds
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    @staticmethod
    def peer_host(sock: socket.socket) -> str:
        try:
            return str(sock.getpeername()[0])
        except OSError:
            return "?"

    def get_request(self) -> tuple[socket.socket, Any]:
        assert self.socket is not None  # closed only after serve_forever returns
        client, address = self.socket.accept()
        if self.ssl_context:  # the handshake happens in the connection's thread, under its deadline
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        host = str(client_address[0])
        if not host_allowed(host, self.limits.allow_hosts):
            log.warning("refused connection from %s: host not on the allow list", host)
            self.counts.add("refused_connections")
            return False
        with self._open_lock:
            total = sum(self._open.values())
            if (
                total >= self.limits.max_connections
                or self._open.get(host, 0) >= self.limits.max_connections_per_host
            ):
                log.warning("refused connection from %s: too many open connections", host)
                self.counts.add("refused_connections")
                return False
            self._open[host] = self._open.get(host, 0) + 1
        return True

    def track(self, sock: GuardedSocket) -> None:
        with self._open_lock:
            self._pending.add(sock)

    def service_actions(self) -> None:
        """Every poll of the accept loop: close connections whose request deadline passed."""
        super().service_actions()
        now = time.monotonic()
        with self._open_lock:
            done = {s for s in self._pending if not s._first or s._released}
            self._pending -= done
            overdue = [s for s in self._pending if s.overdue(now)]
            self._pending.difference_update(overdue)
        for sock in overdue:
            sock.expire()

    def release(self, sock: GuardedSocket) -> None:
        with self._open_lock:
            self._pending.discard(sock)
            left = self._open.get(sock._host, 0) - 1
            if left > 0:
                self._open[sock._host] = left
            else:
                self._open.pop(sock._host, None)

    def open_connections(self) -> int:
        with self._open_lock:
            return sum(self._open.values())

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            log.warning("connection from %s failed before its association started", client_address[0])
            self.shutdown_request(request)
            with self._open_lock:  # the socket wrapper never came to be: release the slot here
                host = str(client_address[0])
                if self._open.get(host, 0) > 0:
                    self._open[host] -= 1

"""The gateway's DICOM application entity: C-ECHO and C-STORE for every storage SOP class.

A thin adapter (pynetdicom event handlers) over :class:`~curata.collect.net.receive.Receiver`.
C-STORE answers success only after the de-identified instance and its catalog row are durable;
anything else answers a failure status so the sender keeps the image and retries.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Self

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts

from curata.collect.ingest import DISK_FULL_REASON, DUPLICATE_UID_REASON
from curata.collect.net._guard import GuardedServer, GuardLimits
from curata.collect.net.config import AllowRule, GatewayConfig
from curata.collect.net.receive import OK_STATUSES, Receiver
from curata.collect.reasons import safe_reason
from curata.errors import NetworkError
from curata.workspace import Workspace

log = logging.getLogger("curata.gateway")

Verification = UID("1.2.840.10008.1.1")

TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEG2000Lossless,
    JPEG2000,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
]

# C-STORE failure statuses (PS3.4 B.2.3): the sender keeps the instance and may retry.
STATUS_OUT_OF_RESOURCES = 0xA700  # disk or database trouble: retry later
STATUS_CANNOT_UNDERSTAND = 0xC000  # the dataset was refused (quarantined with its reason)
STATUS_PROCESSING_FAILURE = 0xC211  # an unexpected error on our side
STATUS_ELEMENTS_DISCARDED = 0xB006  # a warning: received and deliberately not kept (slide label/overview)

# Error Comment holds 64 characters: reasons too long for it, said shorter (the quarantine row and the
# log keep the whole reason)
_SHORT_REASONS = {DUPLICATE_UID_REASON: "SOP Instance UID already stored with other content"}


def prefer_senders_order(assoc: Any) -> None:
    """Accept, in each presentation context, the first transfer syntax *the sender* lists that we
    support, not the first of our own list.

    pynetdicom picks by the acceptor's order, so a context proposing [JPEG 2000 Lossless, Explicit
    VR LE, ...] (dcmtk ``storescu -R +C -xv``, and PACS that combine syntaxes) got Explicit VR LE, and
    a sender without a JPEG 2000 decoder could not convert: every object was lost to it. Senders put
    the syntax their data is in first; taking it keeps lossless data as sent, and never makes a sender
    re-encode (lossy syntaxes are chosen only when the sender proposes them first)."""
    proposed = getattr(assoc.requestor.primitive, "presentation_context_definition_list", None) or []
    order: dict[str, list[str]] = {}
    for cx in proposed:
        seen = order.setdefault(str(cx.abstract_syntax), [])
        for ts in cx.transfer_syntax:
            if str(ts) not in seen:
                seen.append(str(ts))
    if not order:
        return
    contexts = []
    for cx in assoc.acceptor.supported_contexts:
        wanted = order.get(str(cx.abstract_syntax))
        if wanted:
            ours = [str(t) for t in cx.transfer_syntax]
            first = [t for t in wanted if t in ours]
            reordered = first + [t for t in ours if t not in first]
            if reordered != ours:
                cx = copy.deepcopy(cx)  # the server's contexts are shared by its associations (_guard)
                cx.transfer_syntax = reordered
        contexts.append(cx)
    assoc.acceptor.supported_contexts = contexts


def _failure(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    # Error Comment is LO: 64 characters, no backslash
    ds.ErrorComment = comment.replace("\\", "/")[:64]
    return ds


def _no_delay(event: evt.Event) -> None:
    """Turn off Nagle on each connection: a small C-STORE-RSP must not wait for the peer's delayed ACK
    (about 40 ms per instance otherwise)."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass
class StoreCounts:
    """What the server answered since it started (for logs, tests and the CLI summary)."""

    stored: int = 0
    present: int = 0
    refused: int = 0
    dropped: int = 0
    errors: int = 0
    rejected_associations: int = 0
    refused_connections: int = 0
    dropped_connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in (
                "stored",
                "present",
                "refused",
                "errors",
                "rejected_associations",
                "refused_connections",
                "dropped_connections",
            )
        }


class Serving:
    """``serve_forever`` and ``with`` for a server with ``start()`` (returning itself) and ``stop()``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def serve_forever(self) -> None:
        """Block until interrupted (Ctrl-C), then stop cleanly."""
        self.start()
        try:
            threading.Event().wait()
        finally:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class GatewayServer(Serving):
    """A C-ECHO/C-STORE SCP filing every instance into ``ws``. ``start()``/``stop()`` or ``with``."""

    def __init__(
        self,
        ws: Workspace,
        config: GatewayConfig | None = None,
        *,
        deidentify: bool = True,
        receiver: Receiver | None = None,
        on_store: Any = None,
        reuse_port: bool = False,
    ) -> None:
        self.ws = ws
        self.config = config or GatewayConfig.from_workspace(ws)
        self.receiver = receiver or Receiver(ws, deidentify=deidentify, workers=self.config.worker_count())
        self._own_receiver = receiver is None
        self.counts = StoreCounts()
        self.on_store = on_store
        self.reuse_port = reuse_port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._admitted: dict[Any, str] = {}  # negotiated association -> "AE@host"
        self._admit_lock = threading.Lock()
        self.ae = self._build_ae()

    def _build_ae(self) -> AE:
        cfg = self.config
        ae = AE(ae_title=cfg.ae_title)
        ae.maximum_pdu_size = cfg.max_pdu
        ae.network_timeout = cfg.network_timeout
        ae.acse_timeout = cfg.acse_timeout
        ae.dimse_timeout = cfg.dimse_timeout
        # pynetdicom counts connections that have not negotiated yet against this limit, so stalled
        # sockets would lock allowed senders out: the front door (_guard) bounds connections, and
        # _handle_requested bounds negotiated associations
        ae.maximum_associations = cfg.max_connections + 1
        ae.require_called_aet = False  # checked in _handle_requested, with a log line and a count
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(str(cx.abstract_syntax), TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        return ae

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> GatewayServer:
        if self._server is not None:
            return self
        self.receiver.warm_up()  # the first instance must not wait for the de-identifier to load
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, _no_delay),
            (evt.EVT_REQUESTED, self._handle_requested),
            (evt.EVT_CONN_CLOSE, self._handle_closed),
            (evt.EVT_C_ECHO, self._handle_echo),
            (evt.EVT_C_STORE, self._handle_store),
        ]
        cfg = self.config
        if cfg.open_to_anyone:
            log.warning(
                "gateway listening on %s with no allow list: ANY host and AE title may store here", cfg.bind
            )
        limits = GuardLimits(
            max_pdu=cfg.max_pdu,
            max_request_bytes=cfg.max_request_bytes,
            request_timeout=cfg.request_timeout,
            network_timeout=cfg.network_timeout,
            max_connections=cfg.max_connections,
            max_connections_per_host=cfg.max_connections_per_host,
            allow_hosts=cfg.host_networks(),
            max_object_bytes=cfg.max_object_bytes,
        )
        try:
            server = self.ae.make_server(
                (cfg.bind, cfg.port),
                evt_handlers=handlers,
                ssl_context=cfg.dicom_ssl_context(),
                server_class=GuardedServer,
                limits=limits,
                reuse_port=self.reuse_port,
            )
        except OSError as exc:
            raise NetworkError(
                f"cannot listen on {cfg.bind}:{cfg.port}: {exc.strerror}",
                hint="pick another --port, or stop what is using it",
            ) from exc
        self.ae._servers.append(server)
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="gateway-accept", daemon=True
        )
        self._thread.start()
        self._server = server
        log.info("gateway %s listening on %s:%s", cfg.ae_title, cfg.bind, self.port)
        return self

    def stop(self) -> None:
        """Stop accepting, finish what is in flight, and release the receiver if it is ours."""
        if self._server is not None:
            guard = self._server.counts
            self.counts.refused_connections = guard.refused_connections
            self.counts.dropped_connections = guard.dropped_connections
            self._server.shutdown()
            self._server = None
        if self._own_receiver:
            self.receiver.close()

    # -- handlers ------------------------------------------------------------------------------
    def allowed(self, ae_title: str, address: str) -> bool:
        rules: list[AllowRule] = self.config.allow
        return not rules or any(rule.matches(ae_title, address) for rule in rules)

    def guard_counts(self) -> dict[str, int]:
        """Connections refused at accept and dropped for hostile PDUs or slowness, so far."""
        if self._server is None:
            return {
                "refused_connections": self.counts.refused_connections,
                "dropped_connections": self.counts.dropped_connections,
            }
        g = self._server.counts
        return {"refused_connections": g.refused_connections, "dropped_connections": g.dropped_connections}

    def open_connections(self) -> int:
        return 0 if self._server is None else int(self._server.open_connections())

    @staticmethod
    def _reject(assoc: Any, result: int, source: int, reason: int) -> None:
        assoc.acse.send_reject(result, source, reason)
        assoc.is_rejected = True
        assoc.kill()

    def _handle_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        primitive = assoc.requestor.primitive
        calling = str(getattr(primitive, "calling_ae_title", "")).strip()
        called = str(getattr(primitive, "called_ae_title", "")).strip()
        address = str(assoc.requestor.address)
        if not self.allowed(calling, address):
            log.warning("rejected association from %s@%s: not on the allow list", calling, address)
            self.counts.add("rejected_associations")
            # rejected-permanent, service-user, calling AE title not recognised
            self._reject(assoc, 0x01, 0x01, 0x03)
            return
        if self.config.check_called_ae and called != self.config.ae_title:
            log.warning("rejected association from %s@%s: called AE %r is not ours", calling, address, called)
            self.counts.add("rejected_associations")
            # rejected-permanent, service-user, called AE title not recognised
            self._reject(assoc, 0x01, 0x01, 0x07)
            return
        peer = f"{calling}@{address}"
        with self._admit_lock:
            for other in [a for a in self._admitted if not a.is_alive() and a.dul.socket is None]:
                self._admitted.pop(other, None)
            total = len(self._admitted)
            mine = sum(1 for p in self._admitted.values() if p == peer)
            over = total >= self.config.max_associations or mine >= self.config.max_associations_per_peer
            if not over:
                self._admitted[assoc] = peer
        if over:
            log.warning("rejected association from %s: association limit reached", peer)
            self.counts.add("rejected_associations")
            # rejected-transient, service-provider (presentation), local limit exceeded
            self._reject(assoc, 0x02, 0x03, 0x02)
            return
        prefer_senders_order(assoc)

    def _handle_closed(self, event: evt.Event) -> None:
        with self._admit_lock:
            self._admitted.pop(event.assoc, None)

    def _handle_echo(self, _event: evt.Event) -> int:
        return 0x0000

    def _handle_store(self, event: evt.Event) -> int | Dataset:
        calling = str(event.assoc.requestor.ae_title).strip()
        source_uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        try:
            raw = event.encoded_dataset(include_meta=True)
            outcome = self.receiver.receive(
                raw, source=f"c-store from {calling}", source_uid=source_uid, peer=calling
            )
        except Exception as exc:  # disk, database or a bug: never acknowledge, keep serving
            reason = safe_reason(exc)
            log.error("C-STORE from %s not stored: %s", calling, reason)
            self.counts.add("errors")
            return _failure(STATUS_OUT_OF_RESOURCES, f"not stored: {reason}")
        if self.on_store is not None:
            self.on_store(outcome)
        if outcome.status in OK_STATUSES:
            self.counts.add("stored" if outcome.status == "ingested" else "present")
            return 0x0000
        if outcome.reason == DISK_FULL_REASON:  # our trouble, not the data's: the sender retries later
            self.counts.add("errors")
            log.error("C-STORE from %s not stored: %s", calling, outcome.reason)
            return _failure(STATUS_OUT_OF_RESOURCES, "not stored: no space left on the gateway")
        if outcome.status == "skipped" and outcome.input_digest:  # dropped by policy (a slide label image)
            self.counts.add("dropped")
            return _failure(STATUS_ELEMENTS_DISCARDED, f"not kept: {outcome.reason}")
        self.counts.add("refused")
        log.warning("C-STORE from %s refused: %s", calling, outcome.reason)
        status = STATUS_CANNOT_UNDERSTAND if outcome.status == "quarantined" else STATUS_PROCESSING_FAILURE
        reason = outcome.reason or outcome.status
        return _failure(status, f"refused: {_SHORT_REASONS.get(reason, reason)}")

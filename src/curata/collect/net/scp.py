"""The gateway's DICOM application entity: C-ECHO and C-STORE for every storage SOP class.

A thin adapter (pynetdicom event handlers) over :class:`~curata.collect.net.receive.Receiver`.
C-STORE answers success only after the de-identified instance and its catalog row are durable;
anything else answers a failure status so the sender keeps the image and retries.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

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

from curata.collect.net.config import AllowRule, GatewayConfig
from curata.collect.net.receive import OK_STATUSES, Receiver
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
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        return {
            k: getattr(self, k) for k in ("stored", "present", "refused", "errors", "rejected_associations")
        }


class GatewayServer:
    """A C-ECHO/C-STORE SCP filing every instance into ``ws``. ``start()``/``stop()`` or ``with``."""

    def __init__(
        self,
        ws: Workspace,
        config: GatewayConfig | None = None,
        *,
        deidentify: bool = True,
        receiver: Receiver | None = None,
        on_store: Any = None,
    ) -> None:
        self.ws = ws
        self.config = config or GatewayConfig.from_workspace(ws)
        self.receiver = receiver or Receiver(ws, deidentify=deidentify, workers=self.config.worker_count())
        self._own_receiver = receiver is None
        self.counts = StoreCounts()
        self.on_store = on_store
        self._server: Any = None
        self.ae = self._build_ae()

    def _build_ae(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_pdu_size = 0  # unlimited: fewer, larger P-DATA PDUs
        ae.network_timeout = 60
        ae.dimse_timeout = 120
        ae.maximum_associations = 32
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
            (evt.EVT_C_ECHO, self._handle_echo),
            (evt.EVT_C_STORE, self._handle_store),
        ]
        try:
            self._server = self.ae.start_server(
                (self.config.bind, self.config.port),
                block=False,
                evt_handlers=handlers,
                ssl_context=self.config.dicom_ssl_context(),
            )
        except OSError as exc:
            raise NetworkError(
                f"cannot listen on {self.config.bind}:{self.config.port}: {exc.strerror}",
                hint="pick another --port, or stop what is using it",
            ) from exc
        log.info("gateway %s listening on %s:%s", self.config.ae_title, self.config.bind, self.port)
        return self

    def stop(self) -> None:
        """Stop accepting, finish what is in flight, and release the receiver if it is ours."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._own_receiver:
            self.receiver.close()

    def serve_forever(self) -> None:
        """Block until interrupted (Ctrl-C), then stop cleanly."""
        self.start()
        try:
            threading.Event().wait()
        finally:
            self.stop()

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- handlers ------------------------------------------------------------------------------
    def allowed(self, ae_title: str, address: str) -> bool:
        rules: list[AllowRule] = self.config.allow
        return not rules or any(rule.matches(ae_title, address) for rule in rules)

    def _handle_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        calling = str(getattr(assoc.requestor.primitive, "calling_ae_title", "")).strip()
        address = str(assoc.requestor.address)
        if not self.allowed(calling, address):
            log.warning("rejected association from %s@%s: not on the allow list", calling, address)
            self.counts.add("rejected_associations")
            # rejected-permanent, service-user, calling AE title not recognised
            assoc.acse.send_reject(0x01, 0x01, 0x03)
            assoc.is_rejected = True
            assoc.kill()

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
            log.exception("C-STORE from %s failed", calling)
            self.counts.add("errors")
            return _failure(STATUS_OUT_OF_RESOURCES, f"not stored: {type(exc).__name__}: {exc}")
        if self.on_store is not None:
            self.on_store(outcome)
        if outcome.status in OK_STATUSES:
            self.counts.add("stored" if outcome.status == "ingested" else "present")
            return 0x0000
        if outcome.status == "skipped" and outcome.input_digest:  # dropped by policy (a slide label image)
            self.counts.add("dropped")
            return _failure(STATUS_ELEMENTS_DISCARDED, f"not kept: {outcome.reason}")
        self.counts.add("refused")
        log.warning("C-STORE from %s refused: %s", calling, outcome.reason)
        status = STATUS_CANNOT_UNDERSTAND if outcome.status == "quarantined" else STATUS_PROCESSING_FAILURE
        return _failure(status, f"refused: {outcome.reason or outcome.status}")

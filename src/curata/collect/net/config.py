"""Gateway settings: the ``[gateway]`` section of ``curata.toml``, with defaults.

Example::

    [gateway]
    ae_title = "CURATA"          # our AE title
    port = 11112                 # DICOM port of `curata gateway serve`
    bind = "127.0.0.1"           # loopback by default; a wider bind without an allow list warns loudly
    allow = ["PACS@10.0.0.5", "MODALITY1"]   # calling AE titles (optionally @host); empty = any
    allow_hosts = ["10.0.0.0/24"]   # addresses that may connect at all, checked at accept (before
                                    # anything is read); empty = the hosts of `allow` when every
                                    # entry names one, else any
    check_called_ae = true       # refuse associations addressed to another AE title
    max_pdu = 1048576            # largest PDU we accept (advertised in the association)
    max_request_bytes = 65536    # largest A-ASSOCIATE-RQ
    request_timeout = 10         # seconds from connect to a complete association request
    acse_timeout = 30
    dimse_timeout = 120
    network_timeout = 60         # idle association, and the longest one PDU may take to arrive
    max_associations = 16        # negotiated associations at once
    max_associations_per_peer = 8    # per calling AE title and host
    max_connections = 128        # open sockets (negotiated or not) at once
    max_connections_per_host = 32
    max_upload_bytes = 536870912 # largest STOW-RS request body of `curata server` (413 beyond)
    max_object_bytes = 2147483648  # largest data set one C-STORE may carry (the connection is dropped)
    http_host = "127.0.0.1"
    http_port = 8042             # `curata server`
    public_url = ""              # how clients reach the server, if behind a proxy
    tls_cert = ""                # PEM files: HTTPS for `curata server` when both are set
    tls_key = ""
    dicom_tls = false            # also DICOM TLS (PS3.15 B.1) on the SCP, with the same certificate
    tls_ca = ""                  # CA bundle: DICOM TLS peers must present a certificate it signed
    token = ""                   # bearer token the HTTP server requires ($CURATA_TOKEN wins)
    push_token = ""              # token sent by `curata gateway push` ($CURATA_PUSH_TOKEN wins)
    push_batch = 32
    workers = 0                  # de-identification processes; 0 = one per core (1 = in-process)
    processes = 1                # listener processes sharing the port (SO_REUSEPORT); limits are per process
    front_end = "python"         # or "dcmtk": curata-spool-scp answers once the instance is durable in
                                 # the site's spool, and de-identification drains it (see net/spool.py)
    [gateway.peers.pacs]         # named peers: `--from pacs`
    ae_title = "ORTHANC"
    host = "10.0.0.5"
    port = 4242
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

from curata.errors import ConfigError
from curata.settings import GatewaySettings

# The defaults are declared once, in curata.settings.GatewaySettings.
DEFAULTS: dict[str, Any] = GatewaySettings().model_dump()

_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash, at most 16


def check_ae_title(value: str, what: str = "AE title") -> str:
    value = value.strip()
    if not _AE_RE.match(value):
        raise ConfigError(
            f"{what} {value!r} is not a valid DICOM AE title",
            hint="use 1-16 printable ASCII characters without a backslash",
        )
    return value


@dataclass(frozen=True)
class Peer:
    """A remote application entity: ``AE@host:port``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        """``AE@host:port``, e.g. ``ORTHANC@10.0.0.5:4242``."""
        ae, at, rest = text.partition("@")
        host, colon, port = rest.rpartition(":")
        if not at or not colon or not host or not port.isdigit():
            raise ConfigError(f"peer {text!r} is not AE@host:port", hint="e.g. --from PACS@10.0.0.5:104")
        return cls(check_ae_title(ae, "peer AE title"), host, int(port))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class AllowRule:
    """A calling AE title allowed to associate, optionally bound to a host address."""

    ae_title: str
    host: str | None = None

    @classmethod
    def parse(cls, text: str) -> AllowRule:
        ae, _, host = text.partition("@")
        return cls(check_ae_title(ae, "allowed AE title"), host or None)

    def matches(self, ae_title: str, address: str) -> bool:
        return ae_title.strip() == self.ae_title and (self.host is None or self.host == address)


@dataclass
class GatewayConfig:
    ae_title: str = DEFAULTS["ae_title"]
    port: int = DEFAULTS["port"]
    bind: str = DEFAULTS["bind"]
    allow: list[AllowRule] = field(default_factory=list)
    http_host: str = DEFAULTS["http_host"]
    http_port: int = DEFAULTS["http_port"]
    public_url: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    dicom_tls: bool = False
    tls_ca: str = ""
    token: str = ""
    push_token: str = ""
    push_batch: int = DEFAULTS["push_batch"]
    workers: int = 0
    peers: dict[str, Peer] = field(default_factory=dict)
    allow_hosts: list[str] = field(default_factory=list)
    check_called_ae: bool = True
    max_pdu: int = DEFAULTS["max_pdu"]
    max_request_bytes: int = DEFAULTS["max_request_bytes"]
    request_timeout: float = DEFAULTS["request_timeout"]
    acse_timeout: float = DEFAULTS["acse_timeout"]
    dimse_timeout: float = DEFAULTS["dimse_timeout"]
    network_timeout: float = DEFAULTS["network_timeout"]
    max_associations: int = DEFAULTS["max_associations"]
    max_associations_per_peer: int = DEFAULTS["max_associations_per_peer"]
    max_connections: int = DEFAULTS["max_connections"]
    max_connections_per_host: int = DEFAULTS["max_connections_per_host"]
    max_upload_bytes: int = DEFAULTS["max_upload_bytes"]
    max_object_bytes: int = DEFAULTS["max_object_bytes"]
    processes: int = 1
    front_end: str = "python"

    def __post_init__(self) -> None:
        self.check_limits()

    def check_limits(self) -> None:
        """Every bound is positive and finite: an unlimited gateway is one anyone can block."""
        ints = (
            "max_pdu",
            "max_request_bytes",
            "max_associations",
            "max_associations_per_peer",
            "max_connections",
            "max_connections_per_host",
            "max_upload_bytes",
            "max_object_bytes",
        )
        floats = ("request_timeout", "acse_timeout", "dimse_timeout", "network_timeout")
        for name in ints + floats:
            value = getattr(self, name)
            if not value or value <= 0 or value != value or value == float("inf"):
                raise ConfigError(
                    f"[gateway] {name} must be a positive number, not {value!r}",
                    hint="every gateway limit is bounded; remove the line to use the default",
                )
        if self.front_end not in ("python", "dcmtk"):
            raise ConfigError(
                f"[gateway] front_end {self.front_end!r} is not python or dcmtk",
                hint='use "python" (the default) or "dcmtk"',
            )
        if not 4096 <= self.max_pdu <= 1 << 26:
            raise ConfigError(
                f"[gateway] max_pdu {self.max_pdu} is out of range",
                hint="use 4096 to 67108864 bytes (the default is 1048576)",
            )
        try:
            self.host_networks()
        except ValueError as exc:
            raise ConfigError(
                f"[gateway] allow_hosts: {exc}", hint="use addresses or networks, e.g. 10.0.0.0/24"
            ) from exc

    def host_networks(self) -> tuple:  # type: ignore[type-arg]
        """Addresses that may connect at all (checked at accept); empty tuple = any."""
        from curata.collect.net._guard import parse_hosts

        if self.allow_hosts:
            return parse_hosts(self.allow_hosts)
        if self.allow and all(rule.host for rule in self.allow):
            return parse_hosts([str(rule.host) for rule in self.allow])
        return ()

    @property
    def open_to_anyone(self) -> bool:
        """Listening beyond loopback with neither an AE nor a host allow list."""
        return not is_loopback(self.bind) and not self.allow and not self.allow_hosts

    @classmethod
    def from_workspace(cls, ws: Any) -> GatewayConfig:
        # validated (types, unknown keys) and merged with CURATA_* variables by curata.settings
        section = ws.settings.gateway.model_dump()
        _check_secret_file(ws, section)
        try:
            peers = {
                name: Peer(check_ae_title(str(p["ae_title"])), str(p["host"]), int(p["port"]))
                for name, p in (section.get("peers") or {}).items()
            }
            return cls(
                ae_title=check_ae_title(str(section["ae_title"])),
                port=int(section["port"]),
                bind=str(section["bind"]),
                allow=[AllowRule.parse(str(a)) for a in section.get("allow") or []],
                http_host=str(section["http_host"]),
                http_port=int(section["http_port"]),
                public_url=str(section.get("public_url") or ""),
                tls_cert=str(section.get("tls_cert") or ""),
                tls_key=str(section.get("tls_key") or ""),
                dicom_tls=bool(section.get("dicom_tls")),
                tls_ca=str(section.get("tls_ca") or ""),
                token=str(section.get("token") or ""),
                push_token=str(section.get("push_token") or ""),
                push_batch=max(1, int(section["push_batch"])),
                workers=max(0, int(section.get("workers") or 0)),
                peers=peers,
                allow_hosts=[str(h) for h in section.get("allow_hosts") or []],
                check_called_ae=bool(section.get("check_called_ae", True)),
                max_pdu=int(section["max_pdu"]),
                max_request_bytes=int(section["max_request_bytes"]),
                request_timeout=float(section["request_timeout"]),
                acse_timeout=float(section["acse_timeout"]),
                dimse_timeout=float(section["dimse_timeout"]),
                network_timeout=float(section["network_timeout"]),
                max_associations=int(section["max_associations"]),
                max_associations_per_peer=int(section["max_associations_per_peer"]),
                max_connections=int(section["max_connections"]),
                max_connections_per_host=int(section["max_connections_per_host"]),
                max_upload_bytes=int(section["max_upload_bytes"]),
                max_object_bytes=int(section["max_object_bytes"]),
                processes=max(1, int(section.get("processes") or 1)),
                front_end=str(section.get("front_end") or "python"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"[gateway] in curata.toml is malformed: {exc}", hint="see `curata gateway --help`"
            ) from exc

    def peer(self, text: str) -> Peer:
        """A named peer from the config, or an ``AE@host:port`` literal."""
        if text in self.peers:
            return self.peers[text]
        return Peer.parse(text)

    def worker_count(self) -> int:
        """De-identification processes: the configured number, or one per core (at most 8)."""
        from curata.runtime import default_workers

        return self.workers or min(8, default_workers())

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    def dicom_ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context for the SCP, or None when DICOM TLS is off."""
        if not self.dicom_tls:
            return None
        if not self.tls:
            raise ConfigError(
                "[gateway] dicom_tls is on but tls_cert / tls_key are not set",
                hint="point tls_cert and tls_key at PEM files, or turn dicom_tls off",
            )
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
            if self.tls_ca:
                ctx.load_verify_locations(self.tls_ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS certificate or key: {exc}") from exc
        return ctx


def _check_secret_file(ws: Any, section: dict[str, Any]) -> None:
    """A token written in curata.toml is a secret at rest: the file must be private (0600)."""
    in_file = [
        name
        for name, env in (("token", "CURATA_TOKEN"), ("push_token", "CURATA_PUSH_TOKEN"))
        if section.get(name) and not os.environ.get(env)
    ]
    root = getattr(ws, "root", None)
    if not in_file or root is None:
        return
    from curata.workspace import CONFIG_NAME

    path = root / CONFIG_NAME
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & 0o077:
        raise ConfigError(
            f"{CONFIG_NAME} holds [gateway] {' and '.join(in_file)} but other users can read it "
            f"(mode {mode & 0o777:o})",
            hint=f"chmod 600 {path}, or remove the token from the file and set CURATA_TOKEN / "
            "CURATA_PUSH_TOKEN in the service's environment",
        )


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_verify(verify: bool | str) -> Any:
    """``True``, ``False`` or a CA bundle path, as httpx wants it (an SSL context for a bundle)."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify

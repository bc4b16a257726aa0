"""Gateway settings: the ``[gateway]`` section of ``curata.toml``, with defaults.

Example::

    [gateway]
    ae_title = "CURATA"          # our AE title
    port = 11112                 # DICOM port of `curata gateway serve`
    bind = "0.0.0.0"
    allow = ["PACS@10.0.0.5", "MODALITY1"]   # calling AE titles (optionally @host); empty = any
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
    [gateway.peers.pacs]         # named peers: `--from pacs`
    ae_title = "ORTHANC"
    host = "10.0.0.5"
    port = 4242
"""

from __future__ import annotations

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

    @classmethod
    def from_workspace(cls, ws: Any) -> GatewayConfig:
        # validated (types, unknown keys) and merged with CURATA_* variables by curata.settings
        section = ws.settings.gateway.model_dump()
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


def tls_verify(verify: bool | str) -> Any:
    """``True``, ``False`` or a CA bundle path, as httpx wants it (an SSL context for a bundle)."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify

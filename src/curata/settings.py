"""Every setting in one typed place: the sections of ``curata.toml``, overridable by ``CURATA_*`` variables.

Precedence, lowest first: the defaults below, ``WORKSPACE/curata.toml``, then environment variables
``CURATA_<SECTION>__<FIELD>`` (e.g. ``CURATA_RUNTIME__WORKERS=4``) and the historic short names in
:data:`ENV_ALIASES` (``CURATA_DATABASE_URL``, ``CURATA_TOKEN``, ``CURATA_PUSH_TOKEN``). A key that no
model declares, or a value of the wrong type, is a :class:`~curata.errors.ConfigError` naming it, so a
typo fails instead of being ignored. ``curata config show`` prints the effective values and where each
came from (:func:`describe`).

Code reads settings only through ``ws.settings`` (a :class:`Settings`); a new section is a model here
plus one field on :class:`Settings`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from curata._config_file import CONFIG_NAME, ENV_DELIMITER, ENV_PREFIX, find_config
from curata._defaults import DEFAULT_DEID_PROFILE
from curata.errors import ConfigError

# Older, shorter names that keep working: variable -> (section, field). A non-empty value wins over
# the file and over the CURATA_<SECTION>__<FIELD> spelling.
ENV_ALIASES: dict[str, tuple[str, str]] = {
    "CURATA_DATABASE_URL": ("catalog", "url"),
    "CURATA_TOKEN": ("gateway", "token"),
    "CURATA_PUSH_TOKEN": ("gateway", "push_token"),
}

_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


class _Section(BaseModel):
    """A section of curata.toml: unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SiteSettings(_Section):
    name: str = Field("local-site", description="This site's name; pseudonyms and the ledger carry it.")
    region: str = Field("", description="Region recorded with ingested studies (optional).")
    country: str = Field("", description="Country recorded with ingested studies (optional).")


class CatalogSettings(_Section):
    url: str = Field("", description="Database URL; empty = WORKSPACE/catalog.sqlite.")


class StoreSettings(_Section):
    url: str = Field("", description="Blob store URL (local folder or fsspec URL); empty = WORKSPACE/store.")


class DeidSettings(_Section):
    profile: str = Field(
        DEFAULT_DEID_PROFILE, description="De-identification profile (research, basic, ...)."
    )
    config: str = Field("", description="A TOML file of profile overrides; empty = none.")
    site_prefixes: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{0,15}[-_]$")]] = Field(
        default_factory=list,
        description="A platform: the pseudonym prefixes its sites set (pseudonym_prefix, each ending "
        "in '-' or '_'), accepted besides CUR-; a pseudonym under any other prefix is refused.",
    )


class RuntimeSettings(_Section):
    workers: int = Field(0, ge=0, description="Worker processes for batch work; 0 = one per core.")
    scheduler: str = Field("", description="Dask scheduler address; empty = the local process pool.")

    def worker_count(self, requested: int | None = None) -> int:
        """The workers a batch uses: ``requested`` if positive, else this setting, else one per core."""
        from curata.runtime import default_workers

        return default_workers(requested or self.workers or None)


class PeerSettings(_Section):
    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)


class GatewaySettings(_Section):
    ae_title: str = Field("CURATA", description="Our DICOM AE title.")
    port: int = Field(11112, ge=0, le=65535, description="DICOM port of `curata gateway serve`.")
    bind: str = Field(
        "127.0.0.1", description="Address the DICOM listener binds (loopback unless opened on purpose)."
    )
    allow: list[str] = Field(
        default_factory=list, description="Calling AE titles (AE or AE@host); empty = any."
    )
    allow_hosts: list[str] = Field(
        default_factory=list, description="Addresses or networks that may connect at all (checked at accept)."
    )
    check_called_ae: bool = Field(True, description="Refuse associations addressed to another AE title.")
    max_pdu: int = Field(1 << 20, ge=0, description="Largest PDU we accept (bytes).")
    max_request_bytes: int = Field(64 << 10, ge=1, description="Largest association request (bytes).")
    request_timeout: float = Field(10.0, gt=0, description="Seconds from connect to a complete request.")
    acse_timeout: float = Field(30.0, gt=0, description="ACSE timeout (s).")
    dimse_timeout: float = Field(120.0, gt=0, description="DIMSE timeout (s).")
    network_timeout: float = Field(60.0, gt=0, description="Network timeout (s).")
    max_associations: int = Field(16, ge=1, description="Negotiated associations at once.")
    max_associations_per_peer: int = Field(8, ge=1, description="Negotiated associations per peer.")
    max_connections: int = Field(128, ge=1, description="Open connections at once.")
    max_connections_per_host: int = Field(32, ge=1, description="Open connections per host.")
    max_upload_bytes: int = Field(512 << 20, ge=1, description="Largest STOW request body (bytes).")
    max_object_bytes: int = Field(2 << 30, ge=1, description="Largest data set received (bytes).")
    processes: int = Field(1, ge=1, description="Listener processes sharing the DICOM port.")
    front_end: Literal["python", "dcmtk"] = Field(
        "python",
        description="DICOM front end: python (pynetdicom, answers after filing; DICOM TLS) or dcmtk "
        "(curata-spool-scp: answers once the instance is durable in the site's spool, de-identifies "
        "behind it; several times the rate).",
    )
    http_host: str = Field("127.0.0.1", description="Address of `curata server`.")
    http_port: int = Field(8042, ge=0, le=65535, description="HTTP port of `curata server`.")
    public_url: str = Field("", description="How clients reach the server, if behind a proxy.")
    tls_cert: str = Field("", description="PEM certificate: HTTPS when tls_cert and tls_key are set.")
    tls_key: str = Field("", description="PEM private key for tls_cert.")
    dicom_tls: bool = Field(False, description="DICOM TLS on the SCP too, with the same certificate.")
    tls_ca: str = Field("", description="CA bundle DICOM TLS peers must be signed by.")
    token: str = Field("", description="Bearer token the HTTP server requires.")
    push_token: str = Field("", description="Token `curata gateway push` sends.")
    push_batch: int = Field(32, ge=1, description="Instances per push request.")
    workers: int = Field(0, ge=0, description="De-identification processes; 0 = one per core, at most 8.")
    peers: dict[str, PeerSettings] = Field(default_factory=dict, description="Named DICOM peers.")


class ServerSettings(_Section):
    """The web platform (`curata server`). Its listener address, TLS and token are [gateway]'s.

    Open for now: the web platform is landing its settings (accounts, sessions); keys it has not typed
    yet pass through, as in [annotate]. Type each one here as it lands, then drop ``extra="allow"``.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    verified_deidentified: bool = Field(
        False, description="Central platform: accept only objects already marked de-identified."
    )


class PublishSettings(_Section):
    min_cell: int = Field(
        5,
        ge=2,
        description="Small-cell threshold of dataset cards and clinical summaries: counts under it are "
        "shown as <N (and counts a total would give back are hidden too).",
    )


class RevenueSettings(_Section):
    rule: str = Field("patients", description="How a licence fee is split among sites.")


class _OpenSection(BaseModel):
    """A section of a stage still being built: keys pass through until the stage types them."""

    model_config = ConfigDict(extra="allow")


class AnnotateSettings(_OpenSection):
    pass


class WsiSettings(_OpenSection):
    pass


class ClinicalSettings(_OpenSection):
    pass


class Settings(BaseSettings):
    """All of curata.toml. Unknown sections are errors."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, extra="forbid", case_sensitive=False
    )

    site: SiteSettings = Field(default_factory=SiteSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    deid: DeidSettings = Field(default_factory=DeidSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    revenue: RevenueSettings = Field(default_factory=RevenueSettings)
    publish: PublishSettings = Field(default_factory=PublishSettings)
    annotate: AnnotateSettings = Field(default_factory=AnnotateSettings)
    wsi: WsiSettings = Field(default_factory=WsiSettings)
    clinical: ClinicalSettings = Field(default_factory=ClinicalSettings)


SECTIONS: tuple[str, ...] = tuple(Settings.model_fields)


def initial_config(site: str | None = None) -> dict[str, Any]:
    """What `curata init` writes: the sections users edit most, with their defaults."""
    defaults = Settings.model_construct()
    cfg = {
        name: getattr(defaults, name).model_dump() for name in ("site", "catalog", "store", "deid", "runtime")
    }
    if site:
        cfg["site"]["name"] = site
    return cfg


@dataclass(frozen=True)
class SettingValue:
    """One effective setting and where it came from: ``default``, ``curata.toml`` or ``env NAME``."""

    key: str
    value: Any
    source: str
    description: str = ""


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file as a dict ({} when absent); a syntax error is a ConfigError."""
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}", hint="fix the TOML syntax") from exc


def _env_layer(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    """Values from the environment, and for each (section, field) the variable that set it."""
    source = EnvSettingsSource(
        Settings, case_sensitive=False, env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER
    )
    source.env_vars = {k.lower(): v for k, v in environ.items()}
    try:
        parsed = source()
    except SettingsError as exc:  # e.g. CURATA_SITE=x: a whole section set to a non-JSON value
        section = str(exc).split('"')[1] if '"' in str(exc) else "?"
        raise ConfigError(
            f"{ENV_PREFIX}{section.upper()} sets the whole [{section}] section and is not JSON",
            hint=f"set one field: {ENV_PREFIX}{section.upper()}{ENV_DELIMITER}<FIELD>=value",
        ) from exc
    values: dict[str, Any] = {k: v for k, v in parsed.items() if isinstance(v, dict)}
    origins: dict[tuple[str, str], str] = {}
    for section, fields in values.items():
        for name in fields:
            origins[(section, name)] = f"env {ENV_PREFIX}{section.upper()}{ENV_DELIMITER}{name.upper()}"
    for var, (section, name) in ENV_ALIASES.items():
        if environ.get(var):
            values.setdefault(section, {})[name] = environ[var]
            origins[(section, name)] = f"env {var}"
    return values, origins


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate(data: dict[str, Any], where: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"[{'.'.join(str(p) for p in err['loc'])}] {err['msg']}" for err in exc.errors())
        raise ConfigError(
            f"{where}: {problems}",
            hint="see `curata config show` for every setting, its type and its default",
        ) from exc


def load_settings(
    file_values: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Settings, dict[str, str]]:
    """Settings from ``file_values`` (the parsed curata.toml) and ``environ`` (default: os.environ).

    Returns the settings and, for every ``section.field`` set by the file or the environment, its
    source; fields absent from that map are defaults.
    """
    file_values = dict(file_values or {})
    env_values, env_origins = _env_layer(os.environ if environ is None else environ)
    settings = _validate(_merge(file_values, env_values), CONFIG_NAME)
    origins: dict[str, str] = {}
    for section, fields in file_values.items():
        if isinstance(fields, Mapping):
            for name in fields:
                origins[f"{section}.{name}"] = CONFIG_NAME
    for (section, name), origin in env_origins.items():
        origins[f"{section}.{name}"] = origin
    return settings, origins


def runtime_settings(start: Path | None = None) -> RuntimeSettings:
    """[runtime] of the enclosing workspace (or $CURATA_WORKSPACE), else the defaults and CURATA_* only:
    for commands such as `curata deid` that run with or without a workspace."""
    config = find_config(start)
    return load_settings({} if config is None else read_toml(config))[0].runtime


def describe(settings: Settings, origins: Mapping[str, str]) -> list[SettingValue]:
    """Every declared setting, its effective value and its source (for `curata config show`)."""
    rows: list[SettingValue] = []
    for section in SECTIONS:
        model = getattr(settings, section)
        names = list(type(model).model_fields) + list(model.model_extra or {})
        for name in names:
            key = f"{section}.{name}"
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                value = value.model_dump()
            elif isinstance(value, dict):
                value = {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in value.items()}
            if name in {"token", "push_token"} and value:
                value = "***"  # a secret is shown set, never printed
            elif isinstance(value, str) and "://" in value:
                value = _URL_PASSWORD.sub(r"\1***@", value)
            field = type(model).model_fields.get(name)
            meaning = (field.description or "") if field is not None else "(not yet typed by its stage)"
            rows.append(SettingValue(key, value, origins.get(key, "default"), meaning))
    return rows

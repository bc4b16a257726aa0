"""The workspace: one folder holding the config, the catalog (SQLite by default), the blob store and
the site secret.

Layout::

    WORKSPACE/
      curata.toml          configuration (see ``DEFAULT_CONFIG``)
      catalog.sqlite       the catalog, unless ``CURATA_DATABASE_URL`` or [catalog] url names another
      store/               content-addressed blobs (sha256, sharded)
      .curata/site.key     the site secret (mode 0600); never leaves the site
      .curata/vault/       the encrypted re-identification vault; never leaves the site
      quarantine/          bytes of rejected inputs, one folder per reason digest
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import tomli_w

from curata.errors import ConfigError, WorkspaceError

CONFIG_NAME = "curata.toml"
ENV_WORKSPACE = "CURATA_WORKSPACE"
ENV_DATABASE_URL = "CURATA_DATABASE_URL"

DEFAULT_CONFIG: dict[str, Any] = {
    "site": {"name": "local-site", "region": "", "country": ""},
    "catalog": {"url": ""},
    "store": {"url": ""},
    "deid": {"profile": "research", "config": ""},
    "runtime": {"workers": 0, "scheduler": ""},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Workspace:
    """A Curata workspace rooted at ``root``. Cheap to construct; opens things lazily."""

    root: Path
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def init(cls, root: Path, *, site: str | None = None) -> Workspace:
        """Create (or re-open) a workspace at ``root``: config, folders, site key, migrated catalog."""
        from curata.collect.keys import generate_key_file

        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        cfg_path = root / CONFIG_NAME
        if not cfg_path.exists():
            cfg = _merge(DEFAULT_CONFIG, {"site": {"name": site}} if site else {})
            tmp = cfg_path.with_suffix(".tmp")
            tmp.write_text(tomli_w.dumps(cfg))
            os.chmod(tmp, 0o600)  # it may come to hold tokens ([gateway] token, push_token)
            tmp.replace(cfg_path)
        ws = cls.open(root)
        (root / ".curata").mkdir(exist_ok=True)
        os.chmod(root / ".curata", 0o700)
        if not ws.key_path.exists():
            generate_key_file(ws.key_path)
        ws.store_path.mkdir(exist_ok=True)
        ws.quarantine_path.mkdir(exist_ok=True)
        os.chmod(ws.quarantine_path, 0o700)  # refused raw inputs: identifiable, private
        ws.catalog.migrate()
        return ws

    @classmethod
    def open(cls, root: Path) -> Workspace:
        root = root.resolve()
        cfg_path = root / CONFIG_NAME
        if not cfg_path.exists():
            raise WorkspaceError(
                f"{root} is not a Curata workspace (no {CONFIG_NAME})",
                hint=f"run `curata init {root}` first, or pass --workspace / set {ENV_WORKSPACE}",
            )
        try:
            data = tomllib.loads(cfg_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg_path}: {exc}", hint="fix the TOML syntax") from exc
        return cls(root=root, config=_merge(DEFAULT_CONFIG, data))

    @classmethod
    def find(cls, explicit: Path | None = None) -> Workspace:
        """The workspace named explicitly, by ``CURATA_WORKSPACE``, or the nearest enclosing one."""
        if explicit is not None:
            return cls.open(explicit)
        env = os.environ.get(ENV_WORKSPACE)
        if env:
            return cls.open(Path(env))
        here = Path.cwd().resolve()
        for folder in (here, *here.parents):
            if (folder / CONFIG_NAME).exists():
                return cls.open(folder)
        raise WorkspaceError(
            f"no Curata workspace in {here} or above",
            hint=f"run `curata init DIR`, then work inside DIR or set {ENV_WORKSPACE}=DIR",
        )

    # -- locations ---------------------------------------------------------------------------
    @property
    def site_name(self) -> str:
        return str(self.config["site"]["name"])

    @property
    def key_path(self) -> Path:
        return self.root / ".curata" / "site.key"

    @property
    def vault_path(self) -> Path:
        return self.root / ".curata" / "vault"

    @property
    def store_path(self) -> Path:
        return self.root / "store"

    @property
    def quarantine_path(self) -> Path:
        return self.root / "quarantine"

    @property
    def database_url(self) -> str:
        url = os.environ.get(ENV_DATABASE_URL) or self.config["catalog"].get("url") or ""
        return url or f"sqlite:///{self.root / 'catalog.sqlite'}"

    # -- services ----------------------------------------------------------------------------
    @cached_property
    def catalog(self):  # type: ignore[no-untyped-def]
        from curata.catalog import Catalog

        return Catalog(self.database_url)

    @cached_property
    def store(self):  # type: ignore[no-untyped-def]
        from curata.store import open_store

        return open_store(self.config["store"].get("url") or str(self.store_path))

    def site_key(self) -> bytes:
        from curata.collect.keys import read_key_file

        return read_key_file(self.key_path)

"""The workspace: one folder holding the config, the catalog (SQLite by default), the blob store and
the site secret.

Layout::

    WORKSPACE/
      curata.toml          configuration (every key is declared in ``curata.settings``)
      catalog.sqlite       the catalog, unless ``CURATA_DATABASE_URL`` or [catalog] url names another
      store/               content-addressed blobs (sha256, sharded)
      .curata/site.key     the site secret (mode 0600); never leaves the site
      .curata/vault/       the encrypted re-identification vault; never leaves the site
      quarantine/          bytes of rejected inputs, one folder per reason digest
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import tomli_w

from curata._io import atomic_write
from curata.errors import WorkspaceError
from curata.settings import CONFIG_NAME, Settings, initial_config, load_settings, read_toml

ENV_WORKSPACE = "CURATA_WORKSPACE"
ENV_DATABASE_URL = "CURATA_DATABASE_URL"


@dataclass
class Workspace:
    """A Curata workspace rooted at ``root``. Cheap to construct; opens things lazily."""

    root: Path
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # the effective settings, as data
    settings: Settings = field(default_factory=Settings.model_construct, repr=False)
    setting_sources: dict[str, str] = field(default_factory=dict, repr=False)  # "section.field" -> where

    @classmethod
    def init(cls, root: Path, *, site: str | None = None) -> Workspace:
        """Create (or re-open) a workspace at ``root``: config, folders, site key, migrated catalog."""
        from curata.collect import generate_key_file

        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        cfg_path = root / CONFIG_NAME
        if not cfg_path.exists():
            # 0600: it may come to hold tokens ([gateway] token, push_token)
            atomic_write(cfg_path, tomli_w.dumps(initial_config(site)).encode(), mode=0o600)
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
        settings, sources = load_settings(read_toml(cfg_path))
        return cls(root=root, config=settings.model_dump(), settings=settings, setting_sources=sources)

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
        return self.settings.site.name

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
        return self.settings.catalog.url or f"sqlite:///{self.root / 'catalog.sqlite'}"

    @property
    def store_url(self) -> str:
        """Where blobs live: [store] url, or the workspace's own store folder."""
        return self.settings.store.url or str(self.store_path)

    def deid_profile(self) -> tuple[str, Path | None]:
        """The site's de-identification profile and its file of overrides ([deid] profile, config)."""
        config = self.settings.deid.config
        return self.settings.deid.profile, Path(config) if config else None

    def site_prefixes(self) -> tuple[str, ...]:
        """A platform: the pseudonym prefixes of its sites besides CUR- ([deid] site_prefixes)."""
        return tuple(self.settings.deid.site_prefixes)

    def min_cell(self) -> int:
        """The small-cell threshold of the dataset cards and clinical summaries ([publish] min_cell)."""
        return self.settings.publish.min_cell

    def workers(self, requested: int | None = None) -> int:
        """Worker processes for a batch: ``requested`` if positive, else [runtime] workers, else cores."""
        return self.settings.runtime.worker_count(requested)

    # -- services ----------------------------------------------------------------------------
    @cached_property
    def catalog(self):  # type: ignore[no-untyped-def]
        from curata.catalog import Catalog

        return Catalog(self.database_url)

    @cached_property
    def store(self):  # type: ignore[no-untyped-def]
        from curata.store import open_store

        return open_store(self.store_url)

    def site_key(self) -> bytes:
        from curata.collect import read_key_file

        return read_key_file(self.key_path)

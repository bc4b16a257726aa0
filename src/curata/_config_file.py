"""Where a command's settings can come from, found without the settings models.

:mod:`curata.settings` validates ``curata.toml`` and ``CURATA_*`` variables with pydantic, which
costs about a tenth of a CPU-second to import. `curata deid` reads one setting, ``[runtime]
workers``, and most runs have neither a workspace file nor a variable that sets it: it asks here
first, and loads the settings only when one of them exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CONFIG_NAME = "curata.toml"
ENV_PREFIX = "CURATA_"
ENV_DELIMITER = "__"


def find_config(start: Path | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The ``curata.toml`` of $CURATA_WORKSPACE, else of ``start`` (the working folder) or the
    nearest folder above it; None where there is none."""
    env = os.environ if environ is None else environ
    env_ws = env.get("CURATA_WORKSPACE")
    here = (start or Path.cwd()).resolve()
    for folder in [Path(env_ws)] if env_ws else [here, *here.parents]:
        if (folder / CONFIG_NAME).exists():
            return folder / CONFIG_NAME
    return None


def env_sets(section: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a variable may set ``[section]``: ``CURATA_<SECTION>`` (the whole section, as JSON)
    or ``CURATA_<SECTION>__<FIELD>``, in any case, as the settings read them. Any name that begins
    so counts (the settings then say whether it is valid)."""
    env = os.environ if environ is None else environ
    head = f"{ENV_PREFIX}{section}".upper()
    return any(name.upper().startswith(head) for name in env)

"""Defaults that a stage needs without reading the settings; :mod:`curata.settings` declares its
fields with them, so each is spelled once. Plain values only: this module imports nothing, so a
command that reads no settings (``curata deid -j N``) does not load pydantic-settings (about 0.1
CPU-second) to learn a default."""

from __future__ import annotations

DEFAULT_DEID_PROFILE = "research"

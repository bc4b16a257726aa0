"""De-identification options are an enum: a misspelt option fails instead of reading as "off"."""

from __future__ import annotations

from pathlib import Path

import pytest

from curata.collect.deid import DeidOption, load_profile
from curata.collect.deid.profile import OPTIONS, PROFILES, Profile
from curata.errors import ConfigError


def test_every_option_has_its_code_and_every_profile_names_real_options() -> None:
    assert set(OPTIONS) == set(DeidOption)
    assert all(isinstance(o, DeidOption) for opts in PROFILES.values() for o in opts)


def test_a_misspelt_option_fails_instead_of_reading_as_off(tmp_path: Path) -> None:
    research = load_profile("research")
    assert research.has(DeidOption.CLEAN_GRAPHICS) and research.has("clean_graphics")
    assert not research.has(DeidOption.RETAIN_UIDS)
    with pytest.raises(ConfigError, match="clean_grapics"):
        research.has("clean_grapics")
    with pytest.raises(ConfigError, match="retain_uid'"):
        Profile(options=frozenset({"retain_uid"}))
    cfg = tmp_path / "deid.toml"
    cfg.write_text("[options]\nretain_uid = true\n")
    with pytest.raises(ConfigError, match="retain_uid"):
        load_profile("basic", cfg)

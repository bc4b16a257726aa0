"""Where settings can come from, found without the settings models (curata._config_file)."""

from __future__ import annotations

from pathlib import Path

from curata._config_file import CONFIG_NAME, env_sets, find_config
from curata.settings import runtime_settings


def test_the_nearest_workspace_file_or_the_named_workspace(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    found = find_config(deep, {})
    assert found is None or tmp_path not in found.parents  # none here (a folder above may hold one)
    (tmp_path / "a" / CONFIG_NAME).write_text("[runtime]\nworkers = 2\n")
    assert find_config(deep, {}) == tmp_path / "a" / CONFIG_NAME
    other = tmp_path / "other"
    other.mkdir()
    # $CURATA_WORKSPACE names the one folder looked in, wherever the command runs
    assert find_config(deep, {"CURATA_WORKSPACE": str(other)}) is None
    (other / CONFIG_NAME).write_text("")
    assert find_config(deep, {"CURATA_WORKSPACE": str(other)}) == other / CONFIG_NAME


def test_a_variable_sets_a_section_in_any_case_and_spelling() -> None:
    assert env_sets("runtime", {"CURATA_RUNTIME__WORKERS": "3"})
    assert env_sets("runtime", {"curata_runtime__workers": "3"})
    assert env_sets("runtime", {"CURATA_RUNTIME": '{"workers": 3}'})
    assert not env_sets("runtime", {"CURATA_STORE__URL": "s3://x", "CURATA_PURE_PYTHON": "1", "RUNTIME": "1"})


def test_the_settings_find_the_same_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    monkeypatch.delenv("CURATA_RUNTIME__WORKERS", raising=False)
    (tmp_path / CONFIG_NAME).write_text("[runtime]\nworkers = 5\n")
    (tmp_path / "sub").mkdir()
    assert find_config(tmp_path / "sub") == tmp_path / CONFIG_NAME
    assert runtime_settings(tmp_path / "sub").worker_count() == 5

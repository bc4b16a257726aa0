"""The runtime: one worker count for every batch command, and a pool that never loses an item."""

from __future__ import annotations

import os

import pytest

from curata.runtime import default_workers, imap_unordered
from curata.settings import load_settings


def _square(x: int) -> int:
    return x * x


def test_one_rule_for_the_worker_count() -> None:
    cores = len(os.sched_getaffinity(0))
    settings, _ = load_settings({"runtime": {"workers": 3}}, {})
    assert settings.runtime.worker_count() == 3
    assert settings.runtime.worker_count(5) == 5
    unset, _ = load_settings({}, {})
    assert unset.runtime.worker_count() == default_workers() == cores


def test_ingest_and_deid_use_the_same_count(workspace, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from curata.collect import Ingestor

    assert Ingestor(workspace, deidentify=False).workers == default_workers()
    monkeypatch.setenv("CURATA_RUNTIME__WORKERS", "2")
    from curata.workspace import Workspace

    assert Ingestor(Workspace.open(workspace.root), deidentify=False).workers == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_every_item_comes_back(workers: int) -> None:
    out = dict(imap_unordered(_square, range(20), workers=workers))
    assert out == {i: i * i for i in range(20)}


def test_deid_reads_the_same_setting_without_a_workspace(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from curata.settings import runtime_settings

    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    monkeypatch.delenv("CURATA_RUNTIME__WORKERS", raising=False)
    assert runtime_settings(tmp_path).worker_count() == default_workers()
    (tmp_path / "curata.toml").write_text("[runtime]\nworkers = 3\n")
    (tmp_path / "sub").mkdir()
    assert runtime_settings(tmp_path / "sub").worker_count() == 3
    monkeypatch.setenv("CURATA_RUNTIME__WORKERS", "6")
    assert runtime_settings(tmp_path / "sub").worker_count() == 6

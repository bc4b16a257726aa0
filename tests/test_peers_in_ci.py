"""A test whose real peer is missing skips on a laptop and FAILS in CI (tests/conftest.require_peer)."""

from __future__ import annotations

import pytest

from tests.conftest import require_module, require_peer, require_programs


def test_a_missing_peer_skips_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="curata-no-such-peer"):
        require_programs("curata-no-such-peer")
    require_peer(True, "present")  # a present peer is no event


@pytest.mark.parametrize("ci", ["true", "1", "TRUE"])
def test_a_missing_peer_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="curata-no-such-peer is missing"):
        require_programs("curata-no-such-peer", "sh")
    with pytest.raises(pytest.fail.Exception, match="curata_no_such_module"):
        require_module("curata_no_such_module")
    assert require_module("json").dumps([]) == "[]"

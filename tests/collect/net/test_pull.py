"""Pull from a real Orthanc PACS: C-FIND + C-MOVE, C-GET, and DICOMweb (QIDO-RS + WADO-RS); resumable."""

from __future__ import annotations

import pytest

from curata.collect.dicomweb import pull_dicomweb
from curata.collect.net.config import GatewayConfig, Peer
from curata.collect.net.pull import parse_matches, pull_dimse
from curata.collect.net.receive import Receiver
from curata.errors import ConfigError
from tests.collect.net.conftest import PLANTED
from tests.collect.net.helpers import assert_deidentified, count, received_count, record

pytestmark = pytest.mark.integration


def _config(orthanc) -> GatewayConfig:  # type: ignore[no-untyped-def]
    return GatewayConfig(ae_title="CURATA", port=orthanc.gateway_port, bind="127.0.0.1", workers=1)


def _peer(orthanc) -> Peer:  # type: ignore[no-untyped-def]
    return Peer.parse(f"ORTHANC@127.0.0.1:{orthanc.dicom_port}")


def test_cmove_pull_is_complete_deidentified_and_resumable(workspace, orthanc) -> None:  # type: ignore[no-untyped-def]
    total = len(orthanc.instances)
    receiver = Receiver(workspace)
    try:
        # a first, partial run: only the MR series (3 instances)
        part = pull_dimse(
            workspace,
            _peer(orthanc),
            level="series",
            matches={"Modality": "MR"},
            config=_config(orthanc),
            receiver=receiver,
        )
        assert part.counts["fetched"] == 3 and part.counts["failed"] == 0
        assert count(workspace) == 3
        # the full run fetches only what the first did not
        full = pull_dimse(workspace, _peer(orthanc), config=_config(orthanc), receiver=receiver)
        assert full.counts["instances"] == total
        assert full.counts["present"] == 3 and full.counts["fetched"] == total - 3
        assert not full.failed
        # and a third run has nothing to do
        again = pull_dimse(workspace, _peer(orthanc), config=_config(orthanc), receiver=receiver)
        assert again.counts["fetched"] == 0 and again.extra["requests"] == 0
    finally:
        receiver.close()
    assert count(workspace) == total == received_count(workspace)
    assert assert_deidentified(workspace, PLANTED) == total
    record("C-FIND/C-MOVE pull from Orthanc (partial, then full, then again)", total, count(workspace))


def test_cmove_pull_with_patient_match(workspace, orthanc) -> None:  # type: ignore[no-untyped-def]
    summary = pull_dimse(
        workspace, _peer(orthanc), matches=parse_matches(["PatientID=PAT-0002"]), config=_config(orthanc)
    )
    assert summary.counts["instances"] == summary.counts["fetched"] == 3
    assert count(workspace) == 3
    record("C-MOVE pull --match PatientID=PAT-0002", 3, count(workspace))


def test_cget_pull(workspace, orthanc) -> None:  # type: ignore[no-untyped-def]
    summary = pull_dimse(workspace, _peer(orthanc), method="get", config=_config(orthanc))
    assert summary.counts["fetched"] == len(orthanc.instances), summary.extra
    assert assert_deidentified(workspace, PLANTED) == len(orthanc.instances)
    record("C-GET pull from Orthanc", len(orthanc.instances), count(workspace))


def test_dicomweb_pull_is_complete_and_resumable(workspace, orthanc) -> None:  # type: ignore[no-untyped-def]
    total = len(orthanc.instances)
    receiver = Receiver(workspace)
    try:
        part = pull_dicomweb(
            workspace, orthanc.dicomweb, matches={"PatientID": "PAT-0001"}, receiver=receiver
        )
        assert part.counts["fetched"] == 7 and not part.failed, part.extra
        full = pull_dicomweb(workspace, orthanc.dicomweb, receiver=receiver)
        assert (full.counts["present"], full.counts["fetched"]) == (7, total - 7), full.extra
        again = pull_dicomweb(workspace, orthanc.dicomweb, receiver=receiver)
        assert again.counts["fetched"] == 0 and again.extra["requests"] == 0
    finally:
        receiver.close()
    assert count(workspace) == total == received_count(workspace)
    assert assert_deidentified(workspace, PLANTED) == total
    record("QIDO-RS/WADO-RS pull from Orthanc (partial, then full, then again)", total, count(workspace))


def test_bad_match_and_bad_peer_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="KEYWORD=VALUE"):
        parse_matches(["NotAKeyword=1"])
    with pytest.raises(ConfigError, match="AE@host:port"):
        Peer.parse("ORTHANC@localhost")

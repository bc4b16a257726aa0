"""Gateway -> central platform over HTTPS with a token: batches, sha256 per instance, resumable."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from curata.catalog import Blob, Instance
from curata.collect.ingest import Ingestor
from curata.collect.net.models import GatewayPush
from curata.collect.net.push import pending, push_instances
from curata.errors import NetworkError
from curata.server import create_app
from curata.workspace import Workspace
from tests.collect.net.helpers import count, record
from tests.conftest import make_ct

TOKEN = "platform-token"


def _digests(ws) -> set[str]:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        return set(s.scalars(select(Instance.blob_digest)))


def test_push_over_https_is_verified_resumable_and_exactly_once(  # type: ignore[no-untyped-def]
    workspace, ct_series, serve, tls_files, tmp_path
) -> None:
    central = Workspace.init(tmp_path / "central", site="platform")
    cert, key = tls_files
    server = serve(create_app(central, token=TOKEN, verified_deidentified=True), certfile=cert, keyfile=key)
    assert server.url.startswith("https://")
    gateway = Ingestor(workspace, deidentify=True, workers=1)
    summary, _ = gateway.ingest_paths([ct_series(5, folder="a")])
    assert summary.counts["ingested"] == 5

    first = push_instances(workspace, server.url, token=TOKEN, batch=2, verify=str(cert))
    assert (first.counts["pushed"], first.counts["failed"]) == (5, 0)
    assert _digests(central) == _digests(workspace)  # same bytes, sha256 for sha256

    gateway.ingest_paths([ct_series(3, folder="b", patient_id="PAT-0009")])  # new arrivals
    assert len(pending(workspace, server.url)) == 3
    second = push_instances(workspace, server.url, token=TOKEN, batch=2, verify=str(cert))
    assert (second.counts["pushed"], second.counts["already"]) == (3, 5)
    third = push_instances(workspace, server.url, token=TOKEN, verify=str(cert))
    assert third.counts["pushed"] == 0 and not third.failed
    assert count(central) == count(workspace) == 8
    # the platform filed a batch but its answer was lost: the gateway re-sends, nothing is doubled
    with workspace.catalog.session() as s:
        for row in list(s.scalars(select(GatewayPush)))[:3]:
            s.delete(row)
    lost = push_instances(workspace, server.url, token=TOKEN, verify=str(cert))
    assert (lost.counts["pushed"], lost.counts["failed"]) == (3, 0)
    assert count(central) == 8
    record("gateway push -> central (HTTPS, 2 runs + 1 idle)", 8, count(central))


def test_push_needs_the_token_and_a_trusted_certificate(
    workspace, ct_series, serve, tls_files, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    central = Workspace.init(tmp_path / "central")
    cert, key = tls_files
    server = serve(create_app(central, token=TOKEN, verified_deidentified=True), certfile=cert, keyfile=key)
    Ingestor(workspace, deidentify=True, workers=1).ingest_paths([ct_series(1)])
    with pytest.raises(NetworkError, match="refused the token"):
        push_instances(workspace, server.url, token="wrong", verify=str(cert))
    with pytest.raises(NetworkError, match="cannot reach"):
        push_instances(workspace, server.url, token=TOKEN)  # self-signed: not trusted by default
    assert count(central) == 0 and len(pending(workspace, server.url)) == 1


def test_central_refuses_instances_not_marked_deidentified(workspace, ct_series, serve, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A gateway that (wrongly) holds identifiable data cannot deliver it: nothing is recorded as pushed."""
    central = Workspace.init(tmp_path / "central")
    server = serve(create_app(central, token=TOKEN, verified_deidentified=True))
    summary, _ = Ingestor(workspace, deidentify=False, workers=1).ingest_paths(
        [ct_series(2, deidentified=True)]
    )
    assert summary.counts["ingested"] == 2
    # a raw, identifiable instance slipped into the gateway's store and catalog
    bad = make_ct(tmp_path / "bad.dcm")
    assert bad.PatientName == "Doe^Jane"
    with workspace.catalog.session() as s:
        series = s.scalar(select(Instance.series_id))
    digest = workspace.store.put_bytes((tmp_path / "bad.dcm").read_bytes())
    with workspace.catalog.session() as s:
        s.add(Blob(digest=digest, size=1))
        s.add(Instance(series_id=series, sop_instance_uid=str(bad.SOPInstanceUID), blob_digest=digest))
    result = push_instances(workspace, server.url, token=TOKEN)
    assert (result.counts["pushed"], result.counts["failed"]) == (2, 1)
    assert count(central) == 2
    assert len(pending(workspace, server.url)) == 1  # the refused one stays pending, visibly


def test_a_failing_peer_s_text_is_not_repeated(workspace, ct_series, serve, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A proxy or platform answering 500 may quote what it choked on (here a patient's name and ID):
    the gateway says who answered what, never the answer's text; nothing is recorded as pushed."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    planted = "cannot file instance of ZEBEDIAH^QUIRINUS (PAT-ZQX-7731)"

    async def stow(request):  # type: ignore[no-untyped-def]
        await request.body()
        return PlainTextResponse(planted, status_code=500)

    peer = serve(Starlette(routes=[Route("/dicomweb/studies", stow, methods=["POST"])]))
    Ingestor(workspace, deidentify=True, workers=1).ingest_paths([ct_series(1)])
    with pytest.raises(NetworkError) as caught:
        push_instances(workspace, peer.url, token=TOKEN)
    message = str(caught.value)
    assert message.startswith(f"{peer.url} answered 500 Internal Server Error (") and "text/plain" in message
    assert "ZEBEDIAH" not in message and "PAT-ZQX" not in message
    assert len(pending(workspace, peer.url)) == 1
    # nobody listening: the socket's own words, no more
    from tests.server.conftest import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NetworkError) as refused:
        push_instances(workspace, closed, token=TOKEN)
    assert refused.value.message == f"cannot reach {closed}: ConnectionRefusedError: Connection refused"

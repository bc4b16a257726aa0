"""A PACS's errors quote what it holds: the patient's name and ID in its message, the study's original
UIDs in the URL that failed. What the gateway prints or keeps of a failed QIDO-RS search or WADO-RS
retrieve names the status and the kind of request, never those.

The PACS here is a small real HTTP server answering QIDO-RS as a PACS does and failing as one can."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

NAME, PATIENT_ID, BIRTH = "WOJCIECHOWSKA^GRAZYNA", "PX40417Q", "19480614"
STUDY = f"1.2.826.0.1.3680043.2.1125.{BIRTH}.1"
SERIES = f"{STUDY}.2"
INSTANCE = f"{STUDY}.2.3"
# what the PACS quotes in its error bodies
BODY = f"Cannot retrieve {NAME} (id {PATIENT_ID}, born {BIRTH}): storage area /var/pacs/{PATIENT_ID} offline"


def _uid(tag: str, value: str) -> dict[str, object]:
    return {tag: {"vr": "UI", "Value": [value]}}


class _Pacs(BaseHTTPRequestHandler):
    search_fails = False

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _answer(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if self.search_fails and path == "/studies":
            self._answer(400, BODY.encode(), "text/plain")
        elif path == "/studies":
            self._answer(200, json.dumps([_uid("0020000D", STUDY)]).encode(), "application/dicom+json")
        elif path == f"/studies/{STUDY}/series":
            self._answer(200, json.dumps([_uid("0020000E", SERIES)]).encode(), "application/dicom+json")
        elif path == f"/studies/{STUDY}/series/{SERIES}/instances":
            self._answer(200, json.dumps([_uid("00080018", INSTANCE)]).encode(), "application/dicom+json")
        else:  # WADO-RS: the retrieve fails, the message quoting the patient
            self._answer(500, BODY.encode(), "text/plain")


@pytest.fixture(params=[False, True], ids=["retrieve-fails", "search-fails"])
def pacs(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Pacs", (_Pacs,), {"search_fails": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _found(text: str) -> list[str]:
    flat = re.sub(r"[\s^,.\-_'/\\]+", "", text.lower())
    needles = ("WOJCIECHOWSKA", "GRAZYNA", PATIENT_ID, BIRTH)
    return [n for n in needles if n.lower() in flat]


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_a_failing_pacs_is_reported_without_its_patients_identifiers(
    workspace, pacs: str, as_json: bool
) -> None:  # type: ignore[no-untyped-def]
    from curata.cli import app

    args = ["gateway", "pull", "--dicomweb", pacs, "--match", f"PatientID={PATIENT_ID}"]
    res = CliRunner().invoke(app, [*args, "-w", str(workspace.root), *(["--json"] if as_json else [])])
    said = res.output + (str(res.exception) if res.exception else "")
    assert res.exit_code != 0, said  # the failure is reported...
    assert re.search(r"\b(400|500)\b", said), said  # ...with the PACS's status
    assert _found(said) == [], said  # ...and none of the patient's identifiers
    stored = b"".join(p.read_bytes() for p in Path(workspace.root).rglob("*") if p.is_file())
    assert _found(stored.decode("latin-1")) == []


@pytest.fixture
def failing_dimse_pacs() -> Iterator[str]:
    """A real DIMSE peer whose C-FIND fails with an Error Comment quoting the patient."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    def on_find(event: object) -> Iterator[tuple[Dataset, None]]:
        status = Dataset()
        status.Status = 0xC001
        status.ErrorComment = f"no access to {NAME} {PATIENT_ID}"[:64]
        yield status, None

    ae = AE(ae_title="PACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    try:
        yield f"PACS@127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_failing_dimse_find_is_reported_without_its_error_comment(
    workspace, failing_dimse_pacs: str
) -> None:  # type: ignore[no-untyped-def]
    from curata.cli import app

    args = ["gateway", "pull", "--from", failing_dimse_pacs, "--match", f"PatientID={PATIENT_ID}"]
    res = CliRunner().invoke(app, [*args, "-w", str(workspace.root), "--port", "0"])
    said = res.output + (str(res.exception) if res.exception else "")
    assert res.exit_code != 0 and "0xC001" in said, said
    assert _found(said) == [], said

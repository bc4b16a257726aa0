"""What a STOW-RS answer says about the parts it did not store (outside review, findings F3 and C2).

F3: the Failed SOP Sequence echoed each refused part's SOP Instance UID as sent, so a part whose
SOPInstanceUID held a name (``Thistlewood^Marigold``) put that name in the 409 body. Only values that
are valid UIDs are echoed now (and none that holds one of the part's own numbers); the item says
which part it is by its position. C2: a refused part carried a Failure Reason code and nothing else
(only an InputError had an ErrorComment): each failed item now gives its cause, sanitised as the
catalog's reason is, and a code that fits it (0xA700 out of resources, 0x0110 processing failure,
0xC000 cannot understand)."""

from __future__ import annotations

import io
import json
import tomllib
from typing import Any

import httpx
import pydicom
import pytest
import tomli_w

from curata.errors import CatalogError
from curata.server import create_app
from curata.workspace import Workspace
from tests.conftest import make_ct
from tests.server.test_dicomweb import TOKEN, _count, _stow

NAME, MRN, BORN = "Thistlewood^Marigold", "40917352", "19580214"
PLANTED = ("Thistlewood", "Marigold", MRN, BORN)
ROOT = "1.2.826.0.1.3680043.8.498"


def _raw(*, deidentified: bool = False, **attrs: Any) -> bytes:
    ds = make_ct(patient_id=MRN, patient_name=NAME, deidentified=deidentified)
    if not deidentified:
        ds.PatientBirthDate = BORN
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _failed(r: httpx.Response) -> list[dict[str, Any]]:
    return r.json()["00081198"]["Value"]


def _comment(item: dict[str, Any]) -> str:
    return str(item["00000902"]["Value"][0])


def _no_plant(r: httpx.Response) -> None:
    body = r.text + json.dumps(dict(r.headers))
    assert not [p for p in PLANTED if p in body], body


def test_a_name_in_the_sop_instance_uid_is_not_echoed(workspace, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(create_app(workspace, token=TOKEN, verified_deidentified=True))
    valid = f"{ROOT}.7.1"
    parts = [_raw(SOPInstanceUID=NAME), _raw(SOPInstanceUID=valid), _raw(SOPClassUID="Marigold^Thistlewood")]
    r = _stow(server.url, parts)
    assert r.status_code == 409, r.text
    _no_plant(r)
    first, second, third = _failed(r)
    # the part with a name for a UID: no Referenced SOP Instance UID, its class kept; its position
    # and its cause said
    assert "00081155" not in first and first["00081150"]["Value"] == ["1.2.840.10008.5.1.4.1.1.2"]
    assert first["00081197"]["Value"] == [0xC000]
    assert "part 1" in _comment(first) and "not marked de-identified" in _comment(first)
    # a valid UID is echoed, as PS3.18 has the item reference the instance
    assert second["00081155"]["Value"] == [valid] and "part 2" in _comment(second)
    # a SOP Class UID that is not one is left out as well
    assert "00081150" not in third and "part 3" in _comment(third)
    assert _count(workspace) == 0


def test_a_gateway_stores_an_object_with_a_name_for_a_uid_and_answers_its_new_uid(workspace, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(create_app(workspace, token=TOKEN))
    raw = _raw(SOPInstanceUID=NAME)
    for _ in range(2):  # the second time: present already
        r = _stow(server.url, [raw])
        assert r.status_code == 200, r.text
        _no_plant(r)
        assert pydicom.uid.UID(r.json()["00081199"]["Value"][0]["00081155"]["Value"][0]).is_valid


def test_a_refused_part_says_why_on_the_platform(workspace, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(create_app(workspace, token=TOKEN, verified_deidentified=True))
    marked = _raw(deidentified=True, PatientName=NAME)  # marked YES, the name kept
    r = _stow(server.url, [_raw(), marked])
    assert r.status_code == 409, r.text
    _no_plant(r)
    raw, liar = _failed(r)
    assert [raw["00081197"]["Value"], liar["00081197"]["Value"]] == [[0xC000], [0xC000]]
    assert "not marked de-identified" in _comment(raw) and "PatientIdentityRemoved" in _comment(raw)
    assert "PatientName" in _comment(liar) and "part 2" in _comment(liar)


def test_a_gateway_gate_refusal_says_why_and_echoes_no_uid_with_the_mrn(workspace, serve, tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = tmp_path / "site-profile.toml"
    profile.write_text('profile = "research"\n[options]\nretain_uids = true\n')
    cfg_path = workspace.root / "curata.toml"
    cfg = tomllib.loads(cfg_path.read_text())
    cfg["deid"]["config"] = str(profile)
    cfg_path.write_text(tomli_w.dumps(cfg))
    ws = Workspace.open(workspace.root)
    server = serve(create_app(ws, token=TOKEN))
    r = _stow(server.url, [_raw(SOPInstanceUID=f"{ROOT}.{MRN}.3")])
    assert r.status_code == 409, r.text
    _no_plant(r)  # the UID holds the MRN: not echoed
    (item,) = _failed(r)
    assert "00081155" not in item and item["00081197"]["Value"] == [0xC000]
    assert "final gate" in _comment(item) and "part 1" in _comment(item)
    assert _count(ws) == 0


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (CatalogError(f"database is locked while filing {NAME}"), 0xA700, "not stored"),
        (OSError(28, "No space left on device"), 0xA700, "not stored"),
        (RuntimeError(f"bug while reading {NAME} {MRN}"), 0x0110, "internal error (RuntimeError"),
    ],
)
def test_a_receiver_failure_has_the_code_of_its_cause_and_a_sanitised_reason(
    workspace, serve, error: BaseException, code: int, words: str
) -> None:  # type: ignore[no-untyped-def]
    app = create_app(workspace, token=TOKEN)
    server = serve(app)

    def fail(*_a: Any, **_k: Any) -> Any:
        raise error

    app.state.receiver.receive = fail
    r = _stow(server.url, [_raw()])
    assert r.status_code == 409, r.text
    _no_plant(r)
    (item,) = _failed(r)
    assert item["00081197"]["Value"] == [code]
    assert words in _comment(item), _comment(item)


def test_no_uid_holding_the_parts_own_numbers_is_echoed() -> None:
    """A UID holding an ID of the Other Patient IDs Sequence, a 5-digit PatientID, digits of the name or
    a six-digit form of the birth date is not echoed (outside review 17, F8); a clean one is."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset

    from curata.server.dicomweb import _Part

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = "55012", "Okafor^Ada^77123", "19470319"
    other = Dataset()
    other.PatientID = "MRN4471203"
    ds.OtherPatientIDsSequence = [other]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    part = _Part(buf.getvalue())
    for uid in ("1.2.840.4471203.5", "1.2.3.470319.1", "1.2.55012.9", "1.2.3.77123.4", "1.2.3.190347.2"):
        assert part.echoable(uid) == "", uid
    assert part.echoable("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"

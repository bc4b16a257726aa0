"""Who a read belongs to and who may touch a case, through the platform's routes (FastAPI's test client
on a real catalog): a read's author is the account that sent it, never a name inside the object; AI
drafts follow the project's ``show_drafts`` and only a case's readers (or its curators) draft it, a
bounded number at a time; the reading project's state is for its readers and curators; readers see
codes, not each other's account names; a report naming the patient (from the site's vault) is refused."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from curata import annotate
from tests.annotate.conftest import on_platform, truth

NAME = "ZEBEDEE^QUIMBY^ARCHIBALD"
MRN = "MRN8675309"


def _bearer(tokens: dict[str, str], user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[user]}"}


def _stow(client: TestClient, token: str, data: bytes) -> Any:
    from curata.collect.dicomweb import multipart

    body, ctype = multipart.encode([({}, data)])
    return client.post(
        "/projects/lab/dicomweb/studies",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": ctype},
    )


def _forged(ws: Any, task: Any, creator: str | None) -> bytes:
    """A SEG on ``task``'s series (a new object), with ``creator`` as its Content Creator's Name."""
    lm = np.zeros(annotate.series_grid(ws, task.series_uid).shape, np.uint16)
    lm[:, 0:3, 0:3] = 1
    ds = pydicom.dcmread(io.BytesIO(annotate.seg_for(ws, "livers", task.id, lm, reader=task.readers[0])))
    if creator is not None:
        ds.ContentCreatorName = creator
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_a_read_is_its_senders_never_the_name_inside_the_object(project: Any) -> None:
    """A member with no task on a case STOWs SEGs naming one of its readers (by reader code, and by
    account name); the curator's routine filing (and the agreement button) files neither as that
    reader's read. The reader's own SEG is filed as theirs."""
    from curata.server import create_app

    ws = project
    annotate.assign(ws, "livers")
    tokens = on_platform(ws, "livers")
    task = annotate.list_tasks(ws, "livers")[0]
    victim = task.readers[0]
    forger = next(u for u in ("ana", "bo", "chi") if u not in task.readers)
    with TestClient(create_app(ws), follow_redirects=False) as client:
        stowed = _stow(client, tokens[forger], _forged(ws, task, None))
        assert stowed.status_code == 200, stowed.text
        # a name as Content Creator (a reader code, an account): stored or refused at STOW, it
        # decides nothing (whose read it is comes from the signed-in sender alone)
        for creator in (annotate.reader_code(ws, victim), victim):
            assert _stow(client, tokens[forger], _forged(ws, task, creator)).status_code in (200, 409)
        assert annotate.visible_reads(ws, "livers", task.id, "dee", manager=True) == []
        filed = client.post("/projects/lab/annotate/livers/file", headers=_bearer(tokens, "dee"))
        assert filed.status_code == 200 and filed.json()["filed"] == 0, filed.text
        assert filed.json()["refused"]
        page = client.get("/ui/p/lab/reading/livers/", headers=_bearer(tokens, "dee")).text
        token = page.split('name="csrf-token" content="')[1].split('"')[0]
        client.post("/ui/p/lab/reading/livers/agreement", headers=_bearer(tokens, "dee"),
                    data={"csrf_token": token})  # fmt: skip
        assert annotate.visible_reads(ws, "livers", task.id, "dee", manager=True) == []
        # the reader's own SEG, whatever it names, is filed as theirs on arrival
        mine = _stow(client, tokens[victim], _forged(ws, task, None))
        assert mine.status_code == 200, mine.text
    reads = annotate.visible_reads(ws, "livers", task.id, "dee", manager=True)
    assert [(r.reader, r.source) for r in reads] == [(victim, "stow")]


def test_an_object_with_no_authenticated_sender_is_filed_as_nobodys(project: Any, tmp_path: Any) -> None:
    """A SEG that reached the catalog by another way than a signed-in user's STOW (a folder, the DICOM
    network) names its reader only inside itself: it is refused with that reason, never filed."""
    from curata.collect.ingest import Ingestor

    ws = project
    annotate.assign(ws, "livers")
    task = annotate.list_tasks(ws, "livers")[0]
    folder = tmp_path / "arrivals"
    folder.mkdir()
    (folder / "seg.dcm").write_bytes(annotate.seg_for(ws, "livers", task.id, truth(), reader=task.readers[0]))
    _, problems = Ingestor(ws, deidentify=False, workers=1, site="site-a").ingest_paths([folder])
    assert not problems
    result = annotate.file_new_objects(ws, "livers")
    assert result.filed == [] and len(result.refused) == 1
    assert "sender" in result.refused[0][1]


def test_reader_codes_are_keyed_by_the_workspace_secret(project: Any, tmp_path: Any) -> None:
    import hashlib

    from curata.workspace import Workspace

    ws = project
    unkeyed = f"READER-{int(hashlib.sha256(b'ana').hexdigest()[:10], 16) % 10**10:010d}"
    code = annotate.reader_code(ws, "ana")
    assert code.startswith("READER-") and code != unkeyed
    assert code == annotate.reader_code(ws, "ana") != annotate.reader_code(ws, "bo")
    other = Workspace.init(tmp_path / "other", site="elsewhere")
    assert annotate.reader_code(other, "ana") != code
    task = annotate.list_tasks(ws, "livers")[0]
    annotate.assign(ws, "livers")
    task = annotate.list_tasks(ws, "livers")[0]
    seg = pydicom.dcmread(io.BytesIO(annotate.seg_for(ws, "livers", task.id, truth(), reader="ana")))
    assert not str(seg.get("ContentCreatorName", "") or "")  # no name at all in a SEG (PS3.15: Z)


# -- AI drafts through the MONAI Label route ---------------------------------------------------------------


def _infer(client: TestClient, tokens: dict[str, str], user: str, image: str, output: str = "json") -> Any:
    return client.post(
        "/projects/lab/annotate/livers/monailabel/infer/body",
        params={"image": image, "output": output},
        headers=_bearer(tokens, user),
    )


def _drawable(ws: Any) -> None:
    """livers' schema with a label the classical ``body`` model draws."""
    from tests.annotate.conftest import LABELS

    body = {"name": "body", "value": 4, "code": "38266002", "meaning": "Entire body as a whole"}
    annotate.set_schema(ws, "livers", [*LABELS, body], "Outline the liver and every lesion.")


def _drafts(ws: Any, task_id: int) -> int:
    return sum(r.is_draft for r in annotate.visible_reads(ws, "livers", task_id, "dee", manager=True))


def _show_drafts(ws: Any) -> None:
    from curata.annotate.models import AnnotationProject

    with ws.catalog.session() as s:
        s.query(AnnotationProject).filter(AnnotationProject.name == "livers").one().show_drafts = True


def test_drafts_follow_show_drafts_and_only_a_cases_readers_draft_it(project: Any) -> None:
    from curata.server import create_app

    ws = project
    _drawable(ws)
    annotate.assign(ws, "livers")
    tokens = on_platform(ws, "livers")
    task = annotate.list_tasks(ws, "livers")[0]
    reader = task.readers[0]
    stranger = next(u for u in ("ana", "bo", "chi") if u not in task.readers)
    assert not annotate.show_project(ws, "livers").show_drafts
    with TestClient(create_app(ws), follow_redirects=False) as client:
        for output in ("json", "image", "dicom_seg"):  # drafts hidden: no reader gets one
            r = _infer(client, tokens, reader, task.series_uid, output)
            assert r.status_code == 403 and "draft" in r.text, (output, r.status_code)
        r = _infer(client, tokens, stranger, task.series_uid)  # no task on the case
        assert r.status_code == 403, r.text
        assert _drafts(ws, task.id) == 0
        assert _infer(client, tokens, "dee", task.series_uid).status_code == 200  # the curator
        assert _drafts(ws, task.id) == 1
        _show_drafts(ws)
        assert _infer(client, tokens, reader, task.series_uid).status_code == 200
        assert _infer(client, tokens, stranger, task.series_uid).status_code == 403
    assert _drafts(ws, task.id) == 2


def test_inference_is_bounded_per_user(project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One inference at a time per user, and at most ``INFER_PER_HOUR`` an hour; then 429."""
    from curata.annotate import router as annotate_router
    from curata.server import create_app

    ws = project
    _drawable(ws)
    annotate.assign(ws, "livers")
    tokens = on_platform(ws, "livers")
    task = annotate.list_tasks(ws, "livers")[0]
    monkeypatch.setattr(annotate_router, "INFER_PER_HOUR", 2)
    app = create_app(ws)
    with TestClient(app, follow_redirects=False) as client:
        annotate_router.running_inferences(app).add("dee")  # one of dee's already runs
        busy = _infer(client, tokens, "dee", task.series_uid)
        assert busy.status_code == 429 and "already" in busy.text
        annotate_router.running_inferences(app).discard("dee")
        codes = [_infer(client, tokens, "dee", task.series_uid) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429], codes[0].text
    assert _drafts(ws, task.id) == 2


# -- the reading project's state: its readers and curators only --------------------------------------------


def test_a_member_who_reads_nothing_here_sees_no_task_state(project: Any) -> None:
    """chi (a reviewer of the platform project) reads no task of ``organs``: its status, queue, MONAI
    Label datastore and active learning are refused; its readers get their own tasks only."""
    from curata.server import create_app

    ws = project
    annotate.create_project(ws, "organs", "ct")
    annotate.set_schema(
        ws, "organs", [{"name": "lesion", "value": 1, "code": "52988006", "meaning": "Lesion"}]
    )
    for name in ("ana", "bo"):
        annotate.add_reader(ws, "organs", name)
    annotate.create_tasks(ws, "organs")
    first = annotate.list_tasks(ws, "organs")[0]
    annotate.assign(ws, "organs", task_id=first.id, reader="ana")
    tokens = on_platform(ws, "organs")
    base = "/projects/lab/annotate/organs"
    with TestClient(create_app(ws), follow_redirects=False) as client:
        for method, path in (
            ("GET", "/status"),
            ("GET", "/queue"),
            ("GET", "/monailabel/datastore?output=all"),
            ("GET", "/monailabel/datastore"),
            ("POST", "/monailabel/activelearning/first"),
        ):
            r = client.request(method, base + path, headers=_bearer(tokens, "chi"))
            assert r.status_code == 403, (path, r.status_code)
            assert client.request(method, base + path, headers=_bearer(tokens, "dee")).status_code == 200
        mine = client.get(
            base + "/monailabel/datastore", params={"output": "all"}, headers=_bearer(tokens, "ana")
        )
        assert mine.status_code == 200
        assert list(mine.json()["objects"]) == [first.series_uid]
        nxt = client.post(base + "/monailabel/activelearning/random", headers=_bearer(tokens, "ana")).json()
        assert nxt["task"] == first.id
        # bo reads in the project but has no task yet: nothing to pick
        assert (
            client.post(base + "/monailabel/activelearning/first", headers=_bearer(tokens, "bo")).json() == {}
        )


def test_readers_see_a_code_for_their_co_reader_not_the_account(project: Any) -> None:
    from curata.server import create_app

    ws = project
    annotate.assign(ws, "livers")
    tokens = on_platform(ws, "livers")
    task = annotate.list_tasks(ws, "livers")[0]
    a, b = task.readers
    with TestClient(create_app(ws), follow_redirects=False) as client:
        queue = client.get("/projects/lab/annotate/livers/queue", headers=_bearer(tokens, a)).json()
        assert queue and all(b not in t["readers"] for t in queue)
        assert any(annotate.reader_code(ws, b) in t["readers"] for t in queue)
    for reader in (a, b):
        annotate.file_labelmap(ws, "livers", task.id, reader, truth(), source="edit")
        annotate.submit(ws, "livers", task.id, reader, seconds=5)
    annotate.write_report(ws, "livers", task.id, b, {"finding": "lesion present", "impression": "a lesion"})
    annotate.compute_agreement(ws, "livers")
    annotate.accept_review(ws, "livers", task.id, "dee")  # accepted: the reads are shown to both
    with TestClient(create_app(ws), follow_redirects=False) as client:
        reads = client.get(f"/projects/lab/annotate/livers/tasks/{task.id}/reads", headers=_bearer(tokens, a))
        assert {r["reader"] for r in reads.json() if not r["is_draft"]} == {a, annotate.reader_code(ws, b)}
        page = client.get(f"/ui/p/lab/reading/livers/tasks/{task.id}", headers=_bearer(tokens, a)).text
        assert f">{b}<" not in page and annotate.reader_code(ws, b) in page
        cur = client.get(f"/ui/p/lab/reading/livers/tasks/{task.id}", headers=_bearer(tokens, "dee")).text
        assert f">{b}<" in cur  # the curator, who assigns, sees the accounts


# -- reports naming the patient -----------------------------------------------------------------------------


def _seal_identity(ws: Any, task: Any) -> None:
    """What de-identification keeps of the task's patient in the site's vault (as the engine writes)."""
    from sqlalchemy import select

    from curata.catalog import Patient, Study
    from curata.collect.deid import Vault
    from curata.collect.deid.identities import SiteIdentities

    with ws.catalog.session() as s:
        pseudonym = s.scalar(
            select(Patient.pseudonym)
            .join(Study, Study.patient_id == Patient.id)
            .where(Study.study_uid == task.study_uid)
        )
    record = {"kind": "patient", "pseudonym": pseudonym, "patient_id": MRN, "patient_name": NAME}
    Vault(ws.vault_path, ws.site_key()).append([record])
    # and what the site's inputs said of the patient's care (staff, institution), sealed by the engine
    SiteIdentities(ws.vault_path, ws.site_key()).remember(
        {}, people=["FROBISHER^OTTO^DR"], institutions=["Tobermory Royal Infirmary"]
    )


@pytest.mark.parametrize(
    "impression",
    [
        "Zebedee Quimby: spiculated nodule right lower lobe",
        "Quimby, Zebedee: spiculated nodule",
        "ZEBEDEE QUIMBY ARCHIBALD spiculated nodule",
        "nodule, see MRN8675309",
        "nodule, see 8675309",
        "nodule, M R N 8 6 7 5 3 0 9",
        "Frobisher Otto: spiculated nodule",
        "seen at Tobermory Royal Infirmary",
    ],
)
def test_a_report_naming_the_patient_is_refused(project: Any, impression: str) -> None:
    from curata.server import create_app

    ws = project
    annotate.assign(ws, "livers")
    tokens = on_platform(ws, "livers")
    task = annotate.list_tasks(ws, "livers")[0]
    _seal_identity(ws, task)
    reader = task.readers[0]
    with TestClient(create_app(ws), follow_redirects=False) as client:
        r = client.post(
            f"/ui/p/lab/reading/livers/tasks/{task.id}/report",
            data={"f-finding": "lesion present", "f-impression": impression},
            headers=_bearer(tokens, reader),
        )
        assert r.status_code == 400 and "de-identification" in r.text, r.status_code
        ok = client.post(
            f"/ui/p/lab/reading/livers/tasks/{task.id}/report",
            data={
                "f-finding": "lesion present",
                "f-impression": "spiculated nodule, 12 mm, right lower lobe",
            },
            headers=_bearer(tokens, reader),
        )
        assert ok.status_code == 303
    assert [x["values"]["impression"] for x in annotate.reports_of(ws, "livers", task.id)] == [
        "spiculated nodule, 12 mm, right lower lobe"
    ]


def test_spaced_out_digits_fail_the_generic_check_where_no_identity_is_held() -> None:
    from curata.annotate._report import free_text_problems

    assert free_text_problems("M R N 8 6 7 5 3 0 9")
    assert free_text_problems("id 8-6-7-5-3-0-9")
    assert not free_text_problems("nodules of 8 and 6 mm, segments 5 to 7")
    assert not free_text_problems("spiculated nodule, 12 mm, right lower lobe")

"""AI pre-annotation through the MONAI-Label-compatible API over real HTTP (uvicorn): /info, /infer
returning a DICOM SEG draft, /datastore, /train (a MONAI UNet on accepted labels, recorded as
provenance), /activelearning; drafts stay hidden from blinded readers; a MONAI bundle from a folder."""

from __future__ import annotations

import io
import json

import highdicom as hd
import httpx
import numpy as np
import pydicom
import pytest

from curata import annotate
from tests.annotate.conftest import PASSWORD, on_platform, phantom_hu
from tests.server.conftest import ServerThread

ORGANS = [
    {
        "name": "lung",
        "value": 1,
        "code": "39607008",
        "meaning": "Lung",
        "colour": "#3377ff",
        "category": ["SCT", "123037004", "Anatomical Structure"],
    },
    {
        "name": "bone",
        "value": 2,
        "code": "272673000",
        "meaning": "Bone",
        "colour": "#eeeeee",
        "category": ["SCT", "123037004", "Anatomical Structure"],
    },
]


def _organ_truth() -> np.ndarray:
    hu = phantom_hu()
    out = np.zeros(hu.shape, np.uint16)
    out[hu == -850] = 1
    out[hu == 700] = 2
    return out


@pytest.fixture
def organs(project):  # type: ignore[no-untyped-def]
    ws = project
    annotate.create_project(ws, "organs", "ct")
    annotate.set_schema(ws, "organs", ORGANS)
    for name in ("ana", "bo"):
        annotate.add_reader(ws, "organs", name)
    annotate.add_reader(ws, "organs", "dee", adjudicator=True)
    annotate.create_tasks(ws, "organs")
    annotate.assign(ws, "organs")
    return ws


def test_monai_label_api_drafts_trains_and_samples(organs) -> None:  # type: ignore[no-untyped-def]
    from curata.catalog import Provenance
    from curata.server import create_app

    ws = organs
    tasks = annotate.list_tasks(ws, "organs")
    tokens = on_platform(ws, "organs")
    with ServerThread(create_app(ws, token="assist-token")) as server:
        # a MONAI Label client signs in as MONAI Label's own clients do (auth enabled -> password form
        # -> bearer token): the curator's own, short-lived API token; the gateway's shared token is refused
        base = f"{server.url}/projects/lab/annotate/organs/monailabel"
        assert httpx.get(f"{base}/auth/").json()["enabled"] is True
        wrong = httpx.post(f"{base}/auth/token", data={"username": "dee", "password": "not the password"})
        assert wrong.status_code == 401
        signed = httpx.post(f"{base}/auth/token", data={"username": "dee", "password": PASSWORD}).json()
        assert signed["token_type"] == "bearer" and signed["access_token"] != tokens["dee"]
        http = httpx.Client(headers={"Authorization": f"Bearer {signed['access_token']}"})
        assert http.get(f"{base}/auth/token/valid").json() == {"username": "dee", "roles": ["curator"]}
        shared = httpx.get(f"{base}/info/", headers={"Authorization": "Bearer assist-token"})
        assert shared.status_code == 401
        assert (
            httpx.get(f"{base}/info/", headers={"Authorization": f"Bearer {tokens['sam']}"}).status_code
            == 403
        )
        info = http.get(f"{base}/info/").json()
        assert set(info["models"]) >= {"body", "lungs", "bone"} and info["labels"] == {"lung": 1, "bone": 2}
        assert info["datastore"] == {"total": 3, "completed": 0}
        r = http.post(
            f"{base}/infer/lungs", params={"image": tasks[0].series_uid, "output": "dicom_seg"}, timeout=120
        )
        assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
        seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(r.content)))
        assert seg.ContentLabel == "DRAFT"
        desc = seg.SegmentSequence[0]
        assert desc.SegmentLabel == "lung" and desc.SegmentAlgorithmType == "AUTOMATIC"
        grid = annotate.series_grid(ws, tasks[0].series_uid)
        px = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(grid.sop_uids), segment_numbers=[1]
        )
        lungs = px[..., 0] > 0
        truth = _organ_truth() == 1
        assert 2 * (lungs & truth).sum() / (lungs.sum() + truth.sum()) > 0.8
        # the draft is a separate, marked object, stored beside the images: the curator finds it in
        # the project's DICOMweb with the metadata OHIF loads; blinded readers see it nowhere
        dw = f"{server.url}/projects/lab/dicomweb/studies/{tasks[0].study_uid}"
        found = http.get(f"{dw}/series", params={"Modality": "SEG"}).json()
        seg_series = [x["0020000E"]["Value"][0] for x in found]
        assert seg_series == [seg.SeriesInstanceUID]
        meta = http.get(f"{dw}/series/{seg_series[0]}/metadata").json()
        assert meta[0]["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.66.4"]
        assert meta[0]["00620002"]["Value"][0]["00620005"]["Value"] == ["lung"]  # segment label
        for reader in tasks[0].readers:
            assert all(not x.is_draft for x in annotate.visible_reads(ws, "organs", tasks[0].id, reader))
            mine = httpx.Client(headers={"Authorization": f"Bearer {tokens[reader]}"})
            assert mine.get(f"{dw}/series", params={"Modality": "SEG"}).json() in ([], None, "")
            assert mine.get(f"{dw}/series/{seg_series[0]}/metadata").status_code == 404
        assert any(x.is_draft for x in annotate.visible_reads(ws, "organs", tasks[0].id, "dee"))
        bone = http.post(
            f"{base}/infer/bone", params={"image": tasks[0].series_uid, "output": "json"}, timeout=120
        )
        assert bone.json()["labels"] == ["bone"]
        assert http.post(f"{base}/infer/nope", params={"image": tasks[0].series_uid}).status_code in (
            404,
            409,
        )

        # two cases read and accepted, one left open
        for t in tasks[:2]:
            for reader in t.readers:
                annotate.file_object(
                    ws, annotate.seg_for(ws, "organs", t.id, _organ_truth(), reader=reader), reader=reader
                )
                annotate.submit(ws, "organs", t.id, reader, seconds=10)
        for res in annotate.compute_agreement(ws, "organs"):
            annotate.accept_review(ws, "organs", res.task_id, "dee")
        assert http.get(f"{base}/datastore/").json()["completed"] == 2
        trained = http.post(f"{base}/train/unet", json={"max_epochs": 8}, timeout=300).json()
        assert trained["cases"] == 2 and trained["final_loss"] < trained["first_loss"]
        assert "unet" in http.get(f"{base}/info/").json()["models"]
        nxt = http.post(f"{base}/activelearning/uncertainty", timeout=120).json()
        assert nxt["id"] == tasks[2].series_uid
        unet = http.post(
            f"{base}/infer/unet", params={"image": tasks[2].series_uid, "output": "json"}, timeout=120
        )
        assert unet.status_code == 200
    with ws.catalog.session() as s:
        runs = [p for p in s.query(Provenance).filter(Provenance.step == "annotate.train")]
    assert len(runs) == 1 and runs[0].output["weights"] == trained["weights"] and len(runs[0].inputs) == 4
    per_model = annotate.draft_agreement(ws, "organs")
    assert per_model["lungs"]["dice_mean"] > 0.8


def test_a_monai_bundle_from_a_local_folder(organs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch
    from monai.networks.nets import UNet

    ws = organs
    folder = tmp_path / "tiny_bundle"
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    net_def = {
        "_target_": "monai.networks.nets.UNet",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "channels": [4, 8],
        "strides": [2],
        "num_res_units": 0,
    }
    (folder / "configs" / "inference.json").write_text(
        json.dumps({"network_def": net_def, "curata_input_size": [8, 24, 24]})
    )
    (folder / "configs" / "metadata.json").write_text(json.dumps({"name": "tiny", "labels": {"lung": 1}}))
    torch.manual_seed(0)
    net = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=0)
    torch.save(net.state_dict(), folder / "models" / "model.pt")
    name = annotate.register_bundle(ws, "organs", folder)
    t = annotate.list_tasks(ws, "organs")[0]
    draft = annotate.predict_draft(ws, "organs", t.id, name)
    assert draft.is_draft and draft.source == f"assist:{name}"
    assert annotate.read_labelmap(ws, draft.id).shape == annotate.series_grid(ws, t.series_uid).shape
    (folder / "models" / "model.pt").unlink()
    with pytest.raises(Exception, match="not a MONAI bundle"):
        annotate.register_bundle(ws, "organs", folder)


# -- one series that cannot be read stops neither training nor the picker ---------------------------------

NAME = "Okonkwo^Adaeze"  # written into a damaged blob: no reason may quote it


def _accept(ws, tasks) -> None:  # type: ignore[no-untyped-def]
    """Both readers of each task file the same label map, each case's its own (one blob per case)."""
    for n, t in enumerate(tasks):
        labels = _organ_truth()
        labels[0, 0, n] = 2
        for reader in t.readers:
            annotate.file_labelmap(ws, "organs", t.id, reader, labels, source="edit")
            annotate.submit(ws, "organs", t.id, reader, seconds=10)
    for res in annotate.compute_agreement(ws, "organs"):
        annotate.accept_review(ws, "organs", res.task_id, "dee")


def _damage_series(ws, series_uid: str, damage) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the stored blob of the series' second slice, damaged by ``damage`` (and naming a patient)."""
    from sqlalchemy import select

    from curata.catalog import Instance, Series

    with ws.catalog.session() as s:
        digests = s.scalars(
            select(Instance.blob_digest)
            .join(Series, Series.id == Instance.series_id)
            .where(Series.series_uid == series_uid)
            .order_by(Instance.id)
        ).all()
    path = ws.store.local_path(digests[1])
    ds = pydicom.dcmread(path)
    ds.PatientName = NAME
    damage(ds)
    path.chmod(0o644)
    ds.save_as(path, enforce_file_format=True)


def _clean(reason: str) -> bool:
    return "Okonkwo" not in reason and "Adaeze" not in reason and "/" not in reason


@pytest.mark.parametrize("damage", ["truncate_pixels", "garbage_jpeg2000"])
def test_training_skips_a_series_that_cannot_be_decoded(organs, damage: str) -> None:  # type: ignore[no-untyped-def]
    import tests.conftest
    from curata.catalog import Provenance

    ws = organs
    tasks = annotate.list_tasks(ws, "organs")
    _accept(ws, tasks)
    bad = tasks[1].series_uid
    _damage_series(ws, bad, getattr(tests.conftest, damage))
    run = annotate.train_model(ws, "organs", epochs=2)
    assert run["cases"] == 2
    ((skip),) = run["skipped"]
    assert skip["series_uid"] == bad and "cannot decode the pixel data of the series" in skip["reason"]
    assert _clean(skip["reason"]), skip["reason"]
    with ws.catalog.session() as s:
        (rec,) = s.query(Provenance).filter(Provenance.step == "annotate.train").all()
        assert rec.output["skipped"] == run["skipped"] and bad not in rec.inputs and len(rec.inputs) == 4


def test_training_records_unreadable_label_maps_and_refuses_when_nothing_is_left(organs) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from curata.cli import app
    from curata.errors import AnnotationError
    from tests.conftest import truncate_pixels

    ws = organs
    tasks = annotate.list_tasks(ws, "organs")
    _accept(ws, tasks)
    maps = {a["task"]: a["labelmap_digest"] for a in annotate.accepted_labels(ws, "organs")}
    ws.store.delete(maps[tasks[1].id])  # a blob gone
    path = ws.store.local_path(maps[tasks[2].id])
    path.chmod(0o644)
    path.write_bytes(b"PK\x03\x04 not a label map")  # a blob damaged
    out = CliRunner().invoke(app, ["annotate", "train", "organs", "--epochs", "2", "-w", str(ws.root)])
    assert out.exit_code == 1, out.output  # trained, and says what it left out
    assert "trained on 1 case(s)" in out.output and out.output.count("skipped series") == 2
    run = annotate.train_model(ws, "organs", epochs=2)
    reasons = {s["series_uid"]: s["reason"] for s in run["skipped"]}
    assert run["cases"] == 1 and set(reasons) == {tasks[1].series_uid, tasks[2].series_uid}
    assert "not in the store" in reasons[tasks[1].series_uid]
    assert "label map cannot be read" in reasons[tasks[2].series_uid]
    assert all(_clean(r) for r in reasons.values()), reasons
    _damage_series(ws, tasks[0].series_uid, truncate_pixels)
    with pytest.raises(AnnotationError, match="none of the 3 accepted case"):
        annotate.train_model(ws, "organs", epochs=2)
    out = CliRunner().invoke(app, ["annotate", "train", "organs", "--epochs", "2", "-w", str(ws.root)])
    assert isinstance(out.exception, AnnotationError) and out.exception.hint  # printed at the CLI's edge


def test_the_uncertainty_picker_scores_around_a_series_that_cannot_be_decoded(organs, caplog) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from curata.errors import AnnotationError
    from curata.server import create_app
    from tests.conftest import garbage_jpeg_lossless

    ws = organs
    tasks = annotate.list_tasks(ws, "organs")
    _accept(ws, tasks[:1])
    annotate.train_model(ws, "organs", epochs=2)
    bad, good = tasks[1], tasks[2]
    _damage_series(ws, bad.series_uid, garbage_jpeg_lossless)
    with caplog.at_level("WARNING", logger="curata.annotate"):
        pick = annotate.next_sample(ws, "organs", "uncertainty")
    assert pick["task"] == good.id
    ((skip),) = pick["skipped"]
    assert skip["task"] == bad.id and "cannot decode the pixel data of the series" in skip["reason"]
    assert (
        _clean(skip["reason"]) and f"task {bad.id} not scored" in caplog.text and "Okonkwo" not in caplog.text
    )
    prio = {t.id: t.priority for t in annotate.list_tasks(ws, "organs")}
    assert prio[bad.id] is None and isinstance(prio[good.id], float)  # unscored: read last
    tokens = on_platform(ws, "organs")
    with TestClient(create_app(ws)) as client:
        url = "/projects/lab/annotate/organs/monailabel/activelearning/uncertainty"
        r = client.post(url, headers={"Authorization": f"Bearer {tokens['dee']}"})
        assert r.status_code == 200 and r.json()["id"] == good.series_uid
        _damage_series(ws, good.series_uid, garbage_jpeg_lossless)
        r = client.post(url, headers={"Authorization": f"Bearer {tokens['dee']}"})
        assert r.status_code == 409 and "none of the 2 open case" in r.json()["detail"]
    with pytest.raises(AnnotationError, match="none of the 2 open case"):
        annotate.next_sample(ws, "organs", "uncertainty")


def test_draft_agreement_counts_a_draft_it_cannot_read(organs) -> None:  # type: ignore[no-untyped-def]
    ws = organs
    tasks = annotate.list_tasks(ws, "organs")[:2]
    _accept(ws, tasks)
    for t in tasks:
        annotate.predict_draft(ws, "organs", t.id, "lungs")
    (gone,) = [
        a["labelmap_digest"] for a in annotate.accepted_labels(ws, "organs") if a["task"] == tasks[1].id
    ]
    ws.store.delete(gone)  # the accepted label of the second case left the store
    (lungs,) = annotate.draft_agreement(ws, "organs").values()
    assert lungs["drafts_compared"] == 1 and lungs["unreadable"] == 1 and lungs["dice_mean"] > 0.8

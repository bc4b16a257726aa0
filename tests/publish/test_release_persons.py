"""Splits are per person: one pseudonym seen at two sites is one patient in one split, kept across every
version of a release, withdrawn everywhere; the catalog's split rows are checked against the manifest."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select, update

from curata.catalog.models import Patient
from curata.publish import create_release, verify_version, withdraw_patient
from curata.publish.manifest import Manifest
from curata.publish.models import ReleaseMember
from curata.publish.release import get_version
from tests.conftest import pseudonym_of
from tests.publish.conftest import populate

# P01 is seen at both sites (same PatientID, so the same pseudonym under the shared site key)
TWO_SITES = [
    ("P01", "F", 34, "site-a"),
    ("P02", "M", 45, "site-a"),
    ("P03", "F", 67, "site-a"),
    ("P04", "M", 71, "site-a"),
    ("P01", "F", 34, "site-b"),
    ("P07", "F", 63, "site-b"),
    ("P08", "M", 58, "site-b"),
]


def _splits(ws, ref: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        manifest = Manifest.from_bytes(ws.store.get_bytes(get_version(s, ref).manifest_digest))
    f = manifest.file("splits.json")
    assert f is not None
    return dict(json.loads(ws.store.get_bytes(f.sha256)))


def _card(ws, ref: str) -> str:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        manifest = Manifest.from_bytes(ws.store.get_bytes(get_version(s, ref).manifest_digest))
    f = manifest.file("card/README.md")
    assert f is not None
    return ws.store.get_bytes(f.sha256).decode()


def test_a_patient_seen_at_two_sites_is_one_patient_in_one_split(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    populate(workspace, tmp_path, TWO_SITES)
    p01 = pseudonym_of("P01")
    mixed = []
    for seed in range(8):
        result = create_release(workspace, f"r{seed}", formats="dicom", seed=seed)
        splits = _splits(workspace, result.ref)
        assert {k for k in splits if k.endswith(p01)} == {f"site-a/{p01}", f"site-b/{p01}"}
        if splits[f"site-a/{p01}"] != splits[f"site-b/{p01}"]:
            mixed.append(seed)
    assert mixed == []
    for seed in range(8):
        result = create_release(workspace, f"r{seed}", formats="dicom", seed=seed)
        assert not result.created
        assert result.patients == 6  # persons, not site records
        assert sum(result.splits.values()) == 6
        assert result.site_patients == {"site-a": 4, "site-b": 3}  # each site counts who it saw
    card = _card(workspace, "r0@1")
    assert "6 patients" in card and "<5 patients seen at 2 sites" in card  # a small cell (card.MIN_CELL)


def test_withdrawal_removes_the_person_at_every_site(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    populate(workspace, tmp_path, TWO_SITES)
    p01 = pseudonym_of("P01")
    create_release(workspace, "w", formats="dicom")
    result = withdraw_patient(workspace, "w", f"site-a/{p01}")
    assert result.ref == "w@2" and result.removed_series == 2 and result.patients == 5
    assert result.withdrawn_sites == ["site-a", "site-b"]
    assert not any(p01 in k for k in _splits(workspace, "w@2"))
    # later builds leave them out at both sites
    assert not any(p01 in k for k in _splits(workspace, create_release(workspace, "w2", formats="dicom").ref))
    # a bare pseudonym is accepted too (and changes nothing now)
    create_release(workspace, "x", formats="dicom")
    again = withdraw_patient(workspace, "x", p01)
    assert again.removed_series == 0 and again.withdrawn_sites == ["site-a", "site-b"]


def test_a_withdrawal_holds_for_a_site_that_sees_the_patient_later(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    populate(workspace, tmp_path / "a", [p for p in TWO_SITES if p[3] == "site-a"])
    p01 = pseudonym_of("P01")
    create_release(workspace, "late", formats="dicom")
    assert withdraw_patient(workspace, "late", p01).withdrawn_sites == ["site-a"]
    populate(workspace, tmp_path / "b", [p for p in TWO_SITES if p[3] == "site-b"])  # P01 again, at site-b
    result = create_release(workspace, "late", formats="dicom")
    assert result.patients == 5 and not any(p01 in k for k in _splits(workspace, result.ref))


def test_bare_pseudonym_known_at_two_sites_is_withdrawn_everywhere(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    populate(workspace, tmp_path, TWO_SITES)
    p01 = pseudonym_of("P01")
    create_release(workspace, "b", formats="dicom")
    result = withdraw_patient(workspace, "b", p01)
    assert result.removed_series == 2 and not any(p01 in k for k in _splits(workspace, result.ref))


def test_a_patient_keeps_their_split_after_dropping_out_of_a_version(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    populate(workspace, tmp_path, TWO_SITES)
    for seed in range(4):
        name = f"d{seed}"
        first = create_release(workspace, name, where="site = site-a", formats="dicom", seed=seed)
        create_release(workspace, name, where="site = site-b", formats="dicom", seed=seed)
        third = create_release(workspace, name, formats="dicom", seed=seed)
        assert third.ref == f"{name}@3"
        before, after = _splits(workspace, first.ref), _splits(workspace, third.ref)
        assert {k: after[k] for k in before} == before, seed


def test_edited_split_rows_fail_verify_and_are_not_carried(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    populate(workspace, tmp_path, TWO_SITES)
    first = create_release(workspace, "e", formats="dicom")
    assert verify_version(workspace, first.ref).verified
    original = _splits(workspace, first.ref)
    victim = pseudonym_of("P02")
    other = next(s for s in ("train", "validation", "test") if s != original[f"site-a/{victim}"])
    with workspace.catalog.session() as s:
        pid = s.scalar(select(Patient.id).where(Patient.pseudonym == victim))
        s.execute(update(ReleaseMember).where(ReleaseMember.patient_id == pid).values(split=other))
        s.commit()
    report = verify_version(workspace, first.ref)
    assert not report.verified
    assert any("split" in p and f"site-a/{victim}" in p for p in report.problems)
    nxt = withdraw_patient(workspace, "e", pseudonym_of("P03"))
    assert nxt.ref == "e@2"
    assert _splits(workspace, "e@2")[f"site-a/{victim}"] == original[f"site-a/{victim}"]
    grown = create_release(workspace, "e", formats="dicom", seed=3)
    assert _splits(workspace, grown.ref)[f"site-a/{victim}"] == original[f"site-a/{victim}"]


def test_the_small_cell_threshold_is_the_sites_setting(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``[publish] min_cell`` sets the card's threshold: 3 women and 3 men are hidden as <5 by default,
    shown under a threshold of 2; the default leaves a release's parameters (its identity) as they were."""
    from curata.workspace import Workspace

    populate(workspace, tmp_path, TWO_SITES)
    default = create_release(workspace, "cells", formats="dicom", seed=1)
    card = _card(workspace, default.ref)
    assert "Counts under 5 are shown as <5" in card and "| <5 |" in card
    with workspace.catalog.session() as s:
        assert "min_cell" not in get_version(s, default.ref).parameters
    (workspace.root / "curata.toml").write_text(
        (workspace.root / "curata.toml").read_text() + "\n[publish]\nmin_cell = 2\n"
    )
    ws2 = Workspace.open(workspace.root)
    assert ws2.min_cell() == 2
    low = create_release(ws2, "cells2", formats="dicom", seed=1)
    card = _card(ws2, low.ref)
    assert "Counts under 2 are shown as <2" in card and "| <5 |" not in card
    with ws2.catalog.session() as s:
        assert get_version(s, low.ref).parameters["min_cell"] == 2

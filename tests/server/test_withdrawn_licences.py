"""A consent withdrawal stops the versions it left behind from being handed out (export, grant, download,
cached zip), and carries their licensees to the new version; grants expire and are revoked; two
downloads of one copy at once do not spoil each other."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from curata.cli import app as cli_app
from curata.server.app import create_app


def _two_patient_release(p: Any) -> str:
    """``rel-w@1``: both sites' patients (PA at site-a, PB at site-b), in alpha, licensed to ``lic``."""
    from curata.publish import create_release
    from curata.select import create_cohort
    from curata.server import service

    create_cohort(p.ws, "both", "modality = CT")
    rel = create_release(p.ws, "rel-w", cohort="both", split="100,0,0")
    assert rel.ref == "rel-w@1" and rel.patients == 2
    service.add_resource(p.ws, "alpha", "release", "rel-w")
    service.grant_licence(p.ws, "lic", "alpha", rel.ref)
    return rel.ref


def _withdraw(p: Any) -> None:
    from sqlalchemy import select

    from curata.catalog import Patient, Site

    with p.ws.catalog.session() as s:
        pseudonym = s.scalar(
            select(Patient.pseudonym).join(Site, Patient.site_id == Site.id).where(Site.name == "site-b")
        )
    p.withdrawn = pseudonym
    out = CliRunner().invoke(
        cli_app, ["release", "withdraw", "rel-w", "--patient", f"site-b/{pseudonym}", "-w", str(p.ws.root)]
    )
    assert out.exit_code == 0, out.output
    assert "rel-w@2" in out.output


def test_a_withdrawal_stops_handing_out_the_version_it_left_behind(platform: Any, tmp_path: Path) -> None:
    from curata.server import service
    from curata.server.service import AccountError

    p = platform
    _two_patient_release(p)
    with TestClient(create_app(p.ws), follow_redirects=False) as c:
        lic = p.auth("lic")
        r = c.get("/ui/p/alpha/releases/rel-w@1/download", headers=lic)
        assert r.status_code == 200
        cached = list((p.ws.root / "exports").rglob("*.zip"))
        assert cached, "the download is cached"
        assert len(c.get("/projects/alpha/dicomweb/studies", headers=lic).json()) == 2

        _withdraw(p)
        # the licensee's DICOMweb view no longer shows the withdrawn patient (the old grant stays open
        # as the record; the new version is licensed in its place)
        qido = c.get("/projects/alpha/dicomweb/studies", headers=lic)
        assert qido.status_code == 200 and len(qido.json()) == 1
        assert p.withdrawn not in qido.text
        assert not list((p.ws.root / "exports").rglob("*.zip")), "the old version's cached zip is deleted"
        r = c.get("/ui/p/alpha/releases/rel-w@1/download", headers=lic)
        assert r.status_code == 410
        assert r.json()["detail"] == "rel-w@1 holds 1 patient withdrawn since; use rel-w@2"
        assert p.withdrawn not in r.text  # counts only
        # a zip put back in the cache (an old copy, a restore) is still never served
        for path in cached:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"stale")
        assert c.get("/ui/p/alpha/releases/rel-w@1/download", headers=lic).status_code == 410
        # the page tells the licensee, offers no download, and points at the new version, licensed to them
        r = c.get("/ui/p/alpha/releases/rel-w@1", headers=lic)
        assert r.status_code == 200 and 'id="superseded"' in r.text and 'id="download"' not in r.text
        assert "use rel-w@2" in r.text and "licensed to you in its place" in r.text
        assert "rel-w@2" in {g.label for g in service.licences_of(p.ws, _uid(p, "lic"), "alpha")}
        r = c.get("/ui/p/alpha/releases/rel-w@2/download", headers=lic)
        assert r.status_code == 200
        with zipfile.ZipFile(Path(_zip_of(p, "rel-w@2"))) as zf:
            assert zf.namelist()
    # no new grant or export of the old version either
    with pytest.raises(AccountError, match=r"rel-w@1 holds 1 patient withdrawn since; use rel-w@2"):
        service.grant_licence(p.ws, "rev", "alpha", "rel-w@1")
    target = tmp_path / "copy"
    out = CliRunner().invoke(
        cli_app, ["release", "export", "rel-w@1", str(target), "--licensee", "X", "-w", str(p.ws.root)]
    )
    assert out.exit_code != 0 and "use rel-w@2" in str(out.exception) and not target.exists()
    actions = [e.action for e in service.audit_events(p.ws)]
    assert "download-refused" in actions and "licence-carried" in actions and "download-purged" in actions


def _uid(p: Any, name: str) -> int:
    from sqlalchemy import select

    from curata.server.models import User

    with p.ws.catalog.session() as s:
        return int(s.scalar(select(User.id).where(User.username == name)))  # type: ignore[arg-type]


def _zip_of(p: Any, ref: str) -> Path:
    (found,) = (p.ws.root / "exports" / ref).glob("*.zip")
    return found


def test_the_cache_is_checked_before_it_is_served(platform: Any) -> None:
    from curata.publish.release import ReleaseError
    from curata.server.web import downloads

    p = platform
    _two_patient_release(p)
    first = downloads.licensee_zip(p.ws, "rel-w@1", "lic")
    _withdraw(p)
    first.parent.mkdir(parents=True, exist_ok=True)
    first.write_bytes(b"stale")
    with pytest.raises(ReleaseError, match="use rel-w@2"):
        downloads.licensee_zip(p.ws, "rel-w@1", "lic")


def test_two_downloads_of_one_copy_at_once(platform: Any) -> None:
    """The second request waits for the first one's copy instead of exporting over its half-written
    folder: one export, two complete zips (the same file)."""
    import curata.publish as publish
    from curata.server.web import downloads

    p = platform
    _two_patient_release(p)
    real = publish.export_release
    calls: list[int] = []
    first_in, second_in = threading.Event(), threading.Event()

    def racing(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # the first waits until the second request is exporting too (or 3 s)
            first_in.set()
            second_in.wait(3)
        else:
            second_in.set()
        return real(*args, **kw)

    results: list[Any] = []

    def fetch() -> None:
        try:
            results.append(downloads.licensee_zip(p.ws, "rel-w@1", "lic"))
        except Exception as exc:
            results.append(exc)

    publish.export_release = racing  # type: ignore[attr-defined]
    try:
        a = threading.Thread(target=fetch)
        a.start()
        assert first_in.wait(30)
        b = threading.Thread(target=fetch)
        b.start()
        a.join(120)
        b.join(120)
    finally:
        publish.export_release = real  # type: ignore[attr-defined]
    assert len(results) == 2 and all(isinstance(r, Path) for r in results), results
    assert results[0] == results[1] and len(calls) == 1
    with zipfile.ZipFile(results[0]) as zf:
        assert zf.testzip() is None and "verify_release.py" in zf.namelist()


def test_a_carried_grant_an_admin_revoked_stays_revoked(platform: Any) -> None:
    """Carrying grants again (another withdrawal, a re-run) does not reopen a grant of the new version
    that an admin revoked (outside review 17, F9)."""
    from curata.server import service

    p = platform
    _two_patient_release(p)
    _withdraw(p)
    uid = _uid(p, "lic")
    assert "rel-w@2" in {g.label for g in service.licences_of(p.ws, uid, "alpha")}
    service.revoke_licence(p.ws, "lic", "alpha", "rel-w@2")
    assert "rel-w@2" not in {g.label for g in service.licences_of(p.ws, uid, "alpha")}
    service.carry_grants(p.ws)
    assert "rel-w@2" not in {g.label for g in service.licences_of(p.ws, uid, "alpha")}

"""Gateway -> central for clinical tables and VCFs: the same guarantees as the DICOM push.

A real gateway workspace watches a drop folder (CT images, a CSV export with its mapping, a FHIR NDJSON
bulk export, a VCF, identifiers planted everywhere), pushes images and clinical data over HTTPS with a
token to a real running central server, and a cohort query at central joins them. Interrupted pushes
resume without duplicates; a tampered part is refused; a batch whose patient key is not a pseudonym is
quarantined and nothing planted reaches central.
"""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from curata.catalog import Patient, QuarantineItem, Series, Study
from curata.cli import app
from curata.collect.clinical import (
    MANIFEST_TYPE,
    OMOP,
    Batch,
    clinical_source,
    deidentified_batch,
    file_deidentified_batch,
    filed_inputs,
)
from curata.collect.clinical.deid import ClinicalDeidentifier
from curata.collect.clinical.exchange import content_digest, decode
from curata.collect.dicomweb import multipart_encode
from curata.collect.genomics import bgzip, genomic_file, genomic_variant
from curata.collect.net.push import pending_clinical, push_clinical
from curata.errors import NetworkError
from curata.select import series_select
from curata.server import create_app
from curata.workspace import Workspace
from tests.collect.clinical._fixtures import (
    PATIENT,
    csv_row,
    fhir_resources,
    survivors,
    vcf_text,
    write_csv,
    write_ndjson,
)
from tests.conftest import make_ct

TOKEN = "platform-token"
OTHER = "MRN-55555"  # a second patient: stage IV, C34.9, no VCF
COHORT = (
    "modality = CT and clinical.condition = 'lung adenocarcinoma' and clinical.stage in (III, IV) "
    "and genomic.gene = EGFR and genomic.consequence = missense_variant"
)


def _count(ws: Workspace, table: Any) -> int:
    """Rows of a catalog table; of a clinical table, wherever they live (Parquet in the store, or SQL)."""
    from curata.collect.clinical import INDEXED, clinical_rows

    with ws.catalog.session() as s:
        if getattr(table, "name", None) in INDEXED:
            return len(clinical_rows(s, ws.store, table.name))
        return int(s.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def _drop(root: Path) -> Path:
    """What the site's systems leave in the gateway's drop folder: CTs, a CSV, FHIR NDJSON, a VCF."""
    drop = root / "drop"
    make_ct(drop / "ct" / "a.dcm", patient_id=PATIENT["mrn"], patient_name="Okonkwo-Bello^Adaeze")
    make_ct(drop / "ct" / "b.dcm", patient_id=OTHER, patient_name="Bakare^Tunde")
    note = "Seen by Dr. Musa Danjuma on 2024-02-20; Tunde reports cough"  # (no other patient's name)
    other = csv_row(mrn=OTHER, patient_name="Tunde Bakare", stage="IV", icd10="C34.9", notes=note)
    write_csv(drop / "his" / "dx.csv", [csv_row(), other])
    write_ndjson(drop / "fhir" / "Patient.ndjson", fhir_resources()[:1])
    write_ndjson(drop / "fhir" / "Clinical.ndjson", fhir_resources()[1:])
    (drop / "lab").mkdir()
    (drop / "lab" / "case.vcf").write_text(vcf_text(sample=PATIENT["mrn"]))
    return drop


@pytest.fixture
def site(workspace: Workspace, tmp_path: Path, serve: Any, tls_files: tuple[Path, Path]) -> Any:
    """A gateway that watched its drop folder once, and a running central platform over HTTPS."""
    drop = _drop(tmp_path)
    watched = CliRunner().invoke(
        app,
        ["gateway", "watch", str(drop), "--once", "--interval", "0.2", "--json", "-w", str(workspace.root)],
    )
    assert watched.exit_code == 0, watched.output
    central = Workspace.init(tmp_path / "central", site="platform")
    cert, key = tls_files
    server = serve(create_app(central, token=TOKEN, verified_deidentified=True), certfile=cert, keyfile=key)
    return workspace, central, server.url, cert


def _push(gateway: Workspace, url: str, cert: Path) -> dict[str, Any]:
    result = CliRunner().invoke(
        app,
        ["gateway", "push", "--to", url, "--token", TOKEN, "--ca-cert", str(cert), "--json",
         "-w", str(gateway.root)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout[result.stdout.index("{") :]))


def test_push_delivers_clinical_and_genomic_data_linked_to_the_images(site: Any) -> None:
    gateway, central, url, cert = site
    inputs = filed_inputs(gateway)
    assert sorted(i.kind for i in inputs) == ["csv", "fhir", "fhir", "vcf"]

    first = _push(gateway, url, cert)
    assert (first["pushed"], first["clinical_pushed"], first["failed"]) == (2, 4, 0), first
    # the gateway's key made the pseudonyms; central files them as they came (its own key is another)
    with central.catalog.session() as s:
        by_pseudonym = dict(
            s.execute(
                sa.select(Patient.pseudonym, Series.id).select_from(Patient).join(Study).join(Series)
            ).all()
        )
        gateway_pseudonyms = {
            p: ClinicalDeidentifier(gateway.site_key()).patient(p).pseudonym for p in (PATIENT["mrn"], OTHER)
        }
        a, b = (by_pseudonym[gateway_pseudonyms[p]] for p in (PATIENT["mrn"], OTHER))
        persons = set(s.scalars(sa.select(OMOP["person"].c.pseudonym)))

        def cohort(query: str) -> set[int]:
            return set(s.scalars(series_select(query)))

        assert persons == set(gateway_pseudonyms.values())
        assert cohort(COHORT) == {a}
        assert cohort("modality = CT and clinical.condition_code = 'C34.9'") == {b}
        assert cohort("modality = CT and clinical.stage in (III, IV)") == {a, b}
        assert cohort("modality = CT and genomic.hgvs = 'p.Leu858Arg'") == {a}
        assert cohort("modality = CT and not genomic.sequenced") == {b}
        assert cohort("modality = CT and clinical.procedure = '173171007'") == {a}  # from FHIR
    for table in ("condition_occurrence", "measurement", "specimen", "procedure_occurrence"):
        assert _count(central, OMOP[table]) == _count(gateway, OMOP[table]) > 0, table
    assert _count(central, genomic_variant) == _count(gateway, genomic_variant) == 2
    assert survivors(central) == []  # nothing planted at the site reached central
    # a second run sends nothing; central holds one of everything
    again = _push(gateway, url, cert)
    assert (again["pushed"], again["clinical_pushed"], again["clinical_already"]) == (0, 0, 4), again
    assert _count(central, clinical_source) == 3 and _count(central, genomic_file) == 1


def test_a_site_with_its_own_pseudonym_prefix_links_its_clinical_data_to_its_images(
    workspace: Workspace, tmp_path: Path, serve: Any, tls_files: tuple[Path, Path]
) -> None:
    """A site that set its profile's ``pseudonym_prefix`` gives its CSV rows, FHIR resources and VCF
    samples the pseudonym of its images (they had CUR-, its images HOSPA_: no cohort linked them). A
    platform files them once told the prefix (``[deid] site_prefixes``), and refuses them before."""
    import tomllib

    import tomli_w

    profile = tmp_path / "site-profile.toml"
    profile.write_text('profile = "research"\npseudonym_prefix = "HOSPA_"\n')
    cfg_path = workspace.root / "curata.toml"
    cfg = tomllib.loads(cfg_path.read_text())
    cfg["deid"]["config"] = str(profile)
    cfg_path.write_text(tomli_w.dumps(cfg))
    gateway = Workspace.open(workspace.root)
    watched = CliRunner().invoke(
        app,
        ["gateway", "watch", str(_drop(tmp_path)), "--once", "--interval", "0.2", "--json",
         "-w", str(gateway.root)],
    )  # fmt: skip
    assert watched.exit_code == 0, watched.output
    central = Workspace.init(tmp_path / "central", site="platform")
    cert, key = tls_files
    server = serve(create_app(central, token=TOKEN, verified_deidentified=True), certfile=cert, keyfile=key)
    refused = CliRunner().invoke(
        app,
        ["gateway", "push", "--to", server.url, "--token", TOKEN, "--ca-cert", str(cert), "--json",
         "-w", str(gateway.root)],
    )  # fmt: skip
    assert refused.exit_code != 0 and "not a pseudonym of this platform" in refused.output, refused.output
    assert _count(central, Patient) == 0 and _count(central, OMOP["person"]) == 0
    with central.catalog.session() as s:
        reasons = list(s.scalars(sa.select(QuarantineItem.reason)))
    assert reasons and all("HOSPA" not in r for r in reasons), reasons
    server.__exit__()
    told = tomllib.loads((central.root / "curata.toml").read_text())
    told["deid"]["site_prefixes"] = ["HOSPA_"]
    (central.root / "curata.toml").write_text(tomli_w.dumps(told))
    central = Workspace.open(central.root)
    server = serve(create_app(central, token=TOKEN, verified_deidentified=True), certfile=cert, keyfile=key)
    pushed = _push(gateway, server.url, cert)
    assert (pushed["pushed"], pushed["clinical_pushed"], pushed["failed"]) == (2, 4, 0), pushed
    with central.catalog.session() as s:
        images = set(s.scalars(sa.select(Patient.pseudonym)))
        persons = set(s.scalars(sa.select(OMOP["person"].c.pseudonym)))
        assert len(images) == 2 and all(p.startswith("HOSPA_") for p in images), images
        assert persons == images
        # images, clinical rows and variants linked: the cohort finds the one patient's CT
        assert len(set(s.scalars(series_select(COHORT)))) == 1
    files = _rows_of(central, genomic_file)
    assert len(files) == 1 and files[0]["samples"][0] in images
    assert survivors(central) == []


def _rows_of(ws: Workspace, table: Any) -> list[dict[str, Any]]:
    with ws.catalog.session() as s:
        return [dict(r._mapping) for r in s.execute(sa.select(table))]


def test_an_interrupted_push_resumes_without_duplicates(site: Any) -> None:
    gateway, central, url, cert = site
    cable = {"requests": 2}

    class PulledCable(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if cable["requests"] == 0:
                raise httpx.ConnectError("connection reset", request=request)
            cable["requests"] -= 1
            return super().handle_request(request)

    ctx = ssl.create_default_context(cafile=str(cert))
    with (
        httpx.Client(transport=PulledCable(verify=ctx)) as client,
        pytest.raises(NetworkError, match="reach"),
    ):
        push_clinical(gateway, url, token=TOKEN, batch=1, client=client)
    assert len(pending_clinical(gateway, url)) == 2  # two delivered and recorded, two to go
    assert _count(central, clinical_source) + _count(central, genomic_file) == 2
    rest = push_clinical(gateway, url, token=TOKEN, verify=str(cert))
    assert (rest.counts["pushed"], rest.counts["already"], rest.counts["failed"]) == (2, 2, 0)
    rows = {t: _count(central, OMOP[t]) for t in ("condition_occurrence", "measurement", "person")}
    # the platform filed everything but its answers were lost: the gateway sends all again, no doubles
    from curata.collect.net.models import GatewayPush

    with gateway.catalog.session() as s:
        s.execute(sa.delete(GatewayPush))
    lost = push_clinical(gateway, url, token=TOKEN, verify=str(cert))
    assert (lost.counts["pushed"], lost.counts["failed"]) == (4, 0)
    assert {t: _count(central, OMOP[t]) for t in rows} == rows
    assert _count(central, clinical_source) == 3 and _count(central, genomic_file) == 1
    assert _count(central, genomic_variant) == 2


def _lower(parts: list[tuple[dict[str, str], bytes]]) -> list[tuple[dict[str, str], bytes]]:
    """Parts as the server's multipart decoder hands them on (header names in lower case)."""
    return [({k.lower(): v for k, v in h.items()}, body) for h, body in parts]


def _post(
    url: str, cert: Path, parts: list[tuple[dict[str, str], bytes]], token: str = TOKEN
) -> httpx.Response:
    body, ctype = multipart_encode(parts, MANIFEST_TYPE)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": ctype}
    ctx = ssl.create_default_context(cafile=str(cert))
    return httpx.post(f"{url}/clinical/batches", content=body, headers=headers, verify=ctx, timeout=60)


def test_a_tampered_part_is_refused_and_sent_again_intact(site: Any) -> None:
    gateway, central, url, cert = site
    csv = next(i for i in filed_inputs(gateway) if i.kind == "csv")
    parts = deidentified_batch(gateway, csv).parts()
    headers, body = parts[1]  # a table: one byte changed on the way, its Content-Digest kept
    tampered = [parts[0], (headers, body[:-9] + bytes([body[-9] ^ 1]) + body[-8:]), *parts[2:]]
    r = _post(url, cert, tampered)
    assert r.status_code == 409
    (answer,) = r.json()["batches"]
    assert answer["status"] == "refused" and "Content-Digest does not match" in answer["reason"]
    assert _count(central, clinical_source) == 0 and _count(central, OMOP["person"]) == 0
    assert _count(central, QuarantineItem) == 0  # damaged on the way, not identified: nothing kept
    # a manifest whose own digest does not match is refused too
    bad_manifest = [({**parts[0][0], "Content-Digest": "sha-256=:" + base64.b64encode(b"x" * 32).decode() + ":"},
                     parts[0][1]), *parts[1:]]  # fmt: skip
    assert _post(url, cert, bad_manifest).json()["batches"][0]["status"] == "refused"
    assert _post(url, cert, parts, token="wrong").status_code == 401
    intact = _post(url, cert, parts)
    assert intact.status_code == 200 and intact.json()["batches"][0]["status"] == "filed"
    assert _post(url, cert, parts).json()["batches"][0]["status"] == "present"  # idempotent
    assert _count(central, clinical_source) == 1


def test_a_batch_with_an_unpseudonymised_patient_is_quarantined_and_nothing_planted_arrives(
    site: Any,
) -> None:
    gateway, central, url, cert = site
    # a gateway that (wrongly) holds an identified patient ID in its clinical rows
    person = OMOP["person"]
    pseudonym = ClinicalDeidentifier(gateway.site_key()).patient(OTHER).pseudonym
    with gateway.catalog.session() as s:
        s.execute(sa.update(person).where(person.c.pseudonym == pseudonym).values(pseudonym=PATIENT["mrn"]))
    result = push_clinical(gateway, url, token=TOKEN, verify=str(cert))
    assert (result.counts["pushed"], result.counts["failed"]) == (3, 1)  # the FHIR files and the VCF go on
    (error,) = result.extra["errors"]
    assert "quarantined" in error and "not a pseudonym" in error and PATIENT["mrn"] not in error
    assert [i.kind for i in pending_clinical(gateway, url)] == ["csv"]  # stays pending, visibly
    # the command says so, exits 1, and names the input by its digest only
    cli = CliRunner().invoke(
        app,
        ["gateway", "push", "--to", url, "--token", TOKEN, "--ca-cert", str(cert), "-w", str(gateway.root)],
    )
    assert cli.exit_code == 1 and "not a pseudonym" in cli.output and "sha256:" in cli.output
    assert PATIENT["mrn"] not in cli.output and TOKEN not in cli.output
    with central.catalog.session() as s:
        (reason,) = s.scalars(sa.select(QuarantineItem.reason))
    assert "row" in reason and PATIENT["mrn"] not in reason
    assert survivors(central) == []


def test_central_refuses_identified_vcfs_text_and_columns(site: Any) -> None:
    gateway, central, _url, _cert = site
    name = "ab" * 32
    raw_vcf = bgzip(vcf_text(sample=PATIENT["mrn"]).encode())  # never de-identified: MRN as the sample
    out = file_deidentified_batch(central, Batch(name, "vcf", vcf=raw_vcf, raw={"vcf": raw_vcf}))
    assert out.status == "quarantined" and "not a pseudonym" in (out.reason or "")
    sample = ClinicalDeidentifier(gateway.site_key()).patient(PATIENT["mrn"]).pseudonym
    planted = bgzip(vcf_text(sample=sample).encode())  # a pseudonym, but the header as the lab wrote it
    out = file_deidentified_batch(central, Batch("cd" * 32, "vcf", vcf=planted, raw={"vcf": planted}))
    assert out.status == "quarantined" and "VCF header line 2" in (out.reason or ""), out
    csv = next(i for i in filed_inputs(gateway) if i.kind == "csv")
    good = deidentified_batch(gateway, csv)
    cond = good.tables["condition_occurrence"]
    noted = cond.set_column(cond.column_names.index("note"), "note", pa.array(["call +234 803 555 0199"] * 2))
    extra = cond.append_column("patient_name", pa.array([PATIENT["name"]] * 2))
    coded = cond.set_column(
        cond.column_names.index("condition_source_value"),
        "condition_source_value",
        pa.array(["C34.1", "Tunde"]),
    )
    systemed = cond.set_column(
        cond.column_names.index("source_system"), "source_system", pa.array(["ICD10", "ICD10 MRN 77123"])
    )
    cases = [
        (noted, "looks like an identifier"),
        (systemed, "row 2: source_system is not a code system"),
        (extra, "not one the format carries"),
        (coded, "row 2: condition_source_value is not a ICD10 code"),
    ]
    for i, (table, why) in enumerate(cases):
        batch = Batch(f"{i:064x}", "csv", tables={**good.tables, "condition_occurrence": table})
        out = file_deidentified_batch(central, batch)
        assert out.status == "quarantined" and why in (out.reason or ""), out
    # a manifest that misstates a table's rows (its digest recomputed, so it arrives intact)
    parts = _lower(good.parts())
    manifest = json.loads(parts[0][1])
    manifest["parts"][0]["rows"] += 1
    head = json.dumps(manifest).encode()
    (lied,), refused = decode([({"content-type": MANIFEST_TYPE, "content-digest": content_digest(head)}, head),
                               *parts[1:]])  # fmt: skip
    assert not refused
    out = file_deidentified_batch(central, lied)
    assert out.status == "quarantined" and "declared rows" in (out.reason or ""), out
    assert _count(central, clinical_source) + _count(central, genomic_file) == 0
    assert survivors(central) == []


def test_central_files_pushed_batches_for_cohorts_on_both_engines(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """The platform's filing (file_deidentified_batch) on SQLite and PostgreSQL (COPY): the batches of a
    gateway (SQLite) and its de-identified images, then the cohort query at central."""
    from curata.catalog import Instance
    from curata.collect.ingest import Ingestor

    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([_drop(tmp_path)])
    assert not problems, [p.reason for p in problems]
    batches = [deidentified_batch(workspace, item) for item in filed_inputs(workspace)]
    with workspace.catalog.session() as s:
        images = [workspace.store.get_bytes(d) for d in s.scalars(sa.select(Instance.blob_digest))]
    monkeypatch.setenv("CURATA_DATABASE_URL", database_url)
    central = Workspace.init(tmp_path / "central", site="platform")
    receiver = Ingestor(central, deidentify=False, workers=1)  # what STOW at central does
    assert {receiver.ingest_bytes(raw, "stow").status for raw in images} == {"ingested"}
    for sent in batches:  # through the wire format, as the route reads it
        (got,), refused = decode(_lower(sent.parts()))
        assert not refused
        assert file_deidentified_batch(central, got).status == "filed"
        assert file_deidentified_batch(central, got).status == "present"
    with central.catalog.session() as s:
        matched = list(s.scalars(series_select(COHORT)))
        pseudonyms = set(
            s.scalars(sa.select(Patient.pseudonym).join(Study).join(Series).where(Series.id.in_(matched)))
        )
    assert pseudonyms == {ClinicalDeidentifier(workspace.site_key()).patient(PATIENT["mrn"]).pseudonym}
    assert _count(central, OMOP["observation_period"]) == 2  # derived at central from the events
    central.catalog.dispose()


GIVEN = ("Chinwe", "Obinna", "Ngozi", "Emeka", "Amarachi", "Ikenna", "Uchenna", "Adanna")
FAMILY = ("Nwachukwu", "Okafor", "Ibekwe", "Onyekachi", "Anyanwu", "Ezeoke", "Mbakwe", "Olisaemeka")


def _demo_hospitals(root: Path, per_site: int = 4) -> tuple[Any, list[str]]:
    """Two demo hospitals (a CSV site, a FHIR site) as the demo generator describes them, a CT per
    patient in each drop folder; returns the manifest and every planted identifier."""
    from types import SimpleNamespace

    sites = [SimpleNamespace(name=f"hosp{i}", folder=f"hosp{i}", institution=f"Hospital {i}") for i in (0, 1)]
    patients, needles = [], []
    for s_i, site in enumerate(sites):
        for n in range(per_site):
            i = s_i * per_site + n
            idt = {"patient_id": f"H{s_i}-{40117 + i}", "issuer": f"{site.institution} MPI", "given": GIVEN[i],
                   "family": FAMILY[i], "birth_date": f"1958-0{n + 1}-1{i}", "sex": "F" if i % 2 else "M",
                   "street": f"{12 + i} Aba Road", "city": "Umuahia", "postal_code": "440001",
                   "phone": f"+234 803 41{i} 77{i}{s_i}", "other_ids": [f"NHIS{s_i}{i}900551"],
                   "staff": {"referring": "Ogbonna^Kelechi"}, "study_dates": ["2024-03-01"]}  # fmt: skip
            patients.append(SimpleNamespace(site=site.name, key=f"{site.name}-{n}", identity=idt))
            needles += [idt["patient_id"], idt["given"], idt["family"], idt["phone"], idt["street"]]
            needles += [idt["other_ids"][0], idt["birth_date"]]
            ds = make_ct(patient_id=idt["patient_id"], patient_name=f"{idt['family']}^{idt['given']}")
            ds.IssuerOfPatientID = idt["issuer"]
            path = root / site.folder / "ct" / f"{n}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
    return SimpleNamespace(sites=sites, patients=patients), [*needles, "Ogbonna", "Kelechi"]


def test_two_demo_hospitals_push_to_one_platform_and_the_cohort_finds_their_patients(
    tmp_path: Path, serve: Any, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo generator's exports (a CSV hospital, a FHIR hospital, VCFs for half the patients), each
    watched and pushed by its own gateway with its own key; the demo's cohort query at central finds
    exactly the patients the truth says, and none of the planted identifiers is there."""
    from curata.demo.clinical import COHORT_QUERY, expected_cohort, write_clinical_exports

    monkeypatch.delenv("CURATA_DATABASE_URL", raising=False)
    export = tmp_path / "export"
    manifest, needles = _demo_hospitals(export)
    counts = write_clinical_exports(manifest, export, tmp_path / "truth.json", seed=3)
    assert counts["csv_rows"] == 4 and counts["vcf_files"] == 4
    truth = json.loads((tmp_path / "truth.json").read_text())
    central = Workspace.init(tmp_path / "central", site="platform")
    cert, key = tls_files
    server = serve(create_app(central, token=TOKEN, verified_deidentified=True), certfile=cert, keyfile=key)
    expected = set()
    for site in manifest.sites:
        gateway = Workspace.init(tmp_path / f"gw-{site.name}", site=site.name)
        watched = CliRunner().invoke(
            app, ["gateway", "watch", str(export / site.folder), "--once", "--interval", "0.2", "--json",
                  "-w", str(gateway.root)],
        )  # fmt: skip
        assert watched.exit_code == 0, watched.output
        pushed = _push(gateway, server.url, cert)
        assert pushed["pushed"] == 4 and pushed["clinical_pushed"] >= 3 and pushed["failed"] == 0, pushed
        deid = {t["patient"]: ClinicalDeidentifier(gateway.site_key(), issuer=t["issuer"]) for t in truth}
        expected |= {
            deid[t["patient"]].patient(t["patient_id"]).pseudonym
            for t in truth
            if t["site"] == site.name and t["patient"] in expected_cohort(truth)
        }
    assert expected  # the generator always puts one patient in the demo's cohort
    with central.catalog.session() as s:
        matched = list(s.scalars(series_select(COHORT_QUERY)))
        found = set(
            s.scalars(sa.select(Patient.pseudonym).join(Study).join(Series).where(Series.id.in_(matched)))
        )
    assert found == expected
    assert survivors(central, needles) == []
    central.store.put_bytes(b"Obinna Okafor")  # the scan itself finds a planted value when one is there
    assert survivors(central, needles) == ["Obinna", "Okafor"]


def test_the_same_batch_filed_twice_at_once_is_filed_once(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests carrying one batch (a gateway retrying while the first is still being filed): both
    pass the "filed before?" look-up; the catalog's unique key stops the second, which answers present."""
    from curata.collect.clinical import service

    gateway, central, _url, _cert = site
    csv = next(i for i in filed_inputs(gateway) if i.kind == "csv")
    parts = _lower(deidentified_batch(gateway, csv).parts())
    real, unaware = service._is_filed, [False, False]  # both requests look before either has filed

    def is_filed(*args: Any) -> bool:
        return unaware.pop() if unaware else real(*args)

    monkeypatch.setattr(service, "_is_filed", is_filed)
    statuses = [file_deidentified_batch(central, decode(parts)[0][0]).status for _ in range(2)]
    assert statuses == ["filed", "present"]
    assert _count(central, clinical_source) == 1
    assert _count(central, OMOP["condition_occurrence"]) == 2  # the CSV's two rows, once


def test_a_gateways_own_server_takes_no_clinical_batches(workspace: Workspace) -> None:
    """Only the platform files batches as they come: a gateway de-identifies what it receives itself."""
    from fastapi.testclient import TestClient

    with TestClient(create_app(workspace, token=TOKEN)) as client:
        r = client.post(
            "/clinical/batches",
            content=b"",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "multipart/related; boundary=x"},
        )
    assert r.status_code == 403 and "central platform" in r.json()["detail"]


def test_an_age_above_89_never_travels(
    workspace: Workspace, tmp_path: Path, serve: Any, tls_files: tuple[Path, Path]
) -> None:
    """A FHIR bulk export puts the birth date (Patient.ndjson) and the events (Condition.ndjson...) in
    different files: the gateway files them as two inputs. What it pushes caps the year of birth against
    the person's last event of any input, and the platform refuses a batch that would tell an age > 89."""
    drop = tmp_path / "drop"
    resources = fhir_resources()
    resources[0]["birthDate"] = "1925-06-14"  # 98 at the 2024 diagnosis
    write_ndjson(drop / "Patient.ndjson", resources[:1])
    write_ndjson(drop / "Clinical.ndjson", resources[1:])
    watched = CliRunner().invoke(app, ["gateway", "watch", str(drop), "--once", "--interval", "0.2",
                                       "-w", str(workspace.root)])  # fmt: skip
    assert watched.exit_code == 0, watched.output
    central = Workspace.init(tmp_path / "central", site="platform")
    cert, key = tls_files
    server = serve(create_app(central, token=TOKEN, verified_deidentified=True), certfile=cert, keyfile=key)
    pushed = push_clinical(workspace, server.url, token=TOKEN, verify=str(cert))
    assert (pushed.counts["pushed"], pushed.counts["failed"]) == (2, 0)
    person, period = OMOP["person"], OMOP["observation_period"]
    with central.catalog.session() as s:
        ((born, capped, last),) = s.execute(
            sa.select(person.c.year_of_birth, person.c.age_capped, period.c.observation_period_end_date).join(
                period, period.c.person_id == person.c.person_id
            )
        )
    assert capped and last.year - born == 90  # 98 at the site: capped, by the year of birth
    # a batch that tells the age itself (a gateway that did not cap it) is refused
    events = [deidentified_batch(workspace, i) for i in filed_inputs(workspace)]
    (clinical,) = [b for b in events if "condition_occurrence" in b.tables]
    tables = dict(clinical.tables)
    rows = tables["person"].num_rows
    tables["person"] = tables["person"].set_column(2, "year_of_birth", pa.array([1900] * rows, pa.int64()))
    out = file_deidentified_batch(central, Batch("ef" * 32, "fhir", tables=tables))
    assert out.status == "quarantined" and "older than 89" in (out.reason or ""), out
    # a birth year the platform already holds counts too: filed first alone, then events decades later
    someone = "CUR-" + "A" * 16
    alone = pa.table({"pseudonym": [someone], "year_of_birth": pa.array([1900], pa.int64())})
    assert (
        file_deidentified_batch(central, Batch("a1" * 32, "fhir", tables={"person": alone})).status == "filed"
    )
    cond = clinical.tables["condition_occurrence"]
    later = cond.set_column(0, "pseudonym", pa.array([someone] * cond.num_rows))
    out = file_deidentified_batch(central, Batch("a2" * 32, "fhir", tables={"condition_occurrence": later}))
    assert out.status == "quarantined" and "older than 89" in (out.reason or ""), out


def test_a_damaged_vcf_at_the_gateway_fails_alone(site: Any) -> None:
    """The gateway re-hashes a VCF before sending it (as it does every DICOM blob): a damaged one is
    reported and stays pending; the other inputs go."""
    gateway, central, url, cert = site
    with gateway.catalog.session() as s:
        blob = s.scalar(sa.select(genomic_file.c.blob_digest))
    path = gateway.store.local_path(blob)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1  # one bit rotted on the gateway's disk
    path.write_bytes(bytes(data))
    result = push_clinical(gateway, url, token=TOKEN, verify=str(cert))
    assert (result.counts["pushed"], result.counts["failed"]) == (3, 1)
    (error,) = result.extra["errors"]
    assert "does not match its sha256" in error
    assert [i.kind for i in pending_clinical(gateway, url)] == ["vcf"] and _count(central, genomic_file) == 0


@pytest.mark.parametrize(
    ("manifest", "why"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a curata-clinical/1 manifest"),
        (b'{"format": "curata-clinical/1", "batch": "zz", "kind": "csv", "parts": []}', "64 hex"),
        (b'{"format": "curata-clinical/1", "batch": "' + b"a" * 64 + b'", "kind": "xml", "parts": []}', "kind"),
        (b'{"format": "curata-clinical/1", "batch": "' + b"a" * 64 + b'", "kind": "csv", "parts": ["x"]}',
         "not an object"),
        (b'{"format": "curata-clinical/1", "batch": "' + b"a" * 64 + b'", "kind": "csv", "parts": '
         b'[{"name": "note_nlp", "digest": "00", "rows": 1}]}', "not an OMOP table Curata files"),
        (b'{"format": "curata-clinical/1", "batch": "' + b"a" * 64 + b'", "kind": "csv", "parts": '
         b'[{"name": "person", "digest": "00", "rows": 1}]}', "missing"),
    ],
)  # fmt: skip
def test_a_malformed_manifest_is_refused_with_its_reason(manifest: bytes, why: str) -> None:
    batches, refused = decode(
        [({"content-type": MANIFEST_TYPE, "content-digest": content_digest(manifest)}, manifest)]
    )
    assert batches == [] and len(refused) == 1 and why in refused[0].reason

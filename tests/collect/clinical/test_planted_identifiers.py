"""Planted identifiers: in every CSV column, every FHIR element and every VCF header line type.

Each test plants the patient's identifiers (name, MRN, phone, address, national ID, birth date,
site paths) in one place at a time, ingests everything with the site key, then scans every stored
object and every catalog row (quarantine reasons included) for any of them: zero may survive.
"""

from __future__ import annotations

import copy
import gzip
from typing import Any

import sqlalchemy as sa

from curata.catalog import QuarantineItem
from curata.collect.clinical import clinical_rows
from curata.collect.genomics.models import genomic_file
from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import (
    CSV_COLUMNS,
    PLANT,
    VCF_HEADER,
    csv_row,
    fhir_resources,
    survivors,
    vcf_text,
    write_csv,
    write_ndjson,
)


def _survivors(ws) -> list[str]:  # type: ignore[no-untyped-def]
    """Every needle found in any stored blob (gzip opened) or any catalog value."""
    return survivors(ws)


def _plant(value: str) -> str:
    return f"{value} {PLANT}" if value else PLANT


def test_every_csv_column(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = [csv_row()] + [csv_row(**{col: _plant(csv_row()[col])}) for col in CSV_COLUMNS]
    path = write_csv(tmp_path / "export" / "planted.csv", rows)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([path])
    assert summary.counts["ingested"] == 1
    with workspace.catalog.session() as s:
        kept = len(clinical_rows(s, workspace.store, "condition_occurrence"))
    # identifier and unmapped columns, notes and displays are cleaned, not refused: most rows are kept
    assert kept >= len(CSV_COLUMNS) // 2
    assert _survivors(workspace) == []
    workspace.store.put_bytes(PLANT.encode())  # the scan itself finds a planted value when one is there
    assert "Okonkwo-Bello" in _survivors(workspace)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))]
    return [path] if isinstance(node, str) else []


def _set(node: Any, path: tuple[Any, ...], value: str) -> None:
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def test_every_fhir_element(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = fhir_resources("pat-0")
    lines: list[dict[str, Any]] = list(base)
    planted = 0
    for r_i, res in enumerate(base):
        for leaf in _leaves(res):
            k = len(lines)
            variant = copy.deepcopy(fhir_resources(f"pat-{k}"))
            target = variant[r_i]
            old = target
            for p in leaf:
                old = old[p]
            _set(target, leaf, _plant(str(old)))
            lines.extend(variant)
            planted += 1
    assert planted > 60  # every string element of the seven resource types
    write_ndjson(tmp_path / "bulk" / "export.ndjson", lines)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "bulk"])
    assert summary.counts["ingested"] == 1
    with workspace.catalog.session() as s:
        conditions = len(clinical_rows(s, workspace.store, "condition_occurrence"))
        reasons = " ".join(s.scalars(sa.select(QuarantineItem.reason)))
    assert conditions >= planted // 2
    assert "Observation" in reasons or "Patient" in reasons  # some planted resources were refused, by field
    assert _survivors(workspace) == []


def test_every_vcf_header_line_type(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "genomes"
    write_csv(export / "clinical.csv", [csv_row()])  # the site's clinical export names the patient
    for i, line in enumerate(VCF_HEADER):
        header = list(VCF_HEADER)
        if 'Description="' in line:
            header[i] = line.replace('Description="', f'Description="{PLANT} /data/lagos/Okonkwo/x ', 1)
        elif line.endswith(">"):
            header[i] = line[:-1] + f',Note="{PLANT} /data/lagos/Okonkwo/x">'
        else:
            header[i] = f"{line} {PLANT} /data/lagos/Okonkwo/x"
        (export / f"planted-{i:02d}.vcf").write_text(vcf_text(header=header))
    (export / "plain.vcf").write_text(vcf_text())
    _summary, _ = Ingestor(workspace, workers=1).ingest_paths([export])
    with workspace.catalog.session() as s:
        files = s.scalar(sa.select(sa.func.count()).select_from(genomic_file))
    assert files >= len(VCF_HEADER) - 2  # planted lines are cleaned or dropped; the files themselves go on
    assert _survivors(workspace) == []


# Each (column, how): the record with one of the patient's identifiers planted there, in one spelling.
_RECORD_PLANTS = {
    "ID": lambda c, v: c.__setitem__(2, v.replace(" ", "_")),
    "ID-list": lambda c, v: c.__setitem__(2, "rs121434568;" + v.replace(" ", "_")),
    "INFO-new": lambda c, v: c.__setitem__(7, c[7] + ";NOTE=" + v.replace(" ", "_").replace(";", ",")),
    "INFO-ANN-gene": lambda c, v: c.__setitem__(7, c[7].replace("|EGFR|", f"|{v.replace(' ', '_')}|", 1)),
    "sample-field": lambda c, v: (
        c.__setitem__(8, c[8] + ":NM"),
        c.__setitem__(9, c[9] + ":" + v.replace(" ", "_").replace(":", "-")),
    ),
}
_SPELLINGS = ["MRN-77123", "mrn 77123", "MRN77123", "Okonkwo-Bello Adaeze", "ADAEZE^OKONKWO", "okonkwobello"]


def test_every_vcf_record_column(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Identifiers in the records themselves (ID, INFO, an annotation's gene, a sample's field), in any
    spelling: cleaned, never stored; the bases (REF, ALT) are not mistaken for a name."""
    export = tmp_path / "records"
    write_csv(export / "clinical.csv", [csv_row()])  # names the patient: the gate knows the name too
    n = 0
    for where, plant in _RECORD_PLANTS.items():
        for spelling in _SPELLINGS:
            lines = vcf_text().splitlines()
            cols = lines[-2].split("\t")
            plant(cols, spelling)
            lines[-2] = "\t".join(cols)
            (export / f"{where}-{n:02d}.vcf").write_text("\n".join(lines) + "\n")
            n += 1
    # a CHROM named after the patient cannot be cleaned: that file is refused with its line, not its value
    lines = vcf_text().splitlines()
    lines[-1] = lines[-1].replace("chr7", "Okonkwo", 1)
    (export / "chrom.vcf").write_text("\n".join(lines) + "\n")
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([export])
    with workspace.catalog.session() as s:
        files = s.scalar(sa.select(sa.func.count()).select_from(genomic_file))
        reasons = list(s.scalars(sa.select(QuarantineItem.reason)))
    assert files == n  # every planted file is cleaned and stored
    assert summary.counts["quarantined"] == 1
    assert any("column CHROM of line" in r for r in reasons), reasons
    assert _survivors(workspace) == []


def test_bases_that_spell_a_name_are_not_an_identifier(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A patient named NAGATA whose deletion's REF spells NAGATA: the file is stored, the bases intact."""
    header = [h.replace("Adaeze Okonkwo-Bello", "Tatsuo Nagata") for h in VCF_HEADER]
    text = vcf_text(header=header).replace("\tT\tG\t", "\tTNAGATAG\tT\t", 1)
    (tmp_path / "nagata.vcf").write_text(text)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "nagata.vcf"])
    assert summary.counts["ingested"] == 1
    blobs = [workspace.store.get_bytes(d) for d in workspace.store.digests()]
    blob = b"".join(gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b for b in blobs)
    assert b"\tTNAGATAG\tT\t" in blob and b"Nagata" not in blob


def test_another_patients_identifiers_in_a_note_are_cleaned(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A note in one patient's row that names ANOTHER patient of the same export (full name, MRN with
    other separators, the given name alone, their phone) keeps none of it, in CSV and in FHIR; ordinary
    words that equal a name part in lower case ("white matter" beside a patient named Bakare-White) stay."""
    other = {"mrn": "MRN-55102", "patient_name": "Tunde Bakare", "phone": "+234 805 111 2233"}
    note = "Seen with Tunde Bakare (MRN 55102, tel +234 805 111 2233); Tunde reports cough. white matter"
    rows = [
        csv_row(notes=note),
        csv_row(mrn=other["mrn"], patient_name="Tunde Bakare-White", phone=other["phone"], notes="follow-up"),
    ]
    write_csv(tmp_path / "export" / "clinical.csv", rows)
    resources = fhir_resources("pat-a")
    for r in resources:
        if r["resourceType"] == "Condition":
            r["note"] = [{"text": note}]
    second = fhir_resources("pat-b")
    second[0]["name"] = [{"family": "Bakare", "given": ["Tunde"], "text": "Tunde Bakare"}]
    second[0]["identifier"][0]["value"] = other["mrn"]
    second[0]["identifier"] = second[0]["identifier"][:1]
    second[0]["telecom"] = [{"system": "phone", "value": other["phone"]}]
    write_ndjson(tmp_path / "bulk" / "export.ndjson", [*resources, *second])
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "export", tmp_path / "bulk"])
    assert summary.counts["ingested"] == 2
    blob = "\n".join(
        (gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b).decode("utf-8", "replace")
        for b in (workspace.store.get_bytes(d) for d in workspace.store.digests())
    )
    for needle in ("Tunde", "Bakare", "55102", "805 111 2233", "8051112233"):
        assert needle not in blob, blob[max(0, blob.find(needle) - 200) : blob.find(needle) + 50]
    assert "reports cough" in blob and "white matter" in blob


def test_a_vcf_filed_in_a_later_run_than_its_clinical_export_is_cleaned_of_the_patient(
    workspace, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The clinical export names the patient in one run; the VCF (its sample the MRN) comes in a later
    run, its header and records naming the patient in every line type: cleaned as in one run, because the
    identity is kept on site (sealed with the site key), never in the catalog or the store."""
    write_csv(tmp_path / "clinical" / "clinical.csv", [csv_row()])
    Ingestor(workspace, workers=1).ingest_paths([tmp_path / "clinical"])
    export = tmp_path / "genomes"
    export.mkdir()
    for i, line in enumerate(VCF_HEADER):
        header = list(VCF_HEADER)
        header[i] = (
            line.replace('Description="', 'Description="Adaeze Okonkwo-Bello 14 Marina Street ', 1)
            if 'Description="' in line
            else f"{line} Adaeze Okonkwo-Bello 14 Marina Street"
        )
        (export / f"planted-{i:02d}.vcf").write_text(vcf_text(header=header))
    lines = vcf_text().splitlines()
    cols = lines[-2].split("\t")
    cols[7] += ";NOTE=Okonkwo-Bello"
    lines[-2] = "\t".join(cols)
    (export / "record.vcf").write_text("\n".join(lines) + "\n")
    (export / "plain.vcf.gz").write_bytes(gzip.compress(vcf_text().encode()))  # gzip, not bgzip
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([export])
    with workspace.catalog.session() as s:
        files = s.scalar(sa.select(sa.func.count()).select_from(genomic_file))
    assert files >= len(VCF_HEADER) - 2
    assert any("gzip, not bgzip" in (p.reason or "") for p in problems)  # refused alone; the batch goes on
    assert _survivors(workspace) == []

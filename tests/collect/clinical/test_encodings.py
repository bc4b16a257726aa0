"""Clinical CSVs in the encodings hospital systems write besides UTF-8: Windows-1252 / Latin-1 (whole,
or one line of a UTF-8 file) and UTF-16 with its byte-order mark. Their letters are read as written:
non-identifying text keeps its accents, and the patient's name is cleaned in every spelling."""

from __future__ import annotations

import csv
import io

import pytest

from curata.collect.clinical import clinical_rows
from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import CSV_COLUMNS, MAPPING, csv_row, folded_survivors

ROWS = [
    csv_row(mrn="DE-551207", patient_name="MÜLLER^Jürgen", notes="Herr Müller: Lungenödem, Bronchoskopie"),
    csv_row(mrn="DE-551208", patient_name="Gonçalves^André", notes="Sr. Gonçalves, sem queixas; café"),
]


def _text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-16", "mixed"])
def test_a_csv_in_another_encoding_is_read_as_written(workspace, tmp_path, encoding: str) -> None:  # type: ignore[no-untyped-def]
    text = _text(ROWS)
    if encoding == "mixed":  # a UTF-8 export with one line pasted from a Windows-1252 system
        head, first, second = text.splitlines(keepends=True)
        raw = (head + first).encode("utf-8") + second.encode("cp1252")
    else:
        raw = text.encode(encoding)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "dx.csv").write_bytes(raw)
    (folder / "clinical-map.toml").write_text(MAPPING)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([folder])
    assert summary.counts["ingested"] == 1, problems
    with workspace.catalog.session() as s:
        notes = {r["note"] for r in clinical_rows(s, workspace.store, "condition_occurrence")}
    if encoding != "mixed":
        assert any("Lungenödem" in (n or "") for n in notes), notes
    assert any("café" in (n or "") for n in notes), notes
    assert folded_survivors(workspace, ["Müller", "Jürgen", "Gonçalves", "André"]) == []


def test_a_fhir_export_in_latin1_is_read_as_written(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """FHIR JSON is UTF-8 by the standard; an export written in Windows-1252 all the same is read as such."""
    import json

    from tests.collect.clinical._fixtures import fhir_resources, write_ndjson

    resources = fhir_resources("p1")
    resources[0]["name"] = [{"family": "Gonçalves", "given": ["André"]}]
    resources[1]["note"] = [{"text": "Sr. Gonçalves: Lungenödem"}]
    path = write_ndjson(tmp_path / "bulk" / "export.ndjson", resources)
    path.write_bytes("\n".join(json.dumps(r, ensure_ascii=False) for r in resources).encode("cp1252"))
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "bulk"])
    assert summary.counts["ingested"] == 1, problems
    with workspace.catalog.session() as s:
        notes = {r["note"] for r in clinical_rows(s, workspace.store, "condition_occurrence")}
    assert any("Lungenödem" in (n or "") for n in notes), notes
    assert folded_survivors(workspace, ["Gonçalves", "alves", "André"]) == []

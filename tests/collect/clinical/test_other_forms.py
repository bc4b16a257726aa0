"""The patient's own identifiers written in another form than the export's identifier columns hold them:
at full width (ＳＵＺＵＫＩ), decomposed (a macOS 김민준), glued to the word after them (Suzuki様,
kenji123, SUZUKIKENJIの検査), run together (MRN4471923). The text cleaner finds each of these; the
clinical readers must not skip a value before the cleaner sees it."""

from __future__ import annotations

import copy
import unicodedata
from typing import Any

from curata.collect.clinical import clinical_rows
from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import (
    VCF_HEADER,
    csv_row,
    fhir_resources,
    folded_survivors,
    vcf_text,
    write_csv,
    write_ndjson,
)

SUZUKI = {"mrn": "MRN-4471923", "name": "SUZUKI^KENJI", "dob": "1961-03-17", "phone": "+81 90 3344 5566"}
KIM = {"mrn": "KR-700193", "name": "김민준", "dob": "1985-01-30", "phone": "+82 2 3410 2114"}
WANG = {"mrn": "CN-330158", "name": "王秀英", "dob": "1949-12-25", "phone": "+86 10 6915 6114"}
FORMS = {
    "SUZUKI": ["ＳＵＺＵＫＩ", "ｋｅｎｊｉ", "Suzuki様", "kenji123", "SUZUKIKENJIの検査", "鈴木SUZUKI"],
    "KIM": [unicodedata.normalize("NFD", "김민준"), "김민준님", "ＫＲ７００１９３", "민준 환자"],
    # a CJK name written as one run (no family^given): its given name alone
    "WANG": ["秀英", "秀英女士"],
}
NEEDLES = ["suzuki", "kenji", "김민준", "700193", "민준", "秀英"]
CSV_TEXT = ["diagnosis", "notes", "lab_name", "lab_value", "biopsy_site"]


def _row(p: dict[str, str], **over: str) -> dict[str, str]:
    base = {"mrn": p["mrn"], "patient_name": p["name"], "dob": p["dob"], "phone": p["phone"]}
    return csv_row(**{**base, "address": "", "national_id": "", "email": "", "notes": "", **over})


def test_other_forms_in_every_csv_text_column(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = [_row(SUZUKI), _row(KIM), _row(WANG)]
    for who, p in (("SUZUKI", SUZUKI), ("KIM", KIM), ("WANG", WANG)):
        for col in CSV_TEXT:
            for form in FORMS[who]:
                rows.append(_row(p, **{col: f"{_row(p)[col]} {form}".strip()}))
    write_csv(tmp_path / "export" / "dx.csv", rows)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "export"])
    assert summary.counts["ingested"] == 1
    with workspace.catalog.session() as s:
        assert len(clinical_rows(s, workspace.store, "condition_occurrence")) == len(rows)  # cleaned, kept
    assert folded_survivors(workspace, NEEDLES) == []


def _patient(res: list[dict[str, Any]], p: dict[str, str]) -> None:
    pat = res[0]
    family, _, given = p["name"].partition("^")
    pat["name"] = [{"family": family, "given": [given]} if given else {"text": family}]
    pat["identifier"] = pat["identifier"][:1]
    pat["identifier"][0]["value"] = p["mrn"]
    pat["telecom"] = [{"system": "phone", "value": p["phone"]}]
    pat["birthDate"] = p["dob"]
    pat.pop("address")


def _text_leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of the free-text elements the readers keep: notes, displays, texts, values, conclusions."""
    if isinstance(node, dict):
        return [q for k, v in node.items() for q in _text_leaves(v, (*path, k))]
    if isinstance(node, list):
        return [q for i, v in enumerate(node) for q in _text_leaves(v, (*path, i))]
    keep = path and path[-1] in ("text", "display", "valueString", "conclusion")
    return [path] if keep and isinstance(node, str) else []


def test_other_forms_in_every_fhir_text_element(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines: list[dict[str, Any]] = []
    n = 0
    for who, p in (("SUZUKI", SUZUKI), ("KIM", KIM)):
        base = fhir_resources(f"pat-{who}")
        _patient(base, p)
        base[2]["valueString"] = "see report"
        base[2].pop("valueQuantity")
        base[5]["collection"]["bodySite"] = {"text": "right upper lobe"}
        lines += base
        for res in base[1:]:
            for leaf in _text_leaves(res):
                for form in FORMS[who]:
                    variant = copy.deepcopy(res)
                    node = variant
                    for k in leaf[:-1]:
                        node = node[k]
                    node[leaf[-1]] = f"{node[leaf[-1]]} {form}"
                    variant["id"] = f"{res['id']}-{n}"
                    n += 1
                    lines.append(variant)
    assert n > 80
    write_ndjson(tmp_path / "bulk" / "export.ndjson", lines)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "bulk"])
    assert summary.counts["ingested"] == 1
    assert folded_survivors(workspace, NEEDLES) == []


def test_an_unknown_element_named_after_the_patient_is_refused_without_its_name(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An element FHIR does not define, at any depth, whose name is the patient's name, MRN or birth date:
    the resource is refused naming where (the element above it), never the name itself."""
    keys = ["SUZUKI^KENJI", "Suzuki Kenji", "MRN-4471923", "1961-03-17", "김민준"]
    base = fhir_resources("pat-SUZUKI")
    _patient(base, SUZUKI)
    lines: list[dict[str, Any]] = list(base)
    for key in keys:
        for res in base[1:]:
            for where in ((), ("code", "coding", 0), ("note", 0), ("subject",)):
                variant = copy.deepcopy(res)
                node = variant
                for k in where:
                    node = node.get(k) if isinstance(node, dict) else node[k]
                    if node is None:
                        break
                if node is None:
                    continue
                node[key] = "x"
                variant["id"] = f"{res['id']}-{len(lines)}"
                lines.append(variant)
        contained = copy.deepcopy(base[1])
        contained["contained"] = [{"resourceType": "Patient", "id": "c", key: "x"}]
        contained["extension"] = [{"url": "http://example.org/x", key: "x"}]
        lines.append(contained)
    write_ndjson(tmp_path / "bulk" / "export.ndjson", lines)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "bulk"])
    assert summary.counts["ingested"] == 1
    reasons = " ".join(p.reason or "" for p in problems)
    assert "extra_forbidden" in reasons  # refused, by where
    assert folded_survivors(workspace, [*NEEDLES, "19610317"]) == []


def test_other_forms_in_vcf_records_and_header_attributes(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The VCF of patients the clinical export names: their identifiers in another form (full width,
    decomposed Hangul, a birth date written in CJK) in an ID, an INFO entry or a sample's field are
    cleaned like ASCII ones, as are a phone written with other separators and the number of an MRN
    without its prefix; an attribute the VCF specification does not define in an INFO, FORMAT,
    FILTER, ALT or META line (where a lab writes its own notes) is not kept."""
    export = tmp_path / "genomes"
    write_csv(export / "clinical.csv", [_row(SUZUKI), _row(KIM)])
    header = [h for h in VCF_HEADER if h.startswith(("##fileformat", "##INFO", "##FORMAT", "##FILTER"))]
    header += ['##ALT=<ID=DEL,Description="Deletion">', "##META=<ID=Assay,Type=String,Number=.,Values=[WGS]>"]
    forms = {
        "SUZUKI": [
            *FORMS["SUZUKI"],
            "1961年3月17日",
            "ＭＲＮ－４４７１９２３",
            "+81-90-3344-5566",
            "4471923",
        ],
        "KIM": [*FORMS["KIM"], "1985년 1월 30일", "+82.2.3410.2114", "700193"],
    }
    n = 0
    for who, p in (("SUZUKI", SUZUKI), ("KIM", KIM)):
        for form in forms[who]:
            v = form.replace(" ", "_")
            for col in ("ID", "INFO", "sample"):
                lines = vcf_text(sample=p["mrn"], header=header).splitlines()
                cols = lines[-2].split("\t")
                if col == "ID":
                    cols[2] = v
                elif col == "INFO":
                    cols[7] += ";NOTE=" + v
                else:
                    cols[8], cols[9] = cols[8] + ":NM", cols[9] + ":" + v
                lines[-2] = "\t".join(cols)
                (export / f"r{n:03d}.vcf").write_text("\n".join(lines) + "\n")
                n += 1
        for i, line in enumerate(header[1:], start=1):
            planted = list(header)
            planted[i] = line[:-1] + f',Lab={p["mrn"].split("-")[1]},Note="{forms[who][0]}">'
            (export / f"h{n:03d}.vcf").write_text(vcf_text(sample=p["mrn"], header=planted))
            n += 1
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([export])
    assert summary.counts["ingested"] == n + 1  # every VCF cleaned and stored, and the CSV
    planted = [*NEEDLES, "4471923", "19610317", "1961年3月17日", "1985년1월30일", "33445566", "34102114"]
    assert folded_survivors(workspace, planted) == []


def test_a_street_named_without_its_number_or_kind(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An address's street as notes write it, without the house number or the kind of street before it
    (36 Phố Hàng Bạc: Hàng Bạc) or without the city before it (서울특별시 강남구 일원로 81: 일원로 81)."""
    streets = {
        "MRN-1": "36 Phố Hàng Bạc, Hoàn Kiếm",
        "MRN-2": "서울특별시 강남구 일원로 81",
        "MRN-3": "Flat 2, 14 Old Kent Road",
    }
    notes = {
        "MRN-1": ["lives on Hàng Bạc", "Hang Bac"],
        "MRN-2": ["일원로 81 거주"],
        "MRN-3": ["near Kent Road"],
    }
    rows = []
    for mrn, address in streets.items():
        rows.append(csv_row(mrn=mrn, address=address, notes="seen"))
        rows += [csv_row(mrn=mrn, address=address, notes=n) for n in notes[mrn]]
    write_csv(tmp_path / "export" / "dx.csv", rows)
    fhir = fhir_resources("pat-f")
    fhir[0]["address"] = [{"line": ["12 Rue du Faubourg Montmartre"], "city": "Paris"}]
    fhir[1]["note"] = [{"text": "lives on Faubourg Montmartre"}]
    write_ndjson(tmp_path / "bulk" / "export.ndjson", fhir)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "export", tmp_path / "bulk"])
    assert summary.counts["ingested"] == 2
    assert folded_survivors(workspace, ["hangbac", "일원로81", "kentroad", "faubourgmontmartre"]) == []
    assert folded_survivors(workspace, ["lives on", "거주", "near"]) == ["lives on", "거주", "near"]


def test_another_patient_named_in_another_form(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A note in one patient's row naming ANOTHER patient of the export at full width or decomposed, as
    their own name is cleaned: the other patient's identifiers are looked for in the folded text too."""
    other = "ＴＡＫＥＨＩＲＯ ＮＡＫＡＭＵＲＡ (ＭＲＮ－５５１０２)"
    kim = unicodedata.normalize("NFD", "박서연")
    rows = [
        _row(SUZUKI, notes=f"seen with {other}; family of {kim}"),
        _row({**SUZUKI, "mrn": "MRN-55102", "name": "NAKAMURA^TAKEHIRO"}, notes="follow-up"),
        _row({**KIM, "mrn": "KR-1", "name": "박서연"}, notes="follow-up"),
    ]
    write_csv(tmp_path / "export" / "dx.csv", rows)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "export"])
    assert summary.counts["ingested"] == 1
    assert folded_survivors(workspace, ["nakamura", "takehiro", "55102", "박서연"]) == []
    assert folded_survivors(workspace, ["seen with"]) == ["seen with"]

"""Clinical and genomic files of a release, split with the images (each row carries its patient's split).

- ``clinical/<table>.parquet`` and ``.csv``: every OMOP-aligned table, Curata's columns included, plus
  ``patient`` (the release's patient key) and ``split``;
- ``clinical/omop/<TABLE>.csv``: the same rows with the OMOP CDM v5.4 columns only, in CDM order, ready
  for an OMOP database (person_source_value holds the pseudonym);
- ``genomics/<split>/<case>.vcf.gz``: each patient's de-identified VCF, whole (the stored bytes), and
  ``genomics/variants.parquet`` / ``.csv``: the variant index;
- ``fhir/<split>/<pseudonym>.json`` (``--format ...,fhir``): a FHIR R4 collection Bundle per patient;
- ``card/clinical.md``: diagnoses, stages, outcomes, age / sex / region by diagnosis, missing data per
  field, and the re-identification risk of rare variants. Its counts follow the card's small-cell rule
  (``card.suppressed``): a count under the threshold reads ``<5``, and a diagnosis held by fewer patients
  than that is never broken down by age band, sex or region (only its margin, ``<5``, is published).

Only rows of the release's patients are read; nothing is written for a release without clinical data.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

RARE_AF = 0.001  # a variant this rare (or absent from population data) can point at a family


@dataclass
class ReleasePatient:
    key: str  # site/pseudonym, the release's patient key
    split: str
    attributes: dict[str, str]  # sex, age band, site, region...


@dataclass
class ClinicalFiles:
    put: dict[str, bytes] = field(default_factory=dict)  # new files
    link: dict[str, str] = field(default_factory=dict)  # path -> stored blob digest (VCFs)
    summary: dict[str, Any] = field(default_factory=dict)


def _frame_bytes(rows: list[dict[str, Any]], columns: list[str]) -> tuple[bytes, bytes]:
    import pandas as pd

    df = pd.DataFrame(rows, columns=columns)
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue(), df.to_csv(index=False).encode()


def build(
    session: Session,
    store: Any,
    patients: dict[tuple[int, str], ReleasePatient],
    *,
    fhir: bool = False,
    min_cell: int | None = None,
) -> ClinicalFiles:
    """Files for the release's patients: ``patients`` maps (site id, pseudonym) -> the release's patient."""
    from curata.collect.clinical import OMOP, clinical_rows, omop_fields
    from curata.collect.clinical import OMOP_TABLES as TABLES
    from curata.collect.genomics import genomic_file, genomic_variant

    out = ClinicalFiles()
    person = OMOP["person"]
    people: dict[int, dict[str, Any]] = {}
    keys = list(patients)
    for i in range(0, len(keys), 300):
        chunk = keys[i : i + 300]
        cond = sa.or_(*(sa.and_(person.c.site_id == s, person.c.pseudonym == p) for s, p in chunk))
        for found in session.execute(sa.select(person).where(cond)):
            people[int(found.person_id)] = dict(found._mapping)
    if not people:
        return out
    pids = sorted(people)
    who = {pid: patients[(p["site_id"], p["pseudonym"])] for pid, p in people.items()}
    tables: dict[str, list[dict[str, Any]]] = {"person": list(people.values())}
    for name in TABLES:
        if name != "person":
            tables[name] = clinical_rows(session, store, name, pids)
    missing: dict[str, dict[str, float]] = {}
    for name, rows in tables.items():
        for r in rows:
            r["patient"] = who[int(r["person_id"])].key
            r["split"] = who[int(r["person_id"])].split
        columns = [c.name for c in OMOP[name].columns] + ["patient", "split"]
        parquet, csv_bytes = _frame_bytes(rows, columns)
        out.put[f"clinical/{name}.parquet"] = parquet
        out.put[f"clinical/{name}.csv"] = csv_bytes
        cdm = [f.name for f in omop_fields()[name]]
        _p, omop_csv = _frame_bytes([{k: r.get(k) for k in cdm} for r in rows], cdm)
        out.put[f"clinical/omop/{name.upper()}.csv"] = omop_csv
        if rows:
            missing[name] = {c: sum(1 for r in rows if r.get(c) in (None, "")) / len(rows) for c in cdm}
    # genomics: VCFs whole, variants indexed
    variants = clinical_rows(session, store, "genomic_variant", pids)
    files = {
        int(r.id): dict(r._mapping)
        for r in session.execute(
            sa.select(genomic_file).where(genomic_file.c.id.in_({v["file_id"] for v in variants} or {-1}))
        )
    }
    file_owner: dict[int, int] = {}
    for v in variants:
        file_owner.setdefault(v["file_id"], int(v["person_id"]))
        v["patient"] = who[int(v["person_id"])].key
        v["split"] = who[int(v["person_id"])].split
    for fid, f in files.items():
        p = who[file_owner[fid]]
        safe = re.sub(r"[^A-Za-z0-9]+", "", p.key.split("/", 1)[-1])[:24]
        out.link[f"genomics/{p.split}/{safe}_{f['blob_digest'][:8]}.vcf.gz"] = f["blob_digest"]
    if variants:
        vcols = [c.name for c in genomic_variant.columns] + ["patient", "split"]
        out.put["genomics/variants.parquet"], out.put["genomics/variants.csv"] = _frame_bytes(variants, vcols)
    if fhir:
        for pid, prow in people.items():
            rp = who[pid]
            bundle = fhir_bundle(
                prow, {n: [r for r in tables[n] if r["person_id"] == pid] for n in TABLES if n != "person"}
            )
            out.put[f"fhir/{rp.split}/{prow['pseudonym']}.json"] = json.dumps(
                bundle, indent=1, default=str
            ).encode()
    out.put["card/clinical.md"] = card_markdown(tables, who, variants, missing, min_cell=min_cell).encode()
    out.summary = {
        "patients_with_clinical_rows": len(people),
        "rows": {n: len(r) for n, r in tables.items()},
        "vcf_files": len(files),
        "variants": len(variants),
    }
    return out


def content(session: Session, patients: dict[tuple[int, str], Any]) -> str:
    """What of the clinical and genomic data the release would carry (input digests), for its content key."""
    import hashlib

    from curata.collect.clinical import OMOP, index_counts
    from curata.collect.genomics import genomic_file

    person = OMOP["person"]
    pids: list[int] = []
    keys = list(patients)
    for i in range(0, len(keys), 300):
        chunk = keys[i : i + 300]
        cond = sa.or_(*(sa.and_(person.c.site_id == s, person.c.pseudonym == p) for s, p in chunk))
        pids += [int(x) for x in session.scalars(sa.select(person.c.person_id).where(cond))]
    seen: set[str] = set()
    for i in range(0, len(pids), 500):
        pchunk = pids[i : i + 500]
        counts: dict[tuple[str, str], int] = defaultdict(int)
        genomic: set[str] = set()
        for _pid, name, digest, n in index_counts(session, pchunk):
            if name == "genomic_variant":
                genomic.add(digest)
            else:
                counts[(name, digest)] += n
        seen |= {f"{name}:{d}:{n}" for (name, d), n in counts.items()}
        period = OMOP["observation_period"]
        seen |= {
            f"observation_period:{d}:{n}"
            for d, n in session.execute(
                sa.select(period.c.source_digest, sa.func.count())
                .where(period.c.person_id.in_(pchunk))
                .group_by(period.c.source_digest)
            )
        }
        people = sa.select(person.c.site_id).where(person.c.person_id.in_(pchunk))
        seen |= set(
            session.scalars(
                sa.select(genomic_file.c.blob_digest).where(
                    genomic_file.c.input_digest.in_(sorted(genomic) or [""]),
                    genomic_file.c.site_id.in_(people),
                )
            )
        )
    return hashlib.sha256("\n".join(sorted(seen)).encode()).hexdigest() if seen else ""


# -- FHIR ----------------------------------------------------------------------------------------------


def _date(v: Any) -> str | None:
    return v.isoformat() if isinstance(v, dt.date | dt.datetime) else None


def _concept(code: str | None, system: str | None, display: str | None) -> dict[str, Any]:
    uri = {
        "ICD10": "http://hl7.org/fhir/sid/icd-10",
        "LOINC": "http://loinc.org",
        "SNOMED": "http://snomed.info/sct",
        "ATC": "http://www.whocc.no/atc",
        "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    }.get(system or "")
    cc: dict[str, Any] = {}
    if code:
        cc["coding"] = [{k: v for k, v in (("system", uri), ("code", code), ("display", display)) if v}]
    if display:
        cc["text"] = display
    return cc


def fhir_bundle(p: dict[str, Any], rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A FHIR R4 collection Bundle of one patient's released rows (pseudonymous, shifted dates)."""
    pid = p["pseudonym"]
    ref = {"reference": f"Patient/{pid}"}
    entries: list[dict[str, Any]] = []
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, "identifier": [{"value": pid}]}
    if p.get("gender_source_value") in ("M", "F"):
        patient["gender"] = {"M": "male", "F": "female"}[p["gender_source_value"]]
    if p.get("year_of_birth"):
        patient["birthDate"] = f"{int(p['year_of_birth']):04d}"
    entries.append(patient)
    for n, r in enumerate(rows.get("condition_occurrence", [])):
        c: dict[str, Any] = {
            "resourceType": "Condition",
            "id": f"{pid}-c{n}",
            "subject": ref,
            "code": _concept(
                r.get("condition_source_value"), r.get("source_system"), r.get("source_display")
            ),
            "onsetDateTime": _date(r.get("condition_start_date")),
        }
        if r.get("stage"):
            c["stage"] = [{"summary": {"text": r["stage"]}}]
        entries.append(c)
    for name, rt in (("measurement", "Observation"), ("observation", "Observation")):
        for n, r in enumerate(rows.get(name, [])):
            o: dict[str, Any] = {
                "resourceType": rt,
                "id": f"{pid}-{name[0]}{n}",
                "status": "final",
                "subject": ref,
                "code": _concept(
                    r.get(f"{name}_source_value"), r.get("source_system"), r.get("source_display")
                ),
                "effectiveDateTime": _date(r.get(f"{name}_date")),
            }
            if r.get("value_as_number") is not None:
                o["valueQuantity"] = {"value": r["value_as_number"], "unit": r.get("unit_source_value")}
            elif r.get("value_as_string") or r.get("value_source_value"):
                o["valueString"] = r.get("value_as_string") or r.get("value_source_value")
            entries.append(o)
    for n, r in enumerate(rows.get("procedure_occurrence", [])):
        entries.append(
            {
                "resourceType": "Procedure",
                "id": f"{pid}-p{n}",
                "status": "completed",
                "subject": ref,
                "code": _concept(
                    r.get("procedure_source_value"), r.get("source_system"), r.get("source_display")
                ),
                "performedDateTime": _date(r.get("procedure_date")),
            }
        )
    for n, r in enumerate(rows.get("drug_exposure", [])):
        entries.append(
            {
                "resourceType": "MedicationStatement",
                "id": f"{pid}-m{n}",
                "status": "completed",
                "subject": ref,
                "medicationCodeableConcept": _concept(
                    r.get("drug_source_value"), r.get("source_system"), r.get("source_display")
                ),
                "effectivePeriod": {
                    "start": _date(r.get("drug_exposure_start_date")),
                    "end": _date(r.get("drug_exposure_end_date")),
                },
            }
        )
    for n, r in enumerate(rows.get("specimen", [])):
        s: dict[str, Any] = {
            "resourceType": "Specimen",
            "id": f"{pid}-s{n}",
            "subject": ref,
            "collection": {"collectedDateTime": _date(r.get("specimen_date"))},
        }
        if r.get("specimen_source_id"):
            s["identifier"] = [{"value": r["specimen_source_id"]}]
        if r.get("specimen_source_value"):
            s["type"] = _concept(r["specimen_source_value"], None, None)
        entries.append(s)
    clean = [{k: v for k, v in e.items() if v not in (None, {}, [])} for e in entries]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:curata:{e['resourceType']}/{e['id']}", "resource": e} for e in clean],
    }


# -- the card ------------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return [*out, ""]


def _present(v: Any) -> bool:
    """A value is there: not None, not NaN (a table read back), not blank."""
    if v is None or (isinstance(v, float) and v != v):
        return False
    return bool(str(v).strip())


def _coded(code: Any, display: Any) -> str:
    """``CODE display`` (the display the site sent with the code); a row with no code is ``uncoded``,
    whatever text it carries (text with no code is the site's free text); ``|`` and line breaks never
    break the table."""
    if not _present(code):
        return "uncoded"
    text = " ".join(str(x).strip() for x in (code, display) if _present(x))
    return re.sub(r"[|\r\n]+", " ", text)


def card_markdown(
    tables: dict[str, list[dict[str, Any]]],
    who: dict[int, ReleasePatient],
    variants: list[dict[str, Any]],
    missing: dict[str, dict[str, float]],
    *,
    min_cell: int | None = None,
) -> str:
    from curata.publish.card import MIN_CELL, cell_threshold, shown, small_cell_rule, suppressed

    k = cell_threshold(MIN_CELL if min_cell is None else min_cell)

    def counts(c: dict[str, int], *, total_known: bool = True) -> dict[str, str]:
        hide = suppressed(c, k, total_known=total_known)
        return {g: shown(n, g in hide, k) for g, n in c.items()}

    def one(n: int) -> str:
        return f"<{k}" if 0 < n < k else str(n)

    md = ["# Clinical and genomic composition", ""]
    n_people = len(tables["person"])
    md += [
        f"{n_people} of the release's patients have clinical or genomic rows. Dates are shifted per "
        "patient (intervals kept); ages above 89 read as 90.",
        "",
        f"{small_cell_rule(k)}; a diagnosis held by fewer than {k} patients is not broken down by age "
        "band, sex or region.",
        "",
    ]
    # coded values only: a code with its display, a normalised stage, a UCUM unit, and counts. A free-text
    # value (an observation's value_as_string, a note) is never listed: it is what a site wrote about
    # a patient, and the card is read by roles that may not download the data (outside review 12)
    dx_patients: dict[str, set[int]] = defaultdict(set)
    stages: dict[str, Counter[str]] = defaultdict(Counter)
    for r in tables.get("condition_occurrence", []):
        name = _coded(r.get("condition_source_value"), r.get("source_display"))
        dx_patients[name].add(int(r["person_id"]))
        if r.get("stage_group") or r.get("stage"):
            stages[name][str(r.get("stage_group") or r.get("stage"))] += 1
    md += ["## Diagnoses (patients)", ""]
    # a patient may hold several diagnoses or none: no published total gives a hidden count back, and a
    # shown count must match its breakdown below (primary suppression only)
    dx_shown = counts({d: len(p) for d, p in dx_patients.items()}, total_known=False)

    def stage_text(d: str) -> str:
        if len(dx_patients[d]) < k:  # a small diagnosis: its margin only
            return "-"
        shown = counts(dict(stages[d]))
        return ", ".join(f"{s}: {shown[s]}" for s in sorted(shown)) or "-"

    md += _table(
        ["diagnosis", "patients", "stages"],
        [
            [d, dx_shown[d], stage_text(d)]
            for d, p in sorted(dx_patients.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        ],
    )
    obs: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # rows, numeric, with text
    for r in tables.get("observation", []):
        unit = str(r["unit_source_value"]).strip() if _present(r.get("unit_source_value")) else "-"
        entry = obs[(_coded(r.get("observation_source_value"), r.get("source_display")), unit)]
        entry[0] += 1
        entry[1] += int(_present(r.get("value_as_number")))
        entry[2] += int(_present(r.get("value_as_string")))
    md += ["## Outcomes and observations (rows)", ""]
    md += (
        _table(
            ["observation", "unit", "rows", "numeric values", "rows with free text (not shown)"],
            [
                [o, u, one(n), one(num), one(txt)]
                for (o, u), (n, num, txt) in sorted(obs.items(), key=lambda kv: -kv[1][0])[:20]
            ],
        )
        if obs
        else ["none", ""]
    )
    md += ["## Age, sex and region by diagnosis (patients)", ""]
    rows = []
    for d, pids in sorted(dx_patients.items()):
        if len(pids) < k:  # no cross-tabulation under the threshold: the margin (above) only
            rows.append([d, "-", f"not shown: fewer than {k} patients"])
            continue
        for dim in ("age", "sex", "region"):
            c = counts(dict(Counter(who[p].attributes.get(dim, "unknown") for p in pids)))
            rows.append([d, dim, ", ".join(f"{g}: {n}" for g, n in sorted(c.items()))])
    md += _table(["diagnosis", "dimension", "patients"], rows)
    md += ["## Missing data per field (share of released rows with no value)", ""]
    mrows = [
        [t, c, f"{share:.0%}"]
        for t, cols in missing.items()
        for c, share in cols.items()
        if not c.endswith("_concept_id")
    ]
    md += _table(["table", "field", "missing"], mrows)
    rare = [v for v in variants if v.get("population_af") is None or v["population_af"] < RARE_AF]
    md += ["## Genomic data and re-identification risk", ""]
    md += [
        f"{len(variants)} variant calls from {len({v['file_id'] for v in variants})} VCF files. "
        f"{one(len(rare))} calls are rare (population allele frequency below {RARE_AF} or unknown). "
        "Variants are data and are released unchanged: a rare variant, or a set of common ones, can "
        "single out a person or their relatives when matched against another genomic database. Sample "
        "IDs are pseudonyms and identifying header lines were removed at the site, but the genotype "
        "itself cannot be de-identified; licensees must not attempt re-identification or linkage.",
        "",
    ]
    genes = Counter(v.get("gene") or "unknown" for v in variants)
    gene_rows = [[g, one(n)] for g, n in genes.most_common(15)]
    md += _table(["gene", "variant calls"], gene_rows) if variants else [""]
    return "\n".join(md) + "\n"


# -- per-licensee fingerprints -------------------------------------------------------------------------
# Clinical tables and VCFs carry the licensee's mark without changing what any value means:
# - tables (Parquet and CSV): rows are put in an order keyed for the licensee (sorted by HMAC(row key,
#   row)); a Parquet file also carries the mark in its key-value metadata (``curata_fingerprint``). The
#   order survives a stripped metadata block and a subset of the rows: rows of another licensee's copy
#   are in order for that licensee's key only (n rows by chance: 1 / n!).
# - VCFs: a ``##curata_fingerprint=<mark>`` header line after ``##fileformat`` (records stay sorted, so
#   the copy is still indexable).
PARQUET_MARK_KEY = b"curata_fingerprint"
VCF_MARK_LINE = b"##curata_fingerprint="
MIN_ORDERED_ROWS = 6  # fewer rows in order prove little (1/720 by chance at 6)


def row_key(site_key: bytes, mark: str) -> bytes:
    """The key of a licensee's row order: only the site (holder of ``site_key``) can make or check it."""
    import hmac

    return hmac.new(site_key, f"curata/fingerprint-rows/v1\n{mark}".encode(), "sha256").digest()


def _row_digest(key: bytes, fields: list[str]) -> bytes:
    import hmac

    return hmac.new(key, "\x1f".join(fields).encode(), "sha256").digest()[:8]


def _csv_rows(data: bytes) -> tuple[list[str], list[list[str]]]:
    import csv

    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    return (rows[0], rows[1:]) if rows else ([], [])


def _parquet_rows(table: Any) -> list[list[str]]:
    columns = [c.to_pylist() for c in table.columns]
    return [["" if v is None else str(v) for v in row] for row in zip(*columns, strict=True)]


def fingerprint_table(data: bytes, path: str, key: bytes, mark: str) -> bytes:
    """A Parquet or CSV table with its rows in the licensee's keyed order (and, Parquet, the mark)."""
    if path.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        digests = [_row_digest(key, r) for r in _parquet_rows(table)]
        order = sorted(range(len(digests)), key=digests.__getitem__)
        table = table.take(pa.array(order, type=pa.int64()))
        meta = dict(table.schema.metadata or {})
        meta[PARQUET_MARK_KEY] = mark.encode()
        buf = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(meta), buf)
        return buf.getvalue()
    import csv

    header, body = _csv_rows(data)
    if not header:
        return data
    body.sort(key=lambda r: _row_digest(key, r))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    return out.getvalue().encode()


def table_mark(data: bytes, path: str) -> str | None:
    """The mark in a Parquet file's metadata (CSV has none: its row order is the mark)."""
    if not path.endswith(".parquet"):
        return None
    import pyarrow.parquet as pq

    meta = pq.read_schema(io.BytesIO(data)).metadata or {}
    got = meta.get(PARQUET_MARK_KEY)
    return got.decode("ascii", "replace") if got else None


def in_keyed_order(data: bytes, path: str, key: bytes) -> bool:
    """Whether the table's rows stand in the order ``key`` gives (enough of them to mean something)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows = _parquet_rows(pq.read_table(io.BytesIO(data)))
    else:
        rows = _csv_rows(data)[1]
    digests = [_row_digest(key, r) for r in rows]
    if len(set(digests)) < MIN_ORDERED_ROWS:
        return False
    from itertools import pairwise

    return all(a <= b for a, b in pairwise(digests))


def fingerprint_vcf(data: bytes, mark: str) -> bytes:
    """The bgzipped VCF with the mark as a header line (records and their order unchanged)."""
    import gzip

    from curata.collect.genomics import bgzip

    text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    first = text.find(b"\n") + 1
    if not text.startswith(b"##fileformat=") or first <= 0:
        raise ValueError("not a VCF: no ##fileformat line first")
    return bgzip(text[:first] + VCF_MARK_LINE + mark.encode() + b"\n" + text[first:])


def vcf_mark(data: bytes) -> str | None:
    import gzip
    import zlib

    try:
        head = zlib.decompressobj(31).decompress(data, 1 << 20) if data[:2] == b"\x1f\x8b" else data
    except (zlib.error, gzip.BadGzipFile):
        return None
    for line in head.split(b"\n"):
        if not line.startswith(b"##"):
            break
        if line.startswith(VCF_MARK_LINE):
            return line[len(VCF_MARK_LINE) :].decode("ascii", "replace").strip()
    return None

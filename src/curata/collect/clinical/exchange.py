"""The wire format of de-identified clinical and genomic data, gateway to platform: ``curata-clinical/1``.

What `curata gateway push` sends and the platform's ``POST /clinical/batches`` reads. It names no
internal storage (neither the catalog's tables nor the store's blobs): OMOP CDM v5.4 tables as Parquet,
VCFs as the files. One request (``multipart/related``) carries one or more *batches*, each the
de-identified output of one input filed at the site (a CSV / Excel export, one FHIR file, one VCF):

- a manifest part, ``Content-Type: application/vnd.curata.clinical+json``::

    {"format": "curata-clinical/1", "batch": "<64 hex>", "kind": "csv" | "excel" | "fhir" | "vcf",
     "parts": [{"name": "person", "digest": "<sha256 hex>", "rows": 1}, ...]}

  ``batch`` is the site's keyed name for the input (HMAC-SHA256 under the site key of the input's
  sha256): the same on every run, so the platform files a batch once however often it comes, and
  nothing about the input can be learnt from it.
- one part per table, ``application/vnd.apache.parquet``, ``Content-ID: <BATCH.TABLE>``: ``person``
  (``pseudonym``, ``gender_source_value``, ``year_of_birth``, ``age_capped``) and the event tables
  (``condition_occurrence``, ``drug_exposure``, ``procedure_occurrence``, ``measurement``,
  ``observation``, ``specimen``): the patient's ``pseudonym`` and the table's OMOP columns with
  Curata's linkage columns (stage, source_display, note, slide_id...). No person_id, site or input
  digest: the platform numbers its own rows. ``observation_period`` is derived there, not sent.
- for a VCF, one part ``vcf`` (``application/gzip``): the de-identified VCF (BGZF), whole.

Every part carries an RFC 9530 ``Content-Digest: sha-256=:<base64>:`` and the manifest lists the same
sha256: a part whose bytes match neither is refused, and its batch with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from curata.collect.clinical._codes import (
    SYSTEMS,
    accepted_system,
    normal_stage,
    stage_group,
    system_name,
    valid_code,
    valid_stage,
)
from curata.collect.clinical._index import arrow_type
from curata.collect.clinical._writer import _DATE_COLUMNS
from curata.collect.clinical.deid import AGE_CAP
from curata.collect.clinical.models import OMOP
from curata.collect.deid.pseudonyms import DEFAULT_PREFIX, is_accepted_pseudonym, is_pseudonym, sample_patient
from curata.collect.deid.text import Identifiers, clean_text
from curata.collect.dicomweb.multipart import Part
from curata.errors import DeidError, InputError

FORMAT = "curata-clinical/1"
MANIFEST_TYPE = "application/vnd.curata.clinical+json"
PARQUET_TYPE = "application/vnd.apache.parquet"
VCF_TYPE = "application/gzip"
KINDS = ("csv", "excel", "fhir", "vcf")
EVENT_TABLES = tuple(_DATE_COLUMNS)
PERSON_COLUMNS = ("pseudonym", "gender_source_value", "year_of_birth", "age_capped")
_INTERNAL = {"person_id", "site_id", "source_digest", "record_key"}
# What the site writes in each column it fills (``_records.RecordBuilder.event``, ``tabular._event``,
# ``RecordBuilder.person``), and so what the platform checks there. A wire column no rule names is one
# the site never fills (stop_reason, sig, lot_number, measurement_time, quantity...): it must be empty.
#   text: free text through the DICOM engine's generic cleaner (cleaning it again changes nothing)
#   code: the table's code, of its source_system's shape (``_codes.valid_code``); a specimen's has no
#   source_system on the wire, so it has a shape that needs none, as the site checked it
#   system, stage, stage_group, unit, sex: a code system's name, a normalised stage and its group, a
#   UCUM unit, M / F / O
#   keyed: a keyed identifier (``ClinicalDeidentifier.source_id``); pseudonym: a patient's pseudonym
#   value: a date, a time stamp, a number or a flag (typed by the cast); concept: 0 (no concept mapped)
_EVENT_TEXT = {"source_display": "text", "source_system": "system", "note": "text"}
_RULES: dict[str, dict[str, str]] = {
    "person": {"gender_source_value": "sex", "year_of_birth": "value", "age_capped": "value"},
    "condition_occurrence": {
        **dict.fromkeys(("condition_start_date", "condition_start_datetime"), "value"),
        **dict.fromkeys(("condition_end_date", "condition_end_datetime"), "value"),
        "stage": "stage",
        "stage_group": "stage_group",
        **_EVENT_TEXT,
    },
    "procedure_occurrence": {
        **dict.fromkeys(("procedure_date", "procedure_datetime"), "value"),
        **dict.fromkeys(("procedure_end_date", "procedure_end_datetime"), "value"),
        **_EVENT_TEXT,
    },
    "drug_exposure": {
        **dict.fromkeys(("drug_exposure_start_date", "drug_exposure_start_datetime"), "value"),
        **dict.fromkeys(("drug_exposure_end_date", "drug_exposure_end_datetime"), "value"),
        **_EVENT_TEXT,
    },
    "measurement": {
        **dict.fromkeys(("measurement_date", "measurement_datetime", "value_as_number"), "value"),
        "value_source_value": "text",
        "unit_source_value": "unit",
        **_EVENT_TEXT,
    },
    "observation": {
        **dict.fromkeys(("observation_date", "observation_datetime", "value_as_number"), "value"),
        "value_as_string": "text",
        "unit_source_value": "unit",
        **_EVENT_TEXT,
    },
    "specimen": {
        **dict.fromkeys(("specimen_date", "specimen_datetime"), "value"),
        "specimen_source_id": "keyed",
        "slide_id": "keyed",
        "anatomic_site_source_value": "text",
        "note": "text",
    },
}
# each event table's code column: never free text, so it must fit its system as it did at the site
CODE_COLUMNS = {t: f"{t.split('_')[0]}_source_value" for t in _DATE_COLUMNS}
for _table, _code in CODE_COLUMNS.items():
    _RULES[_table][_code] = "code"
# free text, cleaned at the site by the DICOM engine's generic cleaner: cleaning it again changes nothing
TEXT_COLUMNS = tuple(sorted({c for rules in _RULES.values() for c, k in rules.items() if k == "text"}))
# keyed identifiers of specimens and slides (ClinicalDeidentifier.source_id)
_SOURCE_IDS = {"specimen_source_id": "SPEC", "slide_id": "SLIDE"}
_SEXES = frozenset({"M", "F", "O"})  # RecordBuilder.person: U and anything else are not written
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NO_IDS = Identifiers()
# a table's size once decompressed (Parquet's own metadata, read before the data): a small part that
# would expand past this is refused unread
MAX_TABLE_BYTES = 4 << 30


def wire_columns(table: str) -> tuple[str, ...]:
    """The columns ``table`` may carry on the wire (``pseudonym`` first)."""
    if table == "person":
        return PERSON_COLUMNS
    cols = OMOP[table].c
    return ("pseudonym", *(c.name for c in cols if not c.primary_key and c.name not in _INTERNAL))


def _column(table: str, name: str) -> sa.Column[Any]:
    return OMOP["person"].c[name] if name == "pseudonym" else OMOP[table].c[name]


def content_digest(data: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` header value (sha-256) of ``data``."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def _declared_sha256(headers: dict[str, str]) -> str | None:
    """The sha256 (hex) a part's ``Content-Digest`` declares, or None when it declares none readable."""
    for item in headers.get("content-digest", "").split(","):
        algo, _, encoded = item.strip().partition("=")
        if algo.strip().lower() == "sha-256":
            try:
                return base64.b64decode(encoded.strip().strip(":"), validate=True).hex()
            except ValueError:
                return None
    return None


@dataclass
class Batch:
    """The de-identified output of one input, as it travels (see the module's docstring)."""

    batch: str  # the site's keyed name of the input (64 hex)
    kind: str  # csv, excel, fhir, vcf
    tables: dict[str, Any] = field(default_factory=dict)  # OMOP table -> pyarrow.Table
    vcf: bytes | None = None
    # the parts as they travelled (name -> bytes); a refused batch's size is recorded, its bytes not kept
    raw: dict[str, bytes] = field(default_factory=dict, repr=False)

    def parts(self) -> list[Part]:
        """The manifest and data parts, each with its ``Content-Digest``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        data: list[tuple[str, str, bytes, int]] = []
        for name, table in self.tables.items():
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd")
            data.append((name, PARQUET_TYPE, sink.getvalue().to_pybytes(), table.num_rows))
        if self.vcf is not None:
            data.append(("vcf", VCF_TYPE, self.vcf, 0))
        manifest = {
            "format": FORMAT,
            "batch": self.batch,
            "kind": self.kind,
            "parts": [
                {"name": n, "digest": hashlib.sha256(b).hexdigest(), "rows": rows} for n, _t, b, rows in data
            ],
        }
        head = json.dumps(manifest, sort_keys=True).encode()
        out: list[Part] = [({"Content-Type": MANIFEST_TYPE, "Content-Digest": content_digest(head)}, head)]
        for name, ctype, body, _rows in data:
            headers = {
                "Content-Type": ctype,
                "Content-ID": f"<{self.batch}.{name}>",
                "Content-Digest": content_digest(body),
            }
            out.append((headers, body))
        return out

    def quarantine_bytes(self) -> bytes:
        """Every part of the batch in one blob (a refused batch's size is taken from it)."""
        return b"".join(f"--{name}\n".encode() + body + b"\n" for name, body in sorted(self.raw.items()))


@dataclass
class Refusal:
    """A batch refused before its content could be read (a part lost or altered on the way)."""

    batch: str
    reason: str


def decode(parts: list[Part]) -> tuple[list[Batch], list[Refusal]]:
    """The batches of one request; those whose manifest or parts do not check out come back refused.

    Only structure and digests are checked here; :func:`check` reads the content."""
    manifests: list[tuple[dict[str, str], bytes]] = []
    by_id: dict[str, tuple[dict[str, str], bytes]] = {}
    for headers, body in parts:
        if headers.get("content-type", "").split(";")[0].strip() == MANIFEST_TYPE:
            manifests.append((headers, body))
        else:
            by_id[headers.get("content-id", "").strip("<> ")] = (headers, body)
    batches: list[Batch] = []
    refused: list[Refusal] = []
    for n, (headers, body) in enumerate(manifests, start=1):
        try:
            if _declared_sha256(headers) != hashlib.sha256(body).hexdigest():
                raise InputError(f"manifest {n}: its Content-Digest does not match its bytes")
            try:
                manifest = json.loads(body)
            except ValueError:
                raise InputError(f"manifest {n}: not JSON") from None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise InputError(f"manifest {n}: not a {FORMAT} manifest")
        except InputError as exc:
            refused.append(Refusal("", exc.message))
            continue
        name = str(manifest.get("batch", ""))
        try:
            if not _HEX64.fullmatch(name):
                raise InputError("the batch name is not 64 hex digits")
            kind = str(manifest.get("kind", ""))
            if kind not in KINDS:
                raise InputError(f"kind must be one of {', '.join(KINDS)}")
            batch = Batch(name, kind)
            declared: dict[str, Any] = {}
            entries = manifest.get("parts")
            if not isinstance(entries, list):
                raise InputError("the manifest lists no parts")
            for k, entry in enumerate(entries, start=1):
                if not isinstance(entry, dict):
                    raise InputError("a part entry of the manifest is not an object")
                part = str(entry.get("name", ""))
                if part != "vcf" and part not in ("person", *EVENT_TABLES):
                    # by its place in the manifest: the name is the sender's text, not the format's
                    raise InputError(f"part {k}: not an OMOP table Curata files, nor 'vcf'")
                found = by_id.get(f"{name}.{part}")
                if found is None:
                    raise InputError(f"part {part!r} is missing")
                got = hashlib.sha256(found[1]).hexdigest()
                if got != _declared_sha256(found[0]) or got != str(entry.get("digest", "")):
                    raise InputError(f"part {part!r}: its Content-Digest does not match its bytes")
                batch.raw[part] = found[1]
                declared[part] = entry.get("rows")
        except InputError as exc:
            refused.append(Refusal(name if _HEX64.fullmatch(name) else "", exc.message))
            continue
        for part, body in batch.raw.items():
            if part == "vcf":
                batch.vcf = body
                continue
            batch.tables[part] = _read_table(body, declared.get(part))
        batches.append(batch)
    return batches, refused


def _read_table(body: bytes, rows: Any) -> Any:
    """A Parquet part as a table, or None when it is unreadable, too large once decompressed, or not
    the row count its manifest declares (check() then refuses the batch)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(pa.BufferReader(body)).metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if size > MAX_TABLE_BYTES or meta.num_rows != rows:
            return None
        return pq.read_table(pa.BufferReader(body))
    except (pa.ArrowException, OSError):
        return None


def check(batch: Batch, prefixes: Collection[str] = (DEFAULT_PREFIX,)) -> None:
    """Refuse (InputError: malformed; DeidError: looks identified) a batch the platform must not file;
    a batch that passes has its tables in the catalog's column types.

    Patient keys must be pseudonyms of this platform's form, specimen and slide IDs keyed IDs, free text
    as the site's cleaner leaves it, codes, stages and units as the site checked them, every column one
    the format names. Reasons name the table, the
    column and the row, never a value. ``prefixes``: the pseudonym prefixes accepted (``CUR-`` and
    the platform's ``[deid] site_prefixes``)."""
    if (batch.kind == "vcf") != (batch.vcf is not None) or (batch.kind == "vcf" and batch.tables):
        raise InputError(
            f"a {batch.kind} batch must carry " + ("one VCF" if batch.kind == "vcf" else "tables")
        )
    for name, table in list(batch.tables.items()):
        if table is None:
            raise InputError(f"table {name}: not a readable Parquet file of the declared rows and size")
        batch.tables[name] = _check_table(name, table, prefixes)
    check_ages(batch)


def check_ages(batch: Batch, filed: dict[str, int] | None = None) -> None:
    """No person's event may come more than 90 years after their year of birth (ages above 89 are
    capped at the site: the year of birth moves, the event's date does not). ``filed``: the years of
    birth the platform already holds (they win over a batch's, as the catalog writer keeps them)."""
    import pyarrow.compute as pc

    persons = batch.tables.get("person")
    born: dict[str, int] = {}
    if persons is not None and "year_of_birth" in persons.column_names:
        pairs = zip(*(persons.column(c).to_pylist() for c in ("pseudonym", "year_of_birth")), strict=True)
        born = {p: y for p, y in pairs if y is not None}
    born.update(filed or {})
    for name, table in batch.tables.items():
        if name not in _DATE_COLUMNS or not table.num_rows:
            continue
        years = pc.year(table.column(_DATE_COLUMNS[name]))
        last = (
            table.select(["pseudonym"])
            .append_column("y", years)
            .group_by("pseudonym")
            .aggregate([("y", "max")])
        )
        for pseudonym, year in zip(
            *(last.column(c).to_pylist() for c in ("pseudonym", "y_max")), strict=True
        ):
            if pseudonym in born and year - born[pseudonym] > AGE_CAP + 1:
                raise DeidError(
                    f"table {name}: a patient is older than {AGE_CAP} (the site did not cap the age)"
                )


def _first_bad(column: Any, ok: Any) -> int | None:
    """The row number (from 1) of the first value ``ok`` refuses; each distinct value is tested once."""
    import pyarrow as pa
    import pyarrow.compute as pc

    bad = [v for v in pc.unique(column).to_pylist() if v is not None and not ok(v)]
    if not bad:
        return None
    hits = pc.is_in(column, value_set=pa.array(bad, type=column.type)).to_numpy(zero_copy_only=False)
    return int(hits.argmax()) + 1


def column_rule(table: str, column: str) -> str:
    """What the site writes in ``column`` of ``table`` (see ``_RULES``): ``empty`` where it writes nothing."""
    if column == "pseudonym":
        return "pseudonym"
    if column.endswith("_concept_id"):
        return "concept"
    return _RULES[table].get(column, "empty")


def _check_table(name: str, table: Any, prefixes: Collection[str] = (DEFAULT_PREFIX,)) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    allowed = wire_columns(name)
    for i, col in enumerate(table.column_names, start=1):
        if col not in allowed:  # by its place: the name is the sender's text, not the format's
            raise DeidError(f"table {name}: its column {i} is not one the format carries")
    needed = ["pseudonym"] + ([_DATE_COLUMNS[name]] if name in _DATE_COLUMNS else [])
    for col in needed:
        if col not in table.column_names or table.column(col).null_count:
            raise InputError(f"table {name}: column {col} is missing or empty in some rows")
    for i, col in enumerate(table.column_names):
        want = arrow_type(_column(name, col))
        if not table.schema.field(col).type.equals(want):
            try:
                table = table.set_column(i, col, pc.cast(table.column(col), want))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(f"table {name}: column {col} is not of type {want}") from None
    for col in table.column_names:
        _check_column(name, col, column_rule(name, col), table.column(col), prefixes)
    _check_stage_groups(name, table)
    _check_codes(name, table)
    return table


def _text_ok(v: str) -> bool:
    return clean_text(v, _NO_IDS) == v


# the value checks of the string columns' rules (the code column's is _check_codes: it reads two columns)
_SHAPES: dict[str, tuple[Callable[[str], bool], str]] = {
    "text": (_text_ok, "holds what looks like an identifier"),
    # a known system as the site names it, or a local one's name with no identifier's shape in it: the
    # platform cannot read the site's mapping, so a bare word is the site's to refuse (``kept_system``)
    "system": (accepted_system, "is not a code system"),
    "stage": (lambda v: valid_stage(v) and normal_stage(v) == v, "is not a stage as the site writes it"),
    "unit": (lambda v: valid_code(v, "UCUM"), "is not a unit"),
    "sex": (lambda v: v in _SEXES, "is not one of M, F, O"),
    # a site pseudonym: under any site's prefix (CUR- unless the site set its own), as the platform
    # receives from many sites
}


def _check_column(
    name: str, col: str, rule: str, column: Any, prefixes: Collection[str] = (DEFAULT_PREFIX,)
) -> None:
    """One column against what the site writes there (``_RULES``); the reason names the table, the
    column and the row, never the value. ``prefixes``: the pseudonym prefixes the platform accepts."""
    import pyarrow.compute as pc

    row: int | None
    if rule == "empty":
        if column.null_count < len(column):
            row = int(pc.is_valid(column).to_numpy(zero_copy_only=False).argmax()) + 1
            raise DeidError(f"table {name} row {row}: {col} is a column the site never fills")
        return
    if rule == "concept":
        row = _first_bad(column, lambda v: v == 0)
        if row is not None:
            raise DeidError(f"table {name} row {row}: {col} is not 0 (the site maps no concept)")
        return
    if rule == "keyed":
        prefix = f"{_SOURCE_IDS[col]}-"
        row = _first_bad(column, lambda v: is_pseudonym(v, prefix=prefix))
        if row is not None:
            raise DeidError(f"table {name} row {row}: {col} is not a keyed identifier")
        return
    if rule == "pseudonym":  # under a prefix the platform accepts (CUR-, and those its sites set)
        row = _first_bad(column, lambda v: is_accepted_pseudonym(v, prefixes))
        if row is not None:
            raise DeidError(f"table {name} row {row}: the patient key is not a pseudonym of this platform")
        return
    shape = _SHAPES.get(rule)
    if shape is None:  # value, code, stage_group: typed by the cast, or checked with other columns
        return
    ok, what = shape
    row = _first_bad(column, ok)
    if row is not None:
        raise DeidError(f"table {name} row {row}: {col} {what}")


def _check_stage_groups(name: str, table: Any) -> None:
    """A stage group is the group of its row's stage (``_codes.stage_group``), as the site derives it;
    each distinct (stage, group) pair is tested once."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "stage_group" not in table.column_names:
        return
    if "stage" not in table.column_names:
        table = table.append_column("stage", pa.nulls(table.num_rows, pa.string()))
    keys = ["stage", "stage_group"]
    for pair in table.select(keys).group_by(keys).aggregate([]).to_pylist():
        stage, group = pair["stage"], pair["stage_group"]
        if group is None or (stage is not None and stage_group(stage) == group):
            continue
        hit = pc.equal(table.column("stage_group"), pa.scalar(group, pa.string()))
        if stage is not None:
            hit = pc.and_(hit, pc.equal(table.column("stage"), pa.scalar(stage, pa.string())))
        else:
            hit = pc.and_(hit, pc.is_null(table.column("stage")))
        row = int(pc.fill_null(hit, False).to_numpy(zero_copy_only=False).argmax()) + 1
        raise DeidError(f"table {name} row {row}: stage_group is not the group of its stage")


def _check_codes(name: str, table: Any) -> None:
    """Codes fit their system (``source_system``; a local code's shape where none is named)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    code = CODE_COLUMNS.get(name)
    if code not in table.column_names:
        return
    system = "source_system" if "source_system" in table.column_names else None
    keys = [code] if system is None else [code, system]
    pairs = table.select(keys).group_by(keys).aggregate([]).to_pylist()
    for pair in pairs:
        c, sys_name = pair[code], pair.get(system) if system else None
        if c is not None and not valid_code(c, sys_name):
            hit = pc.equal(table.column(code), pa.scalar(c))
            if system is not None:
                hit = pc.and_(hit, pc.equal(table.column(system), pa.scalar(sys_name, pa.string())))
            row = int(pc.fill_null(hit, False).to_numpy(zero_copy_only=False).argmax()) + 1
            # the system named only where it is a known one: source_system is the sender's text
            label = system_name(sys_name) or "local"
            if sys_name and label not in SYSTEMS:
                raise DeidError(
                    f"table {name} row {row}: {code} is not a code of its source_system (unknown)"
                )
            raise DeidError(f"table {name} row {row}: {code} is not a {label} code")


def check_vcf_header(sent: bytes, cleaned: bytes) -> None:
    """The header of a pushed VCF must be as the site's cleaning leaves it: ``cleaned`` is the platform's
    run of the same cleaning over ``sent`` (both BGZF); any line it drops or changes is refused."""
    import gzip

    def header(data: bytes) -> list[bytes]:
        text = gzip.decompress(data)
        return text[: text.find(b"\n#CHROM")].split(b"\n")

    from itertools import zip_longest

    for n, (a, b) in enumerate(zip_longest(header(sent), header(cleaned)), start=1):
        if a != b:
            raise DeidError(f"VCF header line {n}: not as the site's cleaning leaves it (identifying?)")


_VCF_COLUMNS = ("CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT")


def check_vcf_records(sent: bytes, cleaned: bytes) -> None:
    """The records of a pushed VCF must be as the site's cleaning leaves them (``vcf.record_values``:
    public variant IDs, typed INFO and sample values, annotation text): ``cleaned`` is the platform's
    run of the same cleaning over ``sent``; a record it changes is refused, naming the record and the
    column, never the value."""
    import gzip
    from itertools import zip_longest

    def records(data: bytes) -> list[bytes]:
        text = gzip.decompress(data)
        start = text.find(b"\n", text.find(b"\n#CHROM") + 1)
        return text[start + 1 :].split(b"\n") if start > 0 else []

    ours, kept = records(sent), records(cleaned)
    for n, (a, b) in enumerate(zip_longest(ours, kept), start=1):
        if a == b:
            continue
        if len(ours) != len(kept):  # the cleaning drops a record (a CHROM, POS, REF, ALT, QUAL, FILTER)
            raise DeidError(f"VCF record {n}: the site's cleaning drops it (a field no rule keeps)")
        cols = zip_longest((a or b"").split(b"\t"), (b or b"").split(b"\t"))
        i = next(i for i, (x, y) in enumerate(cols) if x != y)
        where = _VCF_COLUMNS[i] if i < len(_VCF_COLUMNS) else f"sample {i - len(_VCF_COLUMNS) + 1}"
        raise DeidError(f"VCF record {n}: its {where} column is not as the site's cleaning leaves it")


def check_samples(samples: list[str], prefixes: Collection[str] = (DEFAULT_PREFIX,)) -> None:
    """VCF sample names must be pseudonyms (a second sample of one patient carries ``_2``, ``_3``...)."""
    for i, sample in enumerate(samples, start=1):
        if not is_accepted_pseudonym(sample_patient(sample), prefixes):
            raise DeidError(f"VCF sample {i}: its name is not a pseudonym of this platform")


__all__ = [
    "FORMAT",
    "KINDS",
    "MANIFEST_TYPE",
    "Batch",
    "Refusal",
    "arrow_type",
    "check",
    "check_ages",
    "check_samples",
    "check_vcf_header",
    "check_vcf_records",
    "content_digest",
    "decode",
    "wire_columns",
]

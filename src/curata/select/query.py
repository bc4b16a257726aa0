"""The cohort query language: a small expression language over header fields, QC metrics and verdicts.

Grammar (keywords are case-insensitive)::

    query      := or_expr
    or_expr    := and_expr ( "or" and_expr )*
    and_expr   := not_expr ( "and" not_expr )*
    not_expr   := "not" not_expr | "(" query ")" | test
    test       := FIELD                                   a yes/no field, e.g. qc.passed
                | FIELD OP value                          OP is = != < <= > >=
                | FIELD ["not"] "in" "(" value ("," value)* ")"
                | FIELD ["not"] "like" value              % any text, _ one character
                | FIELD "is" ["not"] "null"
    value      := number | 'text' | "text" | word | true | false

Examples::

    modality = CT and body_part = CHEST and slice_thickness <= 1.5 and patient_age >= 50 and qc.passed
    site in (lagos-1, 'accra 2') and not qc.is_localizer and qc.noise_hu < 20
    description like '%lung%' or manufacturer = SIEMENS

Fields: the header fields in ``HEADER_FIELDS`` (``modality``, ``body_part``, ``slice_thickness``,
``patient_age`` in years, ``sex``, ``site``, ``manufacturer``...), every QC metric as ``qc.<name>``
(see ``curata.select.metrics.registry``), and the verdict: ``qc.passed`` (measured and no exclusion
rule fired), ``qc.excluded``, ``qc.warned``, ``qc.measured``. Text compares ignore case. A missing value
(not measured, not applicable) is unknown: a comparison with it is neither true nor false, so the series
is not selected (SQL's three-valued logic). Errors point at the offending token with a caret.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import field as dataclass_field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, not_, or_, select, true

from curata.catalog import Patient, Series, Site, Study, join_series_to_site
from curata.errors import QueryError
from curata.select.metrics.registry import METRICS
from curata.select.models import QcMeasurement, QcVerdict

# -- fields ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # num, str, bool
    column: Callable[[], Any]
    doc: str = ""
    # Fields about a patient's clinical or genomic rows: ``scope(condition)`` is an EXISTS over those
    # rows of the series' patient (a patient has many diagnoses and variants; a series matches when one
    # of them does). ``column`` may then return several columns: a test holds when it holds for one.
    scope: Callable[[Any], Any] | None = None


HEADER_FIELDS: dict[str, Field] = {
    f.name: f
    for f in [
        Field("modality", "str", lambda: Series.modality, "Modality (CT, MR...)"),
        Field("body_part", "str", lambda: Series.body_part, "BodyPartExamined"),
        Field("description", "str", lambda: Series.description, "SeriesDescription"),
        Field("protocol", "str", lambda: Series.protocol_name, "ProtocolName"),
        Field("manufacturer", "str", lambda: Series.manufacturer, "Manufacturer"),
        Field("model", "str", lambda: Series.model, "ManufacturerModelName"),
        Field("slice_thickness", "num", lambda: Series.slice_thickness, "SliceThickness, mm"),
        Field("spacing_between_slices", "num", lambda: Series.spacing_between_slices, "mm"),
        Field("pixel_spacing", "num", lambda: Series.pixel_spacing_row, "row spacing, mm"),
        Field("rows", "num", lambda: Series.rows, "Rows"),
        Field("columns", "num", lambda: Series.columns, "Columns"),
        Field("instances", "num", lambda: Series.instance_count, "images in the catalog"),
        Field("kvp", "num", lambda: Series.kvp, "KVP"),
        Field("field_strength", "num", lambda: Series.magnetic_field_strength, "tesla"),
        Field("sequence", "str", lambda: Series.sequence_name, "SequenceName"),
        Field("contrast", "str", lambda: Series.contrast_agent, "ContrastBolusAgent"),
        Field("transfer_syntax", "str", lambda: Series.transfer_syntax, "UID"),
        Field("series_date", "str", lambda: Series.series_date, "YYYYMMDD (shifted)"),
        Field("series_uid", "str", lambda: Series.series_uid, "SeriesInstanceUID"),
        Field("study_uid", "str", lambda: Study.study_uid, "StudyInstanceUID"),
        Field("study_date", "str", lambda: Study.study_date, "YYYYMMDD (shifted)"),
        Field("study_description", "str", lambda: Study.description, "StudyDescription"),
        Field("patient_age", "num", lambda: Study.patient_age_years, "years at the study"),
        Field("sex", "str", lambda: Patient.sex, "PatientSex"),
        Field("patient", "str", lambda: Patient.pseudonym, "patient pseudonym"),
        Field("site", "str", lambda: Site.name, "contributing site"),
        Field("country", "str", lambda: Site.country, "site's country"),
    ]
}

VERDICT_FIELDS: dict[str, Field] = {
    "qc.passed": Field("qc.passed", "bool", lambda: QcVerdict.passed, "measured and no exclusion rule fired"),
    "qc.excluded": Field("qc.excluded", "bool", lambda: not_(QcVerdict.passed), "an exclusion rule fired"),
    "qc.warned": Field("qc.warned", "bool", lambda: QcVerdict.warned, "a warning rule fired"),
    "qc.measured": Field("qc.measured", "bool", lambda: QcVerdict.id.is_not(None), "QC has a verdict"),
}


def _metric_field(name: str) -> Field:
    metric = METRICS[name]
    element = QcMeasurement.metrics[name]
    getter = {"num": element.as_float, "bool": element.as_boolean, "str": element.as_string}[metric.kind]
    return Field(f"qc.{name}", metric.kind, getter, f"{metric.definition} ({metric.unit})")


def _patient_rows(table_name: str) -> Callable[[Any], Any]:
    """EXISTS over the rows of one clinical table (or of the variants) belonging to the series' patient:
    the same pseudonym at the same site. Person rows are read in the catalog; the other tables through
    their per-patient index (``curata.collect.clinical.cohort``)."""

    def scope(condition: Any) -> Any:
        from curata.collect.clinical import OMOP, patient_rows

        if table_name != "person":
            return patient_rows(table_name, condition, Patient.pseudonym, Patient.site_id)
        person = OMOP["person"]
        return exists(
            select(1).where(
                person.c.pseudonym == Patient.pseudonym, person.c.site_id == Patient.site_id, condition
            )
        )

    return scope


def _cols(table_name: str, *names: str) -> Callable[[], Any]:
    def get() -> Any:
        from curata.collect.clinical import OMOP, IndexedColumn

        if table_name != "person":
            got: tuple[Any, ...] = tuple(IndexedColumn(table_name, n) for n in names)
        else:
            got = tuple(OMOP[table_name].c[n] for n in names)
        return got if len(got) > 1 else got[0]

    return get


def _linked_fields() -> dict[str, Field]:
    spec = [
        (
            "clinical.condition",
            "str",
            "condition_occurrence",
            ("source_display", "condition_source_value"),
            "a diagnosis of the patient (name or code)",
        ),
        (
            "clinical.condition_code",
            "str",
            "condition_occurrence",
            ("condition_source_value",),
            "ICD-10 etc.",
        ),
        (
            "clinical.stage",
            "str",
            "condition_occurrence",
            ("stage", "stage_group"),
            "stage of a diagnosis (IIIA; III also matches IIIA)",
        ),
        (
            "clinical.measurement",
            "str",
            "measurement",
            ("source_display", "measurement_source_value"),
            "a measurement (lab test) the patient has",
        ),
        ("clinical.measurement_value", "num", "measurement", ("value_as_number",), "a measured value"),
        (
            "clinical.observation",
            "str",
            "observation",
            ("source_display", "observation_source_value"),
            "an observation (outcome, smoking...)",
        ),
        (
            "clinical.procedure",
            "str",
            "procedure_occurrence",
            ("source_display", "procedure_source_value"),
            "a procedure the patient had",
        ),
        ("clinical.drug", "str", "drug_exposure", ("source_display", "drug_source_value"), "a drug given"),
        (
            "clinical.specimen",
            "str",
            "specimen",
            ("specimen_source_value", "anatomic_site_source_value"),
            "a specimen (type code or anatomic site)",
        ),
        ("clinical.year_of_birth", "num", "person", ("year_of_birth",), "shifted; capped at 90 years"),
        ("genomic.gene", "str", "genomic_variant", ("gene",), "a gene with a variant (HGNC symbol)"),
        ("genomic.consequence", "str", "genomic_variant", ("consequence",), "Sequence Ontology term"),
        ("genomic.hgvs", "str", "genomic_variant", ("hgvs_c", "hgvs_p"), "c. or p. notation"),
        ("genomic.zygosity", "str", "genomic_variant", ("zygosity",), "heterozygous, homozygous..."),
        ("genomic.allele_frequency", "num", "genomic_variant", ("allele_frequency",), "in the sample"),
        ("genomic.population_af", "num", "genomic_variant", ("population_af",), "gnomAD-style"),
        ("genomic.chrom", "str", "genomic_variant", ("chrom",), "chromosome"),
        ("genomic.pos", "num", "genomic_variant", ("pos",), "position"),
    ]
    out = {
        name: Field(name, kind, _cols(table, *cols), doc, scope=_patient_rows(table))
        for name, kind, table, cols, doc in spec
    }
    out["clinical.linked"] = Field(
        "clinical.linked",
        "bool",
        lambda: true(),
        "the patient has clinical rows",
        scope=_patient_rows("person"),
    )
    out["genomic.sequenced"] = Field(
        "genomic.sequenced",
        "bool",
        lambda: true(),
        "the patient has variants",
        scope=_patient_rows("genomic_variant"),
    )
    return out


@functools.cache
def all_fields() -> dict[str, Field]:
    out = dict(HEADER_FIELDS)
    out.update(VERDICT_FIELDS)
    for name in METRICS:
        out[f"qc.{name}"] = _metric_field(name)
    out.update(_linked_fields())
    return out


# -- tokens ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      |(?P<op><=|>=|!=|<>|==|=|<|>)
      |(?P<punct>[(),])
      |(?P<word>[A-Za-z0-9_.:+\-*/%^]+)""",
    re.VERBOSE,
)
KEYWORDS = {"and", "or", "not", "in", "is", "null", "like", "true", "false"}


@dataclass
class Token:
    kind: str  # string, op, punct, word, number, keyword, end
    text: str
    pos: int
    value: Any = None


def _error(query: str, pos: int, message: str, hint: str | None = None) -> QueryError:
    caret = " " * pos + "^"
    return QueryError(f"{message}\n    {query}\n    {caret}", hint=hint)


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if not m:
            bad = query[pos]
            if bad in "'\"":
                raise _error(query, pos, "unterminated text: no closing quote")
            raise _error(query, pos, f"unexpected character {bad!r}")
        kind = m.lastgroup or ""
        text = m.group(0)
        if kind == "string":
            body = text[1:-1]
            tokens.append(Token("string", text, pos, re.sub(r"\\(.)", r"\1", body)))
        elif kind == "word":
            low = text.lower()
            if low in KEYWORDS:
                tokens.append(Token("keyword", text, pos, low))
            else:
                try:
                    tokens.append(Token("number", text, pos, float(text)))
                except ValueError:
                    tokens.append(Token("word", text, pos, text))
        elif kind != "ws":
            tokens.append(Token(kind, text, pos, text))
        pos = m.end()
    tokens.append(Token("end", "", len(query)))
    return tokens


# -- syntax tree ----------------------------------------------------------------------------------------


@dataclass
class Node:
    pos: int


@dataclass
class BoolOp(Node):
    op: str  # and / or
    parts: list[Node] = field(default_factory=list)


@dataclass
class Not(Node):
    part: Node


@dataclass
class Test(Node):
    field: Field
    op: str  # truth, =, !=, <, <=, >, >=, in, like, null
    values: list[Any] = dataclass_field(default_factory=list)
    negate: bool = False


@dataclass
class Query:
    text: str
    root: Node
    fields: list[str]


class _Parser:
    def __init__(self, text: str, fields: dict[str, Field]) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.fields = fields
        self.used: list[str] = []

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def error(self, tok: Token, message: str, hint: str | None = None) -> QueryError:
        return _error(self.text, tok.pos, message, hint)

    def keyword(self, *words: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.value in words

    def parse(self) -> Query:
        if self.tok.kind == "end":
            raise self.error(self.tok, "empty query", hint="e.g. modality = CT and qc.passed")
        root = self.or_expr()
        if self.tok.kind != "end":
            raise self.error(self.tok, f"expected 'and', 'or' or the end, found {self.tok.text!r}")
        return Query(self.text, root, self.used)

    def or_expr(self) -> Node:
        start = self.tok.pos
        parts = [self.and_expr()]
        while self.keyword("or"):
            self.next()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolOp(start, "or", parts)

    def and_expr(self) -> Node:
        start = self.tok.pos
        parts = [self.not_expr()]
        while self.keyword("and"):
            self.next()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else BoolOp(start, "and", parts)

    def not_expr(self) -> Node:
        tok = self.tok
        if self.keyword("not"):
            self.next()
            return Not(tok.pos, self.not_expr())
        if tok.kind == "punct" and tok.text == "(":
            self.next()
            inner = self.or_expr()
            if not (self.tok.kind == "punct" and self.tok.text == ")"):
                raise self.error(self.tok, f"expected ')' to close the '(' at column {tok.pos + 1}")
            self.next()
            return inner
        return self.test()

    def field_of(self, tok: Token) -> Field:
        if tok.kind != "word":
            what = "the end of the query" if tok.kind == "end" else repr(tok.text)
            raise self.error(tok, f"expected a field name, found {what}")
        name = tok.text.lower()
        found = self.fields.get(name)
        if found is None:
            import difflib

            close = difflib.get_close_matches(name, list(self.fields), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "`curata cohort fields` lists them"
            raise self.error(tok, f"unknown field {tok.text!r}", hint=hint)
        self.used.append(found.name)
        return found

    def value(self, fld: Field) -> Any:
        tok = self.next()
        if tok.kind == "keyword" and tok.value in ("true", "false"):
            val: Any = tok.value == "true"
        elif tok.kind in ("number", "string", "word"):
            val = tok.value
        else:
            what = "the end of the query" if tok.kind == "end" else repr(tok.text)
            raise self.error(tok, f"expected a value for {fld.name}, found {what}")
        if fld.kind == "num":
            if isinstance(val, bool) or not isinstance(val, float):
                raise self.error(tok, f"{fld.name} is a number; {tok.text!r} is not")
        elif fld.kind == "bool":
            if not isinstance(val, bool):
                raise self.error(tok, f"{fld.name} is yes/no; compare it with true or false")
        else:
            val = tok.text if tok.kind == "number" else str(val)
        return val

    def test(self) -> Node:
        ftok = self.tok
        fld = self.field_of(self.next())
        tok = self.tok
        if tok.kind == "op":
            self.next()
            op = {"==": "=", "<>": "!="}.get(tok.text, tok.text)
            if fld.kind != "num" and op in ("<", "<=", ">", ">="):
                raise self.error(tok, f"{fld.name} is not a number; use = or != (or like)")
            return Test(ftok.pos, fld, op, [self.value(fld)])
        negate = False
        if self.keyword("not") and self.tokens[self.i + 1].kind == "keyword":
            self.next()
            negate = True
        if self.keyword("in"):
            self.next()
            if not (self.tok.kind == "punct" and self.tok.text == "("):
                raise self.error(self.tok, "expected '(' after 'in'")
            self.next()
            values = [self.value(fld)]
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.next()
                values.append(self.value(fld))
            if not (self.tok.kind == "punct" and self.tok.text == ")"):
                raise self.error(self.tok, "expected ',' or ')' in the list")
            self.next()
            return Test(ftok.pos, fld, "in", values, negate)
        if self.keyword("like"):
            self.next()
            if fld.kind != "str":
                raise self.error(tok, f"'like' needs a text field; {fld.name} is not")
            return Test(ftok.pos, fld, "like", [self.value(fld)], negate)
        if self.keyword("is"):
            self.next()
            if self.keyword("not"):
                self.next()
                negate = True
            if not self.keyword("null"):
                raise self.error(self.tok, "expected 'null' after 'is'")
            self.next()
            return Test(ftok.pos, fld, "null", [], negate)
        if negate:
            raise self.error(tok, "expected 'in' or 'like' after 'not'")
        if fld.kind != "bool":
            raise self.error(ftok, f"{fld.name} is not yes/no: compare it (e.g. {fld.name} = ...)")
        return Test(ftok.pos, fld, "truth")


def parse(text: str) -> Query:
    """Parse a query; raises ``QueryError`` with a caret under the offending token."""
    return _Parser(text, all_fields()).parse()


# -- to SQL ---------------------------------------------------------------------------------------------


def _sql_test(t: Test) -> ColumnElement[bool]:
    if t.field.scope is not None:
        return _scoped_test(t)
    return _column_test(t, t.field.column())


def _scoped_test(t: Test) -> ColumnElement[bool]:
    """A clinical/genomic test: EXISTS a row of the patient that passes it. Negations (``!=``, ``not in``,
    ``not like``, ``is null``) mean "no row of the patient passes the positive test"."""
    assert t.field.scope is not None
    cols = t.field.column()
    cols = cols if isinstance(cols, tuple) else (cols,)

    def each(test: Callable[[Any], Any]) -> Any:
        # an indexed column: one of the patient's distinct values passes; a person column: its value
        return or_(*(c.any(test) if hasattr(c, "any") else test(c) for c in cols))

    if t.op == "truth":
        return t.field.scope(true())
    if t.op == "null":
        present = t.field.scope(each(lambda c: c.is_not(None)))
        return present if t.negate else not_(present)
    negated = t.negate or t.op == "!="
    positive = Test(t.pos, t.field, "=" if t.op == "!=" else t.op, t.values, False)
    found = t.field.scope(each(lambda c: _column_test(positive, c)))
    return not_(found) if negated else found


def _column_test(t: Test, col: Any) -> ColumnElement[bool]:
    if t.op == "truth":
        return col
    if t.op == "null":
        return col.is_not(None) if t.negate else col.is_(None)
    if t.field.kind == "str":
        col = func.upper(col)
        vals = [str(v).upper() for v in t.values]
    else:
        vals = list(t.values)
    if t.op == "in":
        expr = col.in_(vals)
        return not_(expr) if t.negate else expr
    if t.op == "like":
        expr = col.like(vals[0])
        return not_(expr) if t.negate else expr
    v = vals[0]
    if t.field.kind == "bool":
        return col == v if t.op == "=" else col != v
    ops: dict[str, Callable[[Any, Any], Any]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return ops[t.op](col, v)


def to_sql(node: Node) -> ColumnElement[bool]:
    if isinstance(node, BoolOp):
        parts = [to_sql(p) for p in node.parts]
        return and_(*parts) if node.op == "and" else or_(*parts)
    if isinstance(node, Not):
        return not_(to_sql(node.part))
    assert isinstance(node, Test)
    return _sql_test(node)


def series_select(query: Query | str | None) -> Select[Any]:
    """``select(Series.id)`` of the series matching ``query`` (all series when None)."""
    stmt = (
        join_series_to_site(select(Series.id))
        .outerjoin(QcVerdict, QcVerdict.series_id == Series.id)
        .outerjoin(QcMeasurement, QcMeasurement.qc_key == QcVerdict.qc_key)
    )
    if query is None:
        return stmt.where(true())
    q = parse(query) if isinstance(query, str) else query
    return stmt.where(to_sql(q.root))


# -- in Python (rules) ----------------------------------------------------------------------------------


def _like(pattern: str) -> re.Pattern[str]:
    out = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(f"^{out}$", re.IGNORECASE | re.DOTALL)


def _py_test(t: Test, record: dict[str, Any]) -> bool | None:
    v = record.get(t.field.name)
    if t.op == "null":
        return (v is not None) if t.negate else (v is None)
    if v is None:
        return None
    if t.op == "truth":
        return bool(v)
    if t.field.kind == "str":
        v = str(v).upper()
        vals = [str(x).upper() for x in t.values]
    elif t.field.kind == "num":
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        vals = list(t.values)
    else:
        v = bool(v)
        vals = list(t.values)
    if t.op == "in":
        return (v not in vals) if t.negate else (v in vals)
    if t.op == "like":
        hit = bool(_like(str(t.values[0])).match(str(v)))
        return not hit if t.negate else hit
    x: Any = vals[0]  # the same kind as v (str, float or bool), so the comparisons are defined
    return {
        "=": v == x,
        "!=": v != x,
        "<": v < x,
        "<=": v <= x,
        ">": v > x,
        ">=": v >= x,
    }[t.op]


def evaluate(node: Node | Query, record: dict[str, Any]) -> bool | None:
    """Three-valued evaluation over a record keyed by field names (``modality``, ``qc.noise_hu``...)."""
    if isinstance(node, Query):
        node = node.root
    if isinstance(node, BoolOp):
        results = [evaluate(p, record) for p in node.parts]
        if node.op == "and":
            if any(r is False for r in results):
                return False
            return None if any(r is None for r in results) else True
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    if isinstance(node, Not):
        r = evaluate(node.part, record)
        return None if r is None else not r
    assert isinstance(node, Test)
    return _py_test(node, record)


__all__ = [
    "HEADER_FIELDS",
    "VERDICT_FIELDS",
    "Field",
    "Query",
    "all_fields",
    "evaluate",
    "parse",
    "series_select",
    "to_sql",
    "tokenize",
]

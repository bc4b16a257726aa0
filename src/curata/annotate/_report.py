"""Reading reports: a project's structured template, the free-text check, the DICOM SR (highdicom), and
the HTML and PDF renderings.

A template lists fields; each is a coded finding (one of its options), a measurement (a number with a
UCUM unit) or free text (the impression). Every text a reader writes passes the free-text check of
de-identification (the collect stage's cleaner): the generic identifier patterns always, and where the
workspace holds the patient's identities (a site's vault), that patient's own name and IDs in every
spelling the cleaner knows. A report that holds a name, a date, a phone number or an identifier is
refused, so none reaches a release.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from curata.errors import AnnotationError

if TYPE_CHECKING:
    from curata.collect.deid import Identifiers

FIELD_KINDS = ("finding", "measurement", "text")


class ReportField(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    kind: str = "text"
    scheme: str = "DCM"
    code: str = "121071"
    meaning: str = "Finding"
    options: list[str] = Field(default_factory=list)  # finding answers
    unit: str = "mm"  # UCUM, measurements
    required: bool = False


DEFAULT_TEMPLATE: list[dict[str, Any]] = [
    {
        "name": "finding",
        "kind": "finding",
        "scheme": "DCM",
        "code": "121071",
        "meaning": "Finding",
        "options": ["lesion present", "no lesion"],
        "required": True,
    },
    {
        "name": "largest lesion",
        "kind": "measurement",
        "scheme": "DCM",
        "code": "121206",
        "meaning": "Distance",
        "unit": "mm",
    },
    {
        "name": "impression",
        "kind": "text",
        "scheme": "DCM",
        "code": "121073",
        "meaning": "Impression",
        "required": True,
    },
]


def template_of(raw: Sequence[dict[str, Any]] | None) -> list[ReportField]:
    fields = [ReportField(**f) for f in (raw or DEFAULT_TEMPLATE)]
    for f in fields:
        if f.kind not in FIELD_KINDS:
            raise AnnotationError(f"report field {f.name!r}: kind must be one of {', '.join(FIELD_KINDS)}")
    return fields


# an identifier written digit by digit ("M R N 8 6 7 5 3 0 9", "8-6-7-5-3-0-9"): seven single digits or
# more, each joined to the next by one space, dot or hyphen
_SPACED_DIGITS = re.compile(r"(?<![\w.])\d(?:[ .\-]\d(?!\w)){6,}")


def free_text_problems(text: str, identities: Identifiers | None = None) -> list[str]:
    """What the de-identification cleaner would remove from ``text`` (the kinds, never the values):
    the patient's own ``identities`` (every spelling the engine's ``Identifiers`` match: parts in any
    order and case, IDs with or without their prefix) where the workspace holds them, and the generic
    identifier shapes, digits written one by one included, always."""
    from curata.collect.deid import Identifiers, clean_text

    if clean_text(text, identities or Identifiers(), generic=True) != text or _SPACED_DIGITS.search(text):
        return ["identifier-like text (a name, date, phone number, address or ID)"]
    return []


def validate(
    fields: list[ReportField], values: dict[str, Any], identities: Identifiers | None = None
) -> dict[str, Any]:
    known = {f.name: f for f in fields}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise AnnotationError(
            f"report fields {unknown} are not in the template", hint=f"fields: {sorted(known)}"
        )
    out: dict[str, Any] = {}
    for f in fields:
        v = values.get(f.name)
        if v in (None, ""):
            if f.required:
                raise AnnotationError(f"report field {f.name!r} is required")
            continue
        if f.kind == "finding":
            if f.options and v not in f.options:
                raise AnnotationError(f"report field {f.name!r} must be one of {f.options}")
            out[f.name] = str(v)
        elif f.kind == "measurement":
            try:
                out[f.name] = float(v)
            except (TypeError, ValueError) as exc:
                raise AnnotationError(f"report field {f.name!r} must be a number ({f.unit})") from exc
        else:
            text = str(v)
            if free_text_problems(text, identities):
                raise AnnotationError(
                    f"report field {f.name!r} fails the free-text de-identification check",
                    hint="write no names, dates, phone numbers, addresses or identifiers in a report",
                )
            out[f.name] = text
    return out


def write_sr(
    evidence: Sequence[Any],
    fields: list[ReportField],
    values: dict[str, Any],
    *,
    author: str,
    signer: str,
    title: str,
) -> bytes:
    """A Comprehensive SR: an imaging report container with one item per filled field, verified by
    the second reader. ``author`` and ``signer`` are the readers' codes (never account names)."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    def concept(f: ReportField) -> hd.sr.CodedConcept:
        return hd.sr.CodedConcept(f.code, f.scheme, f.meaning)

    root = hd.sr.ContainerContentItem(name=hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report"))
    items: list[Any] = []
    for f in fields:
        if f.name not in values:
            continue
        v = values[f.name]
        if f.kind == "finding":
            answer = str(f.options.index(v) + 1) if v in f.options else "1"
            items.append(
                hd.sr.CodeContentItem(
                    concept(f), hd.sr.CodedConcept(answer, "99CURATA", str(v)), relationship_type="CONTAINS"
                )
            )
        elif f.kind == "measurement":
            items.append(
                hd.sr.NumContentItem(
                    concept(f),
                    float(v),
                    hd.sr.CodedConcept(f.unit, "UCUM", f.unit),
                    relationship_type="CONTAINS",
                )
            )
        else:
            items.append(hd.sr.TextContentItem(concept(f), str(v), relationship_type="CONTAINS"))
    root.ContentSequence = items  # type: ignore[assignment]
    sr = hd.sr.ComprehensiveSR(
        evidence=list(evidence),
        content=root,
        series_instance_uid=generate_uid(),
        series_number=901,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Curata",
        is_complete=True,
        is_final=True,
        is_verified=True,
        verifying_observer_name=signer,
        verifying_organization="Curata reading",
        series_description=title[:64],
    )
    sr.ContentCreatorName = author
    if getattr(evidence[0], "PatientIdentityRemoved", "") == "YES":
        sr.PatientIdentityRemoved = "YES"
    buf = io.BytesIO()
    sr.save_as(buf)
    return buf.getvalue()


def render_html(title: str, fields: list[ReportField], values: dict[str, Any], meta: dict[str, str]) -> str:
    rows = []
    for f in fields:
        if f.name not in values:
            continue
        v = values[f.name]
        shown = f"{v:g} {f.unit}" if f.kind == "measurement" else str(v)
        rows.append(f"<tr><th>{html.escape(f.name)}</th><td>{html.escape(shown)}</td></tr>")
    info = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in meta.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:45em;margin:auto}}"
        "th{text-align:left;padding-right:2em;vertical-align:top}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><ul>{info}</ul><table>{''.join(rows)}</table></body></html>"
    )


def render_pdf(title: str, fields: list[ReportField], values: dict[str, Any], meta: dict[str, str]) -> bytes:
    """A one-page PDF (matplotlib's PDF backend: no system library, installs from PyPI)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    lines: list[tuple[str, int, str]] = [(title, 14, "bold")]
    lines += [(f"{k}: {v}", 9, "normal") for k, v in meta.items()]
    lines.append(("", 9, "normal"))
    for f in fields:
        if f.name not in values:
            continue
        v = values[f.name]
        shown = f"{v:g} {f.unit}" if f.kind == "measurement" else str(v)
        lines.append((f.name, 11, "bold"))
        lines += [(w, 10, "normal") for w in textwrap.wrap(shown, 90) or [""]]
    fig = Figure(figsize=(8.27, 11.69))
    y = 0.95
    for text, size, weight in lines:
        fig.text(0.08, y, text, fontsize=size, fontweight=weight, va="top")
        y -= 0.028 if size < 14 else 0.045
    buf = io.BytesIO()
    with PdfPages(buf, metadata={"Title": title, "Creator": "Curata"}) as pdf:
        pdf.savefig(fig)
    return buf.getvalue()

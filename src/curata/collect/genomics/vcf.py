"""VCF / BCF at the edge: sample IDs become pseudonyms, identifying header lines go, variants stay whole.

Variants are data and are kept (their re-identification risk is named in the dataset card); what
identifies the person or the site in the header is removed: ``##commandline`` and every other command
or program-call line, ``##SAMPLE`` / ``##PEDIGREE``, ``##fileDate`` and other dates, file paths (in
``##reference``, ``##source`` or anywhere), unknown lines, and attributes of INFO / FORMAT / FILTER /
ALT / META lines that the specification does not define. Every attribute text that stays
(Description, Source, Version, a contig's assembly, META Values) is cleaned with the DICOM engine's
free-text cleaner, of the patient's identifiers from the clinical inputs of this run and of earlier ones
(sealed on site under the vault folder, ``clinical/``), and of what the header's own person lines
(``##SAMPLE``, ``##individual``, ``##PEDIGREE``) say of the individual: those values are identifiers
for the rest of the header and for the records too, with or without a clinical input. The output (bgzip-compressed VCF) passes the byte gate for the
original sample IDs before it is stored; lines with letters beyond ASCII are also read as text by the
cleaner's matcher (full width, decomposed Hangul, CJK dates), in the gate and where records are cleaned.
"""

from __future__ import annotations

import gzip
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curata.collect.clinical.deid import (
    ClinicalDeidentifier,
    KnownIdentities,
    SiteNames,
    byte_gate,
    clean,
    survivors,
)
from curata.collect.clinical.mapping import VcfMap
from curata.collect.deid.pseudonyms import DEFAULT_PREFIX, sample_patient
from curata.collect.deid.text import Identifiers, clean_text, find_identifier
from curata.errors import DeidError, InputError

KEEP_KEYS = {
    "fileformat",
    "INFO",
    "FORMAT",
    "FILTER",
    "ALT",
    "contig",
    "reference",
    "source",
    "phasing",
    "META",
}
_PATH = re.compile(r"(?:[A-Za-z]:\\|\\\\|~/|file:|s3:|gs:|https?:|(?<![\w.])/[\w.\-]+/)")
_DATE = re.compile(r"\d{4}[-/.]?\d{2}[-/.]?\d{2}")
_CONTIG_KEEP = ("ID", "length", "assembly", "md5", "species", "taxonomy")

# VCF text is percent-encoded (VCF 4.3 section 1.2: ``%3A`` ':', ``%3B`` ';', ``%3D`` '=', ``%25`` '%',
# ``%2C`` ','; writers encode more: ``%20``, ``%2F``, ``%40``). htslib and pysam never decode it; htsjdk
# and a person reading the file do: ``MRN%204471203``, ``1947%2D03%2D19``, ``Dr%2E%20Danjuma`` and
# ``%2Fhome%2Fthistlewood`` read as the identifier and the path they are. Every text the site cleans
# and the platform checks (a header's text, a record's text and annotations, a declared key) is read
# decoded too (``_vcf_readings``): a text whose decoded reading the cleaner would change is changed
# (the header: cleaned as it reads, and what is kept encoded again as it was written) or dropped (a
# record's value), as the text itself would be.
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def _escape_run(run: str) -> list[tuple[str, bool]]:
    """A run of ``%XX`` escapes as the characters they encode (UTF-8 bytes), each piece with whether it
    was decoded: bytes that are no UTF-8 stay as written (``%FF``)."""
    raw = bytes.fromhex(run.replace("%", ""))
    out: list[tuple[str, bool]] = []
    i = 0
    while i < len(raw):
        for n in (1, 2, 3, 4):
            if i + n <= len(raw):
                try:
                    out.append((raw[i : i + n].decode("utf-8"), True))
                except UnicodeDecodeError:
                    continue
                i += n
                break
        else:
            out.append((run[3 * i : 3 * i + 3], False))
            i += 1
    return out


def _vcf_decoded(text: str) -> str:
    """``text`` with its percent escapes decoded once, as a VCF reader that decodes them shows it (a
    run of escapes as UTF-8); a malformed escape (``50%``, ``%zz``, ``%FF``) as written."""
    if "%" not in text:
        return text
    return _ESCAPES.sub(lambda m: "".join(piece for piece, _ in _escape_run(m.group(0))), text)


def _vcf_readings(text: str) -> list[str]:
    """The readings of ``text`` other than as written: decoded, then decoded again while that changes
    it (text encoded twice, ``MRN%25204471203``). Empty for text with no escape."""
    out: list[str] = []
    while "%" in text and len(out) < 4:
        plain = _vcf_decoded(text)
        if plain == text:
            break
        out.append(plain)
        text = plain
    return out


def _vcf_encoded(text: str, like: str) -> str:
    """``text`` (a decoded reading, cleaned) encoded again as ``like`` was written: the characters
    ``like`` wrote as escapes, every ``%`` and control character; ``_vcf_decoded`` gives ``text`` back."""
    escaped = {"%"}
    for m in _ESCAPES.finditer(like):
        escaped.update(piece for piece, decoded in _escape_run(m.group(0)) if decoded)
    return "".join(
        "".join(f"%{b:02X}" for b in ch.encode("utf-8")) if ch in escaped or ch < " " else ch for ch in text
    )


def _pathed(text: str) -> bool:
    """Whether a path begins in ``text``, as written or decoded."""
    return any(_PATH.search(form) for form in (text, *_vcf_readings(text)))


def _dated(text: str) -> bool:
    return any(_DATE.search(form) for form in (text, *_vcf_readings(text)))


def _as_decoded(text: str, change: Callable[[str], str]) -> str:
    """``text`` with ``change`` applied to its decoded reading too: what ``change`` alters there is kept
    encoded again as ``text`` was written; ``text`` as it is where the reading stays the same."""
    plain = _vcf_decoded(text)
    if plain != text:
        changed = change(plain)
        if changed != plain:
            return _vcf_encoded(changed, text)
    return text


def _cut_path(text: str) -> str:
    """``text`` up to where a path begins in it, as written or decoded (what is kept encoded again)."""
    if _PATH.search(text):
        text = _PATH.split(text)[0]
    return _as_decoded(text, _cut_path)


@dataclass
class VcfResult:
    output: bytes  # bgzip-compressed, de-identified VCF
    samples: list[str]  # pseudonyms in column order
    patient_ids: list[str]  # the sample's patient IDs (for the catalog writer; never stored)
    # the variant index as columns ({name: numpy array, or Arrow strings}): one row per (variant,
    # carrying sample)
    index: dict[str, Any] = field(default_factory=dict)
    dropped_header_lines: int = 0
    records: int = 0
    fmt: str = "vcf"
    # what the record rules took out (``record_values``): records dropped, values dropped or cleaned
    dropped: RecordCounts = field(default_factory=lambda: RecordCounts())

    @property
    def count(self) -> int:
        return len(self.index.get("pos", ()))

    @property
    def variants(self) -> list[dict[str, Any]]:
        """The index as one dict per row (missing frequencies as None)."""
        import math

        keys = [k for k in INDEX_COLUMNS if k in self.index]
        rows = []
        columns = (_pylist(self.index[k]) for k in keys)
        for vals in zip(*columns, strict=True):
            rows.append(
                {
                    k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in zip(keys, vals, strict=True)
                }
            )
        return rows


def _pylist(column: Any) -> list[Any]:
    """An index column (numpy, or Arrow for text) as Python values."""
    return column.to_pylist() if hasattr(column, "to_pylist") else column.tolist()


def _header_line(line: str, ids: Identifiers, site: SiteNames | None = None) -> str | None:
    """The cleaned header line, or None when it is dropped. ``site``: the site's people and institutions,
    cleaned from every attribute text too."""
    m = re.match(r"##([^=]+)=(.*)$", line)
    if not m:
        return None
    key, value = m.group(1), m.group(2)
    if key not in KEEP_KEYS:
        return None
    if key == "fileformat":
        m = re.match(r"VCFv4\.\d", value)
        return f"##fileformat={m.group(0) if m else 'VCFv4.2'}"
    if key == "reference":
        base = _clean(_basename(value), ids, site)
        return f"##reference={base}" if base and not _dated(base) else None
    if key == "source":
        if _pathed(value) or _dated(value):
            return None
        v = _clean(value, ids, site)
        return f"##source={v}" if v else None
    if key == "contig":
        attrs = re.findall(r'([A-Za-z_]+)=("[^"]*"|[^,>]*)', value)
        if not any(k == "ID" and _CONTIG.fullmatch(v) for k, v in attrs):
            return None  # a contig no record may name (``_CONTIG``)
        kept = []
        for k, v in attrs:
            if k not in _CONTIG_KEEP or _pathed(v):
                continue
            cleaned = v if k in _LAYOUT else _attribute_text(v, ids, site)
            if cleaned is not None:
                kept.append(f"{k}={cleaned}")
        return f"##contig=<{','.join(kept)}>" if kept else None
    if value.startswith("<") and value.endswith(">"):
        # INFO / FORMAT / FILTER / ALT / META: structured; the attributes the specification defines, every
        # text among them (Description, Source, Version, Values...) cleaned; others (a lab's own Note=,
        # Lab=) are not kept
        kept = []
        for name, raw in _ATTRIBUTE.findall(value[1:-1]):
            if name not in _STRUCTURED_KEEP.get(key, ()):
                continue
            if name in _LAYOUT:
                if _pathed(raw):
                    return None
            else:
                cleaned = _attribute_text(raw, ids, site)
                if cleaned is None and name != "Description":
                    continue
                raw = cleaned or '""'  # INFO and FORMAT lines need their Description, if empty
            kept.append(f"{name}={raw}")
        return f"##{key}=<{','.join(kept)}>" if kept else None
    return None


def _basename(value: str) -> str:
    """A ``##reference`` path's last part, the path as written or decoded (kept encoded as written)."""
    return _as_decoded(re.split(r"[/\\]", value.removeprefix("file://"))[-1], _basename)


# The keys a header declares (INFO, FORMAT, FILTER, ALT IDs): laid out, never cleaned, but a name there
# (a FILTER ``DrDanjuma``, an INFO flag ``MusaDanjuma``, an ALT ``<CNV:AdaezeOkonkwo>``) is looked for
# at the site, of the patient's identifiers and the site's names, with ``_``, ``%20`` and a capital
# after a small letter read as spaces, and squeezed into one word. A declaration that holds one is
# dropped, with every use of it in the records (``record_values``, counted): an INFO entry or a FORMAT
# key and its values go as undeclared ones do, a FILTER is taken out of the records' FILTER (``.``
# where it was the only one), a record with the ALT allele goes. The name of someone the site does not
# know (neither the patient nor its people) is not found in a key: a documented limit.
_DECLARED = re.compile(r"##(INFO|FORMAT|FILTER|ALT)=<ID=([^,>]+)")


def _names_someone(key: str, ids: Identifiers, site: SiteNames | None) -> bool:
    """Whether a declared key holds one of the patient's identifiers or the site's names (the key as
    written and decoded: ``_vcf_readings``)."""
    needles = ids.gate_needles()
    for word in (key, *_vcf_readings(key)):
        spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", word.replace("%20", " ").replace("_", " "))
        if (
            any(find_identifier(form.encode(), needles) is not None for form in (word, spaced))
            or any(survivors(form, ids) for form in (word, spaced))
            or (site is not None and site.in_word(word))
        ):
            return True
    return False


def _clean(text: str, ids: Identifiers, site: SiteNames | None) -> str | None:
    """``clean`` for header text: the patient's identifiers, generic shapes, and the site's names. Text
    with escapes is cleaned as it reads decoded (``_vcf_decoded``), and kept as written where that
    reading and the text itself hold nothing; otherwise what is left of the reading, encoded again as
    the text was (``_vcf_encoded``)."""
    plain = _vcf_decoded(text)
    if plain != text:
        out = _clean(plain, ids, site)
        if out == plain and not survivors(text, ids) and (site is None or site.clean(text) == text):
            return text
        return None if out is None else _vcf_encoded(out, text)
    cleaned = clean(text, ids)
    return site.clean(cleaned) if site else cleaned


# Attributes that lay the file out (a field's key, its count and type, a contig's length and checksum):
# read by htslib, never text to clean. An identifier there is left to the gate, which refuses the file.
_LAYOUT = frozenset({"ID", "Number", "Type", "length", "md5"})
_BARE = re.compile(r'[^\s,<>"=\[\]]*')  # a value that needs no quotes


def _attribute_text(raw: str, ids: Identifiers, site: SiteNames | None = None) -> str | None:
    """A header attribute's value as written (quoted, a ``[a, b]`` list, or bare) cleaned as the other
    header text is, of the patient's identifiers and generic shapes, and cut where a path begins.
    None when nothing is left. A bare value the cleaner changed is quoted (``*`` and spaces)."""
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        text = _cut_path(raw[1:-1])
        out = _clean(text, ids, site)
        return None if out is None else f'"{out}"'
    if len(raw) >= 2 and raw[0] == "[" and raw[-1] == "]":
        items = [_clean(item.strip(), ids, site) for item in raw[1:-1].split(",")]
        kept = [item for item in items if item and "," not in item]
        return f"[{', '.join(kept)}]" if kept else None
    raw = _cut_path(raw)
    out = _clean(raw, ids, site)
    if out is None or out == raw or _BARE.fullmatch(out):
        return out
    return '"' + out.replace('"', "'") + '"'


# Header lines that describe the person sequenced (VCF 4.3 ##SAMPLE and ##PEDIGREE, and the lines
# pipelines write for the individual): dropped, and every value they carry is an identifier of the file's
# patient, looked for in the rest of the header and in the records (a name in ##source, a DOB in a field).
_PERSON_LINES = frozenset(
    {
        "sample",
        "individual",
        "pedigree",
        "patient",
        "subject",
        "proband",
        "donor",
        "person",
        "dob",
        "birthdate",
    }
)
# ##SAMPLE attributes that describe the sample, not who it is from (VCF 4.3 section 1.4.8, and the
# pipelines' own): never taken as an identifier (Disease=Cancer is no name).
_DESCRIBING = frozenset(
    {
        "assay", "ethnicity", "disease", "description", "doi", "genomes", "mixture", "sex", "gender",
        "tissue", "phenotype", "affected", "status", "type", "sampletype", "source", "platform", "library",
    }
)  # fmt: skip
_WHOLE_DATE = re.compile(r"(\d{4})[-/.]?(\d{2})[-/.]?(\d{2})")
_WRITTEN_DATE = re.compile(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})")


def header_identifiers(header: str, ids: Identifiers) -> None:
    """Add to ``ids`` what the header itself says about the person sequenced (``_PERSON_LINES``): the
    individual's name, birth date, IDs and relatives' sample names. A VCF without a clinical input in
    the run is then cleaned and gated for them as for the identifiers a clinical export names."""
    for line in header.splitlines():
        m = re.match(r"##([^=]+)=(.*)$", line)
        if not m or m.group(1).strip().lower() not in _PERSON_LINES:
            continue
        value = m.group(2).strip()
        if value.startswith("<") and value.endswith(">"):
            value = value[1:-1]
        attrs = _ATTRIBUTE.findall(value) if "=" in value else [("", value)]
        if m.group(1).strip().lower() in ("dob", "birthdate"):
            attrs = [("DOB", value)]
        for name, raw in attrs:
            if name.lower() in _DESCRIBING:
                continue
            text = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
            for form in (text, *_vcf_readings(text)):  # as written, and as it reads decoded
                _add_header_value(ids, form.strip(), sample=name == "ID" or name.startswith("Name_"))


def _add_header_value(ids: Identifiers, value: str, *, sample: bool) -> None:
    """One value of a person's header line, as the identifier it is: a date (as its YYYYMMDD), a name
    (letters alone), else an ID (4 characters or more; a sample name, as the column's, 2)."""
    if not value or value == ".":
        return
    whole = _WHOLE_DATE.fullmatch(value)
    written = _WRITTEN_DATE.fullmatch(value)
    if whole:
        ids.add_birth_date("".join(whole.groups()))
    elif written:  # 03/02/1961: day or month first, both taken where both are dates
        a, b, y = (int(g) for g in written.groups())
        for month, day in ((b, a), (a, b)):
            if 1 <= month <= 12 and 1 <= day <= 31:
                ids.add_birth_date(f"{y:04d}{month:02d}{day:02d}")
    elif not any(c.isdigit() for c in value):
        ids.add_name(value)
        if sample:
            ids.add_word(value, min_len=2)
    else:
        ids.add_word(value, min_len=2 if sample else 4)


_ATTRIBUTE = re.compile(r'([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\[[^\]]*\]|[^,>]*)')
# the attributes VCF 4.3 defines for each structured line (section 1.4)
_STRUCTURED_KEEP = {
    "INFO": ("ID", "Number", "Type", "Description", "Source", "Version"),
    "FORMAT": ("ID", "Number", "Type", "Description"),
    "FILTER": ("ID", "Description"),
    "ALT": ("ID", "Description"),
    "META": ("ID", "Type", "Number", "Values"),
}


def _annotations(rec: Any, csq_fields: list[str] | None) -> list[dict[str, str]]:
    """SnpEff ANN or VEP CSQ entries as dicts with gene / consequence / hgvs_c / hgvs_p / population AF."""
    out: list[dict[str, str]] = []
    info = rec.info
    if "ANN" in info:
        for entry in info["ANN"]:
            p = str(entry).split("|")
            if len(p) >= 11:
                out.append(
                    {
                        "allele": p[0],
                        "consequence": p[1].split("&")[0],
                        "gene": p[3],
                        "hgvs_c": p[9],
                        "hgvs_p": p[10],
                    }
                )
    if "CSQ" in info and csq_fields:
        idx = {n: i for i, n in enumerate(csq_fields)}
        for entry in info["CSQ"]:
            p = str(entry).split("|")

            def g(n: str, p: list[str] = p) -> str:
                i = idx.get(n)
                return p[i] if i is not None and i < len(p) else ""

            hc, hp = g("HGVSc"), g("HGVSp")
            out.append(
                {
                    "allele": g("Allele"),
                    "consequence": g("Consequence").split("&")[0],
                    "gene": g("SYMBOL"),
                    "hgvs_c": hc.split(":")[-1] if hc else "",
                    "hgvs_p": hp.split(":")[-1] if hp else "",
                    "population_af": g("gnomAD_AF") or g("gnomADe_AF") or g("MAX_AF") or g("AF"),
                }
            )
    return out


def pop_af_key(header: Any) -> str | None:
    """The INFO key holding a population allele frequency (gnomAD / ExAC style), if the header has one."""
    return next(
        (k for k in ("gnomAD_AF", "gnomADe_AF", "gnomADg_AF", "ExAC_AF", "MAX_AF") if k in header.info), None
    )


def _zygosity(gt: tuple[Any, ...] | None) -> str | None:
    if not gt or all(a is None for a in gt):
        return None
    alleles = [a for a in gt if a is not None]
    if not any(alleles):
        return None
    if len(alleles) == 1:
        return "hemizygous"
    return "homozygous" if len(set(alleles)) == 1 else "heterozygous"


def _float(v: Any) -> float | None:
    if isinstance(v, tuple | list):
        v = v[0] if v else None
    try:
        return None if v in (None, "", ".") else float(v)
    except (TypeError, ValueError):
        return None


def _quiet_pysam() -> Any:
    """pysam, with htslib's own messages off. htslib writes its warnings and errors straight to the
    process's stderr, quoting the header line it could not parse (``Incomplete header line ...
    ##SAMPLE=<ID=MRN,Individual="NAME"``, ``Duplicated sample name 'MRN'``), past every redaction: a
    site's service log, or the platform's for a pushed batch. What Curata says of a bad file is its
    own reason, which names no value."""
    import pysam

    pysam.set_verbosity(0)
    return pysam


def deidentify_vcf(
    raw: bytes,
    name: str,
    mapping: VcfMap,
    key: bytes,
    known: KnownIdentities | None = None,
    *,
    keep_samples: bool = False,
    site: SiteNames | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> VcfResult:
    """De-identify one VCF/BCF. ``known``: patient ID -> identifiers the site knows (its images, its
    clinical inputs of this run and earlier ones: ``deid.identities``), so a VCF header that repeats
    them is cleaned of them and gated for them too; ``site``: its people and institutions, cleaned from
    the header's text; ``prefix``: the site's ``pseudonym_prefix``.
    ``keep_samples``: the sample names are already pseudonyms (see :func:`index_vcf`); no key is used."""
    pysam = _quiet_pysam()
    deid = None if keep_samples else ClinicalDeidentifier(key, issuer=mapping.issuer, prefix=prefix)
    with tempfile.TemporaryDirectory(prefix="curata-vcf-") as tmp:
        src = Path(tmp) / ("in.bcf" if raw[:3] == b"BCF" or name.lower().endswith(".bcf") else "in.vcf.gz")
        src.write_bytes(raw)
        try:
            vf = pysam.VariantFile(str(src))
        except NotImplementedError:  # htslib cannot seek in plain gzip (not BGZF)
            raise InputError(
                "not a readable VCF: compressed with gzip, not bgzip",
                hint="recompress it with `bgzip` (htslib) or drop it uncompressed",
            ) from None
        except (OSError, ValueError) as exc:
            raise InputError(_unreadable_reason(raw, exc)) from None
        fmt = "bcf" if vf.is_bcf else "vcf"
        originals = list(vf.header.samples)
        ids = Identifiers()
        patient_ids = [mapping.samples.get(s, s) for s in originals]
        for s, pid in zip(originals, patient_ids, strict=True):
            if deid is None:
                break  # pseudonyms: nothing of them to clean away
            ids.add_word(s, min_len=2)
            ids.add_word(pid, min_len=2)
            other = (known or {}).get(pid.strip())
            if other is not None:
                ids.update(other)
        pseudonyms: list[str] = [] if deid is not None else list(originals)
        for pid in patient_ids:
            if deid is None:
                break
            p = deid.patient(pid).pseudonym
            n = sum(1 for q in pseudonyms if sample_patient(q) == p)
            pseudonyms.append(p if n == 0 else f"{p}_{n + 1}")
        try:
            header_text = str(vf.header)
        except UnicodeDecodeError:  # the whole ingest stopped here before (a Latin-1 ##SAMPLE line)
            raise InputError("the VCF header is not UTF-8 text, as VCF requires") from None
        if deid is not None:
            header_identifiers(header_text, ids)
        header_lines, dropped = [], 0
        withdrawn: set[str] = set()  # FILTER IDs whose declaration went (``_names_someone``)
        csq_fields: list[str] | None = None
        fun_fields: list[str] | None = None
        for line in header_text.splitlines():
            if line.startswith("#CHROM"):
                cols = line.split("\t")
                header_lines.append(
                    "\t".join(cols[:9] + pseudonyms) if len(cols) > 9 else "\t".join(cols[:8])
                )
                continue
            declared = _DECLARED.match(line)
            if deid is not None and declared and _names_someone(declared.group(2), ids, site):
                dropped += 1  # its uses go with it (``record_values``), counted there
                if declared.group(1) == "FILTER":
                    withdrawn.add(declared.group(2))
                continue
            kept = _header_line(line, ids, site)
            if kept is None:
                dropped += 1
                continue
            header_lines.append(kept)
            if kept.startswith("##INFO=<ID=CSQ"):
                m = re.search(r"Format: ([^\"]+)", kept)
                csq_fields = m.group(1).strip().split("|") if m else None
            if kept.startswith("##INFO=<ID=FUNCOTATION"):
                m = re.search(r"Funcotation fields are: ([^\"]+)", kept)
                fun_fields = m.group(1).strip().split("|") if m else None
        try:
            parsed = _text_body(raw) if fmt == "vcf" else None
            body_text, header_count = (parsed.records, parsed.lines_before) if parsed else (None, 0)
            body_parts: list[str] = []
            af_key = pop_af_key(vf.header)
            variants: list[dict[str, Any]] = []
            index: dict[str, Any] | None = None
            records = 0
            if body_text is not None:  # text VCF: records parsed here (pysam checked the header)
                fast = None if csq_fields or fun_fields else _index_columns(body_text, len(originals), af_key)
                if fast is not None:
                    records, index = fast
                else:
                    records, variants = _index_text(
                        body_text.decode("utf-8", errors="replace"),
                        len(originals),
                        csq_fields,
                        af_key,
                        header_count,
                        fun_fields,
                    )
            for rec in () if body_text is not None else vf:
                records += 1
                if body_text is None:
                    body_parts.append(str(rec).rstrip("\n"))
                anns = _annotations(rec, csq_fields)
                for alt_i, alt in enumerate(rec.alts or ()):
                    ann = next((a for a in anns if a.get("allele") in (alt, "")), anns[0] if anns else {})
                    for s_i, sname in enumerate(originals):
                        call = rec.samples[sname]
                        gt = call.get("GT")
                        if not gt or (alt_i + 1) not in gt:
                            continue
                        af = None
                        for k in ("AF", "VAF"):
                            if k in call:
                                af = _float(call[k])
                                break
                        if af is None and "AD" in call and call["AD"] and None not in call["AD"]:
                            tot = sum(call["AD"])
                            af = call["AD"][alt_i + 1] / tot if tot and alt_i + 1 < len(call["AD"]) else None
                        variants.append(
                            {
                                "sample": s_i,
                                "chrom": rec.chrom,
                                "pos": rec.pos,
                                "ref": rec.ref,
                                "alt": alt,
                                "gene": ann.get("gene") or None,
                                "consequence": ann.get("consequence") or None,
                                "hgvs_c": ann.get("hgvs_c") or None,
                                "hgvs_p": ann.get("hgvs_p") or None,
                                "zygosity": _zygosity(gt),
                                "allele_frequency": af,
                                "population_af": _float(ann.get("population_af"))
                                or (_float(rec.info.get(af_key)) if af_key else None),
                                "filter": ";".join(map(str, rec.filter.keys())) or None,
                            }
                        )
        except (OSError, ValueError) as exc:
            raise InputError(f"VCF record {records + 1} is malformed ({type(exc).__name__})") from None
        vf.close()
        head = ("\n".join(header_lines) + "\n").encode()
        body = body_text if body_text is not None else ("\n".join(body_parts) + "\n").encode()
        counts = RecordCounts()
        rules = RecordRules.of(header_lines)
        rules.withdrawn = frozenset(withdrawn)
        typed = record_values(body, rules, ids, site, counts, header_count)

        def reindex(kept: bytes) -> tuple[int, list[dict[str, Any]]]:
            return _index_text(
                kept.decode("utf-8", errors="replace"),
                len(originals),
                csq_fields,
                af_key,
                header_count,
                fun_fields,
            )

        if typed != body:  # values no record may carry: indexed again from what is kept
            body = typed
            records, variants = reindex(body)
            index = None
        kind = _gate_vcf(head, body, ids)
        if kind is not None:  # an identifier in the records: clean them, index again, gate again
            body = _clean_records(body, ids, header_count, counts)
            records, variants = reindex(body)
            index = None
            kind = _gate_vcf(head, body, ids)
        if kind is not None:
            raise DeidError(
                f"final gate: an identifying value ({kind}) survived in the de-identified VCF; not stored"
            )
        output = _bgzf_output(head, body, parsed, raw)
    if index is None:
        index = _columns(variants)
    return VcfResult(output, pseudonyms, patient_ids, index, dropped, records, fmt, counts)


# REF and ALT hold bases, not text: a name spelt only in A, C, G, T, N (NAGATA, TANG) may occur there by
# chance, so they are left out of the gate's second look (never out of its first, nor of the other columns)
_BASES = re.compile(rb"(?m)^((?:[^\t\n]*\t){3})[ACGTNacgtn*]+\t[ACGTNacgtn*,.]+(?=\t)")
_VCF_COLUMNS = ("CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT")


def _gate_vcf(head: bytes, body: bytes, ids: Identifiers) -> str | None:
    """The byte gate over the whole output; a hit only counts if it is not inside the bases. Lines with
    letters beyond ASCII are also read as text by the cleaner's matcher (``_text_hit``)."""
    for part in (head, body):
        if not part.isascii() and any(_text_hit(line, ids) for line in part.split(b"\n")):
            return "text"
    if byte_gate(head + body, ids) is None:
        return None
    return byte_gate(head + _BASES.sub(rb"\1\t", body), ids)


def _text_hit(data: bytes, ids: Identifiers) -> bool:
    """Whether the cleaner's matcher finds one of the identifiers in ``data`` read as UTF-8 text: the
    forms the byte gate does not compare (full width, decomposed Hangul, a date written 1961年3月17日, an
    ASCII name written with its marks)."""
    return not data.isascii() and survivors(data.decode("utf-8", errors="replace"), ids)


def _clean_records(
    body: bytes, ids: Identifiers, first_line: int, counts: RecordCounts | None = None
) -> bytes:
    """Records in which one of the patient's identifiers stands: an ID or INFO entry that holds one is
    dropped, a sample's field that holds one becomes ``.``. Anywhere else (CHROM, POS, QUAL, FILTER,
    FORMAT keys) the file is refused, naming the line and column, never the value."""
    needles = ids.gate_needles()

    def hit(text: str) -> bool:
        data = text.encode()
        return find_identifier(data, needles) is not None or _text_hit(data, ids)

    out = []
    for n, line in enumerate(body.split(b"\n")):
        if not line or (
            find_identifier(_BASES.sub(rb"\1\t", line), needles) is None and not _text_hit(line, ids)
        ):
            out.append(line)
            continue
        cols = line.decode("utf-8", errors="replace").split("\t")
        for i, col in enumerate(cols):
            if i in (3, 4) or not hit(col):
                continue
            if i == 2 or i == 7:  # ID, INFO: entries separated by ';'
                entries = col.split(";")
                cols[i] = ";".join(e for e in entries if not hit(e)) or "."
                gone = sum(1 for e in entries if hit(e))
            elif i >= 9:  # a sample's fields
                fields = col.split(":")
                cols[i] = ":".join("." if hit(f) else f for f in fields)
                gone = sum(1 for f in fields if hit(f))
            else:
                raise DeidError(
                    f"final gate: an identifying value stands in column {_VCF_COLUMNS[i]} of line "
                    f"{first_line + n + 1}; not stored",
                    hint="remove it from the site's export and drop the file again",
                )
            if counts is not None:
                counts.dropped += gone
        out.append("\t".join(cols).encode())
    return b"\n".join(out)


# What a record keeps (``record_values``), field by field, whoever it is of; the platform runs the same
# rules with no identifiers and refuses a VCF they change (``exchange.check_vcf_records``):
# - CHROM: a chromosome or an assembly's contig name (``_CONTIG``); declared in ##contig where the header
#   declares any. POS: an integer. REF: bases. ALT: bases, ``*``, ``.``, a symbolic allele of the
#   specification or declared in ##ALT, a breakend. QUAL: a number or ``.``. A record that breaks one
#   of these is dropped (counted): none of them can be cleaned.
# - ID: variant IDs of the public databases (``_VARIANT_ID``), or a caller's own (Manta, Delly...: with
#   a digit, a fixed point of the free-text cleaner); others go.
# - FILTER: PASS, ``.`` or IDs ##FILTER declares; a record with another is dropped.
# - INFO: keys the header declares; numbers and flags as their type says; text (String, Character) by
#   its key's shape where Curata knows it (``_INFO_SHAPES``), else kept where the free-text cleaner (with
#   the patient's identifiers at the site) leaves it as it is; an annotation (ANN, CSQ, FUNCOTATION...)
#   is read part by part (``|``, ``&``, ``,``), a part the cleaner changes is emptied. Others go.
# - FORMAT: keys the header declares (an undeclared one goes with its values); GT strict (allele
#   indices within the ALT count); PGT, PID, FT by their shapes; numbers as their type says; another
#   text field (a lab's own, of one person) goes; a sample's fields beyond the FORMAT keys go.
_VARIANT_ID = re.compile(r"(?:rs|ss)\d+|COS[VMN]\d+|[RVS]CV\d+(?:\.\d+)?|[den]sv\d+")
_NUMBER = re.compile(r"\.|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)", re.I)
_CONTIG = re.compile(
    r"(?:chr)?(?:[1-9]\d?|X|Y|W|Z|M|MT|Un|EBV)(?:_[A-Z]{2}\d{6}v\d+(?:_random|_alt|_fix|_decoy)?)?"
    r"|(?:chr)?Un_[A-Z]{2,4}\d{6,8}v\d+(?:_decoy)?|[A-Z]{1,2}_?\d{5,9}(?:\.\d+)?|hs37d5|hs38d1"
    r"|HLA-[A-Z0-9]+\*[0-9:]+[A-Z]?"
)
_REF = re.compile(r"[ACGTNacgtn*]+")
_NUCLEOTIDES = re.compile(r"[ACGTNacgtn]+")
_SYMBOLIC = re.compile(
    r"DEL|INS|DUP|INV|CNV|BND|NON_REF|\*|DUP:TANDEM|CN\d+|(?:DEL|INS):ME(?::(?:ALU|L1|LINE1|SVA|HERV))?"
)
_BREAKEND = re.compile(
    r"[ACGTNacgtn]*([\[\]])([^\[\]]+):(\d+)\1[ACGTNacgtn]*|\.[ACGTNacgtn]+|[ACGTNacgtn]+\."
)
_GT = re.compile(r"(?:\.|\d+)(?:[/|](?:\.|\d+))*")
_SVTYPE = re.compile(
    r"(?:DEL|INS|DUP|INV|CNV|BND|TRA|CPX|CTX|MEI)(?::(?:TANDEM|ME|ALU|L1|LINE1|SVA|HERV|DISPERSED))*"
)
_AA = re.compile(r"[ACGTNacgtn.?\-]*(?:\|[ACGTNacgtn.?\-]*){0,2}(?:\|(?:insertion|deletion|unsure|indel)?)?")
_CIGAR = re.compile(r"(?:\d+[MIDNSHP=X])+")
_PID = re.compile(r"\d+_[ACGTNacgtn*]+_[ACGTNacgtn*]+")
# public databases' identifiers as annotations write them (VEP's SWISSPROT, TREMBL, UNIPARC, DOMAINS,
# Existing_variation; ClinVar's CLNDISDB, CLNVCSO, MC): a UniProt accession (P00533.288, A0A024RDD7), a
# UniParc one, an HGMD one (CM043544), an InterPro entry, and an ID after the name of its database
# (Pfam:PF07714, PANTHER:PTHR11289:SF5, Gene3D:1.10.510.10, MONDO:MONDO:0005061, MedGen:C0152013,
# SO:0001583, HP:0001250, OMIM:114480, Orphanet:ORPHA145, EFO:EFO_0000305): the database's name is
# there, the ID's own letters are few and fixed (no name fits in them)
_DATABASES = (
    r"PROSITE_profiles|PROSITE_patterns|Pfam|SMART|PIRSF|PANTHER|Gene3D|Superfamily|SUPERFAMILY|InterPro"
    r"|CDD|Prints|PRINTS|TIGRFAM|TIGRFAMs|HAMAP|SFLD|NCBIfam|MONDO|MedGen|SO|HP|Human_Phenotype_Ontology"
    r"|OMIM|MIM|Orphanet|ORPHA|MeSH|EFO|DOID|NCIT|SNOMED_CT|UMLS|HGNC|Gene"
)
_PUBLIC_ID = (
    rf"(?:(?:{_DATABASES}):)+(?:[A-Z]{{0,5}}|cd)_?\d+(?:\.\d+)*(?::[A-Z]{{0,2}}\d+)?"
    r"|(?:[OPQ]\d[A-Z0-9]{3}\d|[A-NR-Z]\d(?:[A-Z][A-Z0-9]{2}\d){1,2})(?:[.\-]\d+)?"  # UniProt
    r"|UPI[0-9A-F]{10}|C[DEGIMNPRSX]\d{6}|IPR\d{6}"  # UniParc, HGMD, InterPro
)
# a gene named by its clone (RP11-54O7.16, CTD-2270F17.1, AC012345.1), or an Ensembl ID: SnpEff joins
# two genes' names or IDs with '-' for an intergenic region (RP11-54O7.16-ISG15)
_CLONE_OR_ENSEMBL = re.compile(
    r"(?<![^-])(?:(?:RP\d{1,2}|CT[A-D]|CH\d{2}|KB|XXbac|XXyac|LL\d{2}NC\d{2}|WI2|GS1)-[A-Z0-9]+\.\d+"
    r"|A[CLP]\d{6}\.\d+|ENS[A-Z]*\d{11}(?:\.\d+)?)(?![^-])"
)
_GENE_SYMBOL = re.compile(r"[A-Z][A-Za-z0-9]{0,14}(?:-[A-Z0-9]{1,6})?")
# HGVS (varnomen.hgvs.org) as VEP, SnpEff, ClinVar and Funcotator write it: a reference sequence
# (a transcript's, a protein's, a chromosome's) and ':' or none, then c. n. r. g. m. and a position
# (offsets -, *, intronic +/-, a range with '_', an uncertain one in parentheses) and an edit, or p.
# and amino acids (3- or 1-letter codes) with their positions and an edit. Only the codes, digits and
# the edits' few words fit: a part written 'c.' or 'p.' that is not HGVS is no annotation (c.Okafor)
_HGVS_REF = (
    r"(?:(?:ENS[A-Z]*\d{11}|[NXY][MRPCGTW]_\d+|LRG_\d+(?:[tp]\d+)?)(?:\.\d+)?"
    r"|(?:chr)?(?:[1-9]|1\d|2[0-2]|X|Y|MT?)):"
)
_HGVS_LIKE = re.compile(rf"(?:{_HGVS_REF})?[cgnmpr]\.")
_NT = r"[ACGTUNacgtun]+"
# positions as real sequences have them: a coding one of at most 6 digits (the longest transcript is
# ~110,000 bases), no leading zero (c.4471203del, c.5558675309dup, c.1947+0319G>A are numbers, not
# variants); a genomic one of at most 10 digits
_C_POS = r"(?:[-*]?[1-9]\d{0,5}|\?|e\d{1,3})(?:[+-](?:[1-9]\d{0,5}|\?))?"  # e21+1: Funcotator's splice site
_G_POS = r"(?:[1-9]\d{0,9}|\?)"
_C_POINT = rf"(?:{_C_POS}|\({_C_POS}(?:_{_C_POS})?\))"
_G_POINT = rf"(?:{_G_POS}|\({_G_POS}(?:_{_G_POS})?\))"
# edits; Funcotator writes the reference codon's bases first: c.(2233-2250)aaggaattaagagaagcadel,
# c.(34-36)ggcfs, c.(2233-2235)aaginsaaaa; an insertion may give its length alone (c.100_101ins10)
_NT_EDIT = (
    rf"(?:{_NT})?>{_NT}|(?:{_NT})?del(?:{_NT}|\d+)?(?:ins{_NT})?|dup(?:{_NT}|\d+)?|inv(?:{_NT}|\d+)?"
    rf"|(?:{_NT})?ins(?:{_NT}|\(\d+\)|N\[\d+\]|\d+)?|(?:{_NT})?fs|(?:{_NT})?(?:\[\d+\]|=|\?)"
)
_NT_HGVS = (
    rf"(?:[cnr]\.(?:{_C_POINT}(?:_{_C_POINT})?(?:{_NT_EDIT})|e\d+[+-]\d+|\(?[=?]\)?|0\??|spl\??)"
    rf"|[gm]\.(?:(?:chr)?(?:\d{{1,2}}|X|Y|MT?):)?"  # g.chr7:55191822T>G: Funcotator's genome change
    rf"(?:{_G_POINT}(?:_{_G_POINT})?(?:{_NT_EDIT})|\(?[=?]\)?|0\??))"
)
_AMINO = r"(?:Ala|Arg|Asn|Asp|Cys|Gln|Glu|Gly|His|Ile|Leu|Lys|Met|Phe|Pro|Ser|Thr|Trp|Tyr|Val|Sec|Pyl|Ter|Xaa|[A-Z*])"
_AMINO_EDIT = (
    rf"(?:{_AMINO})?fs(?:(?:Ter|\*)(?:\d+|\?))?|(?:{_AMINO})?ext(?:-\d+|(?:Ter|\*)(?:\d+|\?))"
    rf"|delins(?:{_AMINO})+|del|dup|ins(?:(?:{_AMINO})+|\d+)|{_AMINO}|=|\?|\[\d+\]|_splice"
)
_AMINO_BODY = rf"(?:{_AMINO}[1-9]\d{{0,4}}(?:_{_AMINO}[1-9]\d{{0,4}})?(?:{_AMINO_EDIT})|=|\?|0\??)"
_HGVS = rf"(?:{_HGVS_REF})?(?:{_NT_HGVS}|p\.(?:{_AMINO_BODY}|\({_AMINO_BODY}\)))"
_HGVS_SHAPE = re.compile(_HGVS)
# an annotation's separators: '|', '&', ',' and Funcotator's brackets, not an HGVS repeat's ([3])
_SEPARATORS = r"[|&,]|\[(?!\d+\])|(?<!\[\d)(?<!\[\d\d)(?<!\[\d\d\d)\]"


def _hgvs_shaped(text: str) -> bool:
    """Whether each part of ``text`` written as HGVS is (``c.2573T>G``, not ``c.Okafor``), as written
    and as it reads decoded (``ENST00000275493.7%3Ac.2573T>G``)."""
    readings = _vcf_readings(text)
    if readings:
        return all(_hgvs_shaped(r) for r in readings)
    return all(not _HGVS_LIKE.match(p) or bool(_HGVS_SHAPE.fullmatch(p)) for p in re.split(_SEPARATORS, text))


# parts of an annotation that the free-text cleaner takes for IDs and dates but are the annotation's
# own: numbers (positions, lengths: as a typed value is kept), ranks and positions (21/28, 858/1210),
# Ensembl and RefSeq accessions, public variant IDs, HGVS (c., p., g., with a transcript before it),
# the public databases' identifiers above
_ANNOTATION_PART = re.compile(
    r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[\d?]+(?:-[\d?]+)?/\d+"
    r"|ENS[A-Z]*\d{11}(?:\.\d+)?|[NXY][MRPCG]_\d+(?:\.\d+)?|"
    + _VARIANT_ID.pattern
    + "|"
    + _HGVS
    + "|"
    + _PUBLIC_ID
)
# a structural-variant caller's own record IDs that the cleaner takes for identifiers: Delly's
# (DEL00000001, BND00000002); Manta's, Lumpy's, GRIDSS's, Sniffles' it leaves as they are
_CALLER_ID = re.compile(r"(?:DEL|DUP|INV|BND|INS|TRA|CNV|CPX)\d{1,12}(?:_\d+)?")


@dataclass
class RecordRules:
    """What the (cleaned) header declares, that a record's fields are read against."""

    info: dict[str, str] = field(default_factory=dict)  # key -> Type
    formats: dict[str, str] = field(default_factory=dict)
    filters: frozenset[str] = frozenset()
    alts: frozenset[str] = frozenset()
    contigs: frozenset[str] = frozenset()
    # FILTER IDs whose declaration the site dropped (a name in them): taken out of the records' FILTER
    withdrawn: frozenset[str] = frozenset()

    @classmethod
    def of(cls, header_lines: list[str]) -> RecordRules:
        rules = cls()
        filters: set[str] = {"PASS"}
        alts: set[str] = set()
        contigs: set[str] = set()
        for line in header_lines:
            m = re.match(r"##(INFO|FORMAT|FILTER|ALT|contig)=<(.*)>$", line)
            if not m:
                continue
            attrs = dict(_ATTRIBUTE.findall(m.group(2)))
            key = attrs.get("ID")
            if not key:
                continue
            if m.group(1) == "INFO":
                rules.info[key] = attrs.get("Type", "")
            elif m.group(1) == "FORMAT":
                rules.formats[key] = attrs.get("Type", "")
            else:
                {"FILTER": filters, "ALT": alts, "contig": contigs}[m.group(1)].add(key)
        rules.filters, rules.alts, rules.contigs = frozenset(filters), frozenset(alts), frozenset(contigs)
        return rules


@dataclass
class RecordCounts:
    """What ``record_values`` took out of the records."""

    records: int = 0  # records dropped (a CHROM, POS, REF, ALT, QUAL or FILTER no rule keeps)
    dropped: int = 0  # values dropped (an ID, an INFO entry, a sample's field made ``.``)
    cleaned: int = 0  # values of which a part was emptied (an annotation's)

    def __bool__(self) -> bool:
        return bool(self.records or self.dropped or self.cleaned)

    def says(self) -> str:
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.records, "records dropped"),
                (self.dropped, "record values dropped"),
                (self.cleaned, "record values cleaned"),
            )
            if n
        ]
        return ", ".join(parts)


class _Values:
    """The rules of one run: the header's declarations, the identifiers (none at the platform) and the
    site's names; the cleaner's answer for each distinct text, once."""

    def __init__(self, rules: RecordRules, ids: Identifiers | None, site: SiteNames | None) -> None:
        self.rules, self.ids, self.site = rules, ids or Identifiers(), site
        self._clean: dict[str, bool] = {}

    def clean(self, text: str) -> bool:
        """Whether the free-text cleaner (and the site's names) leave ``text`` as it is, and as it reads
        decoded (``_vcf_readings``): a text with escapes is looked at for the patient's identifiers and
        the site's names as written, for those and the generic shapes as it reads."""
        ok = self._clean.get(text)
        if ok is None:
            readings = _vcf_readings(text)
            if readings:
                ok = self.names_nobody(text) and all(self.unchanged(r) for r in readings)
            else:
                ok = self.unchanged(text)
            self._clean[text] = ok
        return ok

    def unchanged(self, text: str) -> bool:
        out = clean_text(text, self.ids)
        return out == text and (self.site is None or self.site.clean(text) == text)

    def names_nobody(self, text: str) -> bool:
        """Whether ``text`` holds none of the patient's identifiers nor the site's names (no shapes)."""
        return not survivors(text, self.ids) and (self.site is None or self.site.clean(text) == text)

    def contig(self, name: str) -> bool:
        return bool(_CONTIG.fullmatch(name)) and (not self.rules.contigs or name in self.rules.contigs)

    def alt(self, allele: str) -> bool:
        if allele in ("*", ".") or _NUCLEOTIDES.fullmatch(allele):
            return True
        if allele.startswith("<") and allele.endswith(">"):
            sym = allele[1:-1]
            return bool(_SYMBOLIC.fullmatch(sym)) or (sym in self.rules.alts and self.clean(sym))
        m = _BREAKEND.fullmatch(allele)
        return m is not None and (m.group(2) is None or self.contig(m.group(2)))

    def part(self, p: str) -> bool:
        """Whether a part of an annotation is kept: empty, of a shape annotations write (numbers,
        accessions, HGVS, public databases' IDs, genes joined by '-'), or left as it is by the cleaner.
        A part with escapes (VEP's ``ENSP00000275493.2%3Ap.Leu858Arg``): each of its decoded readings
        so, and the part as written holding none of the patient's identifiers nor the site's names."""
        readings = _vcf_readings(p)
        if readings:
            return self.names_nobody(p) and all(self.part(r) for r in readings)
        if _HGVS_LIKE.match(p):  # written as HGVS: kept only as HGVS
            return bool(_HGVS_SHAPE.fullmatch(p))
        return not p or bool(_ANNOTATION_PART.fullmatch(p)) or self.joined(p) or self.clean(p)

    def joined(self, p: str) -> bool:
        """SnpEff's intergenic gene and ID (``RP11-54O7.16-ISG15``, ``ENSG...-ENSG...``): each of the
        joined names a clone's, an Ensembl ID, or a gene symbol the cleaner leaves."""
        if "-" not in p or not _CLONE_OR_ENSEMBL.search(p):
            return False
        rest = _CLONE_OR_ENSEMBL.sub("\0", p)
        return all(x == "\0" or (bool(_GENE_SYMBOL.fullmatch(x)) and self.clean(x)) for x in rest.split("-"))

    def filters(self, text: str) -> bool:
        return text == "." or all(f in self.rules.filters and self.clean(f) for f in text.split(";"))

    def variant_id(self, vid: str) -> bool:
        return bool(_VARIANT_ID.fullmatch(vid) or _CALLER_ID.fullmatch(vid)) or (
            any(c.isdigit() for c in vid) and bool(re.fullmatch(r"[\w.:\-]+", vid)) and self.clean(vid)
        )

    def text(self, key: str, value: str, kind: str, *, sample: bool = False) -> tuple[str | None, bool]:
        """A String or Character value as kept (None: dropped), and whether a part of it was emptied."""
        if kind == "Character" and not all(len(v) <= 1 for v in value.split(",")):
            return None, False
        shape = (_SAMPLE_SHAPES if sample else _INFO_SHAPES).get(key)
        if shape is not None:
            return (value if shape(self, value) else None), False
        if sample:  # a sample's own text (a lab's field): no shape tells a name there from data
            return None, False
        if self.clean(value) and _hgvs_shaped(value):
            return value, False
        # an annotation, read part by part: a part the cleaner changes is emptied, the layout stays
        parts = re.split(f"({_SEPARATORS})", value)
        changed = False
        for i in range(0, len(parts), 2):
            p = parts[i]
            if not self.part(p):
                parts[i], changed = "", True
        out = "".join(parts)
        if not out.strip("|&,[]. ") or not self.clean_parts(out):
            return None, False
        return out, changed

    def clean_parts(self, value: str) -> bool:
        return all(self.part(p) for p in re.split(_SEPARATORS, value))


def _each(shape: re.Pattern[str]) -> Any:
    return lambda _v, value: all(shape.fullmatch(x) for x in value.split(","))


_INFO_SHAPES: dict[str, Any] = {
    "SVTYPE": _each(_SVTYPE),
    "AA": _each(_AA),
    "CIGAR": _each(_CIGAR),
    "RU": _each(_NUCLEOTIDES),
    "MATEID": lambda v, value: all(v.variant_id(x) for x in value.split(",")),
    "PARID": lambda v, value: all(v.variant_id(x) for x in value.split(",")),
    "EVENT": lambda v, value: all(v.variant_id(x) for x in value.split(",")),
    "AS_FilterStatus": lambda v, value: all(
        x in ("SITE", "PASS", ".") or v.filters(x) for x in re.split(r"[|,]", value)
    ),
}
_SAMPLE_SHAPES: dict[str, Any] = {
    "PGT": _each(_GT),
    "PID": lambda _v, value: value == "." or bool(_PID.fullmatch(value)),
    "FT": lambda v, value: value == "PASS" or v.filters(value),
}


def _typed(value: str, kind: str) -> bool:
    return kind in ("Integer", "Float") and all(_NUMBER.fullmatch(v) for v in value.split(","))


def _genotype(value: str, alts: int) -> bool:
    return bool(_GT.fullmatch(value)) and all(a == "." or int(a) <= alts for a in re.split(r"[/|]", value))


def record_values(
    body: bytes,
    rules: RecordRules,
    ids: Identifiers | None = None,
    site: SiteNames | None = None,
    counts: RecordCounts | None = None,
    first_line: int = 0,
) -> bytes:
    """The records with only the values a record keeps (the rules above); ``rules``: what the cleaned
    header declares; ``ids`` and ``site``: the patient's identifiers and the site's names (none at the
    platform). ``body`` itself when nothing goes; what went is added to ``counts``. A record dropped
    with one of the patient's identifiers in its CHROM, QUAL or FILTER refuses the file (``first_line``:
    the lines before ``body``, for the reason)."""
    v = _Values(rules, ids, site)
    counts = counts if counts is not None else RecordCounts()
    out: list[bytes] = []
    changed = False
    needles = ids.gate_needles() if ids is not None else None
    for n, line in enumerate(body.split(b"\n")):
        cols = line.decode("utf-8", errors="replace").split("\t") if line else []
        if len(cols) < 8 or line[:1] == b"#":
            out.append(line)
            continue
        new = _record(cols, v, counts)
        if new is None:
            for i in (0, 5, 6):  # the patient's own identifier there: the file is refused, as by the gate
                if needles and find_identifier(cols[i].encode(), needles) is not None:
                    raise DeidError(
                        f"final gate: an identifying value stands in column {_VCF_COLUMNS[i]} of line "
                        f"{first_line + n + 1}; not stored",
                        hint="remove it from the site's export and drop the file again",
                    )
            changed = True
            continue
        if new != cols:
            changed = True
            line = "\t".join(new).encode()
        out.append(line)
    return b"\n".join(out) if changed else body


def _record(cols: list[str], v: _Values, counts: RecordCounts) -> list[str] | None:
    """One record as kept (None: dropped)."""
    chrom, pos, _id, ref, alt, qual, filt = cols[:7]
    if v.rules.withdrawn and filt != ".":
        kept_filters = [f for f in filt.split(";") if f not in v.rules.withdrawn]
        counts.dropped += len(filt.split(";")) - len(kept_filters)
        filt = ";".join(kept_filters) or "."
    alts = alt.split(",")
    if not (
        v.contig(chrom)
        and pos.isdigit()
        and _REF.fullmatch(ref)
        and all(v.alt(a) for a in alts)
        and _NUMBER.fullmatch(qual)
        and v.filters(filt)
    ):
        counts.records += 1
        return None
    new = list(cols)
    new[6] = filt
    ids = cols[2].split(";")
    kept_ids = [e for e in ids if e != "." and v.variant_id(e)]
    counts.dropped += sum(1 for e in ids if e != ".") - len(kept_ids)
    new[2] = ";".join(kept_ids) or "."
    items = []
    for item in cols[7].split(";"):
        if item in (".", ""):
            continue
        key, eq, value = item.partition("=")
        kind = v.rules.info.get(key)
        if (kind == "Flag" and not eq) or (eq and _typed(value, kind or "")):
            items.append(item)
        elif eq and kind in ("String", "Character"):
            text, emptied = v.text(key, value, kind)
            if text is None:
                counts.dropped += 1
            else:
                counts.cleaned += emptied
                items.append(f"{key}={text}")
        else:
            counts.dropped += 1
    new[7] = ";".join(items) or "."
    if len(cols) > 8:
        keys = cols[8].split(":")
        declared = [j for j, k in enumerate(keys) if k in v.rules.formats]
        counts.dropped += (len(keys) - len(declared)) * (len(cols) - 9)
        new[8] = ":".join(keys[j] for j in declared) or "."
        for i in range(9, len(cols)):
            fields = cols[i].split(":")
            counts.dropped += max(len(fields) - len(keys), 0)
            kept = []
            for j in declared:
                if j >= len(fields):
                    break  # trailing fields a call leaves out (VCF allows it)
                key, value = keys[j], fields[j]
                kind = v.rules.formats[key]
                if key == "GT":
                    ok = _genotype(value, len(alts))
                elif value == "." or _typed(value, kind):
                    ok = True
                elif kind in ("String", "Character"):
                    text, emptied = v.text(key, value, kind, sample=True)
                    ok, value = text is not None, text or "."
                    counts.cleaned += emptied
                else:
                    ok = False
                if not ok:
                    counts.dropped += 1
                    value = "."
                kept.append(value)
            new[i] = ":".join(kept) or "."
    return new


def index_vcf(raw: bytes, name: str) -> VcfResult:
    """A VCF de-identified at its site (a gateway's push), indexed at the platform: the sample names are
    kept as they are (the caller has checked they are pseudonyms), the header is cleaned and gated again
    like any VCF's, and no key is used (central never de-identifies with another key)."""
    return deidentify_vcf(raw, name, VcfMap(), b"", keep_samples=True)


_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def bgzip(data: bytes, level: int = 1, *, eof: bool = True) -> bytes:
    """BGZF (what htslib, tabix and pysam read): 64 KiB gzip members with the block size in an extra
    field. Deflate level 1: the variants are kept whole; the store compresses again if it likes."""
    import struct
    import zlib

    out = []
    step = 65280  # htslib's block payload: the compressed block must stay under 64 KiB
    for i in range(0, len(data), step):
        chunk = data[i : i + step]
        comp = zlib.compressobj(level, zlib.DEFLATED, -15)
        body = comp.compress(chunk) + comp.flush()
        if len(body) > 65536 - 26:  # incompressible: store it
            comp = zlib.compressobj(0, zlib.DEFLATED, -15)
            body = comp.compress(chunk) + comp.flush()
        header = struct.pack("<4BI2BH2BHH", 31, 139, 8, 4, 0, 0, 255, 6, 66, 67, 2, len(body) + 25)
        out += [header, body, struct.pack("<II", zlib.crc32(chunk), len(chunk))]
    if eof:
        out.append(_BGZF_EOF)
    return b"".join(out)


def _gt(text: str) -> tuple[int | None, ...]:
    return tuple(None if a in (".", "") else int(a) for a in re.split(r"[/|]", text))


def _index_text(
    body: str,
    n_samples: int,
    csq_fields: list[str] | None,
    af_key: str | None,
    first_line: int,
    fun_fields: list[str] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """The variant index of a text VCF body: one row per (alt allele, carrying sample)."""
    variants: list[dict[str, Any]] = []
    records = 0
    csq_idx = {n: i for i, n in enumerate(csq_fields or [])}
    for n, line in enumerate(body.split("\n"), start=first_line + 1):
        if not line or line[0] == "#":
            continue
        cols = line.rstrip("\r").split("\t")
        if len(cols) < 8:
            raise InputError(
                f"VCF line {n} is malformed: {len(cols)} columns, a record needs the 8 fixed ones"
            )
        if n_samples and len(cols) < 9 + n_samples:
            raise InputError(
                f"VCF line {n} is malformed: {max(len(cols) - 9, 0)} sample column(s)"
                f"{'' if len(cols) > 8 else ' and no FORMAT column'}, the #CHROM header line names {n_samples}"
            )
        if not cols[1].isdigit():
            raise InputError(f"VCF line {n} is malformed: POS is not a whole number")
        records += 1
        chrom, pos, ref, alts = cols[0], int(cols[1]), cols[3], cols[4].split(",")
        info: dict[str, str] = {}
        for item in cols[7].split(";"):
            k, _, v = item.partition("=")
            info[k] = v
        anns: list[dict[str, str]] = []
        for entry in info["ANN"].split(",") if "ANN" in info else ():
            a = entry.split("|")
            if len(a) >= 11:
                anns.append({"allele": a[0], "consequence": a[1].split("&")[0], "gene": a[3], "hgvs_c": a[9],
                             "hgvs_p": a[10]})  # fmt: skip
        for entry in info["CSQ"].split(",") if "CSQ" in info and csq_idx else ():
            a = entry.split("|")

            def g(name: str, a: list[str] = a) -> str:
                i = csq_idx.get(name)
                return a[i] if i is not None and i < len(a) else ""

            hc, hp = g("HGVSc"), g("HGVSp")
            anns.append({"allele": g("Allele"), "consequence": g("Consequence").split("&")[0], "gene": g("SYMBOL"),
                         "hgvs_c": hc.split(":")[-1] if hc else "", "hgvs_p": hp.split(":")[-1] if hp else "",
                         "population_af": g("gnomAD_AF") or g("gnomADe_AF") or g("MAX_AF") or g("AF")})  # fmt: skip
        if not anns and "FUNCOTATION" in info and fun_fields:
            anns = _funcotations(info["FUNCOTATION"], fun_fields, alts)
        keys = cols[8].split(":") if n_samples else []
        filt = None if cols[6] in (".", "") else cols[6]
        pop = _float(info.get(af_key)) if af_key else None
        for s_i in range(n_samples):
            call = dict(zip(keys, cols[9 + s_i].split(":"), strict=False))
            if "GT" not in call:
                continue
            try:
                gt = _gt(call["GT"])
            except ValueError:
                raise InputError(f"VCF line {n}: a genotype is malformed") from None
            for alt_i, alt in enumerate(alts):
                if (alt_i + 1) not in gt:
                    continue
                ann = next((a for a in anns if a.get("allele") in (alt, "")), anns[0] if anns else {})
                af = _float(
                    (call.get("AF") or call.get("VAF") or "").split(",")[alt_i]
                    if (call.get("AF") or call.get("VAF"))
                    else None
                )
                if af is None and call.get("AD"):
                    ad = [_float(x) for x in call["AD"].split(",")]
                    tot = sum(x for x in ad if x is not None)
                    af = (ad[alt_i + 1] or 0) / tot if tot and alt_i + 1 < len(ad) else None
                variants.append({
                    "sample": s_i, "chrom": chrom, "pos": pos, "ref": ref, "alt": alt,
                    "gene": ann.get("gene") or None, "consequence": ann.get("consequence") or None,
                    "hgvs_c": ann.get("hgvs_c") or None, "hgvs_p": ann.get("hgvs_p") or None,
                    "zygosity": _zygosity(gt), "allele_frequency": af,
                    "population_af": _float(ann.get("population_af")) or pop, "filter": filt,
                })  # fmt: skip
    return records, variants


def _funcotations(value: str, fields: list[str], alts: list[str]) -> list[dict[str, str]]:
    """GATK Funcotator's ``FUNCOTATION`` (one ``[a|b|...]`` per ALT, its fields as the header's
    description lists them) as annotations: gene, variant classification, cDNA and protein change."""

    def at(suffix: str) -> int | None:
        return next((i for i, n in enumerate(fields) if n.endswith("_" + suffix)), None)

    gene, klass, cdna, protein = (
        at("hugoSymbol"),
        at("variantClassification"),
        at("cDnaChange"),
        at("proteinChange"),
    )
    out = []
    for alt, entry in zip(alts, re.findall(r"\[([^\]]*)\]", value) or value.split(","), strict=False):
        p = entry.split("|")

        def g(i: int | None, p: list[str] = p) -> str:
            return p[i] if i is not None and i < len(p) else ""

        out.append({"allele": alt, "consequence": g(klass), "gene": g(gene), "hgvs_c": g(cdna),
                    "hgvs_p": g(protein)})  # fmt: skip
    return out


def _floats(arr: Any) -> Any:
    """A string array as float64 (NaN where empty, '.', or not a number), in C where it can be."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pc.if_else(pc.is_in(arr, value_set=pa.array([".", ""])), pa.scalar(None, pa.string()), arr)
    try:
        out = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        vals = [_float(v) for v in arr.to_pylist()]
        out = np.array([np.nan if v is None else v for v in vals], dtype=float)
    return np.asarray(out, dtype=float)


class _Unordered(Exception):
    """Spans that do not follow one another: the row-by-row reader takes the file."""


def _index_columns(body: bytes, n_samples: int, af_key: str | None) -> tuple[int, dict[str, Any]] | None:
    try:
        return _index_spans(body, n_samples, af_key)
    except _Unordered:
        return None


def _index_spans(body: bytes, n_samples: int, af_key: str | None) -> tuple[int, dict[str, Any]] | None:
    """The variant index of a text VCF, column-wise (SnpEff ANN or none, one ALT per record, GT first in
    FORMAT: what most clinical VCFs are). The body is cut where its tabs, newlines, pipes, commas and
    semicolons stand (numpy finds them, in C), and every field the index needs is taken out of it as
    Arrow text in one go, never one Python object per record. None: the row-by-row reader is needed
    (CSQ, several ALTs, a malformed line, which that reader then names)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not body or body.isspace():
        return 0, _columns([])
    if b"\r" in body or len(body) >= 2**31 - 2:
        return None
    if not body.isascii():
        try:  # every field cut out of it below is then UTF-8 too (cuts fall on ASCII bytes)
            body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not body.endswith(b"\n"):
        body += b"\n"
    b = np.frombuffer(body, np.uint8)
    ncols = 8 + (1 + n_samples if n_samples else 0)
    cuts = np.flatnonzero(b <= 10)  # tabs and newlines (and any other control byte: the row reader)
    if len(cuts) % ncols:
        return None
    n = len(cuts) // ncols
    grid = cuts.reshape(n, ncols)
    kinds = b[grid]
    if not ((kinds[:, :-1] == 9).all() and (kinds[:, -1] == 10).all()):
        return None  # a blank line, a record of other width, a stray control byte
    del kinds
    first = np.concatenate([[0], grid[:-1, -1] + 1]).astype(np.int64)
    if (b[first] == 0x23).any():  # a '#' line among the records
        return None
    buf = pa.py_buffer(body)

    def column(c: int) -> tuple[Any, Any]:
        return (first if c == 0 else grid[:, c - 1] + 1), grid[:, c]

    info_s, info_e = column(7)
    seps = np.flatnonzero((b == 0x3B) | (b == 0x2C))  # ';' between INFO items, ',' between values
    semis = seps[b[seps] == 0x3B]
    # the first ANN entry, cut into its fields; an entry of fewer than 11 fields is no annotation, as in
    # the row reader
    a, has_ann = _info_spans(b, info_s, info_e, semis, b"ANN")
    nxt = np.append(seps, len(b))[np.searchsorted(seps, a)]
    entry_end = np.minimum(nxt, info_e)  # the first entry ends at ',' (another follows), ';' or the tab
    several = has_ann & (nxt < info_e) & (b[np.minimum(nxt, len(b) - 1)] == 0x2C)
    pipes = np.append(np.flatnonzero(b == 0x7C), [len(b)] * 11)
    k = np.searchsorted(pipes, a)
    p = {j: pipes[k + j] for j in (0, 1, 2, 3, 8, 9, 10)}  # the pipes after ANN=: its fields end there
    valid = has_ann & (p[9] < entry_end)

    anchor = grid[:, 6]  # where FILTER ends: the span of a record's missing annotation (empty, in order)

    def field(start: Any, end: Any) -> tuple[Any, Any, Any]:  # none where empty or no annotation
        return np.where(valid, start, anchor), np.where(valid, end, anchor), valid & (end > start)

    # every field the index needs, in the order they stand in a record: cut out in one sweep
    spans = [(*column(c), None) for c in (0, 1, 3, 4, 6)]
    check_allele = bool(several.any())
    if check_allele:
        spans.append((np.where(valid, a, anchor), np.where(valid, p[0], anchor), valid))
    spans += [field(p[0] + 1, p[1]), field(p[2] + 1, p[3]), field(p[8] + 1, p[9])]
    spans.append(field(p[9] + 1, np.minimum(p[10], entry_end)))
    spans += [(*column(c), None) for c in range(8, ncols)]
    cut = _cut_many(buf, spans)
    chrom_t, pos_text, ref_t, alt_t, filt_t = cut[:5]
    allele = cut[5] if check_allele else None
    consequence, gene, hgvs_c, hgvs_p = cut[5 + check_allele : 9 + check_allele]
    fmt_t, sample_ts = (cut[9 + check_allele], cut[10 + check_allele :]) if n_samples else (None, [])
    if not pc.all(pc.utf8_is_digit(pos_text)).as_py():
        return None
    if pc.any(pc.match_substring(alt_t, ",")).as_py():
        return None
    if allele is not None:
        # several ANN entries: the first must be for this ALT (or "") unless it is the only one
        other = pc.fill_null(pc.and_(pc.not_equal(allele, ""), pc.not_equal(allele, alt_t)), False)
        if np.any(several & (~valid | other.to_numpy(zero_copy_only=False))):
            return None
    pos = pc.cast(pos_text, pa.int64()).to_numpy(zero_copy_only=False)
    # text of a few distinct values stays dictionary-encoded (so does the Parquet file; the per-patient
    # index reads the codes): encoded once here, mended on the dictionary only
    chrom, ref, alt = (t.dictionary_encode() for t in (chrom_t, ref_t, alt_t))
    null = pa.scalar(None, pa.string())
    filt = filt_t.dictionary_encode()
    none = pc.is_in(filt.dictionary, value_set=pa.array([".", ""])).to_numpy(zero_copy_only=False)
    if none.any():
        codes = filt.indices.to_numpy(zero_copy_only=False)
        filt = pa.DictionaryArray.from_arrays(pa.array(codes, mask=none[codes]), filt.dictionary)
    gene, hgvs_p = gene.dictionary_encode(), hgvs_p.dictionary_encode()  # hgvs_c: about one per variant
    consequence = consequence.dictionary_encode()  # a handful of distinct terms
    terms = consequence.dictionary
    if pc.any(pc.match_substring(terms, "&")).as_py():  # "a&b": the first term only
        terms = pc.list_element(pc.split_pattern(terms, "&", max_splits=1), 0)
        terms = pc.if_else(pc.equal(terms, ""), null, terms)
        consequence = terms.take(consequence.indices).dictionary_encode()
    pop = np.full(n, np.nan)
    if af_key:
        s, has = _info_spans(b, info_s, info_e, semis, af_key.encode())
        e = np.minimum(np.append(semis, len(b))[np.searchsorted(semis, s)], info_e)
        pop = _floats(pc.fill_null(_cut(buf, s, e, has), ""))
    fmt = fmt_t.dictionary_encode() if fmt_t is not None else None
    parts: list[dict[str, Any]] = []
    for s_i in range(n_samples):
        assert fmt is not None
        sub_fields = _colon_fields(sample_ts[s_i])
        fcodes = fmt.indices.to_numpy(zero_copy_only=False)
        gt_rows: list[Any] = []  # (rows, their GT texts) per FORMAT
        af = np.full(n, np.nan)
        formats = fmt.dictionary.to_pylist()
        for f_i, f in enumerate(formats):
            keys = f.split(":")
            rows = np.arange(n) if len(formats) == 1 else np.nonzero(fcodes == f_i)[0]
            if not len(rows) or "GT" not in keys:
                continue

            def value(k: str, rows: Any = rows, keys: list[str] = keys, of: Any = sub_fields) -> Any:
                return of(rows, keys.index(k)) if k in keys else None

            g = value("GT")
            if g is None:
                return None
            gt_rows.append((rows, g))
            vals = np.full(len(rows), np.nan)
            for key in ("AF", "VAF"):
                got = value(key)
                if got is not None:
                    if pc.any(pc.match_substring(got, ",")).as_py():
                        got = pc.list_element(pc.split_pattern(got, ",", max_splits=1), 0)
                    vals = np.where(np.isnan(vals), _floats(got), vals)
            ad = value("AD")
            if ad is not None and np.isnan(vals).any():
                lists = pc.split_pattern(ad, ",")
                flat = _floats(pc.list_flatten(lists))
                counts = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
                # (a 0 after the last: a call without AD, at the end, starts there)
                tot = np.add.reduceat(np.append(np.nan_to_num(flat), 0.0), starts)
                tot[counts == 0] = 0
                second = (
                    np.where(counts >= 2, flat[np.minimum(starts + 1, len(flat) - 1)], np.nan)
                    if len(flat)
                    else np.full(len(rows), np.nan)
                )
                from_ad = np.where(
                    (tot > 0) & (counts >= 2), np.nan_to_num(second) / np.where(tot > 0, tot, 1), np.nan
                )
                vals = np.where(np.isnan(vals), from_ad, vals)
            af[rows] = vals
        # genotypes: parsed once per distinct text, spread back by their codes
        if len(gt_rows) == 1 and len(gt_rows[0][0]) == n:
            enc = gt_rows[0][1].dictionary_encode()
        else:
            where = np.full(n, -1, dtype=np.int64)  # each record's place among the FORMATs' GT texts
            if gt_rows:
                where[np.concatenate([r for r, _ in gt_rows])] = np.arange(sum(len(r) for r, _ in gt_rows))
                texts = pa.concat_arrays([g for _, g in gt_rows])
            else:
                texts = pa.array([], pa.string())
            enc = texts.take(pa.array(where, mask=where < 0)).dictionary_encode()
        gcodes = pc.fill_null(enc.indices.cast(pa.int64()), -1).to_numpy(zero_copy_only=False)
        carries, zygs = [], []
        for g in enc.dictionary.to_pylist():
            try:
                parsed = _gt(g)
            except ValueError:
                return None
            carries.append(1 in parsed)
            zygs.append(_zygosity(parsed))
        carry_of = np.array([*carries, False], dtype=bool)  # code -1 (no GT): the last entry
        zyg_of = pa.array([z or "" for z in zygs], pa.string())  # a carrier's is never None
        carry = carry_of[gcodes]
        rows = np.nonzero(carry)[0]
        every = len(rows) == n  # every record carries: no row to take out

        def pick(arr: Any, rows: Any = rows, every: bool = every) -> Any:
            return arr if every else arr.take(pa.array(rows))

        parts.append({
            "__row": rows, "sample": np.full(len(rows), s_i, dtype=np.int64), "chrom": pick(chrom),
            "pos": pos[rows], "ref": pick(ref), "alt": pick(alt), "gene": pick(gene),
            "consequence": pick(consequence), "hgvs_c": pick(hgvs_c), "hgvs_p": pick(hgvs_p),
            "zygosity": pa.DictionaryArray.from_arrays(gcodes[rows].astype(np.int32), zyg_of),
            "allele_frequency": af[rows], "population_af": pop[rows], "filter": pick(filt),
        })  # fmt: skip
    if not parts:
        return n, _columns([])
    if len(parts) == 1:  # one sample: its rows are in record order already
        cols = parts[0]
        cols.pop("__row")
        return n, cols
    cols = {
        k: pa.concat_arrays([p[k] for p in parts]) if isinstance(parts[0][k], pa.Array) else
        np.concatenate([p[k] for p in parts])
        for k in parts[0]
    }  # fmt: skip
    order = np.lexsort((cols["sample"], cols.pop("__row")))
    at = pa.array(order)
    return n, {k: v.take(at) if isinstance(v, pa.Array) else v[order] for k, v in cols.items()}


def _cut(buf: Any, start: Any, end: Any, valid: Any = None) -> Any:
    """The spans ``[start, end)`` of ``buf`` (in order, not overlapping) as an Arrow string array, null
    where ``valid`` is False."""
    return _cut_many(buf, [(start, end, valid)])[0]


def _cut_many(buf: Any, spans: list[tuple[Any, Any, Any]]) -> list[Any]:
    """Several columns of spans of ``buf`` (start, end, valid or None), a row's spans in the order they
    stand in it (a null's too: empty is fine), as Arrow string arrays (null where not valid). One Arrow
    array whose values are every span and the gaps between them, row by row; its spans taken in C in one
    sweep over ``buf``, then each column out of those (close together, in cache)."""
    import numpy as np
    import pyarrow as pa

    m, n = len(spans), len(spans[0][0])
    by_column = np.empty((2 * m, n), dtype=np.int32)
    for j, (s, e, _valid) in enumerate(spans):
        by_column[2 * j], by_column[2 * j + 1] = s, e
    masks = [v for _s, _e, v in spans]
    offsets = np.empty(2 * n * m + 1, dtype=np.int32)
    offsets[:-1].reshape(n, 2 * m)[:] = by_column.T  # row by row: start, end, start, end...
    offsets[-1] = offsets[-2] if n else 0
    if n and (np.diff(offsets) < 0).any():
        raise _Unordered
    both = pa.Array.from_buffers(pa.string(), 2 * n * m, [None, pa.py_buffer(offsets), buf])
    rows = both.take(pa.array(np.arange(0, 2 * n * m, 2, dtype=np.int64)))
    out = []
    for j, valid in enumerate(masks):
        col = rows if m == 1 else rows.take(pa.array(np.arange(j, n * m, m, dtype=np.int64)))
        if valid is not None and not valid.all():
            mask = pa.py_buffer(np.packbits(valid, bitorder="little"))
            col = pa.Array.from_buffers(pa.string(), n, [mask, *col.buffers()[1:]])
        out.append(col)
    return out


def _colon_fields(col: Any) -> Any:
    """For a text array (a sample's column: no nulls), a function giving the ``i``-th ``:``-separated
    field of the rows ``rows`` (in order) as Arrow text, null where a call has fewer fields (VCF lets a
    call drop its trailing fields: the row reader reads those as missing too)."""
    import numpy as np
    import pyarrow as pa

    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset : col.offset + len(col) + 1]
    data = col.buffers()[2] or pa.py_buffer(b"")
    colons = np.flatnonzero(np.frombuffer(data, dtype=np.uint8)[: offsets[-1]] == 0x3A)
    first = np.searchsorted(colons, offsets[:-1])  # each row's first ':' among them
    count = np.searchsorted(colons, offsets[1:]) - first + 1  # each row's fields
    colons = np.append(colons, offsets[-1])

    def field(rows: Any, i: int) -> Any:
        has = count[rows] > i
        at = np.minimum(first[rows] + i, len(colons) - 1)
        start = offsets[rows] if i == 0 else colons[np.maximum(at - 1, 0)] + 1
        end = np.where(i < count[rows] - 1, colons[at], offsets[rows + 1])
        if has.all():
            return _cut(data, start, end)
        row_end = offsets[rows + 1]  # a missing field: null, an empty span where its call ends
        return _cut(data, np.where(has, start, row_end), np.where(has, end, row_end), has)

    return field


def _info_spans(b: Any, info_s: Any, info_e: Any, semis: Any, key: bytes) -> tuple[Any, Any]:
    """Per record, where the value of its first INFO item ``key=...`` starts (``info_e`` where there is
    none) and whether it has one. ``semis``: where every ';' of the body stands."""
    import numpy as np

    want = key + b"="
    # four bytes at every offset (unaligned little-endian words over the same memory): a name is
    # compared four bytes a time
    words = np.ndarray((max(len(b) - 3, 0),), dtype="<u4", buffer=b, strides=(1,))

    def named(item: Any) -> Any:  # the items there that are ``key=...``
        hit = item + len(want) <= len(b)
        item = np.where(hit, item, 0)
        for i in range(0, len(want) - 3, 4):
            hit &= words[item + i] == int.from_bytes(want[i : i + 4], "little")
        for i in range(len(want) - len(want) % 4, len(want)):
            hit &= b[item + i] == want[i]
        return hit

    start = np.array(info_e, dtype=np.int64)
    has = named(info_s)  # the first item
    start[has] = info_s[has] + len(key) + 1
    later = semis[named(semis + 1)] + 1  # items after a ';' (in order), then their records
    row = np.searchsorted(info_s, later, side="right") - 1
    ok = (row >= 0) & (later < info_e[np.maximum(row, 0)]) & ~has[np.maximum(row, 0)]
    later, row = later[ok], row[ok]
    first = np.concatenate([[True], row[1:] != row[:-1]]) if len(row) else np.zeros(0, dtype=bool)
    start[row[first]] = later[first] + len(key) + 1
    has[row[first]] = True
    return start, has


INDEX_COLUMNS = (
    "sample", "chrom", "pos", "ref", "alt", "gene", "consequence", "hgvs_c", "hgvs_p", "zygosity",
    "allele_frequency", "population_af", "filter",
)  # fmt: skip


def _columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Variant index rows (dicts) as columns (numpy arrays; NaN for a missing frequency)."""
    import numpy as np

    out: dict[str, Any] = {}
    for k in INDEX_COLUMNS:
        vals = [r.get(k) for r in rows]
        if k in ("sample", "pos"):
            out[k] = np.array(vals, dtype=np.int64)
        elif k in ("allele_frequency", "population_af"):
            out[k] = np.array([np.nan if v is None else v for v in vals], dtype=float)
        else:
            arr = np.empty(len(vals), dtype=object)
            arr[:] = vals
            out[k] = arr
    return out


@dataclass
class _Body:
    records: bytes  # the records of a text VCF, as written
    lines_before: int  # lines before them (the header)
    block_tail: int = 0  # of ``records``: how much lies in the BGZF block where the header ends
    blocks_after: int = 0  # where the next BGZF block starts in the input (0: not BGZF, or none)


def _bgzf_blocks(raw: bytes) -> list[tuple[int, int, int]] | None:
    """(start, payload start, end) of every BGZF block (gzip members with the BC size field), or None
    when the input is not BGZF (plain text, or gzip without block sizes)."""
    import struct

    blocks = []
    pos, n = 0, len(raw)
    while pos < n:
        if raw[pos : pos + 4] != b"\x1f\x8b\x08\x04" or pos + 12 > n:
            return None
        (xlen,) = struct.unpack_from("<H", raw, pos + 10)
        extra, i, bsize = raw[pos + 12 : pos + 12 + xlen], 0, None
        while i + 4 <= len(extra):
            (slen,) = struct.unpack_from("<H", extra, i + 2)
            if extra[i : i + 2] == b"BC" and slen == 2 and i + 6 <= len(extra):
                (bsize,) = struct.unpack_from("<H", extra, i + 4)
            i += 4 + slen
        if bsize is None or pos + bsize + 1 > n:
            return None
        blocks.append((pos, pos + 12 + xlen, pos + bsize + 1))
        pos += bsize + 1
    return blocks


def _bgzf_output(head: bytes, body: bytes, parsed: _Body | None, raw: bytes) -> bytes:
    """The new header then the records as BGZF. Where the records are the input's own, unchanged, and it
    was BGZF, the blocks after the one where its header ended are copied as they are (their text is what
    the gate read); otherwise everything is compressed anew."""
    if parsed is None or not parsed.blocks_after or (body is not parsed.records and body != parsed.records):
        return bgzip(head + body)
    out = bgzip(head + body[: parsed.block_tail], eof=False) + raw[parsed.blocks_after :]
    return out if out.endswith(_BGZF_EOF) else out + _BGZF_EOF


def _unreadable_reason(raw: bytes, exc: Exception) -> str:
    """Why htslib could not open ``raw``, said by place (a line's number, a column count), never by a
    line's content: a header line may hold a name. The file is read again here only to say which fault
    it is; htslib's refusal stands whatever this finds."""
    import zlib

    if raw[:3] == b"BCF":
        return f"not a readable BCF ({type(exc).__name__})"
    data = raw
    if raw[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(raw)  # every member: BGZF is gzip members end to end
        except (OSError, EOFError, zlib.error):
            return "not a readable VCF: its gzip/BGZF stream is broken (truncated or corrupt)"
        if data[:3] == b"BCF":
            return f"not a readable BCF ({type(exc).__name__})"
    lines = data.split(b"\n")
    chrom = next((i for i, line in enumerate(lines) if line.startswith(b"#CHROM")), None)
    for i, line in enumerate(lines[: len(lines) if chrom is None else chrom]):
        line = line.rstrip(b"\r")
        if line and not line.startswith(b"##"):
            if chrom is None and not line.startswith(b"#"):
                return f"not a readable VCF: no #CHROM header line before the first record (line {i + 1})"
            return f"not a readable VCF: header line {i + 1} is malformed (not a ## meta-information line)"
    if chrom is None:
        return "not a readable VCF: no #CHROM header line"
    cols = lines[chrom].rstrip(b"\r").split(b"\t")
    where = f"the #CHROM header line (line {chrom + 1})"
    if len(cols) < 8:
        return f"not a readable VCF: {where} has {len(cols)} columns; VCF requires the 8 fixed ones"
    if len(cols) > 8 and cols[8] != b"FORMAT":
        return f"not a readable VCF: {where} names sample columns without a FORMAT column"
    if len(set(cols[9:])) != len(cols[9:]):
        return f"not a readable VCF: {where} names a sample twice"
    return f"not a readable VCF or BCF ({type(exc).__name__})"


def _text_body(raw: bytes) -> _Body:
    """The records of a text VCF (as written, bytes), the number of lines before them and, for a BGZF
    input, where its blocks after the header's last one begin (they can be copied as they are)."""
    blocks = _bgzf_blocks(raw) if raw[:2] == b"\x1f\x8b" else None
    if blocks is not None:
        return _bgzf_body(raw, blocks)
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    pos = data.find(b"\n#CHROM")
    if pos < 0:
        raise InputError("no #CHROM header line")
    nl = data.find(b"\n", pos + 1)
    if nl < 0:
        return _Body(b"", data.count(b"\n") + 1)
    return _Body(data[nl + 1 :], data.count(b"\n", 0, nl) + 1)


def _bgzf_body(raw: bytes, blocks: list[tuple[int, int, int]]) -> _Body:
    """``_text_body`` of a BGZF input: the header read block by block until the ``#CHROM`` line ends,
    the records joined once (never the whole text first and the records copied out of it after)."""
    import zlib

    parts = [zlib.decompress(raw[payload : end - 8], -15) for _start, payload, end in blocks]
    head = bytearray()
    pos = nl = k = -1  # where #CHROM starts and its line ends in the header read so far; k: its block
    for i, part in enumerate(parts):
        seen = len(head)
        head += part
        if pos < 0:
            pos = head.find(b"\n#CHROM", max(seen - 6, 0))
        if pos >= 0:
            nl = head.find(b"\n", max(seen, pos + 1))
            if nl >= 0:
                k = i
                break
    if pos < 0:
        raise InputError("no #CHROM header line")
    lines_before = head.count(b"\n", 0, nl if nl >= 0 else len(head)) + 1
    if nl < 0:
        return _Body(b"", lines_before)
    body = _Body(b"".join([head[nl + 1 :], *parts[k + 1 :]]), lines_before)
    if k + 1 < len(blocks):
        body.block_tail, body.blocks_after = len(head) - (nl + 1), blocks[k + 1][0]
    return body


def looks_like_vcf(raw: bytes, name: str) -> bool:
    low = name.lower()
    if low.endswith((".vcf", ".vcf.gz", ".bcf", ".vcf.bgz")):
        return True
    head = raw[:2]
    if head == b"\x1f\x8b":
        try:
            with gzip.open(__import__("io").BytesIO(raw)) as fh:
                head = fh.read(16)
        except OSError:
            return False
        return head.startswith((b"##fileformat=VCF", b"BCF"))
    return raw.startswith(b"##fileformat=VCF")


__all__ = ["VcfResult", "bgzip", "deidentify_vcf", "index_vcf", "looks_like_vcf"]

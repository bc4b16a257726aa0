"""VCF text is percent-encoded (VCF 4.3 section 1.2: ``%3A`` ':', ``%3B`` ';', ``%3D`` '=', ``%25`` '%',
``%2C`` ',', and writers encode more: ``%20``, ``%2F``...). A record number ``MRN%204471203``, a date
``1947%2D03%2D19``, a phone, the patient's name ``Thistlewood%2C%20Marigold``, a physician
``Dr%2E%20Danjuma`` or a path ``%2Fhome%2Fthistlewood`` in INFO text or in the header's free text were
read by the cleaner as written, where a reader that decodes (htsjdk, a person) sees the identifier
(outside review). The text is now decoded before the identifier and shape checks, at the site and at the
platform; annotations whose escapes hold no identifier (VEP's ``p.Leu858%3D``, ClinVar's
``Lung_adenocarcinoma%2C_familial``) are kept as written."""

from __future__ import annotations

import gzip
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curata.collect.clinical.deid import ClinicalDeidentifier, SiteNames
from curata.collect.clinical.exchange import check_vcf_header, check_vcf_records
from curata.collect.clinical.mapping import VcfMap
from curata.collect.deid.text import Identifiers
from curata.collect.genomics import bgzip, deidentify_vcf, index_vcf
from curata.collect.genomics.vcf import RecordCounts, RecordRules, record_values
from curata.errors import DeidError

KEY = b"k" * 32
MRN = "MRN4471203"
SITE = SiteNames(["Musa Danjuma"], ["Lagos University Teaching Hospital"])
P = ClinicalDeidentifier(KEY).patient(MRN).pseudonym
CT = "".join(f"##contig=<ID=chr{c},length=1000000000>\n" for c in (1, 7, 17))


def _f(t: str, i: str, n: str, ty: str, d: str = "x") -> str:
    return f'##{t}=<ID={i},Number={n},Type={ty},Description="{d}">\n'


HEAD = (
    '##FILTER=<ID=PASS,Description="All filters passed">\n'
    + _f("INFO", "DP", "1", "Integer")
    + _f("INFO", "NOTE", "1", "String")
    + _f("INFO", "ANN", ".", "String", "Functional annotations: 'Allele | Annotation | Annotation_Impact | "
         "Gene_Name | Gene_ID | Feature_Type | Feature_ID | Transcript_BioType | Rank | HGVS.c | HGVS.p'")
    + _f("FORMAT", "GT", "1", "String")
)  # fmt: skip


def _vcf(header: str, recs: list[str], samples: list[str]) -> bytes:
    cols = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples)
    body = "\n".join("\t".join(r.split(" ")) for r in recs)
    return ("##fileformat=VCFv4.2\n" + header + CT + cols + "\n" + body + "\n").encode()


def _patient() -> dict[str, Identifiers]:
    ids = Identifiers()
    ids.add_name("THISTLEWOOD^MARIGOLD")
    ids.add_strong(MRN)
    ids.add_birth_date("19470319")
    ids.add_word("+44 020 7946 0958")
    return {MRN: ids}


def _decoded(text: str) -> str:
    """What a reader that decodes VCF's escapes shows (written here, not the code's own)."""
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _site(raw: bytes, **kw: object) -> tuple[str, list[str], object]:
    """The site's output (header text, records) of ``raw``; the platform accepts it."""
    res = deidentify_vcf(raw, "x.vcf", VcfMap(), KEY, **kw)  # type: ignore[arg-type]
    text = gzip.decompress(res.output).decode()
    pl = index_vcf(res.output, "p.vcf.gz")
    check_vcf_header(res.output, pl.output)
    check_vcf_records(res.output, pl.output)
    lines = text.splitlines()
    head = "\n".join(x for x in lines if x.startswith("##"))
    return head, [x for x in lines if not x.startswith("#")], res


def _platform(sent: bytes) -> None:
    pl = index_vcf(sent, "pushed.vcf.gz")
    check_vcf_header(sent, pl.output)
    check_vcf_records(sent, pl.output)


# the patient's identifiers and the site's names as an encoding writer leaves them
PLANTED = {
    "MRN": "MRN%204471203",
    "MRN colon": "MRN%3A4471203",
    "date slashes": "19%2F03%2F1947",
    "date dashes": "1947%2D03%2D19",
    "phone": "%2B44%20020%207946%200958",
    "name comma": "Thistlewood%2C%20Marigold",
    "name caret": "Thistlewood%5EMarigold",
    "name spaced": "Marigold%20Thistlewood",
    "physician dotted": "Dr%2E%20Danjuma",
    "physician comma": "Danjuma%2C%20Musa",
    "physician dot": "Dr%2EDanjuma",
    "email": "jane.thistlewood%40example.com",
}
_GONE = ("4471203", "1947", "7946", "Thistlewood", "Marigold", "Danjuma", "thistlewood%40", "example.com")


@pytest.mark.parametrize("what", sorted(PLANTED))
def test_an_encoded_identifier_in_info_text_goes_at_the_site(what: str) -> None:
    text = PLANTED[what]
    recs = [
        f"chr1 100 . A G 50 PASS DP=10;NOTE={text} GT 0/1",
        f"chr1 200 . A G 50 PASS DP=10;ANN=G|missense_variant|MODERATE|EGFR|{text} GT 0/1",
    ]
    _, body, res = _site(_vcf(HEAD, recs, [MRN]), known=_patient(), site=SITE)
    stored = "\n".join(body)
    assert not [s for s in _GONE if s in stored or s in _decoded(stored)], stored
    assert body[0] == "chr1\t100\t.\tA\tG\t50\tPASS\tDP=10\tGT\t0/1"
    assert res.dropped  # type: ignore[attr-defined]


# what the platform can tell from data without the patient's identifiers: shapes (a date, an MRN, a
# phone, a title before a name, an email), as it refuses them unencoded
SHAPES = {
    "MRN": "MRN%204471203",
    "date slashes": "19%2F03%2F1947",
    "date dashes": "1947%2D03%2D19",
    "phone": "%2B44%20020%207946%200958",
    "physician dotted": "Dr%2E%20Danjuma",
    "physician spaced": "seen%20by%20Dr%20Danjuma",
    "patient named": "Patient%3A%20Marigold%20Thistlewood",
    "email": "jane.thistlewood%40example.com",
}


@pytest.mark.parametrize("what", sorted(SHAPES))
@pytest.mark.parametrize("where", ["INFO", "ANN"])
def test_a_pushed_vcf_with_an_encoded_identifier_in_info_text_is_refused(what: str, where: str) -> None:
    text = SHAPES[what]
    info = f"NOTE={text}" if where == "INFO" else f"ANN=G|missense_variant|MODERATE|EGFR|{text}"
    with pytest.raises(DeidError) as exc:
        _platform(bgzip(_vcf(HEAD, [f"chr1 100 . A G 50 PASS DP=10;{info} GT 0/1"], [P])))
    assert "VCF record 1" in exc.value.message


HEADER_LEAKS = {
    "source physician": "##source=caller%20v2%20run%20by%20Dr%2E%20Danjuma\n",
    "source path": "##source=%2Fhome%2Fthistlewood%2Fbin%2Fcaller\n",
    "reference path": "##reference=file%3A%2F%2F%2Fhome%2Fthistlewood%2Fref%2FGRCh38.fa\n",
    "description email": _f("INFO", "XN", "1", "String", "curated%20by%20jane.thistlewood%40example.com"),
    "description date": _f("FILTER", "LowQ", ".", ".", "set%20on%201947%2D03%2D19").replace(
        ",Number=.,Type=.", ""
    ),
    "description path": _f("INFO", "XP", "1", "String", "regions%20from%20%2Fhome%2Fthistlewood%2Fbed"),
}


@pytest.mark.parametrize("what", sorted(HEADER_LEAKS))
def test_a_pushed_vcf_with_an_encoded_identifier_in_its_header_is_refused(what: str) -> None:
    raw = bgzip(_vcf(HEAD + HEADER_LEAKS[what], ["chr1 100 . A G 50 PASS DP=10 GT 0/1"], [P]))
    with pytest.raises(DeidError) as exc:
        _platform(raw)
    assert "header line" in exc.value.message


def test_the_site_cleans_encoded_identifiers_in_its_header() -> None:
    head = (
        HEAD
        + "##source=caller%20v2%20run%20by%20Dr%2E%20Danjuma\n"
        + "##source=%2Fhome%2Fthistlewood%2Fbin%2Fcaller\n"
        + "##reference=file%3A%2F%2F%2Fhome%2Fthistlewood%2Fref%2FGRCh38.fa\n"
        + "##commandline=bcftools%20view%20%2Fdata%2FThistlewood%2C%20Marigold.vcf\n"
        + "##DESCRIPTION=Exome%20of%20Thistlewood%2C%20Marigold%2C%20MRN%204471203\n"
        + _f("INFO", "XN", "1", "String", "curated%20by%20Dr%2E%20Danjuma%20for%20Thistlewood%2C%20Marigold")
        + _f("INFO", "XP", "1", "String", "regions%20from%20%2Fhome%2Fthistlewood%2Fbed")
        + _f("INFO", "XD", "1", "String", "set%20on%201947%2D03%2D19%20%28MRN%204471203%29")
    )
    out, body, _res = _site(
        _vcf(head, ["chr1 100 . A G 50 PASS DP=10 GT 0/1"], [MRN]), known=_patient(), site=SITE
    )
    assert not [s for s in _GONE if s in out or s in _decoded(out)], out
    assert "##reference=GRCh38.fa" in out.splitlines()
    assert "##source=caller%20v2%20run%20by%20*" in out.splitlines()  # what is kept, encoded as it was
    assert any(x.startswith("##INFO=<ID=XN,") for x in out.splitlines())
    assert body == ["chr1\t100\t.\tA\tG\t50\tPASS\tDP=10\tGT\t0/1"]


def test_an_encoded_sample_line_names_the_patient_for_the_records() -> None:
    """With no clinical input: ##SAMPLE's encoded values are the patient's identifiers, decoded."""
    head = HEAD + '##SAMPLE=<ID=S1,Individual="Thistlewood%2C%20Marigold",DOB="19%2F03%2F1947">\n'
    recs = [
        "chr1 100 . A G 50 PASS DP=10;NOTE=Thistlewood GT 0/1",
        "chr1 200 . A G 50 PASS DP=10;NOTE=marigold%20thistlewood GT 0/1",
    ]
    out, body, _res = _site(_vcf(head, recs, ["S1"]))
    stored = "\n".join([out, *body]).lower()
    assert "thistlewood" not in stored and "marigold" not in stored, stored


# real annotations whose escapes hold no identifier: kept as written, at the site (the patient's
# identifiers and the site's names known) and at the platform
CSQ_FORMAT = "Allele|Consequence|IMPACT|SYMBOL|Gene|Feature_type|Feature|BIOTYPE|EXON|INTRON|HGVSc|HGVSp"
REAL_HEAD = (
    HEAD
    + _f("INFO", "CSQ", ".", "String", f"Consequence annotations from Ensembl VEP. Format: {CSQ_FORMAT}")
    + _f("INFO", "CLNDN", ".", "String", "ClinVar%27s preferred disease name")
    + _f("INFO", "CLNREVSTAT", ".", "String", "ClinVar review status")
    + _f("INFO", "AS_SB_TABLE", "1", "String", "Allele-specific forward%2Freverse read counts%3B per allele")
    + "##source=VEP%20v110%3B%20SnpEff%205.1\n"
)
REAL = [
    "chr7 55191822 rs121434568 T G 99 PASS DP=40;CSQ=G|missense_variant|MODERATE|EGFR|ENSG00000146648|"
    "Transcript|ENST00000275493|protein_coding|21/28||ENST00000275493.7%3Ac.2573T>G|"
    "ENSP00000275493.2%3Ap.Leu858Arg GT 0/1",
    "chr7 55191823 . C T 99 PASS DP=40;CSQ=T|synonymous_variant|LOW|EGFR|ENSG00000146648|Transcript|"
    "ENST00000275493|protein_coding|21/28||ENST00000275493.7:c.2574C>T|ENSP00000275493.2:p.Leu858%3D GT 0/1",
    "chr17 43045712 rs80357906 G A 99 PASS DP=30;CLNDN=Lung_adenocarcinoma%2C_familial|"
    "Breast-ovarian_cancer%2C_familial%2C_susceptibility_to%2C_1;"
    "CLNREVSTAT=criteria_provided%2C_multiple_submitters%2C_no_conflicts GT 0/1",
    "chr7 55191824 . A C 99 PASS DP=40;ANN=C|synonymous_variant|LOW|EGFR|ENSG00000146648|transcript|"
    "ENST00000275493.7|protein_coding|21/28|c.2575A>C|p.Leu859%3D;AS_SB_TABLE=10%2C12|8%2C10 GT 0/1",
]


def test_real_annotations_with_escapes_are_kept_and_accepted() -> None:
    raw = _vcf(REAL_HEAD, REAL, [MRN])
    out, body, res = _site(raw, known=_patient(), site=SITE)
    assert body == ["\t".join(r.split(" ")[:9]) + "\t0/1" for r in REAL]
    assert not res.dropped, res.dropped.says()  # type: ignore[attr-defined]
    for line in ("##source=VEP%20v110%3B%20SnpEff%205.1", "ClinVar%27s preferred disease name"):
        assert line in out
    _platform(bgzip(_vcf(REAL_HEAD, REAL, [P])))


def test_the_decoder_is_strict() -> None:
    from curata.collect.genomics.vcf import _vcf_decoded

    assert _vcf_decoded("Lung_adenocarcinoma%2C_familial") == "Lung_adenocarcinoma,_familial"
    assert _vcf_decoded("MRN%204471203") == "MRN 4471203"
    assert _vcf_decoded("%C3%89lodie") == "\u00c9lodie"  # UTF-8 bytes as one character
    for malformed in ("50%", "5%_done", "%2", "%zz1", "100%G", "%FF%FE"):
        assert _vcf_decoded(malformed) == malformed
    assert _vcf_decoded("%2525") == "%25"  # once, as a reader decodes


# the characters of the planted values, any of them percent-encoded (either hex case)
_IDENTIFIERS = ("MRN 4471203", "19/03/1947", "+44 020 7946 0958", "Thistlewood, Marigold", "Dr. Danjuma")


@st.composite
def _encoded(draw: st.DrawFn, value: str) -> str:
    out = []
    for ch in value:
        if ch in ",;=% " or draw(st.integers(0, 2)) == 0:  # the reserved ones always
            hexed = f"%{ord(ch):02X}"
            out.append(hexed.lower() if draw(st.booleans()) else hexed)
        else:
            out.append(ch)
    return "".join(out)


_RULES = RecordRules(
    info={"DP": "Integer", "NOTE": "String", "ANN": "String"},
    formats={"GT": "String"},
    filters=frozenset({"PASS"}),
)


def test_the_rules_keep_a_plain_record() -> None:
    body = b"chr1\t100\t.\tA\tG\t50\tPASS\tDP=10;NOTE=not_specified\tGT\t0/1"
    assert record_values(body, _RULES) == body


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(_IDENTIFIERS).flatmap(_encoded), st.booleans())
def test_any_encoding_of_an_identifier_goes_at_the_site(text: str, ann: bool) -> None:
    info = f"ANN=G|missense_variant|MODERATE|EGFR|{text}" if ann else f"NOTE={text}"
    body = f"chr1\t100\t.\tA\tG\t50\tPASS\tDP=10;{info}\tGT\t0/1".encode()
    counts = RecordCounts()
    kept = record_values(body, _RULES, _patient()[MRN], SITE, counts).decode()
    assert kept.startswith("chr1\t100\t.\tA\tG\t50\tPASS\tDP=10"), kept  # the record stays
    for s in ("4471203", "1947", "7946", "Thistlewood", "Danjuma"):
        assert s not in _decoded(kept).replace(" ", "").replace("/", ""), (text, kept)
    assert counts


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(("MRN 4471203", "19/03/1947", "1947-03-19", "+44 020 7946 0958", "Dr. Danjuma")).flatmap(
        _encoded
    )
)
def test_any_encoding_of_a_shape_is_refused_at_the_platform(text: str) -> None:
    body = f"chr1\t100\t.\tA\tG\t50\tPASS\tDP=10;NOTE={text}\tGT\t0/1".encode()
    assert record_values(body, _RULES) == b"chr1\t100\t.\tA\tG\t50\tPASS\tDP=10\tGT\t0/1", text


_REAL_PARTS = (
    "ENSP00000275493.2:p.Leu858Arg", "ENST00000275493.7:c.2573T>G", "p.Leu858=", "Lung_adenocarcinoma,_familial",
    "criteria_provided,_multiple_submitters,_no_conflicts", "Hereditary_cancer-predisposing_syndrome",
    "not_specified", "Allele-specific forward/reverse read counts",
)  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(_REAL_PARTS).flatmap(_encoded), st.booleans())
def test_any_encoding_of_a_real_annotation_is_kept_at_the_site_and_the_platform(text: str, ann: bool) -> None:
    info = f"ANN=G|missense_variant|MODERATE|EGFR|{text}" if ann else f"NOTE={text}"
    body = f"chr1\t100\t.\tA\tG\t50\tPASS\tDP=10;{info}\tGT\t0/1".encode()
    counts = RecordCounts()
    assert record_values(body, _RULES, _patient()[MRN], SITE, counts) == body, text
    assert not counts
    assert record_values(body, _RULES) == body, text

"""An annotation's HGVS was kept by its prefix alone (``[cgnmpr]\\.\\S+``): ``c.ThistlewoodMarigold`` or
``p.MRN88421937`` passed the platform's check (which knows no patient's name) and the site's when the
name was none the site knows. A part written as HGVS is now kept only as HGVS (varnomen.hgvs.org): a
reference sequence or none, ``c.``/``n.``/``r.``/``g.``/``m.`` with a position and an edit, or ``p.``
with amino acids, positions and an edit. Real annotations (VEP, SnpEff, ClinVar, Funcotator) are kept
whole at the site and accepted at the platform; the rest is emptied (counted) at the site and refused
at the platform."""

from __future__ import annotations

import gzip

import pytest

from curata.collect.clinical.deid import ClinicalDeidentifier, SiteNames
from curata.collect.clinical.exchange import check_vcf_header, check_vcf_records
from curata.collect.clinical.mapping import VcfMap
from curata.collect.genomics import bgzip, deidentify_vcf, index_vcf
from curata.errors import DeidError

KEY = b"k" * 32
P = ClinicalDeidentifier(KEY).patient("MRN-1").pseudonym
SITE = SiteNames(["Musa Danjuma"], ["Lagos University Teaching Hospital"])


def _f(t: str, i: str, n: str, ty: str, d: str = "x") -> str:
    return f'##{t}=<ID={i},Number={n},Type={ty},Description="{d}">\n'


HEAD = (
    "##fileformat=VCFv4.2\n"
    '##FILTER=<ID=PASS,Description="All filters passed">\n'
    + _f("INFO", "DP", "1", "Integer")
    + _f("INFO", "NOTE", "1", "String")
    + _f("INFO", "CLNHGVS", ".", "String", "Top-level (primary assembly, alt, or patch) HGVS expression.")
    + _f("INFO", "ANN", ".", "String", "Functional annotations: 'Allele | Annotation | Annotation_Impact | "
         "Gene_Name | Gene_ID | Feature_Type | Feature_ID | Transcript_BioType | Rank | HGVS.c | HGVS.p'")
    + _f("INFO", "CSQ", ".", "String", "Consequence annotations from Ensembl VEP. Format: Allele|Consequence|"
         "IMPACT|SYMBOL|Gene|Feature_type|Feature|BIOTYPE|EXON|INTRON|HGVSc|HGVSp")
    + _f("INFO", "FUNCOTATION", "A", "String", "Functional annotation from the Funcotator tool.  Funcotation "
         "fields are: Gencode_34_hugoSymbol|Gencode_34_variantClassification|Gencode_34_genomeChange|"
         "Gencode_34_cDnaChange|Gencode_34_codonChange|Gencode_34_proteinChange")
    + _f("FORMAT", "GT", "1", "String")
    + "".join(f"##contig=<ID=chr{c},length=248956422>\n" for c in (1, 7, 13, 17, "M"))
)  # fmt: skip

# (INFO key, HGVS) as the tools write them: VEP's HGVSc/HGVSp with the transcript or protein, '=' as
# %3D; SnpEff's HGVS.c/HGVS.p; ClinVar's CLNHGVS; Funcotator's genome, cDNA, codon and protein changes
REAL = [
    ("CSQ", "ENST00000275493.7:c.2573T>G"),
    ("CSQ", "ENSP00000275493.2:p.Leu858Arg"),
    ("CSQ", "ENST00000275493.7%3Ac.2369C>T"),
    ("CSQ", "ENSP00000275493.2%3Ap.Thr790Met"),
    ("CSQ", "ENST00000275493.7:c.2235_2249del"),
    ("CSQ", "ENSP00000275493.2:p.Glu746_Ala750del"),
    ("CSQ", "ENST00000380152.8:c.5946del"),
    ("CSQ", "ENSP00000369497.3:p.Ser1982ArgfsTer22"),
    ("CSQ", "ENSP00000275493.2:p.Leu858%3D"),
    ("CSQ", "ENST00000269305.9:c.375+1G>A"),
    ("CSQ", "ENST00000544455.6:c.*35del"),
    ("CSQ", "ENST00000380152.8:c.-14C>T"),
    ("CSQ", "ENST00000275493.7:c.2300_2308dup"),
    ("CSQ", "ENSP00000275493.2:p.Ala767_Val769dup"),
    ("CSQ", "ENST00000275493.7:c.2237_2255delinsT"),
    ("CSQ", "ENSP00000269305.4:p.Ter394TrpextTer?"),
    ("CSQ", "NM_005228.5:c.2573T>G"),
    ("CSQ", "NP_005219.2:p.Leu858Arg"),
    ("ANN", "c.2184+1G>A"),
    ("ANN", "c.2573T>G"),
    ("ANN", "p.Leu858Arg"),
    ("ANN", "p.Leu747fs"),
    ("ANN", "p.Ter1211Trpext*?"),
    ("ANN", "p.(Glu746_Ala750del)"),
    ("ANN", "c.2235_2249delGGAATTAAGAGAAGC"),
    ("ANN", "c.2300_2301insGCGTGGACA"),
    ("ANN", "p.Asp770_Asn771insGlyLeu"),
    ("ANN", "p.Gln61*"),
    ("ANN", "p.Met1?"),
    ("ANN", "p.%3D"),
    ("ANN", "p.?"),
    ("ANN", "n.123+5G>A"),
    ("ANN", "c.-1234A>G"),
    ("ANN", "c.*4567G>A"),
    ("ANN", "c.76_78[3]"),
    ("CLNHGVS", "NC_000007.14:g.55191822T>G"),
    ("CLNHGVS", "NC_000013.11:g.32340301_32340302del"),
    ("CLNHGVS", "NC_012920.1:m.3243A>G"),
    ("CLNHGVS", "m.3243A>G"),
    ("FUNCOTATION", "g.chr7:55191822T>G"),
    ("FUNCOTATION", "c.(2572-2574)cTg>cGg"),
    ("FUNCOTATION", "p.L858R"),
    ("FUNCOTATION", "p.E746_A750del"),
    ("FUNCOTATION", "p.L747Pfs*13"),
    ("FUNCOTATION", "c.e21+1G>A"),
    # Funcotator writes the reference codon before a deletion, frameshift or insertion (review 17, F3)
    ("FUNCOTATION", "c.(2233-2250)aaggaattaagagaagcadel"),
    ("FUNCOTATION", "c.(34-36)ggcfs"),
    ("FUNCOTATION", "c.(2233-2235)aaginsaaaa"),
    ("CSQ", "ENST00000275493.7:c.2573_2574ins"),
    ("CSQ", "ENST00000275493.7:c.100_101ins10"),
    ("CLNHGVS", "NC_000001.11:g.1234567890del"),
]
# text written as HGVS that is not HGVS: a name, a record number, a date of birth without an edit, a phone
PLANTED = [
    "c.ThistlewoodMarigold",
    "p.MRN88421937",
    "c.Okafor",
    "g.19470319",
    "c.555-867-5309",
    "ENST00000275493.7:c.Okafor",
    "ENST00000275493.7%3Ap.ThistlewoodMarigold",
    # numbers written as positions no sequence has (review 17, F4): a phone, a record number, a date
    "c.5558675309dup",
    "c.4471203del",
    "p.Gly4471203Ala",
    "c.(19470319)del",
    "c.1947+0319G>A",
]
_GONE = (
    "Thistlewood", "Marigold", "88421937", "Okafor", "19470319", "867-5309", "5558675309", "4471203",
    "1947+0319",
)  # fmt: skip


def _record(key: str, hgvs: str) -> str:
    value = {
        "CSQ": f"G|missense_variant|MODERATE|EGFR|ENSG00000146648|Transcript|ENST00000275493|protein_coding|"
        f"21/28||{hgvs}|",
        "ANN": f"G|missense_variant|MODERATE|EGFR|ENSG00000146648|transcript|ENST00000275493.7|"
        f"protein_coding|21/28|{hgvs}|",
        "CLNHGVS": hgvs,
        "FUNCOTATION": f"[EGFR|MISSENSE|g.chr7:55191822T>G|c.2573T>G|{hgvs}|p.L858R]",
    }[key]
    return f"chr7\t55191822\t.\tT\tG\t99\tPASS\tDP=40;{key}={value}\tGT\t0/1"


def _vcf(records: list[str], samples: list[str]) -> bytes:
    cols = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples)
    return (HEAD + cols + "\n" + "\n".join(records) + "\n").encode()


def _records(out: bytes) -> list[str]:
    return [line for line in gzip.decompress(out).decode().splitlines() if line and line[0] != "#"]


def _platform(sent: bytes) -> None:
    """What the platform runs over a pushed VCF (``service.receive_batches``)."""
    pl = index_vcf(sent, "pushed.vcf.gz")
    check_vcf_header(sent, pl.output)
    check_vcf_records(sent, pl.output)


@pytest.mark.parametrize(("key", "hgvs"), REAL, ids=[h for _, h in REAL])
def test_real_hgvs_is_kept_whole_at_the_site_and_accepted_by_the_platform(key: str, hgvs: str) -> None:
    records = [_record(key, hgvs)]
    res = deidentify_vcf(_vcf(records, ["MRN-77123"]), "x.vcf", VcfMap(), KEY, site=SITE)
    assert _records(res.output) == records
    assert not res.dropped, res.dropped.says()
    _platform(res.output)
    _platform(bgzip(_vcf(records, [P])))


def test_real_hgvs_of_every_tool_together_is_kept_whole() -> None:
    records = [_record(key, hgvs) for key, hgvs in REAL]
    res = deidentify_vcf(_vcf(records, ["S1"]), "x.vcf", VcfMap(), KEY)
    assert _records(res.output) == records
    assert not res.dropped, res.dropped.says()
    _platform(res.output)


@pytest.mark.parametrize("key", ["CSQ", "ANN", "CLNHGVS", "FUNCOTATION", "NOTE"])
@pytest.mark.parametrize("text", PLANTED)
def test_text_written_as_hgvs_is_refused_by_the_platform(text: str, key: str) -> None:
    """The platform accepted each of these: the prefix alone made it HGVS."""
    record = (
        _record(key, text)
        if key != "NOTE"
        else f"chr7\t55191822\t.\tT\tG\t99\tPASS\tDP=40;NOTE={text}\tGT\t0/1"
    )
    with pytest.raises(DeidError) as exc:
        _platform(bgzip(_vcf([record], [P])))
    assert "VCF record 1" in exc.value.message
    assert not [s for s in _GONE if s in exc.value.message]


@pytest.mark.parametrize("key", ["CSQ", "ANN", "CLNHGVS", "FUNCOTATION", "NOTE"])
@pytest.mark.parametrize("text", PLANTED)
def test_the_site_empties_text_written_as_hgvs_and_counts_it(text: str, key: str) -> None:
    """The site kept each of these when the name was none it knows; now the part (or the value, where
    nothing else is left) goes and is counted, the rest of the annotation stays, and the platform
    accepts what is sent."""
    record = (
        _record(key, text)
        if key != "NOTE"
        else f"chr7\t55191822\t.\tT\tG\t99\tPASS\tDP=40;NOTE={text}\tGT\t0/1"
    )
    res = deidentify_vcf(_vcf([record], ["MRN-77123"]), "x.vcf", VcfMap(), KEY, site=SITE)
    (stored,) = _records(res.output)
    assert not [s for s in _GONE if s in stored], stored
    assert res.dropped and res.dropped.says()
    if key in ("CSQ", "ANN"):
        assert "missense_variant|MODERATE|EGFR|ENSG00000146648" in stored  # the rest of it stays
    if key == "FUNCOTATION":
        assert "[EGFR|MISSENSE|g.chr7:55191822T>G|c.2573T>G||p.L858R]" in stored
    _platform(res.output)

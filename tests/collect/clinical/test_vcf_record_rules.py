"""Every field of a VCF record has a rule the site applies and the platform checks (outside review 13,
findings A2 and B1): real callers' records (GATK HaplotypeCaller with ClinVar and SnpEff, Manta,
Mutect2 with Funcotator, VEP) are kept whole through the site and the platform; text planted in any
field is cleaned at the site and refused at the platform."""

from __future__ import annotations

import gzip

import pytest

from curata.collect.clinical.deid import ClinicalDeidentifier
from curata.collect.clinical.exchange import check_vcf_header, check_vcf_records
from curata.collect.clinical.mapping import VcfMap
from curata.collect.genomics import bgzip, deidentify_vcf, index_vcf
from curata.errors import DeidError

KEY = b"k" * 32
CONTIGS = "".join(
    f"##contig=<ID={c},length={n}>\n"
    for c, n in (("chr1", 248956422), ("chr7", 159345973), ("chr17", 83257441), ("chr2", 242193529))
)
_S = '##FORMAT=<ID={},Number={},Type={},Description="{}">\n'
_I = '##INFO=<ID={},Number={},Type={},Description="{}">\n'
HC = (
    "##fileformat=VCFv4.2\n"
    '##FILTER=<ID=PASS,Description="All filters passed">\n##FILTER=<ID=LowQual,Description="Low quality">\n'
    + _S.format("AD", "R", "Integer", "Allelic depths") + _S.format("DP", "1", "Integer", "Depth")
    + _S.format("GQ", "1", "Integer", "Genotype Quality") + _S.format("GT", "1", "String", "Genotype")
    + _S.format("PGT", "1", "String", "Physical phasing haplotype information")
    + _S.format("PID", "1", "String", "Physical phasing ID information")
    + _S.format("PL", "G", "Integer", "Likelihoods") + _S.format("PS", "1", "Integer", "Phasing set")
    + _S.format("FT", "1", "String", "Genotype-level filter")
    + _I.format("AC", "A", "Integer", "Allele count") + _I.format("AF", "A", "Float", "Allele Frequency")
    + _I.format("AN", "1", "Integer", "Alleles") + _I.format("DB", "0", "Flag", "dbSNP Membership")
    + _I.format("DP", "1", "Integer", "Depth") + _I.format("MQ", "1", "Float", "RMS Mapping Quality")
    + _I.format("AS_SB_TABLE", "1", "String", "Allele-specific forward/reverse read counts")
    + _I.format("CLNSIG", ".", "String", "Clinical significance for this single variant")
    + _I.format("CLNDN", ".", "String", "ClinVar's preferred disease name")
    + _I.format("GENEINFO", "1", "String", "Gene(s) for the variant reported as gene symbol:gene id")
    + _I.format("ALLELEID", "1", "Integer", "the ClinVar Allele ID")
    + _I.format("FUNCOTATION", "A", "String", "Functional annotation from the Funcotator tool.  Funcotation "
                "fields are: Gencode_34_hugoSymbol|Gencode_34_variantClassification|Gencode_34_proteinChange")
    + _I.format("SVTYPE", "1", "String", "Type of structural variant") + _I.format("END", "1", "Integer", "End")
    + _I.format("SVLEN", ".", "Integer", "SV length") + _I.format("MATEID", ".", "String", "ID of mate breakends")
    + _I.format("CIPOS", "2", "Integer", "CI around POS")
    + _I.format("ANN", ".", "String", "Functional annotations: 'Allele | Annotation | Annotation_Impact | "
                "Gene_Name | Gene_ID | Feature_Type | Feature_ID | Transcript_BioType | Rank | HGVS.c | HGVS.p'")
    + '##ALT=<ID=DEL,Description="Deletion">\n' + CONTIGS
)  # fmt: skip
ANN = (
    "T|missense_variant|MODERATE|EGFR|ENSG00000146648|transcript|ENST00000275493.7|protein_coding|21/28|"
    "c.2573T>G|p.Leu858Arg|2573/5616|2573/3633|858/1210||"
)
HC_REC = [
    "chr7\t55191822\trs121434568\tT\tG\t812.6\tPASS\tAC=1;AF=0.5;AN=2;DB;DP=40;MQ=60.00;AS_SB_TABLE=10,12|8,10;"
    f"CLNSIG=Pathogenic;CLNDN=Non-small_cell_lung_carcinoma;GENEINFO=EGFR:1956;ALLELEID=29054;ANN={ANN}"
    "\tGT:AD:DP:GQ:PL\t0/1:22,18:40:99:480,0,600",
    "chr17\t7674220\trs28934578;COSV52660980\tC\tT\t900\tPASS\tAC=1;AF=0.5;AN=2;DP=50;"
    "FUNCOTATION=[TP53|MISSENSE|p.R248Q];CLNSIG=Pathogenic/Likely_pathogenic\tGT:AD:DP:GQ:PGT:PID:PL:PS:FT"
    "\t0|1:25,25:50:99:0|1:7674220_C_T:900,0,900:7674220:PASS",
    "chr1\t1000000\t.\tA\tC,G\t500\tPASS\tAC=1,1;AF=0.5,0.5;AN=2;DP=30\tGT:AD:DP:GQ:PL"
    "\t1/2:0,15,15:30:99:600,300,300,300,0,300",
    "chr2\t29000000\tMantaDEL:12:0:1:0:0:0\tN\t<DEL>\t.\tPASS\tSVTYPE=DEL;END=29010000;SVLEN=-10000;CIPOS=-5,5\tGT\t0/1",
    "chr2\t30000000\tMantaBND:1:0:1:0:0:0:0\tN\tN[chr7:55000000[\t.\tPASS\tSVTYPE=BND;MATEID=MantaBND:1:0:1:0:0:0:1"
    "\tGT\t0/1",
]
M2 = (
    "##fileformat=VCFv4.2\n"
    '##FILTER=<ID=PASS,Description="All filters passed">\n'
    '##FILTER=<ID=clustered_events,Description="Clustered events observed in the tumor">\n'
    + _S.format("AD", "R", "Integer", "Allelic depths") + _S.format("AF", "A", "Float", "Allele fractions")
    + _S.format("DP", "1", "Integer", "Depth") + _S.format("GT", "1", "String", "Genotype")
    + _S.format("PGT", "1", "String", "Physical phasing haplotype information")
    + _S.format("PID", "1", "String", "Physical phasing ID information")
    + _S.format("PS", "1", "Integer", "Phasing set")
    + _I.format("AS_FilterStatus", "A", "String", "Filter status for each allele")
    + _I.format("AS_SB_TABLE", "1", "String", "Allele-specific forward/reverse read counts")
    + _I.format("DP", "1", "Integer", "Depth") + _I.format("TLOD", "A", "Float", "Log 10 likelihood ratio")
    + _I.format("RPA", "R", "Integer", "Repeats") + _I.format("RU", "1", "String", "Tandem repeat unit (bases)")
    + _I.format("STR", "0", "Flag", "Short tandem repeat")
    + _I.format("FUNCOTATION", "A", "String", "Functional annotation from the Funcotator tool.  Funcotation "
                "fields are: Gencode_34_hugoSymbol|Gencode_34_ncbiBuild|Gencode_34_chromosome|Gencode_34_start|"
                "Gencode_34_end|Gencode_34_variantClassification|Gencode_34_variantType|Gencode_34_refAllele|"
                "Gencode_34_tumorSeqAllele1|Gencode_34_tumorSeqAllele2|Gencode_34_genomeChange|"
                "Gencode_34_annotationTranscript|Gencode_34_transcriptStrand|Gencode_34_transcriptExon|"
                "Gencode_34_transcriptPos|Gencode_34_cDnaChange|Gencode_34_codonChange|Gencode_34_proteinChange")
    + CONTIGS
)  # fmt: skip
FUN = (
    "[EGFR|hg38|chr7|55191822|55191822|MISSENSE|SNP|T|T|G|g.chr7:55191822T>G|ENST00000275493.7|+|21|2702|"
    "c.2573T>G|c.(2572-2574)cTg>cGg|p.L858R]"
)
M2_REC = [
    "chr7\t55191822\t.\tT\tG\t.\tPASS\tAS_FilterStatus=SITE;AS_SB_TABLE=30,28|12,10;DP=82;TLOD=65.2;"
    f"FUNCOTATION={FUN}\tGT:AD:AF:DP\t0/0:40,0:0.024:40\t0/1:18,22:0.55:40",
    "chr1\t1000000\t.\tCA\tC\t.\tclustered_events\tAS_FilterStatus=SITE;DP=60;RPA=10,9;RU=A;STR;TLOD=8.1"
    "\tGT:AD:AF:DP:PGT:PID:PS\t0|0:30,0:0.03:30:0|1:1000000_CA_C:1000000\t0|1:20,10:0.33:30:0|1:1000000_CA_C:1000000",
]
VEP = (
    '##fileformat=VCFv4.2\n##FILTER=<ID=PASS,Description="All filters passed">\n'
    + _S.format("GT", "1", "String", "Genotype") + _S.format("AD", "R", "Integer", "Allelic depths")
    + _I.format("DP", "1", "Integer", "depth")
    + _I.format("CSQ", ".", "String", "Consequence annotations from Ensembl VEP. Format: Allele|Consequence|"
                "IMPACT|SYMBOL|Gene|Feature_type|Feature|BIOTYPE|EXON|INTRON|HGVSc|HGVSp|cDNA_position|CDS_position|"
                "Protein_position|Amino_acids|Codons|Existing_variation|DISTANCE|STRAND|FLAGS|SYMBOL_SOURCE|"
                "HGNC_ID|CLIN_SIG|gnomADe_AF")
    + CONTIGS
)  # fmt: skip
CSQ = (
    "G|missense_variant|MODERATE|EGFR|ENSG00000146648|Transcript|ENST00000275493|protein_coding|21/28||"
    "ENST00000275493.7:c.2573T>G|ENSP00000275493.2:p.Leu858Arg|2702|2573|858|L/R|cTg/cGg|"
    "rs121434568&COSV51765161||1||HGNC|HGNC:3236|pathogenic&likely_pathogenic|1.2e-05"
)
VEP_REC = [f"chr7\t55191822\trs121434568\tT\tG\t99\tPASS\tDP=40;CSQ={CSQ}\tGT:AD\t0/1:22,18"]
CALLERS = {"haplotypecaller": (HC, HC_REC, 1), "mutect2": (M2, M2_REC, 2), "vep": (VEP, VEP_REC, 1)}


def _vcf(header: str, records: list[str], samples: list[str]) -> bytes:
    cols = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples)
    return (header + cols + "\n" + "\n".join(records) + "\n").encode()


def _records(out: bytes) -> list[str]:
    return [line for line in gzip.decompress(out).decode().splitlines() if line and line[0] != "#"]


def _platform(sent: bytes) -> None:
    """What the platform runs over a pushed VCF (``service.receive_batches``)."""
    pl = index_vcf(sent, "pushed.vcf.gz")
    check_vcf_header(sent, pl.output)
    check_vcf_records(sent, pl.output)


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_real_callers_records_are_kept_whole_at_the_site_and_accepted_by_the_platform(caller: str) -> None:
    """A2: CLNSIG, CLNDN, GENEINFO, FUNCOTATION, AS_SB_TABLE, AS_FilterStatus, RU, MATEID, PGT, PID, FT
    and Manta's IDs were dropped or blanked at the site, and nothing said so."""
    header, records, n = CALLERS[caller]
    res = deidentify_vcf(_vcf(header, records, [f"S{i}" for i in range(n)]), "x.vcf", VcfMap(), KEY)
    assert _records(res.output) == records
    assert not res.dropped, res.dropped.says()
    _platform(res.output)


def test_funcotator_annotations_are_indexed() -> None:
    """A2: a Mutect2 + Funcotator VCF indexed no gene."""
    res = deidentify_vcf(_vcf(M2, M2_REC, ["N", "T"]), "x.vcf", VcfMap(), KEY)
    rows = [r for r in res.variants if r["pos"] == 55191822]
    assert [(r["gene"], r["consequence"], r["hgvs_c"], r["hgvs_p"]) for r in rows] == [
        ("EGFR", "MISSENSE", "c.2573T>G", "p.L858R")
    ]


P = ClinicalDeidentifier(KEY).patient("MRN-1").pseudonym
LEAK_HEAD = (
    '##fileformat=VCFv4.2\n##FILTER=<ID=PASS,Description="All filters passed">\n'
    + _S.format("GT", "1", "String", "Genotype") + _S.format("DP", "1", "Integer", "Depth")
    + _I.format("DP", "1", "Integer", "Depth") + _I.format("SVTYPE", "1", "String", "Type of structural variant")
    + _I.format("AA", "1", "String", "Ancestral allele") + _I.format("CIGAR", "A", "String", "CIGAR")
    + _I.format("ANN", ".", "String", "Functional annotations: 'Allele | Annotation | Annotation_Impact | Gene_Name'")
    + "##contig=<ID=chr1,length=248956422>\n"
)  # fmt: skip
NAME, PHONE, DOB = "Okonkwo_Adaeze", "0803-555-1234", "19610317"
LEAKS = {
    "INFO SVTYPE": f"chr1\t100\t.\tA\tG\t50\tPASS\tDP=10;SVTYPE={NAME}_MRN88421937\tGT:DP\t0/1:10",
    "INFO AA": "chr1\t100\t.\tA\tG\t50\tPASS\tDP=10;AA=AdaezeOkonkwoBello\tGT:DP\t0/1:10",
    "INFO CIGAR": f"chr1\t100\t.\tA\tG\t50\tPASS\tDP=10;CIGAR={NAME}\tGT:DP\t0/1:10",
    "INFO ANN": f"chr1\t100\t.\tA\tG\t50\tPASS\tANN=G|missense_variant|MODERATE|Okonkwo-Bello tel {PHONE}\tGT:DP\t0/1:10",
    "INFO undeclared": f"chr1\t100\t.\tA\tG\t50\tPASS\tDP=10;NOTE={NAME}\tGT:DP\t0/1:10",
    "ID": f"chr1\t100\t{NAME}\tA\tG\t50\tPASS\tDP=10\tGT:DP\t0/1:10",
    "FILTER": f"chr1\t100\t.\tA\tG\t50\t{NAME}\tDP=10\tGT:DP\t0/1:10",
    "ALT symbolic": f"chr1\t100\t.\tA\t<{NAME}_MRN88421937>\t50\tPASS\tDP=10\tGT:DP\t0/1:10",
    "ALT breakend": f"chr1\t100\t.\tA\tA[{NAME}:5[\t50\tPASS\tDP=10\tGT:DP\t0/1:10",
    "REF": "chr1\t100\t.\tOkonkwoAdaeze\tG\t50\tPASS\tDP=10\tGT:DP\t0/1:10",
    "QUAL": "chr1\t100\t.\tA\tG\tOkonkwo\tPASS\tDP=10\tGT:DP\t0/1:10",
    "CHROM": f"{NAME}\t100\t.\tA\tG\t50\tPASS\tDP=10\tGT:DP\t0/1:10",
    "GT": f"chr1\t100\t.\tA\tG\t50\tPASS\tDP=10\tGT:DP\t{DOB}:10",
    "sample extra field": f"chr1\t100\t.\tA\tG\t50\tPASS\tDP=10\tGT:DP\t0/1:10:{NAME}",
    "FORMAT undeclared": "chr1\t100\t.\tA\tG\t50\tPASS\tDP=10\tGT:Okonkwo\t0/1:.",
    "FORMAT typed": f"chr1\t100\t.\tA\tG\t50\tPASS\tDP=10\tGT:DP\t0/1:{NAME}",
}


@pytest.mark.parametrize("where", sorted(LEAKS))
def test_a_pushed_vcf_with_text_planted_in_a_record_is_refused(where: str) -> None:
    """B1: the platform accepted and stored each of these."""
    with pytest.raises(DeidError) as exc:
        _platform(bgzip(_vcf(LEAK_HEAD, [LEAKS[where]], [P])))
    assert "VCF record 1" in exc.value.message
    assert not [s for s in ("Okonkwo", "Adaeze", "88421937", DOB, "555") if s in exc.value.message]


def test_a_pushed_vcf_with_a_contig_named_as_a_person_is_refused() -> None:
    """B1: a CHROM the header declares in ##contig was taken as a contig's name."""
    head = LEAK_HEAD + f"##contig=<ID={NAME.upper()},length=1000>\n"
    with pytest.raises(DeidError):
        _platform(bgzip(_vcf(head, [f"{NAME.upper()}\t100\t.\tA\tG\t50\tPASS\tDP=10\tGT:DP\t0/1:10"], [P])))


@pytest.mark.parametrize("where", sorted(LEAKS))
def test_the_site_cleans_text_planted_in_a_record_and_says_how_much(where: str) -> None:
    """B1: the site stored ``Dr_Musa_Danjuma_0803-555-1234`` in SVTYPE, FILTER, ALT, a sample's field...
    Now what no rule keeps goes (a record, or a value), is counted, and the platform accepts the rest."""
    staff = "Dr_Musa_Danjuma_" + PHONE
    rec = LEAKS[where].replace(NAME, staff).replace("AdaezeOkonkwoBello", "MusaDanjuma")
    res = deidentify_vcf(_vcf(LEAK_HEAD, [rec], ["MRN-77123"]), "x.vcf", VcfMap(), KEY)
    stored = "\n".join(_records(res.output))
    assert not [s for s in ("Danjuma", "Musa", "Okonkwo", PHONE, "555-1234", DOB) if s in stored], stored
    assert res.dropped and res.dropped.says()
    _platform(res.output)

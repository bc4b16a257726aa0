"""Outside review 14: public databases' identifiers in annotations, SV callers' record IDs and breakends
to HLA contigs are kept (A1-A3); the site's names written with ``_``, ``%20`` or squeezed into one word
are found in text, and a header-declared key that holds a name goes with its uses (B1, B2)."""

from __future__ import annotations

import gzip

import pytest

from curata.collect.clinical.deid import SiteNames
from curata.collect.clinical.exchange import check_vcf_header, check_vcf_records
from curata.collect.clinical.mapping import VcfMap
from curata.collect.deid.text import Identifiers
from curata.collect.genomics import deidentify_vcf, index_vcf

KEY = b"k" * 32
CT = "".join(f"##contig=<ID=chr{c},length=1000000000>\n" for c in (1, 7, 10, 13, 17))
SITE = SiteNames(["Musa Danjuma"], ["Lagos University Teaching Hospital"])


def _f(t: str, i: str, n: str, ty: str, d: str = "x") -> str:
    return f'##{t}=<ID={i},Number={n},Type={ty},Description="{d}">\n'


def _vcf(header: str, recs: list[str], samples: list[str]) -> bytes:
    cols = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples)
    body = "\n".join("\t".join(r.split()) for r in recs)
    return ("##fileformat=VCFv4.2\n" + header + CT + cols + "\n" + body + "\n").encode()


def _out(raw: bytes, **kw: object) -> tuple[list[str], list[str], object]:
    res = deidentify_vcf(raw, "x.vcf", VcfMap(), KEY, **kw)  # type: ignore[arg-type]
    text = gzip.decompress(res.output).decode()
    pl = index_vcf(res.output, "p.vcf.gz")
    check_vcf_header(res.output, pl.output)
    check_vcf_records(res.output, pl.output)  # the platform accepts what the site stored
    lines = text.splitlines()
    return [x for x in lines if x.startswith("##")], [x for x in lines if not x.startswith("#")], res


def _body(raw: bytes) -> list[str]:
    return [x for x in raw.decode().splitlines() if not x.startswith("#")]


CSQ_FORMAT = "Allele|Consequence|SYMBOL|Gene|Existing_variation|SWISSPROT|TREMBL|UNIPARC|DOMAINS|CANONICAL"
CSQ = (
    "G|missense_variant|EGFR|ENSG00000146648|rs121434568&CM043544&COSV51765161|P00533.288|A0A024RDD7|"
    "UPI000003E750|PROSITE_profiles:PS50011&Pfam:PF07714&SMART:SM00219&PIRSF:PIRSF000619&"
    "Gene3D:1.10.510.10&CDD:cd05108&PANTHER:PTHR11289:SF5&Superfamily:SSF56112|YES"
)
CLINVAR = (
    "CLNDISDB=MONDO:MONDO:0005061,MedGen:C0152013|Human_Phenotype_Ontology:HP:0000118,MeSH:D001943,"
    "OMIM:114480,Orphanet:ORPHA145,EFO:EFO_0000305,DOID:1612,NCIT:C4872|MedGen:CN517202;"
    "CLNVCSO=SO:0001483;MC=SO:0001583|missense_variant"
)
ANN_HEAD = _f("INFO", "ANN", ".", "String", "Functional annotations: 'Allele | Annotation | "
              "Annotation_Impact | Gene_Name | Gene_ID | Feature_Type | Feature_ID'")  # fmt: skip
ANN = (
    "T|intergenic_region|MODIFIER|RP11-54O7.16-ISG15|ENSG00000230368-ENSG00000187608|intergenic_region|"
    "ENSG00000230368-ENSG00000187608"
)


def test_public_database_identifiers_in_annotations_are_kept() -> None:
    """A1: VEP's HGMD, UniProt, UniParc and domain IDs, ClinVar's CLNDISDB, CLNVCSO and MC, SnpEff's
    intergenic genes and IDs came through emptied or dropped."""
    head = (
        _f("INFO", "CSQ", ".", "String", f"Consequence annotations from Ensembl VEP. Format: {CSQ_FORMAT}")
        + "".join(_f("INFO", k, ".", "String") for k in ("CLNDISDB", "CLNVCSO", "MC"))
        + ANN_HEAD
        + _f("FORMAT", "GT", "1", "String")
    )
    raw = _vcf(
        head,
        [
            f"chr7 55191822 rs121434568 T G . PASS CSQ={CSQ};{CLINVAR} GT 0/1",
            f"chr1 1014143 . C T 50 PASS ANN={ANN} GT 1/1",
        ],
        ["S1"],
    )
    _, body, res = _out(raw)
    assert body == _body(raw)
    assert not res.dropped  # type: ignore[attr-defined]


def test_sv_callers_record_ids_are_kept() -> None:
    """A2: Delly's IDs became '.'; Manta's, GRIDSS's, Sniffles', Lumpy's stay as they did."""
    head = _f("INFO", "SVTYPE", "1", "String") + _f("INFO", "MATEID", ".", "String")
    head += '##ALT=<ID=DEL,Description="Deletion">\n' + _f("FORMAT", "GT", "1", "String")
    ids = ["DEL00000001", "DUP00000002", "INV00000003", "INS00000004", "TRA00000005", "CNV00000006",
           "MantaDEL:0:1:2:0:0:0", "gridss0_1o", "Sniffles2.DEL.2AM2", "2_1"]  # fmt: skip
    recs = [f"chr1 {100 + i * 10} {vid} C <DEL> 60 PASS SVTYPE=DEL GT 0/1" for i, vid in enumerate(ids)]
    recs.append("chr1 900 BND00000007 A A]chr17:7674220] 60 PASS SVTYPE=BND;MATEID=BND00000008 GT 0/1")
    raw = _vcf(head, recs, ["S1"])
    _, body, res = _out(raw)
    assert body == _body(raw)
    assert not res.dropped  # type: ignore[attr-defined]


def test_a_breakend_to_a_declared_hla_contig_is_kept() -> None:
    """A3: ``T[HLA-DRB1*15:01:01:01:1000[`` dropped its record (':' and '*' in the contig's name)."""
    head = _f("INFO", "SVTYPE", "1", "String") + _f("FORMAT", "GT", "1", "String")
    head += "##contig=<ID=HLA-DRB1*15:01:01:01,length=11080>\n"
    raw = _vcf(head, ["chr10 7000000 . T T[HLA-DRB1*15:01:01:01:1000[ 60 PASS SVTYPE=BND GT 0/1"], ["S1"])
    _, body, _res = _out(raw)
    assert body == _body(raw)


@pytest.mark.parametrize(
    "text",
    ["Dr_Musa_Danjuma", "Dr%20Musa%20Danjuma", "Dr_Danjuma", "DrDanjuma", "MusaDanjuma",
     "signed_out_by_Dr_Danjuma", "Lagos_University_Teaching_Hospital", "reviewed%20by%20Musa%20Danjuma"],
)  # fmt: skip
def test_site_names_written_with_underscores_or_squeezed_are_cleaned(text: str) -> None:
    """B1: the site's names were found only where spaces stood between their words."""
    out = SITE.clean(text)
    assert out is None or ("Danjuma" not in out and "Hospital" not in out)


@pytest.mark.parametrize(
    "text",
    ["KRAS_p.G12D", "HLA-DRB1", "BRCA2:675", "Danjuma", "Will repeat on Ward 5", "McDonald_syndrome",
     "Non-small_cell_lung_carcinoma", "MusaceaeAlleles"],
)  # fmt: skip
def test_site_names_cleaning_leaves_other_text(text: str) -> None:
    assert SITE.clean(text) == text
    assert SiteNames(["Ian McDonald"]).clean("Dr McDonald") == "Dr *"  # a camel-cased name still found


def test_a_site_name_in_vcf_info_text_with_underscores_goes() -> None:
    head = (
        _f("INFO", "NOTE", "1", "String")
        + _f("INFO", "DP", "1", "Integer")
        + _f("FORMAT", "GT", "1", "String")
    )
    recs = [f"chr1 {100 + i} . A G 50 PASS DP=10;NOTE={n} GT 0/1"
            for i, n in enumerate(["Dr_Musa_Danjuma", "Dr%20Musa%20Danjuma", "Dr_Danjuma"])]  # fmt: skip
    _, body, res = _out(_vcf(head, recs, ["S1"]), site=SITE)
    assert all("Danjuma" not in line for line in body) and len(body) == 3
    assert res.dropped.dropped == 3  # type: ignore[attr-defined]


def _patient() -> dict[str, Identifiers]:
    ids = Identifiers()
    ids.add_name("OKONKWO^ADAEZE")
    ids.add_strong("MRN4471203")
    return {"MRN4471203": ids}


HEAD_B2 = (
    '##FILTER=<ID=PASS,Description="All filters passed">\n##FILTER=<ID=LowQual,Description="Low">\n'
    '##FILTER=<ID=DrDanjuma,Description="Reviewed">\n##FILTER=<ID=MusaDanjuma,Description="Reviewed">\n'
    + _f("INFO", "DP", "1", "Integer") + _f("INFO", "AdaezeOkonkwo", "0", "Flag")
    + _f("INFO", "drdanjuma", "0", "Flag") + _f("INFO", "Lagos_University_Teaching_Hospital", "1", "Integer")
    + _f("FORMAT", "GT", "1", "String") + _f("FORMAT", "DP", "1", "Integer")
    + _f("FORMAT", "Dr%20Danjuma", "1", "Integer")
    + '##ALT=<ID=CNV:MusaDanjuma,Description="CNV">\n##ALT=<ID=DEL,Description="Deletion">\n'
)  # fmt: skip


def test_a_declared_key_that_holds_a_name_goes_with_its_uses() -> None:
    """B2: FILTER, INFO, FORMAT and ALT IDs were never looked at for the site's names (the gate refused
    a file with the patient's name as an INFO key; one with the site's was stored)."""
    recs = [
        "chr1 100 . A G 50 DrDanjuma DP=10;AdaezeOkonkwo GT:DP:Dr%20Danjuma 0/1:10:5",
        "chr1 200 . A G 50 LowQual;MusaDanjuma DP=10;drdanjuma;Lagos_University_Teaching_Hospital=3 GT:DP 0/1:9",
        "chr1 300 . A <CNV:MusaDanjuma> 50 PASS DP=10 GT:DP 0/1:9",
        "chr1 400 . A <DEL> 50 PASS DP=10 GT:DP 0/1:9",
    ]
    head, body, res = _out(_vcf(HEAD_B2, recs, ["MRN4471203"]), known=_patient(), site=SITE)
    text = "\n".join(head + body)
    for name in ("Danjuma", "danjuma", "Okonkwo", "Lagos"):
        assert name not in text
    assert body == [
        "chr1\t100\t.\tA\tG\t50\t.\tDP=10\tGT:DP\t0/1:10",
        "chr1\t200\t.\tA\tG\t50\tLowQual\tDP=10\tGT:DP\t0/1:9",
        "chr1\t400\t.\tA\t<DEL>\t50\tPASS\tDP=10\tGT:DP\t0/1:9",
    ]
    assert any(x.startswith("##FILTER=<ID=LowQual") for x in head)
    assert res.dropped.records == 1  # type: ignore[attr-defined]  # the record with the ALT
    assert res.dropped.dropped == 6  # type: ignore[attr-defined]  # 2 filters, 3 INFO, a FORMAT key


def test_declared_keys_of_real_callers_are_kept_with_site_names_known() -> None:
    head = (
        '##FILTER=<ID=PASS,Description="x">\n##FILTER=<ID=weak_evidence,Description="x">\n'
        + _f("INFO", "AS_FilterStatus", "A", "String") + _f("INFO", "MATE_BND_DEPTH", "1", "Integer")
        + _f("FORMAT", "GT", "1", "String") + _f("FORMAT", "F1R2", "R", "Integer")
        + '##ALT=<ID=DUP:TANDEM,Description="x">\n'
    )  # fmt: skip
    raw = _vcf(head, ["chr1 100 . A G 50 weak_evidence AS_FilterStatus=weak_evidence;MATE_BND_DEPTH=3 "
                      "GT:F1R2 0/1:3,4"], ["S1"])  # fmt: skip
    out_head, body, res = _out(raw, site=SITE)
    assert body == _body(raw) and not res.dropped  # type: ignore[attr-defined]
    assert sum(x.startswith(("##FILTER", "##INFO", "##FORMAT", "##ALT")) for x in out_head) == 7

"""A VCF htslib cannot read, or a record the index cannot, is refused with a reason that says which fault
it is and where (a line's number, a column count), never what the line holds: a header line may hold a
name (outside review: every fault read ``not a readable VCF or BCF (ValueError)``)."""

from __future__ import annotations

import gzip

import pytest

from curata.collect.clinical.mapping import VcfMap
from curata.collect.genomics import bgzip, deidentify_vcf
from curata.errors import InputError

KEY = b"k" * 32
NAME = "Okonkwo"
HEAD = '##fileformat=VCFv4.2\n##contig=<ID=1>\n##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
CHROM = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
REC = "1\t100\t.\tA\tG\t.\tPASS\t.\tGT\t0/1\n"


def _reason(raw: bytes, name: str = "x.vcf") -> str:
    with pytest.raises(InputError) as exc:
        deidentify_vcf(raw, name, VcfMap(), KEY)
    reason = str(exc.value)
    assert NAME.lower() not in reason.lower()
    assert "not a readable VCF or BCF (" not in reason  # the one reason every fault gave
    return reason


def test_malformed_header_line_is_named_by_number() -> None:
    reason = _reason((HEAD + f"{NAME} Adaeze\n" + CHROM + REC).encode())
    assert "header line 4 is malformed" in reason


def test_a_header_line_with_one_hash_is_malformed() -> None:
    assert "header line 4 is malformed" in _reason((HEAD + f"#{NAME}\n" + CHROM + REC).encode())


def test_no_chrom_line() -> None:
    reason = _reason((HEAD + f"1\t100\t{NAME}\tA\tG\t.\tPASS\t.\tGT\t0/1\n").encode())
    assert "no #CHROM header line" in reason and "line 4" in reason


def test_no_chrom_line_and_no_records() -> None:
    assert "no #CHROM header line" in _reason(HEAD.encode())


def test_short_chrom_line() -> None:
    reason = _reason((HEAD + "#CHROM\tPOS\tID\n" + REC).encode())
    assert "#CHROM header line (line 4) has 3 columns" in reason


def test_samples_without_format_column() -> None:
    chrom = f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\t{NAME}\n"
    assert "without a FORMAT column" in _reason((HEAD + chrom + REC).encode())


def test_sample_named_twice() -> None:
    chrom = CHROM.replace("\tS1\n", f"\t{NAME}\t{NAME}\n")
    assert "names a sample twice" in _reason((HEAD + chrom + REC).encode())


@pytest.mark.parametrize("cut", ["truncated", "corrupt"])
def test_broken_gzip_stream(cut: str) -> None:
    gz = gzip.compress((HEAD + f"##note={NAME}\n" + CHROM + REC).encode())
    raw = gz[: len(gz) // 2] if cut == "truncated" else gz[:20] + b"\0" * 10 + gz[30:]
    assert "gzip/BGZF stream is broken" in _reason(raw, "x.vcf.gz")


def test_broken_bgzf_stream() -> None:
    raw = bgzip((HEAD + CHROM + REC * 50).encode())
    assert raw[:2] == b"\x1f\x8b"
    assert "gzip/BGZF stream is broken" in _reason(raw[:-40], "x.vcf.gz")


def test_record_with_too_few_columns() -> None:
    reason = _reason((HEAD + CHROM + REC + f"1\t200\t{NAME}\tA\n").encode())
    assert "VCF line 6 is malformed: 4 columns" in reason


def test_record_sample_count_not_matching_header() -> None:
    chrom = CHROM.replace("\tS1\n", "\tS1\tS2\n")
    rec = f"1\t100\t{NAME}\tA\tG\t.\tPASS\t.\tGT\t0/1\n"
    reason = _reason((HEAD + chrom + rec).encode())
    assert "VCF line 5 is malformed: 1 sample column(s)" in reason and "names 2" in reason


def test_record_pos_not_a_number() -> None:
    reason = _reason((HEAD + CHROM + f"1\t{NAME}\t.\tA\tG\t.\tPASS\t.\tGT\t0/1\n").encode())
    assert "VCF line 5 is malformed: POS is not a whole number" in reason

"""Genomic data at the edge: VCF / BCF with sample IDs as pseudonyms and identifying header lines removed;
the VCF is kept whole in the store and its variants indexed (gene, consequence, HGVS, zygosity, AF).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.collect.genomics.models import genomic_file, genomic_variant
    from curata.collect.genomics.vcf import VcfResult, bgzip, deidentify_vcf, index_vcf, looks_like_vcf

__getattr__ = lazy_exports(
    __name__,
    {
        "genomic_file": "models",
        "genomic_variant": "models",
        "VcfResult": "vcf",
        "deidentify_vcf": "vcf",
        "bgzip": "vcf",
        "index_vcf": "vcf",
        "looks_like_vcf": "vcf",
    },
)

__all__ = [
    "VcfResult",
    "bgzip",
    "deidentify_vcf",
    "genomic_file",
    "genomic_variant",
    "index_vcf",
    "looks_like_vcf",
]

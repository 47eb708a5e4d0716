"""Germline variants of the synthetic cohort: what they are, how common, what they change.

Each variant is a real, common (or clinically known) single-nucleotide variant with its
GRCh38 genomic HGVS expression. Genotypes are allele counts 0/1/2 drawn under
Hardy-Weinberg equilibrium. The effects are stylised (documented in ``docs/synthetic.md``);
the direction of each follows the literature on the variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HGNC_SYSTEM", "HGVS_SYSTEM", "VARIANTS", "Variant", "sample_genotypes", "variant_index"]

HGNC_SYSTEM = "http://www.genenames.org/geneId"
HGVS_SYSTEM = "http://varnomen.hgvs.org"


@dataclass(frozen=True, slots=True)
class Variant:
    """A germline SNV: gene, HGNC id, dbSNP id, genomic HGVS (GRCh38), allele frequency, role."""

    key: str
    gene: str
    hgnc_id: str
    rsid: str
    hgvs: str
    freq: float
    effect: str


VARIANTS: tuple[Variant, ...] = (
    Variant("TCF7L2", "TCF7L2", "HGNC:11641", "rs7903146", "NC_000010.11:g.112998590C>T", 0.30,
            "faster glycaemic progression: HbA1c drift +0.12 %/year per allele"),
    Variant("AGT", "AGT", "HGNC:333", "rs699", "NC_000001.11:g.230710048A>G", 0.42,
            "higher baseline systolic BP: +4 mmHg per allele"),
    Variant("APOE", "APOE", "HGNC:613", "rs429358", "NC_000019.10:g.44908684T>C", 0.14,
            "APOE e4: higher baseline LDL, +14 mg/dL per allele"),
    Variant("PCSK9", "PCSK9", "HGNC:20001", "rs11591147", "NC_000001.11:g.55039974G>T", 0.03,
            "PCSK9 R46L loss of function: lower baseline LDL, -28 mg/dL per allele"),
    Variant("APOL1", "APOL1", "HGNC:618", "rs73885319", "NC_000022.11:g.36265860A>G", 0.05,
            "APOL1 G1: faster eGFR decline, +1.8 mL/min/1.73m2/year per allele"),
    Variant("SLC22A1", "SLC22A1", "HGNC:10963", "rs12208357", "NC_000006.12:g.160122116C>T", 0.08,
            "OCT1 R61C reduced function: metformin response x(1 - 0.35 per allele)"),
    Variant("SLCO1B1", "SLCO1B1", "HGNC:10959", "rs4149056", "NC_000012.12:g.21178615T>C", 0.15,
            "OATP1B1 V174A: atorvastatin exposure x(1 + 0.55 per allele)"),
)


def variant_index(key: str) -> int:
    """Column of variant ``key`` in genotype arrays."""
    for i, v in enumerate(VARIANTS):
        if v.key == key:
            return i
    raise KeyError(key)


def sample_genotypes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Allele counts, shape ``(n, len(VARIANTS))``, int8 in {0, 1, 2} (Hardy-Weinberg)."""
    freqs = np.array([v.freq for v in VARIANTS])
    return rng.binomial(2, freqs, size=(n, len(VARIANTS))).astype(np.int8)

"""A minimal, strict VCF 4.x reader producing ``Variant``/``Gene`` nodes.

Reads ``##`` meta lines (only ``##INFO=<ID=CSQ,...Format: ...>`` matters, to find the VEP
``SYMBOL`` column), the ``#CHROM`` header and data lines (``CHROM POS ID REF ALT QUAL FILTER
INFO [FORMAT sample...]``). Each ALT allele a sample carries becomes one ``Variant`` with id
``Variant/{patient}/{chrom}-{pos}-{ref}-{alt}``:

* patient: with ``patient_id`` given, the sample column of that name, else the only sample
  column (several columns and none named so is an error); without ``patient_id``, every
  sample column name is a patient id. A VCF without sample columns needs ``patient_id`` and
  then means "the patient carries every ALT".
* zygosity from ``GT``: two copies -> ``homozygous``, one -> ``heterozygous``, one allele
  (haploid) -> ``hemizygous``; hom-ref and no-calls are counted (per sample call) and skipped.
* gene from ``INFO`` ``GENE=``, else the SnpEff ``ANN`` gene name (4th field), else the VEP
  ``CSQ`` ``SYMBOL``; significance from ``CLNSIG`` when present.
* ``time`` (optional) dates the variants; germline calls are otherwise timeless.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

from core.errors import RecordError
from graph.ingest.builder import BatchBuilder, ParsedFile
from graph.schema import Node, NodeType, Prop
from graph.timeutil import utc

__all__ = ["parse_vcf"]

_FIXED = ["CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
_BASES = re.compile(r"^[ACGTNacgtn]+$")
_CSQ_FORMAT = re.compile(r'ID=CSQ.*Format:\s*([^">]+)')


def _read_lines(path: Path) -> list[str]:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return fh.read().splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise RecordError(f"cannot read VCF: {exc}", file=str(path)) from None


def _zygosity(gt: str) -> str | None:
    alleles = [a for a in re.split(r"[/|]", gt) if a != "."]
    if not alleles or all(a == "0" for a in alleles):
        return None
    if len(alleles) == 1:
        return "hemizygous"
    alt = [a for a in alleles if a != "0"]
    return "homozygous" if len(alt) == len(alleles) and len(set(alt)) == 1 else "heterozygous"


def parse_vcf(path: str | Path, *, patient_id: str | None = None, time: datetime | None = None) -> ParsedFile:
    """Parse a ``.vcf``/``.vcf.gz`` file into Variant/Gene nodes (see module docstring)."""
    p = Path(path)
    src = str(p)
    lines = _read_lines(p)
    if not lines or not lines[0].startswith("##fileformat=VCF"):
        raise RecordError("not a VCF file (first line must be ##fileformat=VCFv4.x)", file=src, resource="line 1")
    csq_fields: list[str] | None = None
    header: list[str] | None = None
    b = BatchBuilder()
    resources: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    when = utc(time) if time is not None else None
    for n, line in enumerate(lines, start=1):
        if line.startswith("##"):
            m = _CSQ_FORMAT.search(line)
            if m:
                csq_fields = m.group(1).strip().split("|")
            continue
        if line.startswith("#"):
            header = line[1:].split("\t")
            if header[:8] != _FIXED:
                raise RecordError(f"header must start with {' '.join(_FIXED)}", file=src, resource=f"line {n}")
            continue
        if not line.strip():
            continue
        loc = f"line {n}"
        if header is None:
            raise RecordError("data line before the #CHROM header", file=src, resource=loc)
        cols = line.split("\t")
        if len(cols) != len(header):
            raise RecordError(f"expected {len(header)} tab-separated columns, got {len(cols)}", file=src, resource=loc)
        chrom, pos, vid, ref, alt, _qual, _filter, info = cols[:8]
        if not pos.isdigit() or int(pos) < 1:
            raise RecordError(f"POS must be a positive integer, got {pos[:20]!r}", file=src, resource=loc, field="POS")
        if not _BASES.match(ref):
            raise RecordError(f"REF must be bases, got {ref[:20]!r}", file=src, resource=loc, field="REF")
        alts = alt.split(",")
        info_map = {k: v for k, _, v in (kv.partition("=") for kv in info.split(";") if kv and kv != ".")}
        gene = info_map.get("GENE") or _ann_gene(info_map, csq_fields)
        samples = _samples(header, cols, patient_id, src, loc)
        for sample, gt in samples:
            resources["VCF call"] += 1
            b.origin = (loc, "patient_id" if patient_id is not None else "#CHROM")
            if gt is None:  # no genotype columns: the patient carries every ALT
                calls = [(i + 1, "unknown") for i in range(len(alts))]
            else:
                zyg = _zygosity(gt)
                if zyg is None:
                    skipped["VCF call(no call or hom-ref)" if "." in gt else "VCF call(hom-ref)"] += 1
                    continue
                idx = {int(a) for a in re.split(r"[/|]", gt) if a.isdigit() and a != "0"}
                if any(i > len(alts) for i in idx):
                    raise RecordError(f"GT {gt!r} names an ALT allele that does not exist", file=src, resource=loc,
                                      field="GT")
                calls = [(i, zyg) for i in sorted(idx)]
            real = [(i, zyg) for i, zyg in calls if alts[i - 1] not in (".", "*")]
            if not real:
                skipped["VCF call(no ALT allele)"] += 1
            for i, zyg in real:
                a = alts[i - 1]
                props = {"chrom": chrom, "pos": int(pos), "ref": ref, "alt": a, "zygosity": zyg, Prop.GENE: gene,
                         "rsid": vid if vid != "." else None, "significance": info_map.get("CLNSIG"),
                         "filter": _filter if _filter != "." else None}
                node = Node(id=f"Variant/{sample}/{chrom}-{pos}-{ref}-{a}", type=NodeType.VARIANT, patient_id=sample,
                            time=when, display=f"{gene + ' ' if gene else ''}{chrom}:{pos} {ref}>{a}",
                            props={k: v for k, v in props.items() if v is not None},
                            source=f"vcf:{chrom}-{pos}-{ref}-{a}")
                b.variant(node, gene)
    if header is None:
        raise RecordError("no #CHROM header line", file=src)
    return ParsedFile(src, "vcf", b.batch(), resources, skipped, b.origins)


def _ann_gene(info: dict[str, str], csq_fields: list[str] | None) -> str | None:
    ann = info.get("ANN")
    if ann:
        parts = ann.split(",")[0].split("|")
        if len(parts) > 3 and parts[3]:
            return parts[3]
    csq = info.get("CSQ")
    if csq and csq_fields and "SYMBOL" in csq_fields:
        parts = csq.split(",")[0].split("|")
        k = csq_fields.index("SYMBOL")
        if len(parts) > k and parts[k]:
            return parts[k]
    return None


def _samples(header: list[str], cols: list[str], patient_id: str | None, src: str, loc: str) -> list[tuple[str, str | None]]:
    """``[(patient id, GT or None)]`` for the sample columns this ingest is about."""
    names = header[9:]
    if not names:
        if patient_id is None:
            raise RecordError("a VCF without sample columns needs a patient id", file=src)
        return [(patient_id, None)]
    fmt = cols[8].split(":")
    if "GT" not in fmt:
        raise RecordError("FORMAT has no GT field", file=src, resource=loc, field="FORMAT")
    gi = fmt.index("GT")
    if patient_id is not None:
        if patient_id in names:
            chosen = [(patient_id, names.index(patient_id))]
        elif len(names) == 1:
            chosen = [(patient_id, 0)]
        else:
            raise RecordError(f"no sample column named {patient_id!r} among {len(names)} samples", file=src)
    else:
        chosen = [(name, i) for i, name in enumerate(names)]
    out: list[tuple[str, str | None]] = []
    for pid, i in chosen:
        values = cols[9 + i].split(":")
        out.append((pid, values[gi] if gi < len(values) else "."))
    return out

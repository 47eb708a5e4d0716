"""FHIR Observation (labs, vitals, coded results, genomics) and MolecularSequence mappings.

Observation rules (decisions, also in ``docs``/the package docstring):

* ``cancelled`` / ``entered-in-error`` Observations are counted and skipped. Any other
  Observation needs a Patient ``subject`` and a ``code`` (a coding with a code, or text; each
  numeric component too): without them it is rejected naming the field, never stored half.
* A numeric ``valueQuantity``/``valueInteger`` gives a ``Lab`` with ``value`` in the canonical
  unit of its LOINC code (:mod:`graph.units`); reference range, interpretation, category and
  ``comparator`` go to ``props``.
* Each numeric ``component`` (e.g. systolic 8480-6 / diastolic 8462-4 of a blood-pressure
  panel) gives its own ``Lab`` with id ``Observation/{id}#{component code}``; the panel
  itself becomes a node only when it also carries a top-level value.
* Coded, string, boolean, dateTime, range, ratio and sampled-data results give a ``Lab``
  with ``value=None`` and the result in ``props`` (``value_code``, ``value_string``, ...);
  a panel with only non-numeric components keeps them in ``props["components"]``.
* An Observation with no value at all (panels with only ``hasMember``, ``dataAbsentReason``)
  is counted as ``"Observation(no value)"`` and skipped.
* Genomic Observations (a ``observation-geneticsGene`` extension, a gene-studied 48018-6
  component, or a genetics panel code such as 55233-1 / 69548-6 / 81247-9) become
  ``Variant`` nodes, linked ``Patient -CARRIES-> Variant -IN_GENE-> Gene`` when a gene is named.
* Time is ``effective[x]`` (dateTime, instant, period start), else ``issued``, else none.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.errors import RecordError
from graph.ingest.fields import LOINC, UCUM, Coding, Loc
from graph.schema import Node, NodeType, Prop
from graph.timeutil import to_iso
from graph.units import CANONICAL, canonical_unit, convert, normalize_unit, to_canonical

if TYPE_CHECKING:
    from graph.ingest.fhir import FhirFile

__all__ = ["GENOMIC_CODES", "map_molecular_sequence", "map_observation"]

GENE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/observation-geneticsGene"
GENE_STUDIED = "48018-6"
#: Observation codes that are genomic panels/variant reports in their own right.
GENOMIC_CODES = frozenset({"55233-1", "69548-6", "81247-9"})
_VARIANT_FIELDS = {
    "48004-6": "hgvs_c",
    "48005-3": "hgvs_p",
    "81290-9": "hgvs_g",
    "53034-5": "zygosity",
    "53037-8": "significance",
    "48002-0": "genomic_source",
    "81252-9": "variant_id",
    "48001-2": "cytogenetic_location",
    "69547-8": "ref_allele",
    "69551-0": "alt_allele",
    "48013-7": "reference_sequence",
    "81254-5": "genomic_coordinates",
}
_NON_NUMERIC = ("valueCodeableConcept", "valueString", "valueBoolean", "valueDateTime", "valueTime",
                "valueRange", "valueRatio", "valuePeriod", "valueSampledData")


class _Value:
    """A parsed ``value[x]``: numeric (``value``/``unit``) or not (``props`` only)."""

    __slots__ = ("props", "unit", "value")

    def __init__(self, value: float | None, unit: str | None, props: dict[str, Any]) -> None:
        self.value, self.unit, self.props = value, unit, props


def _coding_dict(c: Coding) -> dict[str, Any]:
    return {k: v for k, v in (("system", c.system), ("code", c.code), ("display", c.display)) if v is not None}


def _quantity_unit(loc: Loc, q: dict[str, Any], path: str) -> tuple[str | None, str]:
    """The unit of a Quantity (UCUM ``code`` preferred, else ``unit``) and the field it came from."""
    code = loc.string(q, "code", f"{path}.code")
    unit = loc.string(q, "unit", f"{path}.unit")
    if code and (q.get("system") in (UCUM, None)):
        return code, f"{path}.code"
    return unit, f"{path}.unit"


def _numeric(loc: Loc, code: str | None, value: float, unit: str | None, unit_field: str,
             value_field: str) -> tuple[float, str | None]:
    """``to_canonical``, its error naming the value's field or the unit's, whichever is wrong."""
    try:
        return to_canonical(code, value, unit)
    except RecordError as exc:
        raise loc.error(exc.reason, value_field if exc.field == "value" else unit_field) from None


def _read_value(loc: Loc, holder: dict[str, Any], prefix: str, code: str | None) -> _Value | None:
    """Parse the ``value[x]`` of an Observation or component (``None`` when there is none)."""
    q = loc.obj(holder, "valueQuantity", f"{prefix}valueQuantity")
    if q is not None:
        path = f"{prefix}valueQuantity"
        v = loc.num(q, "value", f"{path}.value")
        if v is not None:
            unit, ufield = _quantity_unit(loc, q, path)
            val, canon = _numeric(loc, code, v, unit, ufield, f"{path}.value")
            qprops: dict[str, Any] = {}
            comparator = loc.string(q, "comparator", f"{path}.comparator")
            if comparator is not None:
                if comparator not in ("<", "<=", ">=", ">"):
                    raise loc.error(f"invalid comparator {comparator!r}", f"{path}.comparator")
                qprops["comparator"] = comparator
            return _Value(val, canon, qprops)
    if "valueInteger" in holder:
        path = f"{prefix}valueInteger"
        raw = holder["valueInteger"]
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise loc.error(f"expected an integer, got {type(raw).__name__}", path)
        v = loc.number(raw, path)
        val, canon = _numeric(loc, code, v, canonical_unit(code), path, path)  # integers carry no unit
        return _Value(val, canon, {})
    props: dict[str, Any] = {}
    cc = loc.codeable(holder, "valueCodeableConcept", f"{prefix}valueCodeableConcept")
    if cc is not None:
        props["value_code"] = _coding_dict(cc)
    s = loc.string(holder, "valueString", f"{prefix}valueString")
    if s is not None:
        props["value_string"] = s
    b = loc.boolean(holder, "valueBoolean", f"{prefix}valueBoolean")
    if b is not None:
        props["value_boolean"] = b
    t = loc.time(holder, "valueDateTime", f"{prefix}valueDateTime")
    if t is not None:
        props["value_time"] = to_iso(t)
    tm = loc.string(holder, "valueTime", f"{prefix}valueTime")
    if tm is not None:
        props["value_clock_time"] = tm
    rng = loc.obj(holder, "valueRange", f"{prefix}valueRange")
    if rng is not None:
        props["value_range"] = [_bound(loc, rng, k, f"{prefix}valueRange") for k in ("low", "high")]
    ratio = loc.obj(holder, "valueRatio", f"{prefix}valueRatio")
    if ratio is not None:
        props["value_ratio"] = [_bound(loc, ratio, k, f"{prefix}valueRatio") for k in ("numerator", "denominator")]
    period = loc.obj(holder, "valuePeriod", f"{prefix}valuePeriod")
    if period is not None:
        a, z = loc.period(holder, "valuePeriod", f"{prefix}valuePeriod")
        props["value_period"] = [to_iso(a), to_iso(z)]
    sd = loc.obj(holder, "valueSampledData", f"{prefix}valueSampledData")
    if sd is not None:
        props["value_sampled"] = {"period_ms": loc.num(sd, "period", f"{prefix}valueSampledData.period"),
                                  "dimensions": loc.num(sd, "dimensions", f"{prefix}valueSampledData.dimensions")}
    return _Value(None, None, props) if props else None


def _bound(loc: Loc, holder: dict[str, Any], key: str, path: str) -> float | None:
    q = loc.obj(holder, key, f"{path}.{key}")
    return None if q is None else loc.num(q, "value", f"{path}.{key}.value")


def _reference_range(loc: Loc, holder: dict[str, Any], prefix: str, code: str | None,
                     value_unit: str | None, raw_unit: str | None) -> dict[str, Any] | None:
    """First reference range with low/high converted into the value's (canonical) unit."""
    for i, rr in enumerate(loc.objs(holder, "referenceRange", f"{prefix}referenceRange")):
        out: dict[str, Any] = {}
        for k in ("low", "high"):
            path = f"{prefix}referenceRange[{i}].{k}"
            q = loc.obj(rr, k, path)
            if q is None:
                continue
            v = loc.num(q, "value", f"{path}.value")
            if v is None:
                continue
            unit, ufield = _quantity_unit(loc, q, path)
            unit = unit or raw_unit
            if value_unit is not None and unit is not None and code in CANONICAL:
                try:
                    v = convert(v, unit, value_unit, molar_mass=CANONICAL[code].molar_mass)
                except RecordError as exc:
                    raise loc.error(exc.reason, ufield) from None
            out[k] = v
        text = loc.string(rr, "text", f"{prefix}referenceRange[{i}].text")
        if text:
            out["text"] = text
        if out:
            return out
    return None


def _raw_unit(holder: dict[str, Any]) -> str | None:
    q = holder.get("valueQuantity")
    if isinstance(q, dict):
        u = q.get("code") or q.get("unit")
        return normalize_unit(u) if isinstance(u, str) else None
    return None


def _time(loc: Loc, r: dict[str, Any]) -> datetime | None:
    t = loc.time(r, "effectiveDateTime", "effectiveDateTime") or loc.time(r, "effectiveInstant", "effectiveInstant")
    return t or loc.period(r, "effectivePeriod", "effectivePeriod")[0] or loc.time(r, "issued", "issued")


def _gene(loc: Loc, r: dict[str, Any], components: list[dict[str, Any]]) -> str | None:
    for i, ext in enumerate(loc.objs(r, "extension", "extension")):
        if ext.get("url") == GENE_EXTENSION:
            c = loc.codeable(ext, "valueCodeableConcept", f"extension[{i}].valueCodeableConcept")
            if c is not None:
                return (c.display or c.code or "").strip() or None
    for i, comp in enumerate(components):
        cc = loc.codeable(comp, "code", f"component[{i}].code", (LOINC,))
        if cc is not None and cc.code == GENE_STUDIED:
            v = loc.codeable(comp, "valueCodeableConcept", f"component[{i}].valueCodeableConcept")
            if v is not None:
                return (v.display or v.code or "").strip() or None
            s = loc.string(comp, "valueString", f"component[{i}].valueString")
            return s.strip() if s and s.strip() else None
    return None


def _is_genomic(r: dict[str, Any], code: Coding | None, components: list[dict[str, Any]]) -> bool:
    if code is not None and code.code in GENOMIC_CODES:
        return True
    exts = r.get("extension")
    if isinstance(exts, list) and any(isinstance(e, dict) and e.get("url") == GENE_EXTENSION for e in exts):
        return True
    for comp in components:
        cc = comp.get("code")
        codings = cc.get("coding") if isinstance(cc, dict) else None
        if isinstance(codings, list) and any(isinstance(c, dict) and c.get("code") == GENE_STUDIED for c in codings):
            return True
    return False


def _plain(v: _Value | None) -> Any:
    """A JSON-friendly rendering of a (non-)numeric value for props."""
    if v is None:
        return None
    if v.value is not None:
        return {"value": v.value, "unit": v.unit}
    for key in ("value_code", "value_string", "value_boolean", "value_time", "value_range", "value_ratio"):
        if key in v.props:
            x = v.props[key]
            return (x.get("display") or x.get("code")) if key == "value_code" else x
    return None


def map_observation(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    """Map one Observation to ``Lab`` nodes (top-level value and numeric components) or a ``Variant`` (module rules)."""
    status = loc.string(r, "status", "status")
    if status in ("cancelled", "entered-in-error"):
        return ff.skip("Observation", status)
    pid = ff.patient_of(r, loc)
    code = loc.codeable(r, "code", "code", (LOINC,))
    if code is None:
        raise loc.error("an Observation needs a code: a coding with a code, or text", "code")
    components = loc.objs(r, "component", "component")
    time = _time(loc, r)
    encounter = ff.encounter_of(r, loc)
    common = {"status": status, "category": loc.first_code(r, "category", "category")}
    if _is_genomic(r, code, components):
        return _map_genomic(ff, r, rid, loc, pid, code, components, time, common)

    b = ff.builder
    top = _read_value(loc, r, "", code.code if code else None)
    numeric_parts: list[Node] = []
    other_parts: list[dict[str, Any]] = []
    used: dict[str, int] = {}
    for i, comp in enumerate(components):
        p = f"component[{i}]."
        cc = loc.codeable(comp, "code", f"component[{i}].code", (LOINC,))
        v = _read_value(loc, comp, p, cc.code if cc else None)
        if v is None:
            continue
        if v.value is None:
            other_parts.append({"code": cc.code if cc else None, "display": cc.display if cc else None, "value": _plain(v)})
            continue
        if cc is None:
            raise loc.error("a numeric component needs a code: a coding with a code, or text", f"component[{i}].code")
        key = cc.code or f"c{i}"
        used[key] = used.get(key, 0) + 1
        suffix = key if used[key] == 1 else f"{key}~{used[key]}"
        props = {**common, **v.props, "panel": code.code if code else None,
                 "reference_range": _reference_range(loc, comp, p, cc.code if cc else None, v.unit, _raw_unit(comp)),
                 "interpretation": loc.first_code(comp, "interpretation", f"component[{i}].interpretation")}
        numeric_parts.append(_lab(f"Observation/{rid}#{suffix}", pid, time, cc, v, props, rid))
    if top is None and not numeric_parts and not other_parts:
        return ff.skip("Observation", "no value")
    if top is not None or not numeric_parts:
        props = {**common, **(top.props if top else {}),
                 "reference_range": _reference_range(loc, r, "", code.code if code else None,
                                                     top.unit if top else None, _raw_unit(r)),
                 "interpretation": loc.first_code(r, "interpretation", "interpretation"),
                 "components": other_parts or None}
        b.event(_lab(f"Observation/{rid}", pid, time, code, top or _Value(None, None, {}), props, rid),
                encounter_id=encounter)
    for node in numeric_parts:
        b.event(node, encounter_id=encounter)


def _lab(nid: str, pid: str, time: datetime | None, coding: Coding | None, v: _Value, props: dict[str, Any], rid: str) -> Node:
    return Node(id=nid, type=NodeType.LAB, patient_id=pid, time=time,
                code=coding.code if coding else None, system=coding.system if coding else None,
                display=coding.display if coding else None, value=v.value, unit=v.unit,
                props={k: x for k, x in props.items() if x is not None}, source=f"fhir:Observation/{rid}")


def _map_genomic(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc, pid: str, code: Coding | None,
                 components: list[dict[str, Any]], time: datetime | None, common: dict[str, Any]) -> None:
    gene = _gene(loc, r, components)
    props: dict[str, Any] = {**common, Prop.GENE: gene}
    top = _read_value(loc, r, "", None)
    if top is not None:
        props["result"] = _plain(top)
    for i, comp in enumerate(components):
        cc = loc.codeable(comp, "code", f"component[{i}].code", (LOINC,))
        name = _VARIANT_FIELDS.get(cc.code) if cc and cc.code else None
        if name is None:
            continue
        v = _read_value(loc, comp, f"component[{i}].", None)
        if v is not None:
            props[name] = _plain(v)
    for i, ext in enumerate(loc.objs(r, "extension", "extension")):
        url = ext.get("url")
        if url == "http://hl7.org/fhir/StructureDefinition/observation-geneticsGenomicSourceClass":
            c = loc.codeable(ext, "valueCodeableConcept", f"extension[{i}].valueCodeableConcept")
            props.setdefault("genomic_source", c.display or c.code if c else None)
        elif url == "http://hl7.org/fhir/StructureDefinition/observation-geneticsDNARegionName":
            props["dna_region"] = loc.string(ext, "valueString", f"extension[{i}].valueString")
    node = Node(id=f"Observation/{rid}", type=NodeType.VARIANT, patient_id=pid, time=time,
                code=code.code if code else None, system=code.system if code else None,
                display=code.display if code else None,
                props={k: x for k, x in props.items() if x is not None}, source=f"fhir:Observation/{rid}")
    ff.builder.variant(node, gene)


def map_molecular_sequence(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    """One ``Variant`` per ``variant[]`` entry (id ``MolecularSequence/{id}#{index}``); no gene (R4 has none)."""
    pid = ff.patient_of(r, loc, "patient")
    variants = loc.objs(r, "variant", "variant")
    if not variants:
        return ff.skip("MolecularSequence", "no variant")
    ref_seq = loc.obj(r, "referenceSeq", "referenceSeq")
    seq_id = None
    if ref_seq is not None:
        c = loc.codeable(ref_seq, "referenceSeqId", "referenceSeq.referenceSeqId") or \
            loc.codeable(ref_seq, "chromosome", "referenceSeq.chromosome")
        seq_id = (c.code or c.display) if c else None
    coord = loc.num(r, "coordinateSystem", "coordinateSystem")
    for i, v in enumerate(variants):
        p = f"variant[{i}]"
        start = loc.num(v, "start", f"{p}.start")
        end = loc.num(v, "end", f"{p}.end")
        props = {"reference_sequence": seq_id, "start": int(start) if start is not None else None,
                 "end": int(end) if end is not None else None, "coordinate_system": int(coord) if coord is not None else None,
                 "ref": loc.string(v, "referenceAllele", f"{p}.referenceAllele"),
                 "alt": loc.string(v, "observedAllele", f"{p}.observedAllele"),
                 "cigar": loc.string(v, "cigar", f"{p}.cigar"), "type": loc.string(r, "type", "type")}
        node = Node(id=f"MolecularSequence/{rid}#{i}", type=NodeType.VARIANT, patient_id=pid,
                    props={k: x for k, x in props.items() if x is not None}, source=f"fhir:MolecularSequence/{rid}")
        ff.builder.variant(node, None)

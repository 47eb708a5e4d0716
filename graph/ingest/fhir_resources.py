"""Per-type FHIR R4 mappings (all but Observation/MolecularSequence, see ``fhir_observation``).

Every resource that becomes a node needs an ``id`` and a ``subject`` that is a Patient
(rejected otherwise, see :mod:`graph.ingest.fhir`); the last column lists what is skipped.

| resource | node | time / end | skipped when |
|---|---|---|---|
| Patient | ``Patient`` (birth date, sex; deceased time as ``end``) | - / deceased | never |
| Encounter | ``Encounter`` (class, type code) | period | entered-in-error |
| Condition | ``Condition`` (clinical/verification status) | onset (else recordedDate) / abatement | entered-in-error, refuted |
| MedicationRequest | ``Medication`` (dosing ``period``) | authoredOn (else dosage bounds) / bounds or validity end | entered-in-error, cancelled |
| MedicationAdministration | ``Medication`` (dosing ``pulse`` or ``period``, below) | effective | entered-in-error, not-done |
| MedicationStatement | ``Medication`` (likewise) | effective (else dateAsserted) | entered-in-error, not-taken |
| Procedure | ``Procedure`` (dose from an extension, below) | performed | entered-in-error, not-done |
| ImagingStudy | ``Image`` (modalities, body sites, files of Media ``partOf`` it) | started | entered-in-error |
| Media | ``Image``, unless ``partOf`` an ImagingStudy of the same file (then its file is attached there) | created | not an image |
| DiagnosticReport | ``Image`` only when it carries images (``media``, ``imagingStudy`` or an image ``presentedForm``) | effective (else issued) | no images |
| Medication | none: read through ``medicationReference`` | | always |

Doses are normalised here, so the feature builder reads one daily amount per treatment node:

* ``value``/``unit``: the amount given per day on the days the node is active, in the canonical
  unit of its kind (:func:`graph.units.dose_quantity`: mg, mg/m2, mg/kg, Gy, [iU], U, mmol,
  meq, mL, or ``1`` for counts such as tablets and unit-less Synthea doses). For medications it
  is the dose (``doseAndRate[0].doseQuantity``, an administration's ``dose``) times the
  administrations per day of ``timing.repeat`` (frequency per period) or ``timing.code`` (BID,
  Q8H, ...), default 1; rates (``rateQuantity``) are not read. A Procedure's dose is the first
  dose ``valueQuantity`` of its extensions (one level deep: mCODE ``totalDoseDelivered`` in cGy
  or Gy), spread evenly over a performed period longer than a day. No dose: ``value=None``.
* ``dosing``: ``pulse`` (one administration at ``time``: an effectiveDateTime, a performed time,
  a period ending within a day of its start, a procedure without an end) or ``period`` (the
  daily amount over ``[time, end)``, ``end=None`` = ongoing: MedicationRequest, longer periods).
* ``dose_recorded``: the dose as written, ``{"value", "unit", "per_day"}`` (``per_day``: the
  factor from it to the daily amount).

A dose unit that is not one of these kinds (``%``, ``mg/d``, ``mg/mL``, unknown spellings)
refuses the file, naming the resource and the Quantity's ``code`` or ``unit`` field.

Direct identifiers (names, addresses, telecom, identifiers, photos, contacts) are never read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.errors import RecordError
from graph.ingest.fhir_observation import map_molecular_sequence, map_observation
from graph.ingest.fields import DICOM_DCM, LOINC, PERIOD, PULSE, RXNORM, SNOMED, UCUM, Coding, Loc
from graph.schema import Node, NodeType, Prop, Rel
from graph.units import convert, dose_quantity

if TYPE_CHECKING:
    from graph.ingest.fhir import FhirFile

__all__ = ["MAPPERS", "collect_media_files"]

_CONDITION_SYSTEMS = (SNOMED, "http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10")
_DAY = timedelta(days=1)


def _status(loc: Loc, r: dict[str, Any]) -> str | None:
    return loc.string(r, "status", "status")


def _src(rtype: str, rid: str) -> str:
    return f"fhir:{rtype}/{rid}"


def map_patient(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    birth = loc.time(r, "birthDate", "birthDate")
    props: dict[str, Any] = {}
    raw_birth = loc.string(r, "birthDate", "birthDate")
    if raw_birth is not None:
        props[Prop.BIRTH_DATE] = raw_birth.strip()[:10]
        props[Prop.BIRTH_YEAR] = birth.year if birth else None
    gender = loc.string(r, "gender", "gender")
    if gender is not None:
        props[Prop.SEX] = gender
    deceased_at = loc.time(r, "deceasedDateTime", "deceasedDateTime")
    flag = loc.boolean(r, "deceasedBoolean", "deceasedBoolean")
    if flag is not None:
        props[Prop.DECEASED] = flag
    ff.builder.add(Node(id=f"Patient/{rid}", type=NodeType.PATIENT, patient_id=rid, end=deceased_at,
                        props=props, source=_src("Patient", rid)))


def map_encounter(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    status = _status(loc, r)
    if status == "entered-in-error":
        return ff.skip("Encounter", status)
    pid = ff.patient_of(r, loc)
    start, end = loc.period(r, "period", "period")
    cls = loc.obj(r, "class", "class")
    coding = None
    for i, t in enumerate(loc.objs(r, "type", "type")):
        coding = loc.concept(t, f"type[{i}]", (SNOMED,))
        if coding is not None:
            break
    props: dict[str, Any] = {"status": status}
    if cls is not None:
        props["class"] = loc.string(cls, "code", "class.code")
    reason = loc.first_code(r, "reasonCode", "reasonCode")
    if reason:
        props["reason_code"] = reason
    ff.builder.event(_node(NodeType.ENCOUNTER, "Encounter", rid, pid, start, end, coding, props))


def _node(ntype: NodeType, rtype: str, rid: str, pid: str, time: datetime | None, end: datetime | None,
          coding: Coding | None, props: dict[str, Any], value: float | None = None, unit: str | None = None) -> Node:
    return Node(
        id=f"{rtype}/{rid}", type=ntype, patient_id=pid, time=time, end=end,
        code=coding.code if coding else None, system=coding.system if coding else None,
        display=coding.display if coding else None, value=value, unit=unit,
        props={k: v for k, v in props.items() if v is not None}, source=_src(rtype, rid),
    )


def map_condition(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    clinical = loc.codeable(r, "clinicalStatus", "clinicalStatus")
    verification = loc.codeable(r, "verificationStatus", "verificationStatus")
    vcode = verification.code if verification else None
    if vcode in ("entered-in-error", "refuted"):
        return ff.skip("Condition", vcode)
    pid = ff.patient_of(r, loc)
    onset = loc.time(r, "onsetDateTime", "onsetDateTime") or loc.period(r, "onsetPeriod", "onsetPeriod")[0]
    if onset is None:
        onset = loc.time(r, "recordedDate", "recordedDate")
    end = loc.time(r, "abatementDateTime", "abatementDateTime") or loc.period(r, "abatementPeriod", "abatementPeriod")[1]
    props = {
        "clinical_status": clinical.code if clinical else None,
        "verification_status": vcode,
        "category": loc.first_code(r, "category", "category"),
        "onset_text": loc.string(r, "onsetString", "onsetString"),
        "abatement_text": loc.string(r, "abatementString", "abatementString"),
    }
    coding = loc.codeable(r, "code", "code", _CONDITION_SYSTEMS)
    ff.builder.event(_node(NodeType.CONDITION, "Condition", rid, pid, onset, end, coding, props),
                     encounter_id=ff.encounter_of(r, loc))


# ---------------------------------------------------------------------------- medications
def _medication_coding(ff: FhirFile, r: dict[str, Any], loc: Loc) -> tuple[Coding | None, str | None]:
    """RxNorm (preferred) coding from medicationCodeableConcept or a referenced Medication."""
    coding = loc.codeable(r, "medicationCodeableConcept", "medicationCodeableConcept", (RXNORM,))
    if coding is not None:
        return coding, None
    ref = ff.resolve(loc.obj(r, "medicationReference", "medicationReference"), loc, "medicationReference", r)
    if ref is None or ref.type != "Medication":
        return None, None
    if ref.resource is None:
        return None, ref.node_id
    return Loc(loc.file, loc.resource).codeable(ref.resource, "code", "medicationReference->Medication.code",
                                                 (RXNORM,)), None


def _quantity(loc: Loc, q: dict[str, Any], path: str) -> tuple[float | None, str | None, str]:
    """Value and unit of a dose Quantity: its UCUM ``code``, else ``unit``, else any ``code``; and the unit's key."""
    value = loc.num(q, "value", f"{path}.value")
    code = loc.string(q, "code", f"{path}.code")
    unit = loc.string(q, "unit", f"{path}.unit")
    if code and (q.get("system") == UCUM or not unit):
        return value, code, "code"
    return value, unit, "unit"


def _dose(loc: Loc, dosage: dict[str, Any], path: str) -> tuple[dict[str, Any] | None, str, dict[str, Any]]:
    """The dose Quantity of a Dosage (``doseAndRate[i].doseQuantity``, an administration's ``dose``) and its path.

    The third item holds the props read on the way: ``route`` and ``dose_range``.
    """
    props: dict[str, Any] = {}
    route = loc.codeable(dosage, "route", f"{path}.route", (SNOMED,))
    if route is not None:
        props["route"] = route.display or route.code
    quantity = loc.obj(dosage, "dose", f"{path}.dose")
    qpath = f"{path}.dose"
    for i, dr in enumerate(loc.objs(dosage, "doseAndRate", f"{path}.doseAndRate")):
        quantity = loc.obj(dr, "doseQuantity", f"{path}.doseAndRate[{i}].doseQuantity")
        qpath = f"{path}.doseAndRate[{i}].doseQuantity"
        rng = loc.obj(dr, "doseRange", f"{path}.doseAndRate[{i}].doseRange")
        if rng is not None:
            low = loc.obj(rng, "low", f"{path}.doseAndRate[{i}].doseRange.low")
            high = loc.obj(rng, "high", f"{path}.doseAndRate[{i}].doseRange.high")
            props["dose_range"] = [
                loc.num(q, "value", f"{path}.doseAndRate[{i}].doseRange.{k}.value") if q else None
                for k, q in (("low", low), ("high", high))
            ]
        if quantity is not None:
            break
    return quantity, qpath, props


# Administrations per day of the HL7 timing abbreviations (GTSAbbreviation) in ``Timing.code``.
_TIMING_CODES = {"QD": 1.0, "AM": 1.0, "PM": 1.0, "BED": 1.0, "BID": 2.0, "TID": 3.0, "QID": 4.0, "QOD": 0.5,
                 "Q1H": 24.0, "Q2H": 12.0, "Q3H": 8.0, "Q4H": 6.0, "Q6H": 4.0, "Q8H": 3.0, "WK": 1 / 7, "MO": 12 / 365.25}
_PERIOD_UNITS = ("s", "min", "h", "d", "wk", "mo", "a")


def _per_day(loc: Loc, dosage: dict[str, Any], path: str) -> float:
    """Administrations per day of a Dosage: ``timing.repeat`` frequency per period, else ``timing.code`` (BID), else 1.

    A repeat with a frequency but neither period nor periodUnit counts per day.
    """
    timing = loc.obj(dosage, "timing", f"{path}.timing")
    if timing is None:
        return 1.0
    rep = loc.obj(timing, "repeat", f"{path}.timing.repeat")
    rpath = f"{path}.timing.repeat"
    if rep is not None and any(k in rep for k in ("frequency", "period", "periodUnit")):
        freq = loc.num(rep, "frequency", f"{rpath}.frequency")
        period = loc.num(rep, "period", f"{rpath}.period")
        unit = loc.string(rep, "periodUnit", f"{rpath}.periodUnit")
        if freq is not None and freq <= 0:
            raise loc.error(f"a frequency must be positive, got {freq!r}", f"{rpath}.frequency")
        if period is not None and period <= 0:
            raise loc.error(f"a period must be positive, got {period!r}", f"{rpath}.period")
        if unit is None and period is not None:
            raise loc.error("a period needs a periodUnit", f"{rpath}.periodUnit")
        if unit is not None and unit not in _PERIOD_UNITS:
            raise loc.error(f"periodUnit must be one of {', '.join(_PERIOD_UNITS)}, got {unit[:20]!r}",
                            f"{rpath}.periodUnit")
        per_day = (1.0 if freq is None else freq) * convert(1.0, "d", unit or "d") / (1.0 if period is None else period)
        if not math.isfinite(per_day) or per_day == 0:
            raise loc.error(f"frequency {freq!r} per {period!r} {unit} is not a usable rate", rpath)
        return per_day
    code = loc.codeable(timing, "code", f"{path}.timing.code")
    return _TIMING_CODES.get((code.code or "").upper(), 1.0) if code else 1.0


def _dose_props(loc: Loc, value: float, unit: str | None, path: str, unit_key: str, per_day: float,
                props: dict[str, Any]) -> tuple[float, str]:
    """The daily amount ``value * per_day`` of the Quantity at ``path`` in its canonical dose unit.

    Records the dose as written in ``props``; a negative dose or a unit that is not a dose unit
    is an error naming the Quantity's field.
    """
    if value < 0 or not math.isfinite(value * per_day):
        why = "cannot be negative" if value < 0 else f"times {per_day:g} a day is not a finite number"
        raise loc.error(f"a dose {why}, got {value!r}", f"{path}.value")
    try:
        amount, canonical = dose_quantity(value * per_day, unit)
    except RecordError as exc:
        raise loc.error(exc.reason, f"{path}.{unit_key}") from None
    props[Prop.DOSE_RECORDED] = {"value": value, "unit": unit, "per_day": per_day}
    return amount, canonical


def _dosing(start: datetime | None, end: datetime | None) -> str:
    """``pulse`` for a period that ends within a day of its start, ``period`` otherwise (open end = ongoing)."""
    return PULSE if start is not None and end is not None and end - start <= _DAY else PERIOD


def _medication(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc, rtype: str, *,
                start: datetime | None, end: datetime | None, dosing: str, dosage: dict[str, Any] | None,
                dosage_path: str, encounter_key: str) -> None:
    pid = ff.patient_of(r, loc)
    coding, unresolved = _medication_coding(ff, r, loc)
    value: float | None = None
    unit: str | None = None
    props: dict[str, Any] = {}
    if dosage is not None:
        quantity, qpath, props = _dose(loc, dosage, dosage_path)
        raw, raw_unit, unit_key = _quantity(loc, quantity, qpath) if quantity is not None else (None, None, "")
        if raw is not None:
            value, unit = _dose_props(loc, raw, raw_unit, qpath, unit_key, _per_day(loc, dosage, dosage_path), props)
    props.update({"status": _status(loc, r), "resource_type": rtype, "medication_ref": unresolved,
                  Prop.DOSING: dosing})
    node = _node(NodeType.MEDICATION, rtype, rid, pid, start, end, coding, props, value, unit)
    ff.builder.event(node, encounter_id=ff.encounter_of(r, loc, encounter_key))
    for i, reason in enumerate(loc.objs(r, "reasonReference", "reasonReference")):
        ref = ff.resolve(reason, loc, f"reasonReference[{i}]", r)
        if ref is not None and ref.type == "Condition" and not ref.contained:
            ff.builder.link(node.id, Rel.TREATS, ref.node_id, pid)


def map_medication_request(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    status = _status(loc, r)
    if status in ("entered-in-error", "cancelled"):
        return ff.skip("MedicationRequest", status)
    dosages = loc.objs(r, "dosageInstruction", "dosageInstruction")
    start = loc.time(r, "authoredOn", "authoredOn")
    end = None
    for i, d in enumerate(dosages):
        timing = loc.obj(d, "timing", f"dosageInstruction[{i}].timing")
        rep = loc.obj(timing, "repeat", f"dosageInstruction[{i}].timing.repeat") if timing else None
        if rep is not None:
            b0, b1 = loc.period(rep, "boundsPeriod", f"dosageInstruction[{i}].timing.repeat.boundsPeriod")
            start, end = start or b0, end or b1
    dispense = loc.obj(r, "dispenseRequest", "dispenseRequest")
    if end is None and dispense is not None:
        end = loc.period(dispense, "validityPeriod", "dispenseRequest.validityPeriod")[1]
    _medication(ff, r, rid, loc, "MedicationRequest", start=start, end=end, dosing=PERIOD,
                dosage=dosages[0] if dosages else None, dosage_path="dosageInstruction[0]", encounter_key="encounter")


def _effective(loc: Loc, r: dict[str, Any]) -> tuple[datetime | None, datetime | None, str]:
    """``effectiveDateTime`` (a pulse) or ``effectivePeriod`` (a pulse if it ends within a day, else a period)."""
    start = loc.time(r, "effectiveDateTime", "effectiveDateTime")
    if start is not None:
        return start, None, PULSE
    start, end = loc.period(r, "effectivePeriod", "effectivePeriod")
    return start, end, _dosing(start, end)


def map_medication_administration(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    status = _status(loc, r)
    if status in ("entered-in-error", "not-done"):
        return ff.skip("MedicationAdministration", status)
    start, end, dosing = _effective(loc, r)
    _medication(ff, r, rid, loc, "MedicationAdministration", start=start, end=end, dosing=dosing,
                dosage=loc.obj(r, "dosage", "dosage"), dosage_path="dosage", encounter_key="context")


def map_medication_statement(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    status = _status(loc, r)
    if status in ("entered-in-error", "not-taken"):
        return ff.skip("MedicationStatement", status)
    start, end, dosing = _effective(loc, r)
    start = start or loc.time(r, "dateAsserted", "dateAsserted")
    dosages = loc.objs(r, "dosage", "dosage")
    _medication(ff, r, rid, loc, "MedicationStatement", start=start, end=end, dosing=dosing,
                dosage=dosages[0] if dosages else None, dosage_path="dosage[0]", encounter_key="context")


def _procedure_dose(loc: Loc, r: dict[str, Any]) -> tuple[float, str | None, str, str] | None:
    """The first dose ``valueQuantity`` in ``extension`` or one level of nested ``extension``: value, unit, path, unit key.

    A quantity in an extension whose url names a dose (mCODE ``...-dose-delivered-to-volume``,
    ``totalDoseDelivered``) must be a dose; elsewhere quantities that are not doses, or are
    bare counts, are passed over.
    """
    for i, ext in enumerate(loc.objs(r, "extension", "extension")):
        url = loc.string(ext, "url", f"extension[{i}].url") or ""
        candidates = [(ext, f"extension[{i}]", url)]
        for j, sub in enumerate(loc.objs(ext, "extension", f"extension[{i}].extension")):
            sub_url = loc.string(sub, "url", f"extension[{i}].extension[{j}].url") or ""
            candidates.append((sub, f"extension[{i}].extension[{j}]", f"{url} {sub_url}"))
        for e, path, urls in candidates:
            q = loc.obj(e, "valueQuantity", f"{path}.valueQuantity")
            value, unit, unit_key = _quantity(loc, q, f"{path}.valueQuantity") if q is not None else (None, None, "")
            if value is None:
                continue
            if "dose" in urls.lower():
                return value, unit, f"{path}.valueQuantity", unit_key
            try:
                if value >= 0 and dose_quantity(value, unit)[1] != "1":
                    return value, unit, f"{path}.valueQuantity", unit_key
            except RecordError:
                continue
    return None


def map_procedure(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    status = _status(loc, r)
    if status in ("entered-in-error", "not-done"):
        return ff.skip("Procedure", status)
    pid = ff.patient_of(r, loc)
    start = loc.time(r, "performedDateTime", "performedDateTime")
    end = None
    if start is None:
        start, end = loc.period(r, "performedPeriod", "performedPeriod")
    # a procedure is one event unless its period runs past a day; a dose then is the total over it
    dosing = PERIOD if start is not None and end is not None and end - start > _DAY else PULSE
    coding = loc.codeable(r, "code", "code", (SNOMED,))
    props: dict[str, Any] = {"status": status, "body_site": loc.first_code(r, "bodySite", "bodySite"),
                             Prop.DOSING: dosing}
    value, unit = None, None
    dose = _procedure_dose(loc, r)
    if dose is not None:
        per_day = _DAY / (end - start) if dosing == PERIOD and start and end else 1.0
        value, unit = _dose_props(loc, *dose, per_day, props)
    ff.builder.event(_node(NodeType.PROCEDURE, "Procedure", rid, pid, start, end, coding, props, value, unit),
                     encounter_id=ff.encounter_of(r, loc))


# ---------------------------------------------------------------------------- images
def _file_props(ff: FhirFile, urls: list[str]) -> dict[str, Any]:
    """``file`` (first reference as given), ``files`` (all) and ``file_path`` resolved against the file's folder."""
    if not urls:
        return {}
    props: dict[str, Any] = {Prop.FILE: urls[0]}
    if len(urls) > 1:
        props["files"] = list(urls)
    if ff.base_dir is not None and "://" not in urls[0] and not urls[0].startswith(("urn:", "data:")):
        props[Prop.FILE_PATH] = str((ff.base_dir / urls[0]).resolve())
    return props


def _media_url(loc: Loc, r: dict[str, Any]) -> tuple[str | None, str | None]:
    content = loc.obj(r, "content", "content")
    if content is None:
        return None, None
    return loc.string(content, "url", "content.url"), loc.string(content, "contentType", "content.contentType")


def collect_media_files(ff: FhirFile) -> None:
    """Index Media ``content.url`` by the ImagingStudy (of this file) they are ``partOf``."""
    for e in ff.entries:
        if e.type != "Media" or e.id is None:  # an id-less Media is refused when mapped
            continue
        url, _ = _media_url(e.loc, e.resource)
        for i, part in enumerate(e.loc.objs(e.resource, "partOf", "partOf")):
            ref = ff.resolve(part, e.loc, f"partOf[{i}]", e.resource)
            if ref is not None and ref.type == "ImagingStudy" and ref.resource is not None and not ref.contained:
                files = ff.study_files.setdefault(ref.id, [])
                if url:
                    files.append(url)
                ff.attached_media.add(e.id)
                break


def map_imaging_study(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    status = _status(loc, r)
    if status == "entered-in-error":
        return ff.skip("ImagingStudy", status)
    pid = ff.patient_of(r, loc)
    modalities: list[str] = []
    sites: list[str] = []
    names: dict[str, str] = {}  # modality or body-site code -> its display, for the study's name
    instances = 0
    for i, m in enumerate(loc.objs(r, "modality", "modality")):
        code = loc.string(m, "code", f"modality[{i}].code")
        if code and code not in modalities:
            modalities.append(code)
            names[code] = loc.string(m, "display", f"modality[{i}].display") or code
    for i, s in enumerate(loc.objs(r, "series", "series")):
        p = f"series[{i}]"
        mod = loc.obj(s, "modality", f"{p}.modality")
        code = loc.string(mod, "code", f"{p}.modality.code") if mod else None
        if code and code not in modalities:
            modalities.append(code)
            names[code] = (loc.string(mod, "display", f"{p}.modality.display") if mod else None) or code
        site = loc.obj(s, "bodySite", f"{p}.bodySite")
        if site is not None:
            scode = loc.string(site, "code", f"{p}.bodySite.code") or loc.string(site, "display", f"{p}.bodySite.display")
            if scode and scode not in sites:
                sites.append(scode)
                names[scode] = loc.string(site, "display", f"{p}.bodySite.display") or scode
        instances += len(loc.objs(s, "instance", f"{p}.instance"))
    coding = None
    for i, pc in enumerate(loc.objs(r, "procedureCode", "procedureCode")):
        coding = loc.concept(pc, f"procedureCode[{i}]", (SNOMED, LOINC))
        if coding is not None and coding.code:
            break
    if (coding is None or not coding.code) and modalities:
        coding = Coding(DICOM_DCM, modalities[0], None)
    if coding is not None and not coding.display:  # a name people read: the description, else modality of sites
        description = loc.string(r, "description", "description")
        named = " ".join(names[m] for m in modalities) + (f" of {', '.join(names[x] for x in sites)}" if sites else "")
        coding = Coding(coding.system, coding.code, description or named or None)
    props = {"status": status, "modality": modalities or None, "body_site": sites or None,
             "instances": instances or None, "source_type": "ImagingStudy", **_file_props(ff, ff.study_files.get(rid, []))}
    ff.builder.event(_node(NodeType.IMAGE, "ImagingStudy", rid, pid, loc.time(r, "started", "started"), None, coding, props),
                     encounter_id=ff.encounter_of(r, loc))


def map_media(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    if rid in ff.attached_media:
        return ff.skip("Media", "attached to ImagingStudy")
    status = _status(loc, r)
    if status == "entered-in-error":
        return ff.skip("Media", status)
    url, content_type = _media_url(loc, r)
    if not url and not (content_type or "").startswith("image/"):
        return ff.skip("Media", "no image")
    pid = ff.patient_of(r, loc)
    time = loc.time(r, "createdDateTime", "createdDateTime") or loc.period(r, "createdPeriod", "createdPeriod")[0]
    time = time or loc.time(r, "issued", "issued")
    modality = loc.codeable(r, "modality", "modality", (DICOM_DCM,))
    site = loc.codeable(r, "bodySite", "bodySite", (SNOMED,))
    props = {"status": status, "modality": [modality.code] if modality and modality.code else None,
             "body_site": [site.code or site.display] if site else None, "content_type": content_type,
             "source_type": "Media", **_file_props(ff, [url] if url else [])}
    ff.builder.event(_node(NodeType.IMAGE, "Media", rid, pid, time, None, modality, props),
                     encounter_id=ff.encounter_of(r, loc))


def map_diagnostic_report(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    media = loc.objs(r, "media", "media")
    studies = loc.objs(r, "imagingStudy", "imagingStudy")
    forms = [f for f in loc.objs(r, "presentedForm", "presentedForm")
             if str(f.get("contentType", "")).startswith("image/")]
    if not (media or studies or forms):
        return ff.skip("DiagnosticReport", "no images")
    status = _status(loc, r)
    if status == "entered-in-error":
        return ff.skip("DiagnosticReport", status)
    pid = ff.patient_of(r, loc)
    time = loc.time(r, "effectiveDateTime", "effectiveDateTime") or loc.period(r, "effectivePeriod", "effectivePeriod")[0]
    time = time or loc.time(r, "issued", "issued")
    refs = []
    for i, m in enumerate(media):
        ref = ff.resolve(loc.obj(m, "link", f"media[{i}].link"), loc, f"media[{i}].link", r)
        if ref is not None:
            refs.append(ref.node_id)
    for i, s in enumerate(studies):
        ref = ff.resolve(s, loc, f"imagingStudy[{i}]", r)
        if ref is not None:
            refs.append(ref.node_id)
    urls = [u for i, f in enumerate(forms) if (u := loc.string(f, "url", f"presentedForm[{i}].url"))]
    props = {"status": status, "images": refs or None, "conclusion": loc.string(r, "conclusion", "conclusion"),
             "conclusion_code": loc.first_code(r, "conclusionCode", "conclusionCode"),
             "source_type": "DiagnosticReport", **_file_props(ff, urls)}
    coding = loc.codeable(r, "code", "code", (LOINC, SNOMED))
    ff.builder.event(_node(NodeType.IMAGE, "DiagnosticReport", rid, pid, time, None, coding, props),
                     encounter_id=ff.encounter_of(r, loc))


def _skip_medication(ff: FhirFile, r: dict[str, Any], rid: str, loc: Loc) -> None:
    ff.skip("Medication")


MAPPERS: dict[str, Callable[[FhirFile, dict[str, Any], str, Loc], None]] = {
    "Patient": map_patient,
    "Encounter": map_encounter,
    "Condition": map_condition,
    "MedicationRequest": map_medication_request,
    "MedicationAdministration": map_medication_administration,
    "MedicationStatement": map_medication_statement,
    "Medication": _skip_medication,
    "Procedure": map_procedure,
    "ImagingStudy": map_imaging_study,
    "Media": map_media,
    "DiagnosticReport": map_diagnostic_report,
    "Observation": map_observation,
    "MolecularSequence": map_molecular_sequence,
}

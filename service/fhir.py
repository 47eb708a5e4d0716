"""Forecasts and scenarios as FHIR R4 Bundles (plain JSON dicts), with Provenance.

The one builder behind ``twin forecast --format fhir``, ``twin simulate --format fhir`` and the
API's ``Accept: application/fhir+json``. A ``collection`` Bundle holds:

* **Observation** (``status: preliminary``) per forecast lab and time point: ``code`` as in the
  patient's records (system, code and display, e.g. LOINC), ``effectiveDateTime`` the predicted
  time, ``valueQuantity`` the **median** in the lab's UCUM unit, and ``component`` entries coded
  in :data:`STATISTIC_SYSTEM` holding the interval: ``p05`` and ``p95`` (the 5 % and 95 %
  quantiles of the predictive distribution) and ``mean``; for a scenario also ``diff-median``,
  ``diff-p05``, ``diff-p95``: the paired difference from the reference plan.
* **RiskAssessment** (``status: preliminary``) with one ``prediction`` per modelled event
  (``outcome`` death / hospital admission as SNOMED CT, a condition onset as coded in the records,
  ``probabilityDecimal`` by the end of ``whenPeriod``). Scenario risks are the median; the
  5–95 % interval is the ``prediction-interval`` extension (``valueRange``) and the difference
  from the reference plan is the prediction's ``rationale``.
* **CarePlan** per scenario plan (``status: draft``, ``intent: proposal``: alternatives for one
  patient), one ``activity`` per plan action (the treatment coded as in the records, the action
  in words) with ``outcomeReference`` to the plan's predicted Observations and RiskAssessment,
  which point back with ``basedOn``; its rank under an objective is a ``note``.
* **Device**: the model (name, checkpoint SHA-256, software version, training date).
* **Provenance** targeting every resource above: agent the Device, ``recorded`` the time of
  the run, ``entity`` (role ``source``) every record the forecast read (the source FHIR
  resource, ``Observation/…``, ``Condition/…``, as the source system names it; a record from
  another format by its node id in :data:`NODE_SYSTEM`) and the store snapshot (identifier ``sha256:`` of those records as read, as of the origin), extensions
  ``random-seed`` and ``samples``.

References use ``urn:uuid:`` full URLs, derived from the content (model hash, patient, origin,
seed, plan, code, day), so the same run gives the same ids. Runtime code builds dicts only;
the tests validate them with ``fhir.resources``' R4B models.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import software_version
from graph import Node, NodeQuery, NodeType, node_document
from service.registry import ModelRegistry
from service.twins import ForecastRun, ScenarioRun

if TYPE_CHECKING:
    from scenarios import Action

__all__ = ["FHIR_JSON", "NODE_SYSTEM", "STATISTIC_SYSTEM", "ModelStamp", "forecast_bundle", "model_stamp", "scenario_bundle"]

#: The media type of FHIR JSON (what ``Accept`` names to get a Bundle from the API).
FHIR_JSON = "application/fhir+json"
#: Code system of the components that carry a forecast's interval (``p05``, ``p95``, ``mean``, ``diff-*``).
STATISTIC_SYSTEM = "urn:patient-twin:forecast-statistic"
_EXT = "urn:patient-twin:extension:"
_SNAPSHOT_SYSTEM = "urn:patient-twin:store-snapshot"
#: Identifier system of records that are no FHIR resource (Synthea CSV rows, VCF variants, image files): the node id.
NODE_SYSTEM = "urn:patient-twin:node"
_UCUM = "http://unitsofmeasure.org"
_SNOMED = "http://snomed.info/sct"
_NS = uuid.UUID("1b671a64-40d5-491e-99b0-da01ff1f3341")
_EVENTS = {"death": (_SNOMED, "419620001", "Death"), "hospitalisation": (_SNOMED, "32485007", "Hospital admission")}
_STATISTICS = {"p05": "5th percentile of the predictive distribution",
               "p95": "95th percentile of the predictive distribution",
               "mean": "mean of the predictive distribution",
               "diff-median": "median difference from the reference plan (paired samples)",
               "diff-p05": "5th percentile of the difference from the reference plan",
               "diff-p95": "95th percentile of the difference from the reference plan"}
_PREFERRED = ("http://loinc.org", _SNOMED, "http://www.nlm.nih.gov/research/umls/rxnorm")


@dataclass(frozen=True)
class ModelStamp:
    """What names a model in Provenance: registry name, checkpoint hash, software version, training date."""

    name: str
    checkpoint_sha256: str
    software_version: str
    trained_at: str | None = None


_HASHES: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _HASH_LOCK:
        if key not in _HASHES:
            h = hashlib.sha256()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            _HASHES[key] = h.hexdigest()
        return _HASHES[key]


def model_stamp(registry: ModelRegistry, name: str) -> ModelStamp:
    """The stamp of registry model ``name`` (its checkpoint hashed once per file version)."""
    info = registry.get(name)
    return ModelStamp(name, _sha256(info.path), software_version(), info.trained_at)


# --------------------------------------------------------------------------- small pieces
def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


def _num(x: float) -> float:
    return float(f"{float(x):.6g}")


def _urn(*parts: object) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, json.dumps([str(p) for p in parts]))}"


def _entry(url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": url, "resource": {"resourceType": resource.pop("resourceType"),
                                         "id": url.removeprefix("urn:uuid:"), **resource}}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    q: dict[str, Any] = {"value": _num(value)}
    if unit:
        q.update(unit=unit, system=_UCUM, code=unit)
    return q


def _component(stat: str, value: float, unit: str) -> dict[str, Any]:
    return {"code": {"coding": [{"system": STATISTIC_SYSTEM, "code": stat, "display": _STATISTICS[stat]}]},
            "valueQuantity": _quantity(value, unit)}


class _Codes:
    """Systems and display names of codes as the store's records give them (Concept nodes)."""

    def __init__(self, twin: Any) -> None:
        self.store = twin.store
        self.seen: dict[str, tuple[str | None, str | None]] = {}
        for n in twin.records.nodes:
            if n.code and n.code not in self.seen:
                self.seen[n.code] = (n.system, n.display)

    def concept(self, code: str, name: str = "") -> dict[str, Any]:
        if code not in self.seen:
            found = self.store.find_nodes(NodeQuery(types=(NodeType.CONCEPT,), codes=(code,)))
            found.sort(key=lambda n: _PREFERRED.index(n.system) if n.system in _PREFERRED else len(_PREFERRED))
            self.seen[code] = (found[0].system, found[0].display) if found else (None, None)
        system, display = self.seen[code]
        coding: dict[str, Any] = {"code": code, "display": name or display or code}
        if system:
            coding = {"system": system, **coding}
        return {"coding": [coding], "text": name or display or code}

    def event(self, kind: str) -> dict[str, Any]:
        if kind in _EVENTS:
            system, code, display = _EVENTS[kind]
            return {"coding": [{"system": system, "code": code, "display": display}], "text": display}
        if kind.startswith("condition:"):
            return self.concept(kind.split(":", 1)[1])
        return {"text": kind}


def _snapshot(nodes: Sequence[Node]) -> str:
    """``sha256:`` of the records read (canonical JSON, sorted by id): what the store held for this run."""
    docs = sorted((node_document(n) for n in nodes), key=lambda d: d["id"])
    for d in docs:
        d.pop("source", None)
    return "sha256:" + hashlib.sha256(json.dumps(docs, sort_keys=True, default=str).encode()).hexdigest()


def _sources(records: Sequence[Node]) -> list[dict[str, Any]]:
    """References to the records read: the FHIR resource a node came from (``Observation/…``; one for
    all the components of a panel), else the node's id as an identifier (CSV rows, VCF, images)."""
    refs: dict[str, dict[str, Any]] = {}
    for n in sorted(records, key=lambda n: n.id):
        if n.source and n.source.startswith("fhir:"):
            ref = n.source.removeprefix("fhir:")
            refs.setdefault(ref, {"reference": ref})
        else:
            refs[n.id] = {"identifier": {"system": NODE_SYSTEM, "value": n.id}, "display": f"{n.type.value} record"}
    return list(refs.values())


def _device(stamp: ModelStamp) -> tuple[str, dict[str, Any]]:
    url = _urn("device", stamp.checkpoint_sha256)
    version = [{"type": {"text": "checkpoint sha256"}, "value": stamp.checkpoint_sha256},
               {"type": {"text": "patient-twin"}, "value": stamp.software_version}]
    if stamp.trained_at:
        version.append({"type": {"text": "trained at"}, "value": stamp.trained_at})
    return url, {"resourceType": "Device", "deviceName": [{"name": f"patient-twin model {stamp.name}",
                                                           "type": "model-name"}],
                 "type": {"text": "patient digital twin: heterogeneous GNN encoder + neural ODE ensemble"},
                 "version": version}


def _provenance(twin: Any, targets: Iterable[str], device: str, *, seed: int, samples: int, now: datetime,
                activity: str) -> dict[str, Any]:
    pid = twin.patient_id
    records = [n for n in twin.records.nodes if n.patient_id == pid]
    entities = [{"role": "source", "what": what} for what in _sources(records)]
    entities.append({"role": "source", "what": {
        "identifier": {"system": _SNAPSHOT_SYSTEM, "value": _snapshot(records)},
        "display": f"store snapshot: the patient's {len(records)} records as of {_iso(twin.as_of)}"}})
    return {"resourceType": "Provenance", "target": [{"reference": t} for t in targets], "recorded": _iso(now),
            "occurredDateTime": _iso(now), "activity": {"text": activity},
            "agent": [{"type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "assembler"}]},
                "who": {"reference": device}}],
            "entity": entities,
            "extension": [{"url": f"{_EXT}random-seed", "valueInteger": seed},
                          {"url": f"{_EXT}samples", "valueInteger": samples}]}


def _signed_bundle(entries: list[dict[str, Any]], key: tuple[Any, ...], stamp: ModelStamp, twin: Any, *, seed: int,
                   samples: int, now: datetime, activity: str) -> dict[str, Any]:
    """The Bundle of ``entries`` with the model's Device and a Provenance targeting every entry."""
    device_url, device = _device(stamp)
    targets = [e["fullUrl"] for e in entries]
    entries = [*entries, _entry(device_url, device),
               _entry(_urn(*key, "provenance"), _provenance(twin, targets, device_url, seed=seed, samples=samples,
                                                          now=now, activity=activity))]
    return {"resourceType": "Bundle", "type": "collection", "timestamp": _iso(now), "entry": entries}


def _observation(codes: _Codes, pid: str, code: str, name: str, unit: str, when: datetime, now: datetime,
                 median: float, components: list[dict[str, Any]], method: str,
                 based_on: str | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation", "status": "preliminary", "code": codes.concept(code, name),
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": _iso(when), "issued": _iso(now),
        "valueQuantity": _quantity(median, unit), "method": {"text": method}, "component": components,
        "note": [{"text": "Predicted by a digital twin model, not measured."}],
    }
    if based_on:
        obs["basedOn"] = [{"reference": based_on}]
    return obs


# --------------------------------------------------------------------------- forecast
def forecast_bundle(run: ForecastRun, stamp: ModelStamp, *, now: datetime | None = None) -> dict[str, Any]:
    """The forecast of ``run`` as a FHIR Bundle (see the module docstring)."""
    now = now or datetime.now(UTC)
    fc, tw = run.forecast, run.twin
    codes, key = _Codes(tw), (stamp.checkpoint_sha256, fc.patient_id, _iso(fc.origin), run.seed, fc.n_samples)
    method = (f"patient-twin forecast, model {stamp.name}: median and 5-95 % interval of "
              f"{fc.n_members} members x {fc.n_samples} samples")
    entries: list[dict[str, Any]] = []
    for code, lf in fc.labs.items():
        for i, day in enumerate(lf.days):
            url = _urn(*key, "lab", code, day)
            comps = [_component("p05", lf.p05[i], lf.unit), _component("p95", lf.p95[i], lf.unit),
                     _component("mean", lf.mean[i], lf.unit)]
            entries.append(_entry(url, _observation(codes, fc.patient_id, code, lf.name, lf.unit,
                                                    fc.origin + timedelta(days=day), now, lf.median[i], comps, method)))
    if fc.event_risk:
        url = _urn(*key, "risk")
        end = fc.origin + timedelta(days=fc.horizon_days)
        entries.append(_entry(url, {
            "resourceType": "RiskAssessment", "status": "preliminary", "subject": {"reference": f"Patient/{fc.patient_id}"},
            "occurrenceDateTime": _iso(fc.origin), "method": {"text": method},
            "prediction": [{"outcome": codes.event(k), "probabilityDecimal": _num(v),
                            "whenPeriod": {"start": _iso(fc.origin), "end": _iso(end)}}
                           for k, v in fc.event_risk.items()]}))
    return _signed_bundle(entries, key, stamp, tw, seed=run.seed, samples=fc.n_samples, now=now, activity="forecast")


# --------------------------------------------------------------------------- scenarios
def _action_text(a: Action) -> str:
    if a.action == "stop":
        return f"stop {a.treatment} from day {a.start}"
    dose = f" {a.dose:g} {a.unit or ''}".rstrip() if a.dose is not None else ""
    if a.at is not None:
        when = "on days " + ", ".join(str(d) for d in a.at)
    elif a.every is not None:
        when = f"every {a.every:g} days from day {a.start}" + (f", {a.times} times" if a.times else "")
    else:
        when = f"{a.frequency} from day {a.start}"
    return f"give {a.treatment}{dose} {when}" + (f" until day {a.stop}" if a.stop is not None else "")


def _activities(run: ScenarioRun, codes: _Codes, plan_name: str, outcomes: list[str]) -> list[dict[str, Any]]:
    from scenarios import TreatmentCatalog

    plan = next((p for p in run.plans if p.name == plan_name), None)
    refs = [{"reference": u} for u in outcomes]
    if plan is None or not plan.actions:
        what = "continue current therapy" if plan is None or plan.baseline == "current" else "no treatment"
        return [{"outcomeReference": refs, "detail": {"status": "not-started", "description": what}}]
    catalog = TreatmentCatalog(run.twin.model.cohort.treatments)
    out = []
    for a in plan.actions:
        t = catalog.resolve(a.treatment, plan=plan.name)
        out.append({"outcomeReference": refs, "detail": {
            "kind": "MedicationRequest" if t.kind == "medication" else "ServiceRequest",
            "code": codes.concept(t.code, t.name), "status": "not-started", "doNotPerform": a.action == "stop",
            "description": _action_text(a)}})
    return out


def scenario_bundle(run: ScenarioRun, stamp: ModelStamp, *, now: datetime | None = None) -> dict[str, Any]:
    """The plans of ``run`` as FHIR CarePlans with their predicted outcomes (see the module docstring)."""
    now = now or datetime.now(UTC)
    res, tw = run.result, run.twin
    codes = _Codes(tw)
    origin, pid = tw.as_of, tw.patient_id
    key = (stamp.checkpoint_sha256, pid, _iso(origin), res.seed, res.n_samples, tuple(res.plans))
    rows = {r["plan"]: r for r in res.summary(days=run.days)}
    ranked = {rp.plan: rp for rp in run.ranking.entries} if run.ranking is not None else {}
    objective = run.ranking.objective if run.ranking is not None else ""
    method = (f"patient-twin what-if simulation, model {stamp.name}: median and 5-95 % interval of "
              f"{res.n_samples} paired samples per plan")
    horizon_end = origin + timedelta(days=res.horizon_days)
    entries: list[dict[str, Any]] = []
    for plan in res.plans:
        plan_url = _urn(*key, "plan", plan)
        row, outcomes = rows[plan], []
        for lab in res.labs:
            unit = res.lab_units.get(lab, "")
            for day, v in row["labs"][lab]["at_day"].items():
                comps = [_component("p05", v["lo"], unit), _component("p95", v["hi"], unit)]
                if plan != res.reference:
                    d = v["diff_vs_reference"]
                    comps += [_component("diff-median", d["median"], unit), _component("diff-p05", d["lo"], unit),
                              _component("diff-p95", d["hi"], unit)]
                url = _urn(*key, "lab", plan, lab, day)
                outcomes.append(url)
                entries.append(_entry(url, _observation(
                    codes, pid, lab, res.lab_names.get(lab, lab), unit, origin + timedelta(days=float(day)), now,
                    v["median"], comps, f"{method}; plan {plan!r}", based_on=plan_url)))
        if res.events:
            url = _urn(*key, "risk", plan)
            outcomes.append(url)
            preds = []
            for e in res.events:
                r = row["events"][e]
                q, d = r["risk_at_horizon"], r["diff_vs_reference"]
                pred: dict[str, Any] = {
                    "outcome": codes.event(e), "probabilityDecimal": _num(q["median"]),
                    "whenPeriod": {"start": _iso(origin), "end": _iso(horizon_end)},
                    "extension": [{"url": f"{_EXT}prediction-interval",
                                   "valueRange": {"low": {"value": _num(q["lo"])}, "high": {"value": _num(q["hi"])}}}]}
                if plan != res.reference:
                    pred["rationale"] = (f"difference from {res.reference!r}: {d['median']:+.1%} "
                                         f"[{d['lo']:+.1%}, {d['hi']:+.1%}] (5-95 %)")
                preds.append(pred)
            entries.append(_entry(url, {
                "resourceType": "RiskAssessment", "status": "preliminary", "subject": {"reference": f"Patient/{pid}"},
                "occurrenceDateTime": _iso(origin), "method": {"text": f"{method}; plan {plan!r}"},
                "basedOn": {"reference": plan_url}, "prediction": preds}))
        notes = [{"text": "the reference plan differences are taken against" if plan == res.reference
                  else f"alternative to the reference plan {res.reference!r}"}]
        notes += [{"text": f"flag: {f.message}"} for f in res.flags if f.plan == plan]
        if plan in ranked:
            rp = ranked[plan]
            notes.append({"text": f"rank {rp.rank} under '{objective}' (objective median {rp.median:.3g} [{rp.lo:.3g}, "
                                  f"{rp.hi:.3g}], P(constraints) {rp.p_feasible:.2f}, P(best) {rp.p_best:.2f}"
                                  + (", tied with the top plan" if rp.tied_with_top and rp.rank > 1 else "") + ")"})
        entries.append(_entry(plan_url, {
            "resourceType": "CarePlan", "status": "draft", "intent": "proposal", "title": plan,
            "description": next((p.description for p in run.plans if p.name == plan and p.description),
                                f"what-if treatment plan {plan!r}, simulated"),
            "category": [{"text": "simulated alternative treatment plan (what-if scenario)"}],
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": _iso(origin), "end": _iso(horizon_end)}, "created": _iso(now),
            "activity": _activities(run, codes, plan, outcomes), "note": notes}))
    return _signed_bundle(entries, key, stamp, tw, seed=res.seed, samples=res.n_samples, now=now,
                          activity="what-if simulation")

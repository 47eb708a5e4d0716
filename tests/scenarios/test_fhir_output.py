"""``twin forecast --format fhir`` and ``twin simulate --format fhir``: FHIR R4 Bundles validated with
``fhir.resources``' R4B models, their numbers against the forecast and scenario they encode."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from typer.testing import CliRunner

from cli import app
from service import NODE_SYSTEM, STATISTIC_SYSTEM, ModelRegistry, forecast_patient, simulate_patient
from twin.twin import Twin

AS_OF = "2021-12-01T00:00:00Z"  # toy_cohort.START + 700 days: the origin of the toy twins


def validate(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate the Bundle and every resource in it with the R4B models; return the resources."""
    bundle = get_fhir_model_class("Bundle").model_validate(doc)
    assert bundle.type == "collection"
    out = []
    for entry in doc["entry"]:
        res = entry["resource"]
        model = get_fhir_model_class(res["resourceType"]).model_validate(res)
        assert entry["fullUrl"] == f"urn:uuid:{model.id}"
        out.append(res)
    return out


def by_type(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == kind]


def stat(obs: dict[str, Any], code: str) -> float:
    comp = next(c for c in obs["component"] if c["code"]["coding"][0]["code"] == code)
    assert comp["code"]["coding"][0]["system"] == STATISTIC_SYSTEM
    return comp["valueQuantity"]["value"]


def cli(toy_dir: Path, *args: str) -> dict[str, Any]:
    r = CliRunner().invoke(app, [*args, "--store", f"sqlite:///{toy_dir / 'toy.db'}", "--models",
                                 str(toy_dir / "models"), "--model", "toy", "--as-of", AS_OF, "--format", "fhir"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def check_provenance(resources: list[dict[str, Any]], twin: Twin, toy_dir: Path, seed: int) -> None:
    prov = by_type(resources, "Provenance")
    assert len(prov) == 1
    p = prov[0]
    others = {f"urn:uuid:{r['id']}" for r in resources if r["resourceType"] not in ("Provenance", "Device")}
    assert {t["reference"] for t in p["target"]} == others
    device = by_type(resources, "Device")[0]
    assert p["agent"][0]["who"]["reference"] == f"urn:uuid:{device['id']}"
    sha = hashlib.sha256((toy_dir / "models" / "toy" / "model.pt").read_bytes()).hexdigest()
    assert {"type": {"text": "checkpoint sha256"}, "value": sha} in device["version"]
    # the toy records are no FHIR resources: each is named by its node id
    read = {n.id for n in twin.records.nodes if n.patient_id == twin.patient_id}
    named = {e["what"]["identifier"]["value"] for e in p["entity"]
             if e["what"].get("identifier", {}).get("system") == NODE_SYSTEM}
    assert named == read and f"Patient/{twin.patient_id}" in named
    snapshot = [e["what"]["identifier"] for e in p["entity"]
                if e["what"].get("identifier", {}).get("system") == "urn:patient-twin:store-snapshot"]
    assert len(snapshot) == 1 and snapshot[0]["value"].startswith("sha256:")
    ext = {e["url"].rsplit(":", 1)[1]: e["valueInteger"] for e in p["extension"]}
    assert ext["random-seed"] == seed
    assert p["recorded"].endswith("+00:00")


def test_forecast_as_fhir(toy_twins: list[Twin], toy_dir: Path) -> None:
    tw = toy_twins[0]
    doc = cli(toy_dir, "forecast", tw.patient_id, "--horizon", "60", "--step", "30", "--samples", "4")
    resources = validate(doc)
    run = forecast_patient(tw.store, ModelRegistry(toy_dir / "models"), tw.patient_id, model="toy", horizon=60,
                           as_of=tw.as_of, samples=4, step_days=30)
    fc = run.forecast
    obs = by_type(resources, "Observation")
    assert len(obs) == sum(len(lf.days) for lf in fc.labs.values()) == len(fc.labs) * 3
    for o in obs:
        assert o["status"] == "preliminary" and o["subject"] == {"reference": f"Patient/{tw.patient_id}"}
        coding = o["code"]["coding"][0]
        lf = fc.labs[coding["code"]]
        # codes and units as in the records: the toy cohort's own system and unit
        rec = next(n for n in tw.records.nodes if n.code == coding["code"])
        assert coding["system"] == rec.system and o["valueQuantity"]["code"] == rec.unit == lf.unit
        i = next(k for k, d in enumerate(lf.days) if (tw.as_of + timedelta(days=d)).isoformat() == o["effectiveDateTime"])
        assert o["valueQuantity"]["value"] == pytest.approx(lf.median[i], rel=1e-5)
        assert stat(o, "p05") == pytest.approx(lf.p05[i], rel=1e-5) and stat(o, "p95") == pytest.approx(lf.p95[i], rel=1e-5)
        assert stat(o, "p05") <= o["valueQuantity"]["value"] <= stat(o, "p95")
    risk = by_type(resources, "RiskAssessment")
    assert len(risk) == 1 and risk[0]["status"] == "preliminary"
    preds = {p["outcome"]["text"]: p["probabilityDecimal"] for p in risk[0]["prediction"]}
    assert len(preds) == len(fc.event_risk)
    for kind, v in fc.event_risk.items():
        name = {"death": "Death", "hospitalisation": "Hospital admission"}.get(kind, kind)
        assert preds[name] == pytest.approx(v, rel=1e-5, abs=1e-9)
    check_provenance(resources, tw, toy_dir, seed=0)


def test_simulate_as_fhir(treated_twin: Twin, toy_dir: Path, tmp_path: Path) -> None:
    tw = treated_twin
    plans = tmp_path / "plans.yaml"
    plans.write_text("- {name: none, baseline: none}\n"
                     "- name: D1 daily\n  baseline: none\n  actions:\n    - {treatment: D1, dose: 1000, unit: mg}\n"
                     "- {name: stop D1, baseline: current, actions: [{action: stop, treatment: D1, start: 30}]}\n")
    args = ("simulate", tw.patient_id, "--plan", str(plans), "--horizon", "90", "--samples", "6", "--seed", "3",
            "--objective", "minimise T1 at 90d")
    resources = validate(cli(toy_dir, *args))
    from service import plans_from_specs

    run = simulate_patient(tw.store, ModelRegistry(toy_dir / "models"), tw.patient_id, plans_from_specs([str(plans)]),
                           model="toy", horizon=90, as_of=tw.as_of, samples=6, seed=3, objective="minimise T1 at 90d")
    summary = {r["plan"]: r for r in run.result.summary(days=run.days)}
    care = {c["title"]: c for c in by_type(resources, "CarePlan")}
    assert set(care) == {"none", "D1 daily", "stop D1"}
    for c in care.values():
        assert (c["status"], c["intent"]) == ("draft", "proposal")
    d1 = care["D1 daily"]["activity"][0]["detail"]
    assert d1["code"]["coding"][0]["code"] == "D1" and d1["kind"] == "MedicationRequest" and not d1["doNotPerform"]
    assert care["stop D1"]["activity"][0]["detail"]["doNotPerform"] is True
    assert any("rank 1 under" in n["text"] for c in care.values() for n in c["note"])
    url = {f"urn:uuid:{c['id']}": title for title, c in care.items()}
    obs = by_type(resources, "Observation")
    assert len(obs) == 3 * len(run.result.labs) * len(run.days)
    for o in obs:
        plan = url[o["basedOn"][0]["reference"]]
        assert f"urn:uuid:{o['id']}" in {r["reference"] for r in care[plan]["activity"][0]["outcomeReference"]}
        day = next(d for d in run.days if (tw.as_of + timedelta(days=d)).isoformat() == o["effectiveDateTime"])
        v = summary[plan]["labs"][o["code"]["coding"][0]["code"]]["at_day"][f"{day:g}"]
        assert o["valueQuantity"]["value"] == pytest.approx(v["median"], rel=1e-5)
        assert (stat(o, "p05"), stat(o, "p95")) == pytest.approx((v["lo"], v["hi"]), rel=1e-5)
        if plan == "none":  # the reference: no difference components
            assert not any(c["code"]["coding"][0]["code"].startswith("diff") for c in o["component"])
        else:
            assert stat(o, "diff-median") == pytest.approx(v["diff_vs_reference"]["median"], rel=1e-5, abs=1e-9)
    for r in by_type(resources, "RiskAssessment"):
        plan = url[r["basedOn"]["reference"]]
        for p, e in zip(r["prediction"], run.result.events, strict=True):
            q = summary[plan]["events"][e]["risk_at_horizon"]
            assert p["probabilityDecimal"] == pytest.approx(q["median"], rel=1e-5, abs=1e-9)
            rng = p["extension"][0]["valueRange"]
            assert (rng["low"]["value"], rng["high"]["value"]) == pytest.approx((q["lo"], q["hi"]), rel=1e-5, abs=1e-9)
    check_provenance(resources, tw, toy_dir, seed=3)


def test_bad_format_is_a_one_line_error(toy_dir: Path) -> None:
    r = CliRunner().invoke(app, ["forecast", "p1", "--format", "xml", "--json"])
    assert r.exit_code == 1
    assert json.loads(r.stdout)["error"]["reason"] == "--format must be table or fhir, got 'xml'"

"""Treatment plans: parsing, unit/frequency conversion, resolution and clear errors."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import PlanError, TwinError
from scenarios.drugs import DrugCatalog
from scenarios.plan import Action, TreatmentPlan, frequency_per_day, load_plan, load_plans, unit_to_mg
from scenarios.regimens import conditions, find_regimen, load_regimens
from synthetic.drugs import DRUGS

CAT = DrugCatalog.from_mapping({d.code: [d.key, d.display] for d in DRUGS})
METFORMIN = next(d for d in DRUGS if d.key == "metformin").code
LISINOPRIL = next(d for d in DRUGS if d.key == "lisinopril").code
ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)


def test_plan_error_is_project_error() -> None:
    assert issubclass(PlanError, TwinError) and issubclass(PlanError, ValueError)


def test_units_and_frequencies_give_total_daily_mg() -> None:
    a = Action(drug="metformin", dose=0.5, unit="g", frequency="bid")
    assert a.daily_dose_mg == pytest.approx(1000.0)
    assert Action(drug="x1", dose=250, unit="mcg", frequency="q8h").daily_dose_mg == pytest.approx(0.75)
    assert frequency_per_day("weekly") == pytest.approx(1 / 7)
    assert frequency_per_day(3) == 3.0
    assert unit_to_mg("µg") == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="unknown frequency"):
        frequency_per_day("sometimes")
    with pytest.raises(ValueError, match="mass unit"):
        unit_to_mg("mL")


def test_names_resolve_to_the_synthetic_drug_codes() -> None:
    plan = TreatmentPlan(name="p", actions=(Action(drug="Metformin", dose=500, frequency="bid"),
                                            Action(drug=LISINOPRIL, dose=10)))
    rp = plan.resolve(ORIGIN, CAT)
    assert [a.code for a in rp.actions] == [METFORMIN, LISINOPRIL]
    assert rp.actions[0].mg_per_day == 1000.0


def test_iso_dates_become_days_from_the_origin() -> None:
    plan = TreatmentPlan.from_dict({"name": "d", "actions": [
        {"drug": "metformin", "dose": 500, "start": "2024-01-31", "stop": date(2024, 3, 1)}]})
    a = plan.resolve(ORIGIN, CAT).actions[0]
    assert (a.start, a.stop) == (30.0, 60.0)
    with pytest.raises(PlanError, match="before the forecast origin"):
        TreatmentPlan.from_dict({"name": "d", "actions": [{"drug": "metformin", "dose": 5, "start": "2023-12-01"}]}
                                ).resolve(ORIGIN, CAT)
    with pytest.raises(PlanError, match="needs a forecast origin"):
        plan.resolve(None, CAT)


@pytest.mark.parametrize(("doc", "field", "match"), [
    ({"name": "n", "actions": [{"drug": "metformin", "dose": -5}]}, "actions[0].dose", "finite number >= 0"),
    ({"name": "n", "actions": [{"drug": "metformin"}]}, "actions[0]", "needs a dose"),
    ({"name": "n", "actions": [{"drug": "metformin", "dose": 5, "unit": "mL"}]}, "actions[0].unit", "mass unit"),
    ({"name": "n", "actions": [{"drug": "metformin", "dose": 5, "start": 10, "stop": 5}]}, "actions[0]", "after start"),
    ({"name": "n", "actions": [{"drug": "metformin", "dose": 5, "start": -3}]}, "actions[0].start", "cannot change the past"),
    ({"name": "n", "actions": [{"drug": "metformin", "dose": 5, "route": "iv"}]}, "actions[0].route", "Extra inputs"),
    ({"name": "", "actions": []}, "name", "at least 1"),
    ({"name": "n", "actions": [{"action": "stop", "drug": "metformin", "dose": 5}]}, "actions[0]", "only drug and start"),
])
def test_invalid_plans_name_the_field(doc: dict, field: str, match: str) -> None:
    with pytest.raises(PlanError, match=match) as ei:
        TreatmentPlan.from_dict(doc, source="p.yaml")
    assert ei.value.field == field
    assert "p.yaml" in str(ei.value)


def test_unknown_drug_name_is_refused_but_a_code_passes() -> None:
    with pytest.raises(PlanError, match="unknown drug 'unobtainium'") as ei:
        TreatmentPlan(name="u", actions=(Action(drug="unobtainium", dose=1),)).resolve(ORIGIN, CAT)
    assert ei.value.field == "actions[0].drug"
    rp = TreatmentPlan(name="c", actions=(Action(drug="999999", dose=1),)).resolve(ORIGIN, CAT)
    assert rp.actions[0].code == "999999"


def test_overlapping_contradictory_actions_are_refused() -> None:
    with pytest.raises(PlanError, match="both give RxNorm"):
        TreatmentPlan(name="o", actions=(Action(drug="metformin", dose=500),
                                         Action(drug=METFORMIN, dose=1000, start=30))).resolve(ORIGIN, CAT)
    with pytest.raises(PlanError, match="stops RxNorm"):
        TreatmentPlan(name="o", actions=(Action(drug="metformin", dose=500, stop=60),
                                         Action(action="stop", drug="metformin", start=30))).resolve(ORIGIN, CAT)
    ok = TreatmentPlan(name="titrate", actions=(Action(drug="metformin", dose=500, stop=30),
                                                Action(drug="metformin", dose=1000, start=30)))
    assert len(ok.resolve(ORIGIN, CAT).actions) == 2
    switch = TreatmentPlan(name="switch", baseline="current", actions=(
        Action(action="stop", drug="metformin", start=30), Action(drug="metformin", dose=2000, start=30)))
    assert switch.resolve(ORIGIN, CAT).daily_dose(METFORMIN, 40, current_mg=500) == 2000


def test_named_special_plans_have_the_documented_semantics() -> None:
    none, cont = TreatmentPlan.no_treatment().resolve(), TreatmentPlan.continue_current().resolve()
    stop = TreatmentPlan.stop_drug("lisinopril", at=14).resolve(ORIGIN, CAT)
    assert none.daily_dose(METFORMIN, 5, current_mg=1000) == 0
    assert cont.daily_dose(METFORMIN, 5, current_mg=1000) == 1000
    assert stop.daily_dose(LISINOPRIL, 13, current_mg=20) == 20
    assert stop.daily_dose(LISINOPRIL, 14, current_mg=20) == 0
    assert stop.daily_dose(METFORMIN, 100, current_mg=1000) == 1000


def test_yaml_and_json_files_load(tmp_path: Path) -> None:
    doc = {"name": "a", "baseline": "current", "actions": [{"drug": "metformin", "dose": 500, "frequency": "bid"}]}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "a.json").write_text(json.dumps(doc))
    assert load_plan(tmp_path / "a.yaml") == load_plan(tmp_path / "a.json")
    (tmp_path / "two.yaml").write_text(yaml.safe_dump({"plans": [doc, {**doc, "name": "b"}]}))
    assert [p.name for p in load_plans(tmp_path / "two.yaml")] == ["a", "b"]
    with pytest.raises(PlanError, match="expected one plan"):
        load_plan(tmp_path / "two.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(PlanError, match="not valid YAML") as ei:
        load_plan(tmp_path / "bad.yaml")
    assert ei.value.file == str(tmp_path / "bad.yaml")
    with pytest.raises(PlanError, match="cannot read plan file"):
        load_plan(tmp_path / "missing.yaml")


def test_builtin_regimens_resolve_against_the_synthetic_drug_table() -> None:
    assert {"diabetes", "hypertension", "lipids", "general"} <= set(conditions())
    known = {d.code for d in DRUGS}
    for plan in load_regimens():
        rp = plan.resolve(ORIGIN, CAT)
        assert set(rp.codes) <= known, plan.name
        for a in rp.actions:
            if a.kind == "give":
                drug = next(d for d in DRUGS if d.code == a.code)
                assert drug.doses[0] <= a.mg_per_day <= drug.doses[-1], plan.name
    assert find_regimen("No Treatment").baseline == "none"
    with pytest.raises(PlanError, match="no built-in regimen"):
        find_regimen("snake oil")


def test_catalog_refuses_ambiguous_names() -> None:
    with pytest.raises(ValueError, match="ambiguous"):
        DrugCatalog.from_mapping({"1": ["aspirin"], "2": ["Aspirin"]})


# ------------------------------------------------------------------ properties
_drugs = st.sampled_from([d.key for d in DRUGS] + [d.code for d in DRUGS])
_freqs = st.sampled_from(["daily", "bid", "tid", "qid", "q12h", "q8h", "weekly", "qod", 1, 2.5])
_units = st.sampled_from(["mg", "g", "mcg"])


@st.composite
def plan_docs(draw: st.DrawFn) -> dict:
    n = draw(st.integers(0, 5))
    drugs = draw(st.lists(_drugs, min_size=n, max_size=n, unique_by=lambda k: CAT.resolve(k)))
    acts = []
    for drug in drugs:
        start = draw(st.integers(0, 300))
        stop = draw(st.one_of(st.none(), st.integers(start + 1, 700)))
        acts.append({"drug": drug, "dose": draw(st.floats(0, 5000, allow_nan=False)), "unit": draw(_units),
                     "frequency": draw(_freqs), "start": start, **({"stop": stop} if stop is not None else {})})
    return {"name": draw(st.text(min_size=1, max_size=20)), "baseline": draw(st.sampled_from(["none", "current"])),
            "actions": acts}


@settings(max_examples=60, deadline=None)
@given(plan_docs())
def test_valid_documents_round_trip_and_resolve(doc: dict) -> None:
    plan = TreatmentPlan.from_dict(doc)
    again = TreatmentPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    rp = plan.resolve(ORIGIN, CAT)
    for a, raw in zip(rp.actions, doc["actions"], strict=True):
        expect = raw["dose"] * unit_to_mg(raw["unit"]) * frequency_per_day(raw["frequency"])
        assert a.mg_per_day == pytest.approx(expect)
        assert a.mg_per_day >= 0


@settings(max_examples=60, deadline=None)
@given(st.floats(max_value=-1e-6, min_value=-1e9), _drugs)
def test_any_negative_dose_is_a_plan_error(dose: float, drug: str) -> None:
    with pytest.raises(PlanError, match="dose"):
        TreatmentPlan.from_dict({"name": "neg", "actions": [{"drug": drug, "dose": dose}]})


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(), st.lists(st.integers()), st.text(), st.dictionaries(st.text(max_size=5), st.integers())))
def test_garbage_never_escapes_as_anything_but_plan_error(doc: object) -> None:
    with pytest.raises(PlanError):
        TreatmentPlan.from_dict(doc)

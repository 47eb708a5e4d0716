"""Treatment plans: parsing, units, schedules, resolution against a model's treatments, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import PlanError, TwinError
from scenarios.plan import Action, TreatmentPlan, frequency_per_day, load_plan, load_plans
from scenarios.regimens import conditions, find_regimen, load_regimens
from scenarios.schedule import plan_dose_actions
from scenarios.treatments import TreatmentCatalog
from twin.features.treatment import DoseAction
from twin.spec import CohortSpec, Target, Treatment

REPO = Path(__file__).resolve().parents[2]
ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
METFORMIN = Treatment("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet", "medication", "mg")
LISINOPRIL = Treatment("314076", "lisinopril 10 MG Oral Tablet", "medication", "mg")
CARBOPLATIN = Treatment("40048", "Carboplatin", "medication", "mg/m2")
RADIOTHERAPY = Treatment("1287742003", "Radiotherapy (procedure)", "procedure", "Gy")
#: A chronic cohort's model and an oncology model, written by hand: resolution needs no training.
CHRONIC = TreatmentCatalog(CohortSpec(targets=(Target("4548-4", "HbA1c", "%"),),
                                      treatments=(METFORMIN, LISINOPRIL)).treatments)
ONCOLOGY = TreatmentCatalog(CohortSpec(targets=(Target("21889-1", "Tumour volume", "cm3", "log1p"),),
                                       treatments=(CARBOPLATIN, RADIOTHERAPY)).treatments)


def _plan(*actions: dict, baseline: str = "none") -> TreatmentPlan:
    return TreatmentPlan.from_dict({"name": "p", "baseline": baseline, "actions": list(actions)})


def _daily(actions: list[DoseAction], code: str, day: int) -> float:
    """Amount of ``code`` given on ``day`` (as :func:`twin.features.dose_schedule` sums it)."""
    return sum(a.daily for a in actions if a.code == code and a.start_day < day + 1
               and (a.stop_day is None or day < a.stop_day))


def test_plan_error_is_project_error() -> None:
    assert issubclass(PlanError, TwinError) and issubclass(PlanError, ValueError)


def test_frequencies() -> None:
    assert frequency_per_day("bid") == 2.0 and frequency_per_day("q8h") == 3.0
    assert frequency_per_day("weekly") == pytest.approx(1 / 7)
    assert frequency_per_day(3) == 3.0
    with pytest.raises(ValueError, match="unknown frequency"):
        frequency_per_day("sometimes")


def test_units_convert_to_the_treatments_own_unit() -> None:
    a = _plan({"treatment": "carboplatin", "dose": 300, "unit": "mg/m2", "at": [0]}).resolve(ONCOLOGY).actions[0]
    b = _plan({"treatment": "carboplatin", "dose": 0.3, "unit": "g/m2", "at": [0]}).resolve(ONCOLOGY).actions[0]
    assert a.dose == b.dose == pytest.approx(300.0) and a.treatment.unit == "mg/m2"
    # default unit: the treatment's own; mg and g for a mg drug, with frequency per day
    m = _plan({"treatment": "metformin", "dose": 0.5, "unit": "g", "frequency": "bid"}).resolve(CHRONIC).actions[0]
    assert (m.dose, m.per_day, m.daily) == (pytest.approx(500.0), 2.0, pytest.approx(1000.0))
    assert _plan({"treatment": "radiotherapy", "dose": 200, "unit": "cGy", "at": [3]}).resolve(ONCOLOGY).actions[0].dose \
        == pytest.approx(2.0)
    assert _plan({"treatment": "radiotherapy", "dose": 2, "at": [3]}).resolve(ONCOLOGY).actions[0].dose == 2.0


def test_a_unit_of_another_kind_is_refused_naming_the_field_and_both_units() -> None:
    with pytest.raises(PlanError) as ei:
        _plan({"treatment": "carboplatin", "dose": 500, "unit": "mg", "at": [0]}).resolve(ONCOLOGY)
    assert ei.value.field == "actions[0].unit"
    assert "'mg'" in ei.value.reason and "'mg/m2'" in ei.value.reason and "Carboplatin (40048)" in ei.value.reason
    with pytest.raises(PlanError, match="'Gy'") as ei:
        _plan({"treatment": "radiotherapy", "dose": 2, "unit": "mg", "at": [0]}).resolve(ONCOLOGY)
    assert ei.value.field == "actions[0].unit"
    with pytest.raises(PlanError, match="not a dose unit") as ei:  # not a dose unit at all: refused when read
        _plan({"treatment": "carboplatin", "dose": 5, "unit": "mg/d", "at": [0]})
    assert ei.value.field == "actions[0].unit"


def test_schedules_every_at_and_continuous() -> None:
    weekly = _plan({"treatment": "carboplatin", "dose": 300, "every": 7, "times": 4}).resolve(ONCOLOGY)
    acts = plan_dose_actions([], weekly, 365)
    assert acts == [DoseAction.pulse("40048", 300.0, d) for d in (0, 7, 14, 21)]
    assert [_daily(acts, "40048", d) for d in range(23)] == [300.0 if d in (0, 7, 14, 21) else 0.0 for d in range(23)]
    five = plan_dose_actions([], _plan({"treatment": "radiotherapy", "dose": 2, "at": [0, 1, 2, 3, 4]})
                             .resolve(ONCOLOGY), 365)
    assert five == [DoseAction.pulse("1287742003", 2.0, d) for d in range(5)]
    daily = plan_dose_actions([], _plan({"treatment": "metformin", "dose": 500, "start": 0, "stop": 10})
                              .resolve(CHRONIC), 365)
    assert daily == [DoseAction("860975", 500.0, 0.0, 10.0, 1.0)]
    # every without an end: to the horizon (``until``); with stop: before stop
    open_end = _plan({"treatment": "carboplatin", "dose": 1, "every": 21, "start": 2}).resolve(ONCOLOGY)
    assert [a.start_day for a in plan_dose_actions([], open_end, 90)] == [2, 23, 44, 65, 86]
    bounded = _plan({"treatment": "carboplatin", "dose": 1, "every": 7, "stop": 21}).resolve(ONCOLOGY)
    assert [a.start_day for a in plan_dose_actions([], bounded, 365)] == [0, 7, 14]
    # "once on day t" as an ISO date
    once = _plan({"treatment": "carboplatin", "dose": 1, "at": ["2024-01-11"]}).resolve(ONCOLOGY, ORIGIN)
    assert plan_dose_actions([], once, 365) == [DoseAction.pulse("40048", 1.0, 10.0)]


def test_a_plan_with_a_procedure_resolves_by_code_or_name() -> None:
    plan = TreatmentPlan.from_dict({"name": "chemoradiation", "actions": [
        {"treatment": "1287742003", "dose": 2, "unit": "Gy", "every": 1, "times": 5},
        {"treatment": "Carboplatin", "dose": 300, "unit": "mg/m2", "at": [0]},
        {"treatment": "radiotherapy (procedure)", "dose": 2, "unit": "Gy", "at": [7]}]})
    rp = plan.resolve(ONCOLOGY)
    assert [a.code for a in rp.actions] == ["1287742003", "40048", "1287742003"]
    assert rp.actions[0].treatment.kind == "procedure" and rp.actions[0].at == (0, 1, 2, 3, 4)
    assert [a.start_day for a in plan_dose_actions([], rp, 30) if a.code == "1287742003"] == [0, 1, 2, 3, 4, 7]


def test_an_unknown_treatment_lists_the_known_ones_by_name() -> None:
    with pytest.raises(PlanError) as ei:
        _plan({"treatment": "unobtainium", "dose": 1}).resolve(ONCOLOGY)
    assert ei.value.field == "actions[0].treatment"
    assert "unknown treatment 'unobtainium'" in ei.value.reason
    assert "Carboplatin (40048), Radiotherapy (procedure) (1287742003)" in ei.value.reason
    # a code the records never used is unknown too (no RxNorm pass-through), and so is a drug of another model
    for other in ("999999", "metformin"):
        with pytest.raises(PlanError, match="unknown treatment"):
            _plan({"treatment": other, "dose": 1}).resolve(ONCOLOGY)


def test_a_name_shared_by_two_treatments_asks_for_the_code() -> None:
    cat = TreatmentCatalog([Treatment("1", "Aspirin"), Treatment("2", "aspirin")])
    with pytest.raises(PlanError, match=r"names 2 treatments.*use the code"):
        _plan({"treatment": "aspirin", "dose": 1}).resolve(cat)
    assert _plan({"treatment": "2", "dose": 1}).resolve(cat).actions[0].code == "2"


def test_resolving_needs_nothing_from_the_synthetic_generator() -> None:
    code = ("import sys\nfrom scenarios import TreatmentCatalog, TreatmentPlan\nfrom twin.spec import Treatment\n"
            "cat = TreatmentCatalog([Treatment('40048', 'Carboplatin', 'medication', 'mg/m2')])\n"
            "TreatmentPlan.from_dict({'name': 'p', 'actions': [{'treatment': 'carboplatin', 'dose': 300, "
            "'every': 7, 'times': 4}]}).resolve(cat)\n"
            "print(sorted(m for m in sys.modules if m == 'synthetic' or m.startswith('synthetic.')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert not (REPO / "scenarios" / "drug_names.json").exists()


def test_the_old_drug_key_still_reads() -> None:
    old = TreatmentPlan.from_dict({"name": "o", "actions": [{"drug": "metformin", "dose": 500, "frequency": "bid"}]})
    assert old.actions[0].treatment == "metformin"
    assert old == _plan({"treatment": "metformin", "dose": 500, "frequency": "bid"}).model_copy(update={"name": "o"})


def test_iso_dates_become_days_from_the_origin() -> None:
    plan = _plan({"treatment": "metformin", "dose": 500, "start": "2024-01-31", "stop": date(2024, 3, 1)})
    a = plan.resolve(CHRONIC, ORIGIN).actions[0]
    assert (a.start, a.stop) == (30.0, 60.0)
    with pytest.raises(PlanError, match="before the forecast origin"):
        _plan({"treatment": "metformin", "dose": 5, "start": "2023-12-01"}).resolve(CHRONIC, ORIGIN)
    with pytest.raises(PlanError, match="needs a forecast origin") as ei:
        plan.resolve(CHRONIC)
    assert ei.value.field == "actions[0].start"
    with pytest.raises(PlanError, match="day 10 twice") as ei:
        _plan({"treatment": "carboplatin", "dose": 1, "at": [10, "2024-01-11"]}).resolve(ONCOLOGY, ORIGIN)
    assert ei.value.field == "actions[0].at[1]"


@pytest.mark.parametrize(("action", "field", "match"), [
    ({"treatment": "metformin", "dose": -5}, "actions[0].dose", "finite number >= 0"),
    ({"treatment": "metformin"}, "actions[0].dose", "needs a dose"),
    ({"treatment": "metformin", "dose": 5, "start": 10, "stop": 5}, "actions[0].stop", "after start"),
    ({"treatment": "metformin", "dose": 5, "start": -3}, "actions[0].start", "cannot change the past"),
    ({"treatment": "metformin", "dose": 5, "route": "iv"}, "actions[0].route", "Extra inputs"),
    ({"action": "stop", "treatment": "metformin", "dose": 5}, "actions[0].dose", "only treatment and start"),
    ({"action": "stop", "treatment": "metformin", "every": 7}, "actions[0].every", "only treatment and start"),
    ({"treatment": "x", "dose": 1, "times": 3}, "actions[0].times", "add every"),
    ({"treatment": "x", "dose": 1, "every": 7, "times": 3, "stop": 30}, "actions[0].times", "either stop or times"),
    ({"treatment": "x", "dose": 1, "every": 0.5}, "actions[0].every", "greater than or equal to 1"),
    ({"treatment": "x", "dose": 1, "every": 7, "frequency": "bid"}, "actions[0].frequency", "continuous dosing"),
    ({"treatment": "x", "dose": 1, "at": [0, 7], "start": 3}, "actions[0].start", "does not apply to an 'at'"),
    ({"treatment": "x", "dose": 1, "at": [0, 7], "every": 7}, "actions[0].every", "does not apply to an 'at'"),
    ({"treatment": "x", "dose": 1, "at": []}, "actions[0].at", "at least 1"),
    ({"treatment": "x", "dose": 1, "at": [0, "7"]}, "actions[0].at[1]", "not the string '7'"),
    ({"treatment": "x", "dose": 1, "at": [0, -1]}, "actions[0].at[1]", "cannot change the past"),
    ({"treatment": "x", "dose": 1, "every": 7, "times": 4.5}, "actions[0].times", "valid integer"),
    ({"treatment": "x", "drug": "y", "dose": 1}, "actions[0].drug", "old name of 'treatment'"),
])
def test_invalid_actions_name_the_field(action: dict, field: str, match: str) -> None:
    with pytest.raises(PlanError, match=match) as ei:
        TreatmentPlan.from_dict({"name": "n", "actions": [action]}, source="p.yaml")
    assert ei.value.field == field
    assert "p.yaml" in str(ei.value)


def test_invalid_plans_name_the_field() -> None:
    with pytest.raises(PlanError, match="at least 1") as ei:
        TreatmentPlan.from_dict({"name": "", "actions": []})
    assert ei.value.field == "name"


def test_overlapping_contradictory_actions_are_refused() -> None:
    with pytest.raises(PlanError, match=r"both give 24 HR metformin .* \(860975\) continuously"):
        _plan({"treatment": "metformin", "dose": 500}, {"treatment": "860975", "dose": 1000, "start": 30}
              ).resolve(CHRONIC)
    with pytest.raises(PlanError, match="stops lisinopril 10 MG Oral Tablet") as ei:
        _plan({"treatment": "lisinopril", "dose": 10, "stop": 60}, {"action": "stop", "treatment": "lisinopril",
                                                                     "start": 30}).resolve(CHRONIC)
    assert ei.value.field == "actions[1]"
    with pytest.raises(PlanError, match="stops Carboplatin"):  # a course still running is a give too
        _plan({"treatment": "carboplatin", "dose": 1, "every": 7, "times": 8},
              {"action": "stop", "treatment": "carboplatin", "start": 30}).resolve(ONCOLOGY)
    titrate = _plan({"treatment": "metformin", "dose": 500, "stop": 30}, {"treatment": "metformin", "dose": 1000,
                                                                            "start": 30})
    assert len(titrate.resolve(CHRONIC).actions) == 2
    # single administrations add to continuous dosing and to each other
    extra = _plan({"treatment": "carboplatin", "dose": 1, "start": 0}, {"treatment": "carboplatin", "dose": 5,
                                                                          "at": [3]}).resolve(ONCOLOGY)
    assert _daily(plan_dose_actions([], extra, 30), "40048", 3) == 6.0


def test_baselines_history_and_stops() -> None:
    factual = [DoseAction("314076", 10.0, -200.0, None),        # lisinopril: a prescription still running
               DoseAction("860975", 500.0, -100.0, -20.0, 2.0),  # metformin: ended before the origin
               DoseAction.pulse("860975", 1000.0, 0.0)]          # a single administration at the origin
    none = plan_dose_actions(factual, TreatmentPlan.no_treatment().resolve(CHRONIC), 365)
    cont = plan_dose_actions(factual, TreatmentPlan.continue_current().resolve(CHRONIC), 365)
    stop = plan_dose_actions(factual, TreatmentPlan.stop_treatment("lisinopril", at=14).resolve(CHRONIC), 365)
    assert _daily(none, "314076", -1) == 10 and _daily(none, "314076", 0) == 0, "history kept, nothing after"
    assert _daily(cont, "314076", 300) == 10
    assert (_daily(stop, "314076", 13), _daily(stop, "314076", 14)) == (10, 0)
    for acts in (none, cont, stop):  # a recorded administration is history under any baseline and never continues
        assert _daily(acts, "860975", -50) == 1000 and _daily(acts, "860975", 0) == 1000
        assert _daily(acts, "860975", 1) == 0
    switch = _plan({"action": "stop", "treatment": "lisinopril", "start": 30},
                   {"treatment": "lisinopril", "dose": 20, "start": 30}, baseline="current").resolve(CHRONIC)
    acts = plan_dose_actions(factual, switch, 365)
    assert (_daily(acts, "314076", 29), _daily(acts, "314076", 40)) == (10, 20)


def test_yaml_and_json_files_load(tmp_path: Path) -> None:
    doc = {"name": "a", "baseline": "current", "actions": [
        {"treatment": "carboplatin", "dose": 300, "unit": "mg/m2", "every": 21, "times": 4},
        {"treatment": "radiotherapy", "dose": 2, "unit": "Gy", "at": [0, 1, 2, 3, 4]}]}
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


def test_builtin_regimens_resolve_through_a_chronic_models_record_names() -> None:
    """The regimens name drugs by a word of the names in the records; no catalogue of their own."""
    from synthetic.drugs import DRUGS  # the synthetic cohort's records name its drugs by these displays

    cat = TreatmentCatalog([Treatment(d.code, d.display, "medication", "mg") for d in DRUGS])
    assert {"diabetes", "hypertension", "lipids", "general"} <= set(conditions())
    for plan in load_regimens():
        for a in plan.resolve(cat).actions:
            if a.kind == "give":
                drug = next(d for d in DRUGS if d.code == a.code)
                assert drug.doses[0] <= a.daily <= drug.doses[-1], plan.name
    assert find_regimen("No Treatment").baseline == "none"
    with pytest.raises(PlanError, match="no built-in regimen"):
        find_regimen("snake oil")
    with pytest.raises(PlanError, match=r"unknown treatment 'metformin'.*known: Carboplatin"):
        find_regimen("diabetes first-line metformin").resolve(ONCOLOGY)


# ------------------------------------------------------------------ properties
_names = st.sampled_from(["metformin", "Lisinopril", "860975", "314076"])
_freqs = st.sampled_from(["daily", "bid", "tid", "qid", "q12h", "q8h", "weekly", "qod", 1, 2.5])
_units = st.sampled_from(["mg", "g", "mcg", "ug", "kg"])
_FACTOR = {"mg": 1.0, "g": 1e3, "mcg": 1e-3, "ug": 1e-3, "kg": 1e6}


@st.composite
def plan_docs(draw: st.DrawFn) -> dict:
    n = draw(st.integers(0, 2))
    names = draw(st.lists(_names, min_size=n, max_size=n, unique_by=lambda k: CHRONIC.resolve(k).code))
    acts = []
    for name in names:
        start = draw(st.integers(0, 300))
        stop = draw(st.one_of(st.none(), st.integers(start + 1, 700)))
        act: dict = {"treatment": name, "dose": draw(st.floats(0, 5000, allow_nan=False)), "unit": draw(_units),
                     "start": start, **({"stop": stop} if stop is not None else {})}
        kind = draw(st.sampled_from(["continuous", "every", "at"]))
        if kind == "continuous":
            act["frequency"] = draw(_freqs)
        elif kind == "every":
            act["every"] = draw(st.integers(1, 30))
        else:
            del act["start"]
            act.pop("stop", None)
            act["at"] = draw(st.lists(st.integers(0, 700), min_size=1, max_size=10, unique=True))
        acts.append(act)
    return {"name": draw(st.text(min_size=1, max_size=20)), "baseline": draw(st.sampled_from(["none", "current"])),
            "actions": acts}


@settings(max_examples=60, deadline=None)
@given(plan_docs())
def test_valid_documents_round_trip_and_resolve(doc: dict) -> None:
    plan = TreatmentPlan.from_dict(doc)
    again = TreatmentPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    rp = plan.resolve(CHRONIC)
    for a, raw in zip(rp.actions, doc["actions"], strict=True):
        assert a.dose == pytest.approx(raw["dose"] * _FACTOR[raw["unit"]])
        per_day = frequency_per_day(raw["frequency"]) if "frequency" in raw else 1.0
        assert a.daily == pytest.approx(a.dose * per_day) and a.daily >= 0
        acts = plan_dose_actions([], TreatmentPlan(name="one", actions=(Action.model_validate(raw),)).resolve(CHRONIC),
                                 800)
        if "at" in raw:
            assert sorted(x.start_day for x in acts) == sorted(raw["at"])
        elif "every" in raw:
            end = raw.get("stop", 800)
            assert [x.start_day for x in acts] == list(range(raw["start"], end, raw["every"]))


@settings(max_examples=60, deadline=None)
@given(st.floats(max_value=-1e-6, min_value=-1e9), _names)
def test_any_negative_dose_is_a_plan_error(dose: float, name: str) -> None:
    with pytest.raises(PlanError, match="dose"):
        TreatmentPlan.from_dict({"name": "neg", "actions": [{"treatment": name, "dose": dose}]})


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(), st.lists(st.integers()), st.text(), st.dictionaries(st.text(max_size=5), st.integers())))
def test_garbage_never_escapes_as_anything_but_plan_error(doc: object) -> None:
    with pytest.raises(PlanError):
        TreatmentPlan.from_dict(doc)


def test_the_readme_plan_example_resolves() -> None:
    """The YAML plan in README.md is a valid plan for a model that knows its three treatments."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    cat = TreatmentCatalog([Treatment("40048", "carboplatin", "medication", "mg/m2"),
                            Treatment("1287742003", "Radiotherapy", "procedure", "Gy"),
                            Treatment("860975", "metformin hydrochloride 500 MG Oral Tablet", "medication", "mg")])
    plan = TreatmentPlan.from_dict(yaml.safe_load(block)).resolve(cat)
    acts = plan_dose_actions([], plan, 120.0)
    pulses = sorted((a.code, a.start_day) for a in acts if a.stop_day is not None and a.stop_day - a.start_day == 1)
    assert [d for c, d in pulses if c == "40048"] == [0.0, 7.0, 14.0, 21.0]
    assert [d for c, d in pulses if c == "1287742003"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    (met,) = [a for a in acts if a.code == "860975"]
    assert (met.daily, met.start_day, met.stop_day) == (1000.0, 0.0, 90.0)

"""The cohort specification: derived from any cohort's records, overridable, saved, and what the
features make of pulses, procedures and transforms."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError, TwinError
from graph.schema import Node, NodeType, Prop
from twin.features import actions_from_records, dose_schedule
from twin.features.records import PatientRecords
from twin.features.vocab import Normalisers, build_vocabulary
from twin.spec import CohortSpec, SpecRequest, TimeScales, derive_scales, forward_transform, inverse_transform

T0 = datetime(2021, 3, 1, 8, tzinfo=UTC)
VOLUME, CARBO, RADIO = "21889-1", "40048", "1287742003"


def _daily_patient(pid: str, days: int = 30, seed: int = 0) -> PatientRecords:
    """Daily tumour volumes (spread over orders of magnitude across patients), chemo pulses in
    mg/m2 on some days and radiotherapy fractions in Gy on others."""
    rng = np.random.default_rng(seed)
    v = float(10 ** rng.uniform(-1, 3))
    nodes = [Node(id=f"Patient/{pid}", type=NodeType.PATIENT, patient_id=pid, props={Prop.SEX: "female"})]
    for d in range(days):
        t = T0 + timedelta(days=d)
        nodes.append(Node(id=f"Observation/{pid}-{d}", type=NodeType.LAB, patient_id=pid, time=t, code=VOLUME,
                          system="http://loinc.org", value=round(v, 4), unit="cm3", display="Tumor size"))
        if d % 7 == 2:
            nodes.append(Node(id=f"MedicationAdministration/{pid}-{d}", type=NodeType.MEDICATION, patient_id=pid,
                              time=t + timedelta(hours=2), code=CARBO, display="carboplatin", value=300.0,
                              unit="mg/m2", props={Prop.DOSING: "pulse"}))
            v *= 0.86
        if d % 5 == 1:
            nodes.append(Node(id=f"Procedure/{pid}-{d}", type=NodeType.PROCEDURE, patient_id=pid,
                              time=t + timedelta(hours=3), code=RADIO, display="Radiotherapy", value=2.0, unit="Gy",
                              props={Prop.DOSING: "pulse"}))
            v *= 0.8
        v *= 1.02
    return PatientRecords(pid, tuple(nodes), ())


@pytest.fixture(scope="module")
def daily_cohort() -> list[PatientRecords]:
    return [_daily_patient(f"p{i}", seed=i) for i in range(12)]


def test_daily_oncology_records_get_a_daily_spec(daily_cohort: list[PatientRecords]) -> None:
    vocab, norms = build_vocabulary(daily_cohort)
    spec = vocab.cohort
    (target,) = spec.targets
    assert (target.code, target.unit, target.transform) == (VOLUME, "cm3", "log1p")
    kinds = {t.code: (t.kind, t.unit, t.name, t.effect) for t in spec.treatments}
    assert kinds == {CARBO: ("medication", "mg/m2", "carboplatin", "lasting"),
                     RADIO: ("procedure", "Gy", "Radiotherapy", "lasting")}  # single administrations: lasting
    assert (spec.scales.step_days, spec.scales.horizon_days) == (1.0, 12.0)
    assert spec.scales.time_unit_days == pytest.approx(30 / 7)
    assert norms.dose_scale == {CARBO: 300.0, RADIO: 2.0}
    # the transform is applied before standardising, and undone exactly
    z = norms.lab(VOLUME, 250.0)
    assert z == pytest.approx((math.log1p(250.0) - norms.lab_mean[VOLUME]) / norms.lab_std[VOLUME])
    assert float(norms.lab_inverse(VOLUME, z)) == pytest.approx(250.0)
    assert CohortSpec.from_dict(spec.to_dict()) == spec


def test_chronic_cadence_keeps_the_chronic_scales() -> None:
    s = derive_scales(120.0)
    assert (s.step_days, s.time_unit_days, s.horizon_days, s.level_days, s.trend_days) == (7.0, 30.0, 365.0,
                                                                                          365.0, 730.0)
    assert derive_scales(1.0, step_days=0.5, horizon_days=30).step_days == 0.5
    with pytest.raises(ConfigError, match="at least twice"):
        TimeScales(step_days=7.0, time_unit_days=7.0)


def test_a_pulse_acts_on_its_own_day_only(daily_cohort: list[PatientRecords]) -> None:
    vocab, norms = build_vocabulary(daily_cohort)
    rec = daily_cohort[0]
    origin = T0 + timedelta(days=20)  # 08:00: the chemo of day 16 (10:00) and the radio of day 16 (11:00) are past
    acts = actions_from_records(rec.cut(origin), origin, vocab)
    assert acts and all(a.stop_day is not None and a.stop_day - math.floor(a.start_day) == 1 for a in acts)
    u = dose_schedule(acts, vocab, norms, 25, first_day=-21).numpy()  # days -21 .. 3
    c, r = vocab.treatment(CARBO), vocab.treatment(RADIO)
    chemo_days = [d - 21 for d in np.nonzero(u[:, c])[0]]
    radio_days = [d - 21 for d in np.nonzero(u[:, r])[0]]
    assert chemo_days == [2 - 20, 9 - 20, 16 - 20] and np.allclose(u[u[:, c] > 0, c], 1.0)
    assert radio_days == [1 - 20, 6 - 20, 11 - 20, 16 - 20]
    assert u[21:, :].sum() == 0  # nothing after the origin: a past pulse is never "continued"


def test_requests_set_targets_treatments_and_events_by_name(daily_cohort: list[PatientRecords]) -> None:
    req = SpecRequest(targets=("Tumor size",), transforms={"Tumor size": "positive"}, treatments=("Radiotherapy",),
                      horizon_days=7)
    vocab, _ = build_vocabulary(daily_cohort, req)
    assert [t.transform for t in vocab.cohort.targets] == ["positive"]
    again, _ = build_vocabulary(daily_cohort, SpecRequest(effects={"carboplatin": "level"}))
    assert {t.code: t.effect for t in again.cohort.treatments} == {CARBO: "level", RADIO: "lasting"}
    assert vocab.treatments == [RADIO] and vocab.cohort.scales.horizon_days == 7
    with pytest.raises(TwinError, match=r"treatment 'aspirin' is not a code or name.*carboplatin \[40048\]"):
        build_vocabulary(daily_cohort, SpecRequest(treatments=("aspirin",)))
    with pytest.raises(TwinError, match=r"target '2345-7' is not a code or name.*Tumor size \[21889-1\]"):
        build_vocabulary(daily_cohort, SpecRequest(targets=("2345-7",)))
    with pytest.raises(TwinError, match="no Condition with code"):
        build_vocabulary(daily_cohort, SpecRequest(events=("condition:44054006",)))
    with pytest.raises(ConfigError, match="transform"):
        SpecRequest(transforms={"x": "sqrt"})


def test_units_of_different_dimensions_are_never_mixed(daily_cohort: list[PatientRecords]) -> None:
    rec = daily_cohort[0]
    odd = Node(id="MedicationAdministration/odd", type=NodeType.MEDICATION, patient_id=rec.patient_id,
               time=T0, code=CARBO, display="carboplatin", value=500.0, unit="mg", props={Prop.DOSING: "pulse"})
    mixed = [PatientRecords(rec.patient_id, (*rec.nodes, odd), ()), *daily_cohort[1:]]
    with pytest.raises(TwinError, match=r"carboplatin \[40048\] is recorded in units of different dimensions"):
        build_vocabulary(mixed)


@settings(max_examples=80, deadline=None)
@given(kind=st.sampled_from(["identity", "log1p", "positive"]),
       v=st.floats(min_value=1e-3, max_value=1e5, allow_nan=False))
def test_transforms_round_trip(kind: str, v: float) -> None:
    back = float(inverse_transform(kind, forward_transform(kind, np.float64(v))))
    assert back == pytest.approx(v, rel=1e-6, abs=1e-9)
    n = Normalisers(lab_mean={"x": 0.3}, lab_std={"x": 2.0}, transforms={"x": kind})
    assert float(n.lab_inverse("x", n.lab("x", v))) == pytest.approx(v, rel=1e-6, abs=1e-9)

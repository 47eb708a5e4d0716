"""Batched simulation: factual reproduction, causality, pairing, determinism, guardrails."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from core.errors import PlanError
from scenarios.plan import Action, TreatmentPlan
from scenarios.result import Threshold
from scenarios.simulate import prepare, simulate
from twin.features import dose_schedule
from twin.spec import forward_transform

CONT, NONE = TreatmentPlan.continue_current(), TreatmentPlan.no_treatment()
HIGH = TreatmentPlan(name="D1 2000", actions=(Action(treatment="D1", dose=2000),))


def test_continue_current_reproduces_the_factual_forecast(treated_twin) -> None:
    tw = treated_twin
    res = simulate(tw, [NONE, CONT], 180, n_samples=1, seed=0, observation_noise=False,
                   sample_latent=False)
    spec = tw.model.spec
    factual = dose_schedule(tw.current_plan(), spec.vocab, spec.norms, 181)
    run = prepare(tw, [NONE, CONT], 180)
    assert torch.equal(run.doses[0, 1], factual)
    member = tw.model.members[0]
    with torch.no_grad():
        ro = member.rollout(tw.graph(), factual.unsqueeze(0), torch.from_numpy(res.times).float())
    std = np.array([spec.norms.lab_std[c] for c in spec.vocab.target_labs])
    mean = np.array([spec.norms.lab_mean[c] for c in spec.vocab.target_labs])
    expect = ro.mean[0].numpy() * std + mean
    np.testing.assert_allclose(res.lab_samples[0, 0, 1], expect, rtol=1e-5, atol=1e-5)
    assert not np.allclose(res.lab_samples[0, 0, 0], expect, atol=1e-3), "stopping D1 should change the forecast"


@pytest.mark.parametrize("day", [56, 126])
def test_plans_differing_after_day_d_agree_before_it(toy_twins, treated_twin, day) -> None:
    change = TreatmentPlan(name="stop D1 later", baseline="current",
                           actions=(Action(action="stop", treatment="D1", start=day),))
    res = simulate(toy_twins, [CONT, change], 240, n_samples=4, seed=3, query_days=list(range(241)))
    x = res.lab_samples
    np.testing.assert_array_equal(x[..., : day + 1, :, ][:, :, 0], x[..., : day + 1, :][:, :, 1])
    i = res.patients.index(treated_twin.patient_id)
    assert np.abs(x[:, i, 0, day + 30:] - x[:, i, 1, day + 30:]).max() > 1e-3
    risk = res.risk_samples
    np.testing.assert_array_equal(risk[:, :, 0, : day + 1], risk[:, :, 1, : day + 1])


def test_same_seed_same_numbers_other_seed_other_numbers(toy_twins) -> None:
    a = simulate(toy_twins[:3], [CONT, HIGH], 90, n_samples=6, seed=11)
    b = simulate(toy_twins[:3], [CONT, HIGH], 90, n_samples=6, seed=11)
    c = simulate(toy_twins[:3], [CONT, HIGH], 90, n_samples=6, seed=12)
    np.testing.assert_array_equal(a.lab_samples, b.lab_samples)
    assert not np.array_equal(a.lab_samples, c.lab_samples)


def test_one_batch_equals_plans_run_alone_and_samples_are_paired(toy_twins) -> None:
    both = simulate(toy_twins[:2], [CONT, HIGH, NONE], 120, n_samples=4, seed=5)
    alone = simulate(toy_twins[:2], [HIGH], 120, n_samples=4, seed=5)
    np.testing.assert_allclose(both.lab_samples[:, :, 1], alone.lab_samples[:, :, 0], rtol=1e-5, atol=1e-5)
    # day 0: every plan starts from the same sampled state, so all plans agree sample by sample
    np.testing.assert_allclose(both.lab_samples[:, :, 0, 0], both.lab_samples[:, :, 2, 0], atol=1e-5)
    assert np.ptp(both.lab_samples[:, 0, 0, 0, 0]) > 0, "samples must differ from each other"


def test_shapes_summaries_and_differences(treated_twin) -> None:
    th = Threshold("T1", "<", 6.5)
    res = simulate(treated_twin, [CONT, NONE, HIGH], 365, n_samples=8, seed=0, thresholds=[th])
    S, N, P, T, L = res.lab_samples.shape
    assert (S, N, P, L) == (8, 1, 3, len(res.labs)) and res.times[-1] == 365 and 90.0 in res.times
    assert res.risk_samples is not None and res.risk_samples.shape[:3] == (8, 1, 3)
    assert np.all(np.diff(res.risk_samples, axis=3) >= -1e-6), "cumulative risk never decreases"
    assert ((res.risk_samples >= 0) & (res.risk_samples <= 1)).all()
    med, lo, hi = res.difference(NONE.name, "T1", 180)
    assert lo <= med <= hi
    assert res.difference(CONT.name, "T1", 180) == (0.0, 0.0, 0.0)
    rows = res.summary()
    assert [r["plan"] for r in rows] == [CONT.name, NONE.name, HIGH.name] and rows[0]["reference"]
    t = rows[1]["thresholds"][str(th)]
    assert 0.0 <= t["p_within_horizon"] <= 1.0
    tr = res.trajectory(HIGH.name, "T1")
    assert np.all(tr["lo"] <= tr["median"]) and np.all(tr["median"] <= tr["hi"])
    assert res.to_dict()["patients"][0]["patient_id"] == treated_twin.patient_id


def test_extreme_doses_are_flagged_in_the_treatments_unit(treated_twin) -> None:
    extreme = TreatmentPlan(name="mega dose", actions=(Action(treatment="D1", dose=50, unit="g"),))
    res = simulate(treated_twin, [CONT, extreme], 60, n_samples=2, seed=0)
    assert [(f.plan, f.kind, f.treatment, f.unit) for f in res.flags] == [("mega dose", "dose_out_of_range", "D1", "mg")]
    flag = res.summary()[1]["flags"][0]
    assert flag["daily_dose"] == 50000 and "50000 mg/day" in flag["message"]
    with pytest.raises(PlanError, match="far outside the training range") as ei:
        simulate(treated_twin, [extreme], 60, n_samples=2, seed=0, strict=True)
    assert ei.value.field == "actions[0]"
    ok = simulate(treated_twin, [CONT, HIGH], 60, n_samples=2, seed=0, strict=True)
    assert ok.flags == []


def test_unknown_treatments_are_refused_listing_the_models_own(treated_twin) -> None:
    for strict in (False, True):
        with pytest.raises(PlanError, match=r"unknown treatment '999999'.*known: D1") as ei:
            simulate(treated_twin, [CONT, TreatmentPlan(name="new drug", actions=(Action(treatment="999999", dose=10),))],
                     60, n_samples=2, seed=0, strict=strict)
        assert ei.value.plan == "new drug" and ei.value.field == "actions[0].treatment"


def test_a_guardrail_flags_a_treatment_resolved_against_another_model(treated_twin) -> None:
    from scenarios.guardrails import check_plan
    from scenarios.treatments import TreatmentCatalog
    from twin.spec import Treatment

    spec = treated_twin.model.spec
    other = TreatmentCatalog([Treatment("RT", "Radiotherapy", "procedure", "Gy")])
    rp = TreatmentPlan(name="rt", actions=(Action(treatment="radiotherapy", dose=2, at=(0.0,)),)).resolve(other)
    (flag,) = check_plan(rp, spec.vocab, spec.norms)
    assert flag.kind == "unknown_treatment" and flag.unit == "Gy" and "Radiotherapy (RT)" in flag.message


def test_pulses_act_on_their_day_only(treated_twin) -> None:
    weekly = TreatmentPlan(name="weekly", actions=(Action(treatment="D1", dose=1000, every=7, times=3),))
    run = prepare(treated_twin, [NONE, weekly], 30)
    spec = treated_twin.model.spec
    j = spec.vocab.treatment("D1")
    col = run.doses[0, 1, :, j].numpy()
    expect = np.zeros(31, np.float32)
    expect[[0, 7, 14]] = 1000 / spec.norms.dose_scale["D1"]
    np.testing.assert_allclose(col, expect)


def test_bad_requests_are_plan_errors(treated_twin) -> None:
    with pytest.raises(PlanError, match="unique"):
        simulate(treated_twin, [CONT, CONT], 30)
    with pytest.raises(PlanError, match="horizon"):
        simulate(treated_twin, [CONT], 0)
    with pytest.raises(PlanError, match="reference plan"):
        simulate(treated_twin, [CONT], 30, reference="nope")
    with pytest.raises(PlanError, match="unknown treatment"):
        simulate(treated_twin, [TreatmentPlan(name="x", actions=(Action(treatment="snake oil", dose=1),))], 30)


def test_prepare_builds_one_dose_tensor_for_all_pairs(toy_twins) -> None:
    run = prepare(toy_twins, [CONT, NONE, HIGH], 100)
    assert tuple(run.doses.shape[:3]) == (len(toy_twins), 3, 101)
    assert torch.all(run.doses[:, 1] == 0)
    spec = toy_twins[0].model.spec
    j = spec.vocab.treatment("D1")
    np.testing.assert_allclose(run.doses[:, 2, :, j].numpy(), 2000 / spec.norms.dose_scale["D1"])


def _with_members(tw, k: int):  # noqa: ANN001, ANN202
    """The twin with a ``k``-member ensemble built from its own members (cycled)."""
    import dataclasses

    from twin.model.checkpoint import TwinEnsemble

    ens = tw.model
    members = [ens.members[i % len(ens.members)] for i in range(k)]
    return dataclasses.replace(tw, model=TwinEnsemble(members, ens.spec, ens.image_encoder, ens.model_config))


@pytest.mark.parametrize("n_samples", [1, 2])
def test_fewer_samples_than_members(treated_twin, n_samples: int) -> None:
    """Members beyond the sample count solve nothing (this used to raise from torch.arange)."""
    three = _with_members(treated_twin, 3)
    res = simulate(three, [CONT, NONE], 90, n_samples=n_samples, seed=2)
    assert res.lab_samples.shape[0] == n_samples
    # sample s comes from member s mod M: the first two samples use the same members as with 2
    two = simulate(treated_twin, [CONT, NONE], 90, n_samples=n_samples, seed=2)
    np.testing.assert_allclose(res.lab_samples, two.lab_samples, rtol=1e-6, atol=1e-6)


def test_chunked_solves_give_the_same_numbers_and_checkpoints(toy_twins, monkeypatch) -> None:
    sim = importlib.import_module("scenarios.simulate")  # the package exports a function of that name

    whole = simulate(toy_twins[:2], [CONT, HIGH, NONE], 200, n_samples=6, seed=4)
    monkeypatch.setattr(sim, "CHUNK_STATE_ELEMENTS", 1)  # one twin and one sample of each member per solve
    seen: list[float] = []
    chunked = simulate(toy_twins[:2], [CONT, HIGH, NONE], 200, n_samples=6, seed=4,
                       on_progress=lambda f, m: seen.append(f))
    np.testing.assert_allclose(chunked.lab_samples, whole.lab_samples, rtol=1e-5, atol=1e-5)
    members = len(toy_twins[0].model.members)
    assert len(seen) == 2 * math.ceil(6 / members) + 1 and seen == sorted(seen) and seen[-1] == 1.0


class _Stop(Exception):
    pass


def _stop_at(n: int) -> tuple[list[float], Callable[[float, str], None]]:
    """A progress callback that raises :class:`_Stop` at its ``n``-th call, and its calls."""
    calls: list[float] = []

    def progress(frac: float, message: str) -> None:
        calls.append(frac)
        if len(calls) == n:
            raise _Stop

    return calls, progress


def test_workers_solve_chunks_at_once_with_the_same_numbers(toy_twins, monkeypatch) -> None:
    sim = importlib.import_module("scenarios.simulate")
    plans = [CONT, HIGH, NONE]
    one = simulate(toy_twins[:5], plans, 120, n_samples=6, seed=2, sample_days=(60,))
    monkeypatch.setattr(sim, "CHUNK_STATE_ELEMENTS", 1)  # many chunks, so the two workers overlap
    seen: list[float] = []
    two = simulate(toy_twins[:5], plans, 120, n_samples=6, seed=2, sample_days=(60,), workers=2,
                   on_progress=lambda f, m: seen.append(f))
    np.testing.assert_allclose(two.lab_samples, one.lab_samples, rtol=1e-5, atol=1e-5)
    assert one.bands is not None and two.bands is not None
    for k in one.bands:
        np.testing.assert_allclose(two.bands[k], one.bands[k], rtol=1e-5, atol=1e-5)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 5
    calls, stop_at_third = _stop_at(3)
    with pytest.raises(_Stop):
        simulate(toy_twins[:5], plans, 120, n_samples=6, seed=2, workers=2, on_progress=stop_at_third)
    assert len(calls) == 3  # stopped: no checkpoint is passed after the one that raised
    with pytest.raises(PlanError, match="workers must be >= 1"):
        simulate(toy_twins[:1], plans, 60, workers=0)


def test_a_raising_progress_callback_stops_the_run(toy_twins, monkeypatch) -> None:
    sim = importlib.import_module("scenarios.simulate")  # the package exports a function of that name
    calls, stop_at_third = _stop_at(3)
    monkeypatch.setattr(sim, "CHUNK_STATE_ELEMENTS", 1)
    with pytest.raises(_Stop):
        simulate(toy_twins[:1], [CONT], 60, n_samples=8, seed=0, on_progress=stop_at_third)
    assert len(calls) == 3


def test_forecast_reports_progress_and_can_be_stopped(treated_twin) -> None:
    seen: list[tuple[float, str]] = []
    treated_twin.forecast(horizon_days=60, n_samples=2, on_progress=lambda f, m: seen.append((f, m)))
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and any("member" in m for _, m in seen)

    def stop(frac: float, message: str) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        treated_twin.forecast(horizon_days=60, n_samples=2, on_progress=stop)


def test_a_summarised_run_keeps_samples_on_its_days_and_bands_of_every_day(toy_twins, monkeypatch) -> None:
    """sample_days: the samples kept equal the full run's on those days; the bands and the
    threshold crossings are those of the full samples; more samples cost no more kept days."""
    from scenarios import rank

    sim = importlib.import_module("scenarios.simulate")
    th = Threshold("T1", ">", 12.0)
    full = simulate(toy_twins[:3], [CONT, HIGH, NONE], 200, n_samples=12, seed=7, thresholds=[th])
    monkeypatch.setattr(sim, "CHUNK_STATE_ELEMENTS", 1)  # one twin per chunk: the bands are built piecewise
    part = simulate(toy_twins[:3], [CONT, HIGH, NONE], 200, n_samples=12, seed=7, thresholds=[th],
                    sample_days=(90, 180))
    assert part.summarised and not full.summarised
    np.testing.assert_array_equal(part.times, full.times)
    np.testing.assert_array_equal(part.sample_times, [90.0, 180.0, 200.0])  # the horizon is always kept
    for day in (90, 180, 200):
        np.testing.assert_allclose(part.lab_at("T1", day, 1), full.lab_at("T1", day, 1), rtol=1e-5, atol=1e-5)
    for plan in full.plans:
        a, b = part.trajectory(plan, "T2", 2), full.trajectory(plan, "T2", 2)
        for k in ("median", "lo", "hi"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(part.crossing_days(th, 0), full.crossing_days(th, 0))
    got, want = _leaves(part.summary(0, (90.0, 180.0))), _leaves(full.summary(0, (90.0, 180.0)))
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == (pytest.approx(v, rel=1e-4, abs=1e-5) if isinstance(v, float) else v), k
    assert rank(part, "minimise T1 at 180d", 1).order() == rank(full, "minimise T1 at 180d", 1).order()
    with pytest.raises(PlanError, match="kept on days 90, 180, 200 only, not day 30"):
        part.lab_at("T1", 30, 0)
    with pytest.raises(PlanError, match="needs every sample on every query day"):
        rank(part, "minimise T1 at 180d subject to T2 < 100", 0)
    bigger = simulate(toy_twins[:3], [CONT, HIGH, NONE], 200, n_samples=48, seed=7, sample_days=(90, 180))
    assert bigger.lab_samples.shape[1:] == part.lab_samples.shape[1:]
    assert bigger.bands is not None and part.bands is not None
    assert all(bigger.bands[k].shape == part.bands[k].shape for k in part.bands)


def _leaves(doc: object, path: str = "") -> dict[str, object]:
    """Every leaf of a JSON-like document by its path (numbers compare with a tolerance)."""
    if isinstance(doc, dict):
        return {k: v for key, val in doc.items() for k, v in _leaves(val, f"{path}/{key}").items()}
    if isinstance(doc, list):
        return {k: v for i, val in enumerate(doc) for k, v in _leaves(val, f"{path}/{i}").items()}
    return {path: doc}


def test_samples_with_noise_are_scaled_by_the_interval_calibration_and_record_the_members(treated_twin) -> None:
    from twin.calibration import IntervalCalibration

    ens = treated_twin.model
    labs = ens.spec.vocab.target_labs
    kw = dict(n_samples=9, seed=3, query_days=[0.0, 30.0, 90.0])
    assert ens.interval_calibration is None
    plain = simulate(treated_twin, [NONE, CONT], 90, **kw)
    assert plain.members == len(ens.members) == 2
    try:
        ens.interval_calibration = IntervalCalibration((0.0, 90.0), {c: (2.0, 4.0) for c in labs})
        scaled = simulate(treated_twin, [NONE, CONT], 90, **kw)
        quiet = simulate(treated_twin, [NONE, CONT], 90, observation_noise=False, **kw)
    finally:
        ens.interval_calibration = None
    # every sample's distance from its plan's median (the 5th of 9) on the model's scale, times
    # 2, 2 2/3 and 4 on days 0, 30 and 90 (linear between the nodes 0 and 90)
    kinds = [ens.spec.norms.transforms.get(c, "identity") for c in labs]

    def model_scale(x: np.ndarray) -> np.ndarray:
        return np.stack([forward_transform(t, x[..., j]) for j, t in enumerate(kinds)], axis=-1)

    a, b = model_scale(plain.lab_samples), model_scale(scaled.lab_samples)
    k = np.array([2.0, 8.0 / 3.0, 4.0])[None, None, None, :, None]
    centre = np.median(a, axis=0, keepdims=True)
    np.testing.assert_allclose(b - centre, k * (a - centre), rtol=1e-4, atol=1e-3)
    # without observation noise the samples are the trajectories' own, not an observation's band
    np.testing.assert_allclose(quiet.lab_samples, simulate(treated_twin, [NONE, CONT], 90, observation_noise=False,
                                                           **kw).lab_samples)

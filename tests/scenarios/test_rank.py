"""Ranking on constructed results with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import PlanError
from scenarios.rank import Objective, rank
from scenarios.result import ScenarioResult

TIMES = np.array([0.0, 90.0, 180.0, 365.0])


def make_result(a1c_180: dict[str, np.ndarray], egfr_min: dict[str, float] | None = None,
                risk: dict[str, np.ndarray] | None = None) -> ScenarioResult:
    """Two labs (HbA1c 4548-4, eGFR 33914-3); HbA1c samples on day 180 as given per plan."""
    plans = list(a1c_180)
    s = len(next(iter(a1c_180.values())))
    x = np.zeros((s, 1, len(plans), len(TIMES), 2), np.float32)
    for p, name in enumerate(plans):
        x[:, 0, p, :, 0] = 8.0
        x[:, 0, p, 2, 0] = a1c_180[name]
        x[:, 0, p, :, 1] = 60.0
        if egfr_min and name in egfr_min:
            x[:, 0, p, 1, 1] = egfr_min[name]
    r = None
    if risk:
        r = np.zeros((s, 1, len(plans), len(TIMES), 1), np.float32)
        for p, name in enumerate(plans):
            r[:, 0, p, :, 0] = np.outer(risk[name], TIMES / 365.0).astype(np.float32)
    return ScenarioResult(["p1"], plans, plans[0], TIMES, ["4548-4", "33914-3"], x,
                          events=["hospitalisation"] if risk else [], risk_samples=r,
                          lab_names={"4548-4": "Hemoglobin A1c", "33914-3": "eGFR"})


def test_objective_parsing() -> None:
    o = Objective.parse("minimise HbA1c at 180d subject to eGFR > 45 and potassium < 5.5")
    assert (o.target, o.day, o.sense) == ("HbA1c", 180.0, "min")
    assert [str(c) for c in o.constraints] == ["eGFR > 45", "potassium < 5.5"]
    assert Objective.parse("min risk:hospitalisation at 1y").day == pytest.approx(365.25)
    assert Objective.parse("maximize eGFR by 6 months").sense == "max"
    for bad in ("make it better", "minimise HbA1c at 180d subject to eGFR ~ 4"):
        with pytest.raises(PlanError):
            Objective.parse(bad)


def test_clear_winner_is_ranked_first_and_sure() -> None:
    rng = np.random.default_rng(0)
    res = make_result({"a": 8 + 0.05 * rng.standard_normal(200), "b": 7 + 0.05 * rng.standard_normal(200),
                       "c": 7.5 + 0.05 * rng.standard_normal(200)})
    r = rank(res, "minimise HbA1c at 180d")
    assert r.order() == ["b", "c", "a"]
    assert r.p_top_is_best == pytest.approx(1.0)
    assert r.top.median == pytest.approx(7.0, abs=0.02)
    assert rank(res, "maximise HbA1c at 180d").order() == ["a", "c", "b"]


def test_overlapping_plans_share_the_probability_of_being_best() -> None:
    rng = np.random.default_rng(1)
    shared = rng.standard_normal(4000)
    res = make_result({"a": 7.0 + shared + 0.3 * rng.standard_normal(4000),
                       "b": 7.05 + shared + 0.3 * rng.standard_normal(4000)})
    r = rank(res, Objective("HbA1c", 180))
    assert r.order() == ["a", "b"]
    assert 0.5 < r.p_top_is_best < 0.6  # Phi(0.05 / (0.3·sqrt 2)) ≈ 0.547: paired, noise not shared
    assert sum(e.p_best for e in r.entries) == pytest.approx(1.0)


def test_constraint_demotes_the_plan_that_breaks_it() -> None:
    n = 100
    res = make_result({"a": np.full(n, 7.5), "b": np.full(n, 6.5)},
                      egfr_min={"b": 40.0})
    r = rank(res, "minimise HbA1c at 180d subject to eGFR > 45")
    assert r.order() == ["a", "b"]
    assert r.entries[1].p_feasible == 0.0 and r.p_top_is_best == 1.0
    # the constraint only applies up to the objective day: a violation after it is not counted
    res2 = make_result({"a": np.full(n, 7.5), "b": np.full(n, 6.5)})
    res2.lab_samples[:, 0, 1, 3, 1] = 30.0
    assert rank(res2, "minimise HbA1c at 180d subject to eGFR > 45").order() == ["b", "a"]


def test_risk_objective_and_unknown_names() -> None:
    res = make_result({"a": np.full(10, 7.0), "b": np.full(10, 7.0)},
                      risk={"a": np.linspace(0.2, 0.3, 10), "b": np.linspace(0.05, 0.1, 10)})
    r = rank(res, "minimise risk:hospitalization at 365d")
    assert r.order() == ["b", "a"] and r.top.median < 0.1
    with pytest.raises(PlanError, match="not forecast"):
        rank(res, "minimise LDL at 180d")
    with pytest.raises(PlanError, match="not modelled"):
        rank(res, "minimise risk:death at 180d")
    with pytest.raises(PlanError, match="outside the simulated horizon"):
        rank(res, "minimise HbA1c at 400d")


def test_time_to_threshold_and_paired_differences_have_known_answers() -> None:
    from scenarios.result import Threshold

    s = 10
    res = make_result({"a": np.full(s, 7.0), "b": np.full(s, 7.0)})
    # eGFR falls below 45 on day 90 in half the samples of plan b, never under plan a
    res.lab_samples[: s // 2, 0, 1, 1:, 1] = 40.0
    res.lab_samples[:, 0, 1, 2, 0] = 7.0 + np.arange(s) * 0.1  # HbA1c of b at day 180: 7.0 .. 7.9
    res.thresholds = [Threshold("eGFR", "<", 45)]
    days = res.crossing_days(res.thresholds[0])
    assert np.isinf(days[:, 0]).all() and (days[: s // 2, 1] == 90).all() and np.isinf(days[s // 2:, 1]).all()
    rows = res.summary(days=(180.0,))
    th = rows[1]["thresholds"]["eGFR < 45"]
    assert th["p_within_horizon"] == 0.5 and th["lo_days"] == 90 and th["hi_days"] is None
    assert rows[0]["thresholds"]["eGFR < 45"] == {"p_within_horizon": 0.0, "median_days": None,
                                                   "lo_days": None, "hi_days": None}
    med, lo, hi = res.difference("b", "HbA1c", 180)
    assert med == pytest.approx(0.45) and lo == pytest.approx(0.045) and hi == pytest.approx(0.855)


def test_ranking_reports_the_paired_difference_from_the_reference_plan() -> None:
    # a shared per-sample level (wide) plus plan offsets: the paired difference is exact and
    # narrow, although each plan's own interval is wide
    rng = np.random.default_rng(3)
    level = 7.5 + rng.standard_normal(400)
    res = make_result({"ref": level, "better": level - 0.8, "worse": level + 0.3})
    r = rank(res, "minimise HbA1c at 180d")
    by = {e.plan: e for e in r.entries}
    assert r.order() == ["better", "ref", "worse"]
    assert all(e.reference == "ref" for e in r.entries)
    assert (by["ref"].diff_median, by["ref"].diff_lo, by["ref"].diff_hi) == (0.0, 0.0, 0.0)
    for plan, delta in (("better", -0.8), ("worse", 0.3)):
        e = by[plan]
        assert (e.diff_median, e.diff_lo, e.diff_hi) == pytest.approx((delta, delta, delta), abs=1e-5)
        assert e.hi - e.lo > 3.0  # each plan alone is uncertain, the difference is not
    # a maximised target reports the difference in the target's own direction too
    up = {e.plan: e for e in rank(res, "maximise HbA1c at 180d").entries}
    assert up["better"].diff_median == pytest.approx(-0.8, abs=1e-5)
    assert r.to_dict()["plans"][0]["diff_median"] == pytest.approx(-0.8, abs=1e-5)


def test_outcome_draws_redraw_the_members_disagreement_with_its_covariance_times_one_plus_one_over_m() -> None:
    from scenarios.rank import outcome_draws

    # 3 members, 30 samples; plan a - plan b is the member's effect, the level is shared (paired)
    effect = np.array([-0.1, 0.05, 0.08])
    level = 7.0 + np.random.default_rng(0).standard_normal(30)
    score = np.stack([level + effect[np.arange(30) % 3], level], axis=1)
    draws, rows = outcome_draws(score, 3, n_draws=60_000, seed=1)
    d = draws[:, 0] - draws[:, 1]
    assert rows.shape == (60_000,) and (rows == np.arange(60_000) % 30).all()
    assert d.mean() == pytest.approx(effect.mean(), abs=2e-3)
    assert d.var() == pytest.approx((1 + 1 / 3) * effect.var(ddof=1), rel=0.03)  # 0.00960
    # the within-member part is kept sample by sample: the shared level cancels in the difference
    assert np.allclose(draws[:, 1] - level[rows], draws[0, 1] - level[rows[0]] + (draws[:, 1] - draws[0, 1])
                       - (level[rows] - level[rows[0]]))
    # one member: nothing to redraw, the draws are the samples
    same, r1 = outcome_draws(score, 1)
    assert np.array_equal(same, score) and np.array_equal(r1, np.arange(30))


def _members_result(delta: float, member_effects: list[float], s: int = 300) -> ScenarioResult:
    """Plan 'a' = plan 'b' + delta + member k's own effect error (sample s from member s mod M)."""
    m = len(member_effects)
    level = 7.5 + 0.4 * np.random.default_rng(5).standard_normal(s)
    res = make_result({"b": level, "a": level + delta + np.asarray(member_effects)[np.arange(s) % m]})
    res.members = m
    return res


def test_a_near_tie_is_reported_as_a_tie_and_a_clear_win_is_not() -> None:
    # the case: the medians differ by 0.005 %, the members disagree about the effect by ~0.02
    r = rank(_members_result(-0.005, [-0.02, 0.01, 0.025]), "minimise HbA1c at 180d")
    assert r.order() == ["a", "b"] or r.order() == ["b", "a"]
    assert r.tied == r.order() and r.entries[1].tied_with_top
    assert r.entries[1].advantage_lo < 0 < r.entries[1].advantage_hi
    assert 0.3 < r.p_top_is_best < 0.75 and r.p_tied_best == pytest.approx(1.0)
    assert r.to_dict()["tied"] == r.order() and "tie between" in r.verdict
    # the same members' disagreement against a large effect: a clear, sure win
    w = rank(_members_result(-0.5, [-0.02, 0.01, 0.025]), "minimise HbA1c at 180d")
    assert w.order() == ["a", "b"] and w.tied == ["a"] and not w.entries[1].tied_with_top
    assert w.p_top_is_best == pytest.approx(1.0) and w.entries[1].advantage_lo > 0.4
    assert w.verdict == "top plan a: P(truly best) 100%"
    # members unknown: p_best is the share of samples won (a wins in member 0's third only)
    one = _members_result(-0.005, [-0.02, 0.01, 0.025])
    one.members = 1
    assert {e.plan: e.p_best for e in rank(one, "minimise HbA1c at 180d").entries} == pytest.approx({"a": 1 / 3, "b": 2 / 3})
    # members that agree exactly leave nothing to redraw: a consistent small difference stays sure
    agree = rank(_members_result(-0.005, [0.0, 0.0, 0.0]), "minimise HbA1c at 180d")
    assert agree.p_top_is_best == pytest.approx(1.0) and agree.tied == ["a"]


def test_plans_equal_in_every_sample_share_p_best_and_are_tied() -> None:
    level = 7.0 + np.random.default_rng(2).standard_normal(50)
    r = rank(make_result({"a": level, "b": level.copy(), "c": level + 1.0}), "minimise HbA1c at 180d")
    by = {e.plan: e for e in r.entries}
    assert by["a"].p_best == pytest.approx(0.5) and by["b"].p_best == pytest.approx(0.5) and by["c"].p_best == 0.0
    assert sorted(r.tied) == ["a", "b"] and not by["c"].tied_with_top


def test_p_best_of_splits_ties_and_skips_infeasible_draws() -> None:
    from scenarios.rank import p_best_of

    draws = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 1.0], [1.0, 1.0, 1.0], [5.0, 0.0, 9.0]])
    feasible = np.array([[True] * 3, [True] * 3, [True] * 3, [True, False, True]])
    # row 1: a; row 2: c; row 3: a, b, c a third each; row 4: b infeasible, a wins
    assert p_best_of(draws, feasible) == pytest.approx([(1 + 1 / 3 + 1) / 4, (1 / 3) / 4, (1 + 1 / 3) / 4])
    assert p_best_of(draws, np.zeros_like(feasible)).sum() == 0.0


def test_plans_equal_to_float32_precision_are_one_level_and_share_p_best() -> None:
    """Two plans with the same doses solved in different chunks differ in the last bits: that
    decides neither their order (the plans' own order does) nor p(best) (they share it)."""
    rng = np.random.default_rng(3)
    x = (7.3 + 0.4 * rng.standard_normal(64)).astype(np.float32)
    noisy = np.nextafter(x, np.float32(0.0))  # one float32 step lower everywhere
    res = make_result({"first": x.astype(np.float64), "same doses": noisy.astype(np.float64),
                       "worse": x.astype(np.float64) + 0.5})
    r = rank(res, "minimise HbA1c at 180d")
    assert r.order() == ["first", "same doses", "worse"]
    assert r.entries[0].p_best == pytest.approx(r.entries[1].p_best)

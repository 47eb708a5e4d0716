"""The hidden physiology of the synthetic cohort: directions, lags, interactions (via the oracle)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from synthetic import LABS, Action, Plan, SynthConfig, generate_cohort, load_truth, simulate
from synthetic.genotype import VARIANTS, variant_index
from synthetic.images import kidney_features, render_kidney
from synthetic.physiology import RANDOM_EFFECT_SD, creatinine_from_egfr, egfr_from_creatinine, sample_params
from synthetic.truth import PatientTruth

HBA1C, EGFR, SBP, LDL, K = (LABS[k].code for k in ("hba1c", "egfr", "sbp", "ldl", "potassium"))
METFORMIN, EMPAGLIFLOZIN, LISINOPRIL, AMLODIPINE, ATORVASTATIN = "860975", "1545658", "314076", "197361", "617312"


@pytest.fixture(scope="module")
def truths(tmp_path_factory: pytest.TempPathFactory) -> list[PatientTruth]:
    out = tmp_path_factory.mktemp("physio")
    generate_cohort(SynthConfig(patients=60, seed=11, years=1.0), out)
    return [load_truth(p) for p in sorted((out / "truth").glob("*.json"))]


def _effect(truths: list[PatientTruth], drug: str, dose: float, code: str, horizon: int = 365) -> np.ndarray:
    """Mean (over patients) of drug-minus-untreated for ``code`` on days 0..horizon."""
    base = simulate(truths, Plan.untreated(), horizon)
    on = simulate(truths, Plan((Action(drug, dose),), continue_factual=False), horizon)
    return (on.labs[code] - base.labs[code]).mean(axis=0)


def _t50(effect: np.ndarray, ref_day: int = 180) -> int:
    """First day the mean effect reaches half of its value at ``ref_day``."""
    return int(np.argmax(np.abs(effect) >= 0.5 * abs(effect[ref_day])))


def test_untreated_progression_moves_in_documented_direction(truths: list[PatientTruth]) -> None:
    res = simulate(truths, Plan.untreated(), 3 * 365)
    first, last = (lambda c: res.labs[c][:, 0]), (lambda c: res.labs[c][:, -1])
    assert np.all(last(EGFR) < first(EGFR))  # kidney function only declines
    assert np.mean(last(HBA1C) > first(HBA1C)) > 0.9  # glycaemia drifts up (OU noise aside)
    assert np.mean(last(HBA1C) - first(HBA1C)) > 0.3
    assert np.mean(last(SBP) - first(SBP)) > 0.0
    assert np.mean(last(LDL) - first(LDL)) > 0.0
    # creatinine is the CKD-EPI inverse of eGFR (which also falls with age alone), so it mostly rises
    assert np.mean(last(LABS["creatinine"].code) > first(LABS["creatinine"].code)) > 0.7


def test_glucose_and_bp_accelerate_egfr_decline(truths: list[PatientTruth]) -> None:
    t = truths[0]
    worse = replace(t, params={**t.params, "a0": t.params["a0"] + 2.0, "s0": t.params["s0"] + 25.0})
    res = simulate([t, worse], Plan.untreated(), 2 * 365)
    drop = res.labs[EGFR][:, 0] - res.labs[EGFR][:, -1]
    assert drop[1] > drop[0] + 1.0


@pytest.mark.parametrize(
    ("drug", "dose", "code", "sign", "t50_range"),
    [
        (METFORMIN, 1000.0, HBA1C, -1, (20, 50)),
        (EMPAGLIFLOZIN, 10.0, HBA1C, -1, (15, 45)),
        (LISINOPRIL, 20.0, SBP, -1, (5, 15)),
        (AMLODIPINE, 10.0, SBP, -1, (12, 30)),
        (ATORVASTATIN, 40.0, LDL, -1, (8, 25)),
        (LISINOPRIL, 20.0, K, +1, (0, 7)),  # adverse effect: potassium up
    ],
)
def test_drug_moves_target_with_documented_direction_and_lag(
    truths: list[PatientTruth], drug: str, dose: float, code: str, sign: int, t50_range: tuple[int, int]
) -> None:
    eff = _effect(truths, drug, dose, code)
    assert eff[0] == 0.0  # a dose on day 0 acts from day 1 (exposure) ...
    if code != K:
        assert eff[1] == 0.0  # ... and moves a marker state from day 2
    assert sign * eff[180] > 0
    lo, hi = t50_range
    assert lo <= _t50(eff) <= hi


def test_empagliflozin_transient_egfr_dip_then_protection(truths: list[PatientTruth]) -> None:
    eff = _effect(truths, EMPAGLIFLOZIN, 10.0, EGFR, horizon=3 * 365)
    assert eff[30] < -2.0  # acute haemodynamic dip: the adverse effect
    assert eff[365] > eff[30] + 1.0  # it partly reverses
    assert eff[3 * 365] > eff[365]  # and slower structural decline catches up


def test_dose_response_is_monotone(truths: list[PatientTruth]) -> None:
    effects = [_effect(truths, ATORVASTATIN, d, LDL, horizon=120)[120] for d in (10.0, 20.0, 40.0, 80.0)]
    assert all(a > b for a, b in zip(effects, effects[1:], strict=False))


def _genotype_pair(variant: str) -> tuple[PatientTruth, PatientTruth]:
    """Two patients identical except for two alleles of ``variant``."""
    g = np.zeros((1, len(VARIANTS)), dtype=np.int8)
    g2 = g.copy()
    g2[0, variant_index(variant)] = 2
    rows = [sample_params(np.random.default_rng(5), gg).row(0) for gg in (g, g2)]
    return tuple(PatientTruth(patient_id=f"p{i}", noise_seed=1, params=r, treatments=[], follow_up_days=1)
                 for i, r in enumerate(rows))  # type: ignore[return-value]


def test_gene_drug_interactions_visible() -> None:
    wild, carrier = _genotype_pair("SLC22A1")
    untreated = simulate([wild, carrier], Plan.untreated(), 180).labs[HBA1C][:, -1]
    assert untreated[0] == untreated[1]  # the variant alone does not move HbA1c
    met = simulate([wild, carrier], Plan((Action(METFORMIN, 2000.0),), False), 180).labs[HBA1C][:, -1]
    drop = untreated - met
    assert drop[1] < 0.5 * drop[0]  # reduced-function OCT1: much weaker metformin response

    wild, carrier = _genotype_pair("SLCO1B1")
    untreated = simulate([wild, carrier], Plan.untreated(), 120).labs[LDL][:, -1]
    ato = simulate([wild, carrier], Plan((Action(ATORVASTATIN, 10.0),), False), 120).labs[LDL][:, -1]
    drop = (untreated - ato) / untreated
    assert drop[1] > drop[0] + 0.05  # higher statin exposure: larger LDL reduction


def test_ckd_epi_round_trip() -> None:
    egfr = np.array([8.0, 25.0, 60.0, 95.0, 130.0])
    for female in (0.0, 1.0):
        scr = creatinine_from_egfr(egfr, np.full(5, 63.0), np.full(5, female))
        np.testing.assert_allclose(egfr_from_creatinine(scr, np.full(5, 63.0), np.full(5, female)), egfr, rtol=1e-10)


def test_image_content_follows_kidney_state() -> None:
    rng = np.random.default_rng(0)
    healthy, sick = render_kidney(110.0, 5.5, 1.0, rng), render_kidney(25.0, 8.0, 1.0, rng)
    assert healthy.shape == (32, 32) and healthy.dtype == np.float32
    area = lambda img: int((img > 0.3).sum())  # noqa: E731
    assert area(healthy) > area(sick)
    assert kidney_features(25.0, 8.0)["lesion_radius"] > kidney_features(110.0, 5.5)["lesion_radius"]
    assert kidney_features(25.0, 8.0)["brightness"] > kidney_features(110.0, 5.5)["brightness"]


def test_truth_file_holds_params_and_trajectories(truths: list[PatientTruth]) -> None:
    t = truths[0]
    assert set(t.params) >= {"a0", "s0", "l0", "f0", "exposure", "response"}
    assert set(t.trajectories) >= {"days", HBA1C, EGFR, SBP, LDL, "hazard_death"}


def test_random_effect_sds_describe_the_generator() -> None:
    """RANDOM_EFFECT_SD (the prior of bench/fidelity's records bound) is the spread of each
    parameter around what age and genotype predict (no variant alleles here)."""
    p = sample_params(np.random.default_rng(3), np.zeros((40_000, len(VARIANTS)), dtype=np.int64))
    resid = {"a0": p.a0 - 0.01 * (p.age0 - 60.0), "s0": p.s0 - 0.45 * (p.age0 - 60.0),
             "f0": p.f0 + 0.9 * (p.age0 - 40.0),
             "r_a": p.r_a, "r_s": p.r_s, "l0": p.l0, "r_l": p.r_l, "d0": p.d0, "beta_g": p.beta_g, "beta_s": p.beta_s,
             "k0": p.k0, "dbp_off": p.dbp_off}
    assert set(resid) == set(RANDOM_EFFECT_SD)
    for k, v in resid.items():
        expected = 0.9 if k == "r_a" else 1.0  # r_a's floor at 0.03/year trims its lower tail
        assert abs(float(np.std(v)) / RANDOM_EFFECT_SD[k] - expected) < 0.03, (k, float(np.std(v)), RANDOM_EFFECT_SD[k])

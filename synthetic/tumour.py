"""The Geng et al. (2017) PK-PD lung-cancer simulator, as used by RMSN, CRN and the Causal Transformer.

Written from ``shared/benchmarks/tumour.md`` §2 (our own words of the published model), not
from those repositories. One step is one day. Per patient ``i`` and step ``t``:

    C_t     = C_{t-1} * exp(-ln 2 / 1) + 5.0 * chemo_t                    (C_{-1} = 0)
    d_t     = 2.0 Gy * radio_t
    V_{t+1} = V_t * (1 + rho ln(K / V_t) - beta_c C_t - (alpha d_t + beta d_t^2) + eps_t)

so the action taken on day ``t`` acts on ``V_{t+1}`` (``eps[:, t]`` is the noise of that
transition). ``V_{t+1} > V_MAX`` is death (clipped to ``V_MAX``); recovery happens with
probability ``exp(-V_{t+1} * 5.8e8)`` (certain when ``V_{t+1} <= 0``), setting ``V_{t+1} = 0``.
Either ends the sequence. Treatment assignment (§2.4) uses the CRN/TE-CDE window: the mean
diameter of ``V_{t-window..t}``, the current day included.

Every random draw (noise, assignment and recovery uniforms) is made up front for all
``[N, t_max]`` cells, so counterfactual roll-outs reuse exactly the factual noise (§2.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ACTIONS",
    "K_CAPACITY",
    "SLIDING_PLANS",
    "STAGES",
    "V_MAX",
    "OneStepSet",
    "SlidingSet",
    "TumourCohort",
    "diameter",
    "normalised_rmse",
    "one_step_counterfactuals",
    "simulate_cohort",
    "sliding_treatment_counterfactuals",
    "sphere_volume",
]

#: Action ids of the one-step set: ``id = chemo + 2 * radio``.
ACTIONS = ("none", "chemo", "radio", "both")
D_MAX = 13.0  # cm: the death diameter, also the scale of the assignment sigmoid
NOISE_SD = 0.01
CHEMO_DOSE = 5.0  # concentration units added by one dose
RADIO_DOSE = 2.0  # Gy per fraction
DRUG_HALF_LIFE = 1.0  # steps
DECAY = float(np.exp(-np.log(2.0) / DRUG_HALF_LIFE))
CELL_DENSITY = 5.8e8  # cells per cm3
#: Initial stages: (name, observation count, mu, sigma, lower and upper bound of D0 in cm).
STAGES = (
    ("I", 1432, 1.72, 4.70, 0.3, 5.0),
    ("II", 128, 1.96, 1.63, 0.3, 13.0),
    ("IIIA", 1306, 1.91, 9.40, 0.3, 13.0),
    ("IIIB", 7248, 2.76, 6.87, 0.3, 13.0),
    ("IV", 12840, 3.86, 8.82, 0.3, 13.0),
)
ALPHA_RHO_MEAN = (0.0398, 7e-5)
ALPHA_RHO_SD = (0.168, 7.23e-3)
ALPHA_RHO_CORR = 0.87
ALPHA_BETA_RATIO = 10.0
BETA_C_MEAN, BETA_C_SD = 0.028, 0.0007


def sphere_volume(d: np.ndarray | float) -> np.ndarray:
    """Volume (cm3) of a sphere of diameter ``d`` (cm)."""
    return np.pi / 6.0 * np.asarray(d, dtype=float) ** 3


def diameter(v: np.ndarray | float) -> np.ndarray:
    """Diameter (cm) of a sphere of volume ``v`` (cm3)."""
    return np.cbrt(6.0 * np.asarray(v, dtype=float) / np.pi)


V_MAX = float(sphere_volume(D_MAX))  # 1150.35 cm3
K_CAPACITY = float(sphere_volume(30.0))  # 14137 cm3


@dataclass(frozen=True)
class TumourCohort:
    """Factual trajectories of ``N`` patients over ``T = t_max`` steps.

    ``lengths[i]`` is the number of actions patient ``i`` took: ``volumes[i, :lengths[i] + 1]``
    are defined (NaN after), ``chemo``/``radio``/``concentration`` columns ``< lengths[i]`` are
    the patient's (0, 0 and NaN after). ``died``/``recovered`` say how a sequence shorter than
    ``t_max`` ended (death also when ``V_{t_max}`` hits ``V_MAX``).
    """

    seed: int
    gamma: float
    window: int
    volumes: np.ndarray  # [N, T+1] cm3
    chemo: np.ndarray  # [N, T] int8, dose given on day t
    radio: np.ndarray  # [N, T] int8, fraction given on day t
    concentration: np.ndarray  # [N, T] C_t, after day t's dose
    lengths: np.ndarray  # [N] int
    died: np.ndarray  # [N] bool
    recovered: np.ndarray  # [N] bool
    rho: np.ndarray  # [N]
    alpha: np.ndarray  # [N]
    beta: np.ndarray  # [N]
    beta_c: np.ndarray  # [N]
    patient_type: np.ndarray  # [N] in {1, 2, 3}
    stage: np.ndarray  # [N] stage names of STAGES
    eps: np.ndarray  # [N, T] noise of transition t -> t+1
    recovery_u: np.ndarray  # [N, T] uniform compared with the recovery probability of V_{t+1}
    K: float = K_CAPACITY

    @property
    def n_patients(self) -> int:
        return int(self.volumes.shape[0])

    @property
    def t_max(self) -> int:
        return int(self.chemo.shape[1])


def _truncated_normal(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Standard normal draws truncated to ``[lo, hi]`` elementwise (vectorised rejection)."""
    z = rng.standard_normal(lo.shape)
    bad = (z < lo) | (z > hi)
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = (z < lo) | (z > hi)
    return z


def _draw_parameters(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Stage, initial volume and dynamics parameters of ``n`` patients (§2.3), drawn i.i.d."""
    counts = np.array([s[1] for s in STAGES], dtype=float)
    stage_idx = rng.choice(len(STAGES), size=n, p=counts / counts.sum())
    mu, sigma, lb, ub = (np.array([s[k] for s in STAGES])[stage_idx] for k in range(2, 6))
    z = _truncated_normal(rng, (np.log(lb) - mu) / sigma, (np.log(ub) - mu) / sigma)
    v0 = sphere_volume(np.exp(mu + sigma * z))

    (sa, sr), c = ALPHA_RHO_SD, ALPHA_RHO_CORR
    cov = np.array([[sa * sa, c * sa * sr], [c * sa * sr, sr * sr]])
    alpha_rho = np.empty((0, 2))
    while len(alpha_rho) < n:
        draw = rng.multivariate_normal(ALPHA_RHO_MEAN, cov, size=n)
        alpha_rho = np.concatenate([alpha_rho, draw[(draw > 0).all(axis=1)]])
    alpha, rho = alpha_rho[:n, 0], alpha_rho[:n, 1]
    beta_c = BETA_C_MEAN + BETA_C_SD * _truncated_normal(rng, np.full(n, -BETA_C_MEAN / BETA_C_SD), np.full(n, np.inf))

    ptype = rng.integers(1, 4, size=n)
    alpha = alpha + 0.1 * ALPHA_RHO_MEAN[0] * (ptype == 1)  # type 1: more radio-sensitive
    beta_c = beta_c + 0.1 * BETA_C_MEAN * (ptype == 3)  # type 3: more chemo-sensitive
    return {"v0": v0, "stage": np.array([s[0] for s in STAGES])[stage_idx], "alpha": alpha, "rho": rho,
            "beta": alpha / ALPHA_BETA_RATIO, "beta_c": beta_c, "patient_type": ptype}


def _transition(v: np.ndarray, conc: np.ndarray, radio: np.ndarray, eps: np.ndarray, rho: np.ndarray,
                alpha: np.ndarray, beta: np.ndarray, beta_c: np.ndarray, k: float) -> np.ndarray:
    """Unclipped ``V_{t+1}`` from ``V_t``, ``C_t``, the radio flag of day ``t`` and ``eps_t``."""
    d = RADIO_DOSE * radio
    return v * (1.0 + rho * np.log(k / v) - beta_c * conc - (alpha * d + beta * d * d) + eps)


def _terminate(v_next: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Death clip and recovery draw: ``(V_{t+1}, died, recovered)``."""
    died = v_next > V_MAX
    recovered = ~died & (u < np.exp(-np.maximum(v_next, 0.0) * CELL_DENSITY))
    return np.where(died, V_MAX, np.where(recovered, 0.0, v_next)), died, recovered


def _assignment_probability(gamma: float, mean_diameter: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(gamma / D_MAX) * (mean_diameter - D_MAX / 2.0)))


def simulate_cohort(n_patients: int, gamma: float, seed: int, t_max: int = 60, window: int = 15) -> TumourCohort:
    """Simulate ``n_patients`` factual trajectories under confounding strength ``gamma``.

    Chemo and radio are drawn independently each day with probability
    ``sigmoid(gamma / 13 * (mean D(V_{t-window..t}) - 6.5))`` (CRN/TE-CDE window, which
    includes the current day ``t``; CT's ``lag: 0`` would stop at ``t-1``). ``gamma = 0`` is
    random 50 % assignment. The same ``seed`` gives the same cohort.
    """
    rng = np.random.default_rng(seed)
    p = _draw_parameters(rng, n_patients)
    eps = rng.normal(0.0, NOISE_SD, size=(n_patients, t_max))
    u_chemo, u_radio, u_recovery = (rng.random((n_patients, t_max)) for _ in range(3))

    volumes = np.full((n_patients, t_max + 1), np.nan)
    volumes[:, 0] = p["v0"]
    diameters = np.full_like(volumes, np.nan)
    diameters[:, 0] = diameter(p["v0"])
    chemo = np.zeros((n_patients, t_max), dtype=np.int8)
    radio = np.zeros_like(chemo)
    conc = np.full((n_patients, t_max), np.nan)
    prev_conc = np.zeros(n_patients)
    lengths = np.zeros(n_patients, dtype=int)
    died = np.zeros(n_patients, dtype=bool)
    recovered = np.zeros(n_patients, dtype=bool)
    active = np.ones(n_patients, dtype=bool)
    for t in range(t_max):
        a = np.flatnonzero(active)
        if a.size == 0:
            break
        prob = _assignment_probability(gamma, diameters[a, max(t - window, 0):t + 1].mean(axis=1))
        chemo[a, t] = u_chemo[a, t] < prob
        radio[a, t] = u_radio[a, t] < prob
        c_t = prev_conc[a] * DECAY + CHEMO_DOSE * chemo[a, t]
        conc[a, t] = prev_conc[a] = c_t
        v_next = _transition(volumes[a, t], c_t, radio[a, t], eps[a, t], p["rho"][a], p["alpha"][a], p["beta"][a],
                             p["beta_c"][a], K_CAPACITY)
        v_next, d, r = _terminate(v_next, u_recovery[a, t])
        volumes[a, t + 1] = v_next
        diameters[a, t + 1] = diameter(v_next)
        lengths[a] += 1
        died[a], recovered[a] = d, r
        active[a] = ~(d | r)
    return TumourCohort(seed=seed, gamma=gamma, window=window, volumes=volumes, chemo=chemo, radio=radio,
                        concentration=conc, lengths=lengths, died=died, recovered=recovered, rho=p["rho"],
                        alpha=p["alpha"], beta=p["beta"], beta_c=p["beta_c"], patient_type=p["patient_type"],
                        stage=p["stage"], eps=eps, recovery_u=u_recovery)


@dataclass(frozen=True)
class OneStepSet:
    """Rows ``(patient, t, action)``: the true ``V_{t+1}`` had ``ACTIONS[action]`` been given on day ``t``.

    History up to ``V_t`` and the actions of days ``< t`` are factual. Four rows per
    ``(patient, t)`` with ``t < lengths[patient]``, in that order; ``factual`` marks the row
    whose action was the one actually taken (its ``volume`` is exactly ``volumes[patient, t+1]``).
    """

    patient: np.ndarray  # [M] int
    t: np.ndarray  # [M] int
    action: np.ndarray  # [M] int, index of ACTIONS
    volume: np.ndarray  # [M] cm3
    factual: np.ndarray  # [M] bool

    @property
    def chemo(self) -> np.ndarray:
        return (self.action & 1).astype(np.int8)

    @property
    def radio(self) -> np.ndarray:
        return (self.action >> 1).astype(np.int8)


def _prev_concentration(cohort: TumourCohort, patient: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``C_{t-1}`` (0 on day 0)."""
    return np.where(t > 0, cohort.concentration[patient, np.maximum(t - 1, 0)], 0.0)


def _step(cohort: TumourCohort, patient: np.ndarray, t: np.ndarray, v: np.ndarray, prev_conc: np.ndarray,
          chemo: np.ndarray, radio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One day ``t`` for rows of ``patient`` with the factual noise: ``(V_{t+1}, C_t, ended)``."""
    conc = prev_conc * DECAY + CHEMO_DOSE * chemo
    v_next = _transition(v, conc, radio, cohort.eps[patient, t], cohort.rho[patient], cohort.alpha[patient],
                         cohort.beta[patient], cohort.beta_c[patient], cohort.K)
    v_next, died, recovered = _terminate(v_next, cohort.recovery_u[patient, t])
    return v_next, conc, died | recovered


def one_step_counterfactuals(cohort: TumourCohort) -> OneStepSet:
    """The one-step counterfactual test set (§2.5): all four actions on every factual day."""
    patient, t = np.nonzero(np.arange(cohort.t_max)[None, :] < cohort.lengths[:, None])
    patient, t = np.repeat(patient, 4), np.repeat(t, 4)
    action = np.tile(np.arange(4), len(patient) // 4)
    chemo, radio = action & 1, action >> 1
    volume, _, _ = _step(cohort, patient, t, cohort.volumes[patient, t], _prev_concentration(cohort, patient, t),
                         chemo, radio)
    factual = (chemo == cohort.chemo[patient, t]) & (radio == cohort.radio[patient, t])
    return OneStepSet(patient=patient, t=t, action=action, volume=volume, factual=factual)


def _sliding_plans(projection: int) -> np.ndarray:
    """``[2 * projection, projection, 2]``: plan ``k`` is one chemo dose at position ``k + 1``,
    plan ``projection + k`` one radio fraction there; (chemo, radio) flags per position."""
    plans = np.zeros((2 * projection, projection, 2), dtype=np.int8)
    for k in range(projection):
        plans[k, k, 0] = plans[projection + k, k, 1] = 1
    return plans


#: The ten plans of the default 5-step window (see :func:`sliding_treatment_counterfactuals`).
SLIDING_PLANS = _sliding_plans(5)


@dataclass(frozen=True)
class SlidingSet:
    """Rows ``(patient, t, plan)`` of the "single sliding treatment" τ-step test set.

    ``actions[:, 0]`` is the factual action of day ``t`` and ``actions[:, k]`` (k = 1..P) the
    plan's action on day ``t + k``; ``volume[:, k - 1]`` is the true ``V_{t+k+1}``, i.e.
    τ = k + 1 = 2..P+1 counted from the origin ``V_t``. After a counterfactual death or recovery
    (its ``V_MAX`` or 0 is kept) the later volumes are NaN.
    """

    patient: np.ndarray  # [M] int
    t: np.ndarray  # [M] int
    plan: np.ndarray  # [M] int, index into _sliding_plans(P)
    actions: np.ndarray  # [M, P+1, 2] (chemo, radio) for days t..t+P
    volume: np.ndarray  # [M, P] true V_{t+2} .. V_{t+P+1}

    @property
    def taus(self) -> np.ndarray:
        return np.arange(2, self.volume.shape[1] + 2)


def sliding_treatment_counterfactuals(cohort: TumourCohort, projection: int = 5) -> SlidingSet:
    """τ-step counterfactuals (§2.5): from each origin ``t``, the ``2 * projection`` single-dose plans.

    Origins are the days ``t`` whose factual ``V_{t+1}`` is not terminal and whose window
    fits (``t + 1 < lengths`` and ``t + projection + 1 <= t_max``). Day ``t`` keeps its factual
    action (τ = 1 is the one-step set); days ``t+1 .. t+projection`` follow the plan with
    nothing else given, rolled forward from the factual ``V_{t+1}`` and ``C_t`` with the factual
    noise of those days.
    """
    plans = _sliding_plans(projection)
    n_plans = len(plans)
    days = np.arange(cohort.t_max)[None, :]
    ok = (days + 1 < cohort.lengths[:, None]) & (days + projection + 1 <= cohort.t_max)
    patient, t = np.nonzero(ok)
    patient, t = np.repeat(patient, n_plans), np.repeat(t, n_plans)
    plan = np.tile(np.arange(n_plans), len(patient) // n_plans)
    factual = np.stack([cohort.chemo[patient, t], cohort.radio[patient, t]], axis=1)[:, None, :]
    actions = np.concatenate([factual, plans[plan]], axis=1)

    volume = np.full((len(patient), projection), np.nan)
    v, conc = cohort.volumes[patient, t + 1], cohort.concentration[patient, t]
    alive = np.ones(len(patient), dtype=bool)
    for k in range(1, projection + 1):
        v, conc, ended = _step(cohort, patient, t + k, v, conc, actions[:, k, 0], actions[:, k, 1])
        volume[alive, k - 1] = v[alive]
        alive &= ~ended
        v = np.where(alive, v, 1.0)  # a finite placeholder: rows that ended are not read again
    return SlidingSet(patient=patient, t=t, plan=plan, actions=actions, volume=volume)


def normalised_rmse(pred: np.ndarray, true: np.ndarray, steps: np.ndarray | None = None,
                    norm: float = V_MAX) -> float:
    """RMSE in cm3 as a percentage of ``norm`` (``V_MAX`` = 1150.35 cm3, CT's constant; CRN uses 1150).

    Entries whose ``true`` is NaN are masked out. With ``steps`` (the time step of each entry,
    e.g. ``OneStepSet.t``) this is CT's "orig" metric: the squared error is averaged over the
    rows of each time step, those means are averaged over the time steps, then the square root
    taken. Without ``steps`` it is the plain pooled RMSE over all entries. Our tables use
    "orig" (``steps=t``) for the one-step set and, per τ, the pooled RMSE of that column of a
    :class:`SlidingSet` (one time step per τ, so the two coincide there).
    """
    true = np.asarray(true, dtype=float)
    mask = np.isfinite(true)
    sq = (np.asarray(pred, dtype=float)[mask] - true[mask]) ** 2
    if steps is None:
        mse = float(sq.mean())
    else:
        _, group = np.unique(np.broadcast_to(steps, true.shape)[mask], return_inverse=True)
        mse = float((np.bincount(group, weights=sq) / np.bincount(group)).mean())
    return float(np.sqrt(mse) / norm * 100.0)

"""The hidden physiology: a small cardiometabolic-renal ODE model, vectorised over patients.

Four interacting chronic processes per patient (equations and ranges in ``docs/synthetic.md``):

* glycaemia ``A`` (HbA1c, %), relaxing (tau 35 d) to a set-point that drifts upwards;
* systolic blood pressure ``S`` (mmHg), relaxing (tau 10 d) to a drifting set-point that rises
  as kidney function falls;
* LDL cholesterol ``L`` (mg/dL), relaxing (tau 20 d) to a drifting set-point;
* structural kidney function ``F`` (eGFR units) declining at a rate that grows with glycaemia
  above 6 % and systolic BP above 125 mmHg (the interaction), slowed by renoprotective drugs.

Two Ornstein-Uhlenbeck disturbances (diet/adherence) perturb the glycaemic and BP
set-points; their innovations come from a per-patient seed in 365-day blocks so that any
replay (:mod:`synthetic.oracle`) sees exactly the same disturbances.

The model is integrated on a daily grid with the exact solution of each linear relaxation
over one day (exponential Euler), so generation and replay are bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from synthetic.drugs import DRUGS, EC50, HILL, K_EFFECT, K_PK
from synthetic.genotype import VARIANTS, variant_index

__all__ = [
    "LABS",
    "RANDOM_EFFECT_SD",
    "TARGET_LABS",
    "LabSpec",
    "Params",
    "State",
    "creatinine_from_egfr",
    "egfr_from_creatinine",
    "hazards",
    "initial_state",
    "innovations",
    "observe",
    "response",
    "sample_params",
    "step",
]

LOINC = "http://loinc.org"


@dataclass(frozen=True, slots=True)
class LabSpec:
    """A measured quantity: LOINC code, display, UCUM unit, decimals reported, noise model."""

    key: str
    code: str
    display: str
    unit: str
    decimals: int
    noise_sd: float
    noise_cv: float


#: Every quantity the generator measures, keyed by short name.
LABS: dict[str, LabSpec] = {
    "hba1c": LabSpec("hba1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 1, 0.12, 0.0),
    "glucose": LabSpec("glucose", "2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 0, 0.0, 0.10),
    "creatinine": LabSpec("creatinine", "38483-4", "Creatinine [Mass/volume] in Blood", "mg/dL", 2, 0.0, 0.06),
    "egfr": LabSpec("egfr", "62238-1",
                    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood "
                    "by Creatinine-based formula (CKD-EPI)", "mL/min/{1.73_m2}", 0, 0.0, 0.0),
    "ldl": LabSpec("ldl", "18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
                   "mg/dL", 0, 0.0, 0.08),
    "potassium": LabSpec("potassium", "6298-4", "Potassium [Moles/volume] in Blood", "mmol/L", 1, 0.2, 0.0),
    "sbp": LabSpec("sbp", "8480-6", "Systolic blood pressure", "mm[Hg]", 0, 8.0, 0.0),
    "dbp": LabSpec("dbp", "8462-4", "Diastolic blood pressure", "mm[Hg]", 0, 6.0, 0.0),
}
#: LOINC codes of the labs/vitals the generator measures (eGFR is computed from the measured creatinine).
TARGET_LABS: tuple[str, ...] = tuple(spec.code for spec in LABS.values())

_DAY = 1.0
_K_A = np.exp(-_DAY / 35.0)
_K_S = np.exp(-_DAY / 10.0)
_K_L = np.exp(-_DAY / 20.0)
_K_ADAPT = np.exp(-_DAY / 60.0)
_OU_TAU = 60.0
_K_OU = np.exp(-_DAY / _OU_TAU)
_OU_SCALE = np.sqrt(1.0 - _K_OU**2)
_BLOCK = 365

MET, EMP, LIS, AML, ATO = range(len(DRUGS))


@dataclass(slots=True)
class Params:
    """Per-patient hidden parameters, each an array of shape ``(n,)`` (drug factors ``(n, drugs)``)."""

    age0: np.ndarray
    female: np.ndarray
    a0: np.ndarray
    r_a: np.ndarray
    s0: np.ndarray
    r_s: np.ndarray
    l0: np.ndarray
    r_l: np.ndarray
    f0: np.ndarray
    d0: np.ndarray
    beta_g: np.ndarray
    beta_s: np.ndarray
    k0: np.ndarray
    dbp_off: np.ndarray
    sigma_a: np.ndarray
    sigma_s: np.ndarray
    exposure: np.ndarray
    response: np.ndarray

    def __len__(self) -> int:
        return int(self.age0.shape[0])

    def row(self, i: int) -> dict[str, object]:
        """Patient ``i`` as a JSON-ready dict (drug factors keyed by RxNorm code)."""
        out: dict[str, object] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("exposure", "response"):
                out[f.name] = {d.code: float(v[i, j]) for j, d in enumerate(DRUGS)}
            else:
                out[f.name] = float(v[i])
        return out

    @classmethod
    def from_rows(cls, rows: list[dict[str, object]]) -> Params:
        """Inverse of :meth:`row` for many patients (exact: floats round-trip through JSON)."""
        kw: dict[str, np.ndarray] = {}
        for f in fields(cls):
            if f.name in ("exposure", "response"):
                kw[f.name] = np.array([[float(r[f.name][d.code]) for d in DRUGS] for r in rows])  # type: ignore[index]
            else:
                kw[f.name] = np.array([float(r[f.name]) for r in rows])  # type: ignore[arg-type]
        return cls(**kw)


#: Per-patient random effects of :func:`sample_params` and the standard deviation of each given
#: the patient's age and genotype (for ``a0``, ``d0``, ``beta_g``, ``beta_s``: of their gamma /
#: lognormal draws; ``r_a``'s normal draw is then floored, which trims its spread to ~0.054).
#: What a forecaster must learn about a patient from the records.
RANDOM_EFFECT_SD: dict[str, float] = {
    "a0": 0.55 * math.sqrt(2.0), "r_a": 0.06, "s0": 12.0, "r_s": 0.6, "l0": 28.0, "r_l": 1.0, "f0": 13.0,
    "d0": 0.9 * math.sqrt(math.expm1(0.25) * math.exp(0.25)),
    "beta_g": 0.8 * math.sqrt(math.expm1(0.09) * math.exp(0.09)),
    "beta_s": 0.07 * math.sqrt(math.expm1(0.09) * math.exp(0.09)), "k0": 0.25, "dbp_off": 5.0,
}
_SD = RANDOM_EFFECT_SD


def sample_params(rng: np.random.Generator, genotypes: np.ndarray) -> Params:
    """Draw parameters from demographics, genotype (allele counts) and random effects."""
    n = int(genotypes.shape[0])
    g = {v.key: genotypes[:, variant_index(v.key)].astype(float) for v in VARIANTS}
    age0 = rng.uniform(40.0, 80.0, n)
    female = (rng.random(n) < 0.5).astype(float)
    a0 = np.clip(5.0 + rng.gamma(2.0, 0.55, n) + 0.01 * (age0 - 60.0), 4.6, 11.0)
    r_a = np.maximum(0.03, 0.10 + 0.12 * g["TCF7L2"] + rng.normal(0.0, _SD["r_a"], n))
    s0 = np.clip(122.0 + 0.45 * (age0 - 60.0) + 4.0 * g["AGT"] + rng.normal(0.0, _SD["s0"], n), 95.0, 190.0)
    r_s = 0.8 + rng.normal(0.0, _SD["r_s"], n)
    l0 = np.clip(118.0 + 14.0 * g["APOE"] - 28.0 * g["PCSK9"] + rng.normal(0.0, _SD["l0"], n), 45.0, 260.0)
    r_l = 1.0 + rng.normal(0.0, _SD["r_l"], n)
    f0 = np.clip(105.0 - 0.9 * (age0 - 40.0) + rng.normal(0.0, _SD["f0"], n), 18.0, 125.0)
    d0 = rng.lognormal(np.log(0.9), 0.5, n) + 1.8 * g["APOL1"]
    beta_g = 0.8 * rng.lognormal(0.0, 0.3, n)
    beta_s = 0.07 * rng.lognormal(0.0, 0.3, n)
    k0 = 4.2 + rng.normal(0.0, _SD["k0"], n)
    dbp_off = rng.normal(0.0, _SD["dbp_off"], n)
    exposure = np.ones((n, len(DRUGS)))
    response = np.ones((n, len(DRUGS)))
    exposure[:, ATO] = 1.0 + 0.55 * g["SLCO1B1"]
    response[:, MET] = 1.0 - 0.35 * g["SLC22A1"]
    return Params(age0=age0, female=female, a0=a0, r_a=r_a, s0=s0, r_s=r_s, l0=l0, r_l=r_l, f0=f0, d0=d0,
                  beta_g=beta_g, beta_s=beta_s, k0=k0, dbp_off=dbp_off, sigma_a=np.full(n, 0.2),
                  sigma_s=np.full(n, 4.0), exposure=exposure, response=response)


@dataclass(slots=True)
class State:
    """Hidden state at one day: markers ``a, s, l, f``, disturbances, drug compartments."""

    a: np.ndarray
    s: np.ndarray
    l: np.ndarray  # noqa: E741 - LDL, named as in the equations
    f: np.ndarray
    u_a: np.ndarray
    u_s: np.ndarray
    adapt: np.ndarray
    c: np.ndarray
    e: np.ndarray

    def take(self, idx: np.ndarray) -> State:
        """The sub-state of the patients ``idx`` (copies)."""
        return State(*(getattr(self, f.name)[idx].copy() for f in fields(self)))


def initial_state(p: Params) -> State:
    """Untreated state at day 0: every marker at its set-point, no drug on board."""
    n = len(p)
    z = np.zeros(n)
    return State(a=p.a0.copy(), s=p.s0 + 0.25 * np.maximum(60.0 - p.f0, 0.0), l=p.l0.copy(), f=p.f0.copy(),
                 u_a=z.copy(), u_s=z.copy(), adapt=z.copy(), c=np.zeros((n, len(DRUGS))),
                 e=np.zeros((n, len(DRUGS))))


def innovations(seeds: np.ndarray, n_days: int) -> np.ndarray:
    """Standard-normal disturbance innovations, shape ``(n, n_days, 2)``, for days ``0..n_days-1``.

    Drawn per patient in 365-day blocks from ``default_rng([seed, block])``, so the value of
    a given day never depends on how many days are asked for.
    """
    n_blocks = max(1, -(-n_days // _BLOCK))
    uniq, inverse = np.unique(np.asarray(seeds, dtype=np.int64), return_inverse=True)
    out = np.empty((len(uniq), n_blocks * _BLOCK, 2))
    for i, sd in enumerate(uniq):
        for b in range(n_blocks):
            out[i, b * _BLOCK:(b + 1) * _BLOCK] = np.random.default_rng([int(sd), b]).standard_normal((_BLOCK, 2))
    return out[inverse, :n_days]


_STEEP = np.flatnonzero(HILL != 1.0)
_EC50_N = np.power(EC50, HILL)


def response(p: Params, x: State) -> np.ndarray:
    """Emax response ``h`` in [0, 1] per patient and drug, shape ``(n, drugs)``."""
    en = np.maximum(x.e, 0.0)
    if _STEEP.size:
        en[:, _STEEP] = np.power(en[:, _STEEP], HILL[_STEEP])
    return p.response * en / (_EC50_N + en)


def step(p: Params, x: State, day: int, dose: np.ndarray, eps: np.ndarray, h: np.ndarray | None = None) -> State:
    """Advance every patient from ``day`` to ``day + 1`` under daily ``dose`` (mg, ``(n, drugs)``).

    ``eps`` is the ``(n, 2)`` innovation of this day; ``h`` the day's :func:`response` if
    already computed. Drug effects act through the effect compartment as of ``day``, so a
    dose given on ``day`` moves exposure-driven readouts (potassium, the eGFR dip) from
    ``day + 1`` and marker states from ``day + 2``.
    """
    if h is None:
        h = response(p, x)
    years = day / 365.0
    a_base = p.a0 + p.r_a * years + x.u_a
    excess = np.maximum(a_base - 4.8, 0.2)
    a_set = 4.8 + excess * (1.0 - 0.30 * h[:, MET]) * (1.0 - 0.16 * h[:, EMP] * np.minimum(1.0, x.f / 60.0))
    s_set = (p.s0 + p.r_s * years + x.u_s + 0.25 * np.maximum(60.0 - x.f, 0.0)
             - 15.0 * h[:, LIS] - 14.0 * h[:, AML] - 4.0 * h[:, EMP])
    l_set = (p.l0 + p.r_l * years) * (1.0 - 0.62 * h[:, ATO])
    protect = (1.0 - 0.30 * h[:, LIS]) * (1.0 - 0.35 * h[:, EMP])
    decline = (p.d0 + p.beta_g * np.maximum(x.a - 6.0, 0.0) + p.beta_s * np.maximum(x.s - 125.0, 0.0)) * protect
    c = x.c * K_PK + p.exposure * dose * (1.0 - K_PK)
    return State(
        a=a_set + (x.a - a_set) * _K_A,
        s=s_set + (x.s - s_set) * _K_S,
        l=l_set + (x.l - l_set) * _K_L,
        f=np.maximum(x.f - decline / 365.0, 4.0),
        u_a=x.u_a * _K_OU + p.sigma_a * _OU_SCALE * eps[:, 0],
        u_s=x.u_s * _K_OU + p.sigma_s * _OU_SCALE * eps[:, 1],
        adapt=h[:, EMP] + (x.adapt - h[:, EMP]) * _K_ADAPT,
        c=c,
        e=x.e * K_EFFECT + c * (1.0 - K_EFFECT),
    )


def egfr_from_creatinine(scr: np.ndarray, age: np.ndarray, female: np.ndarray) -> np.ndarray:
    """CKD-EPI 2021 (race-free) eGFR in mL/min/1.73 m² from serum creatinine in mg/dL."""
    kappa = np.where(female > 0.5, 0.7, 0.9)
    alpha = np.where(female > 0.5, -0.241, -0.302)
    r = scr / kappa
    return (142.0 * np.minimum(r, 1.0) ** alpha * np.maximum(r, 1.0) ** -1.2 * 0.9938**age
            * np.where(female > 0.5, 1.012, 1.0))


def creatinine_from_egfr(egfr: np.ndarray, age: np.ndarray, female: np.ndarray) -> np.ndarray:
    """Exact inverse of :func:`egfr_from_creatinine`."""
    kappa = np.where(female > 0.5, 0.7, 0.9)
    alpha = np.where(female > 0.5, -0.241, -0.302)
    q = egfr / (142.0 * 0.9938**age * np.where(female > 0.5, 1.012, 1.0))
    r = np.where(q >= 1.0, np.power(np.maximum(q, 1e-12), 1.0 / alpha), np.power(np.maximum(q, 1e-12), -1.0 / 1.2))
    return r * kappa


def observe(p: Params, x: State, day: int | np.ndarray, h: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Noise-free values of every measured quantity (keys of :data:`LABS`) plus ``egfr_struct``."""
    if h is None:
        h = response(p, x)
    age = p.age0 + np.asarray(day) / 365.0
    dip = 0.10 * (h[:, EMP] - 0.7 * x.adapt) + 0.04 * h[:, LIS]
    egfr = x.f * (1.0 - dip)
    return {
        "hba1c": x.a.copy(),
        "glucose": 28.7 * x.a - 46.7,
        "egfr": egfr,
        "creatinine": creatinine_from_egfr(egfr, age, p.female),
        "ldl": x.l.copy(),
        "potassium": (p.k0 + 0.02 * np.maximum(60.0 - egfr, 0.0)
                      + 0.45 * h[:, LIS] * (1.0 + np.maximum(45.0 - egfr, 0.0) / 30.0)),
        "sbp": x.s.copy(),
        "dbp": 0.45 * x.s + 20.0 + p.dbp_off,
        "egfr_struct": x.f.copy(),
    }


def hazards(p: Params, obs: dict[str, np.ndarray], day: int | np.ndarray) -> dict[str, np.ndarray]:
    """Daily hazards of hospitalisation and death from the noise-free state (per day)."""
    age = p.age0 + np.asarray(day) / 365.0
    low_gfr = np.maximum(60.0 - obs["egfr"], 0.0)
    hosp = np.exp(np.log(0.04 / 365.0) + 0.03 * (obs["sbp"] - 130.0) + 0.008 * (obs["ldl"] - 100.0)
                  + 0.25 * (obs["hba1c"] - 6.5) + 0.03 * low_gfr + 0.03 * (age - 60.0))
    death = np.exp(np.log(0.006 / 365.0) + 0.075 * (age - 60.0) + 0.02 * (obs["sbp"] - 130.0) + 0.04 * low_gfr
                   + 0.25 * np.maximum(obs["hba1c"] - 7.0, 0.0) + 1.5 * np.maximum(obs["potassium"] - 5.5, 0.0))
    return {"hospitalisation": hosp, "death": death}

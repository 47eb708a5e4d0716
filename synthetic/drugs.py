"""The drug table of the synthetic cohort: codes, dose levels, pharmacokinetics and effects.

Every drug acts through the same two-step exposure chain (see ``docs/synthetic.md``):

* a one-compartment PK step on the daily grid, ``c[t+1] = c[t]·k_pk + f·dose[t]·(1 - k_pk)``
  with ``k_pk = exp(-ln2 / t_half_pk)`` and ``f`` a per-patient exposure factor (genotype),
  so ``c`` is the steady-state-equivalent exposure in mg;
* an effect compartment ``e[t+1] = e[t]·k_e + c[t+1]·(1 - k_e)`` (``k_e = exp(-ln2 / t_half_effect)``)
  that adds the onset lag of the pharmacodynamic response;
* a sigmoid Emax response ``h = r · eⁿ / (EC50ⁿ + eⁿ)`` in [0, 1] (``r`` a per-patient response
  factor, genotype again) that scales the drug's effects in :mod:`synthetic.physiology`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import TwinError

__all__ = [
    "AMLODIPINE",
    "ATORVASTATIN",
    "DRUGS",
    "DRUG_INDEX",
    "EMPAGLIFLOZIN",
    "LISINOPRIL",
    "METFORMIN",
    "RXNORM_SYSTEM",
    "Drug",
    "drug_by_code",
]

RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@dataclass(frozen=True, slots=True)
class Drug:
    """One drug: RxNorm clinical-drug code, allowed daily doses (mg), PK/PD constants, effects."""

    key: str
    code: str
    display: str
    doses: tuple[float, ...]
    t_half_pk: float
    t_half_effect: float
    ec50: float
    hill: float
    effects: str

    @property
    def start_dose(self) -> float:
        return self.doses[0]

    @property
    def max_dose(self) -> float:
        return self.doses[-1]


METFORMIN = Drug(
    key="metformin",
    code="860975",
    display="24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
    doses=(500.0, 1000.0, 1500.0, 2000.0),
    t_half_pk=0.25,
    t_half_effect=4.0,
    ec50=700.0,
    hill=1.5,
    effects="HbA1c set-point down by up to 30 % of its excess over 4.8 %; SLC22A1 c.181C>T lowers the response",
)
EMPAGLIFLOZIN = Drug(
    key="empagliflozin",
    code="1545658",
    display="empagliflozin 10 MG Oral Tablet",
    doses=(10.0, 25.0),
    t_half_pk=0.5,
    t_half_effect=1.0,
    ec50=6.0,
    hill=1.0,
    effects=(
        "HbA1c down (efficacy scales with eGFR/60), SBP down 4 mmHg, eGFR decline slowed 35 %; "
        "adverse: acute haemodynamic eGFR dip up to 10 % that partly reverses over ~2 months"
    ),
)
LISINOPRIL = Drug(
    key="lisinopril",
    code="314076",
    display="lisinopril 10 MG Oral Tablet",
    doses=(10.0, 20.0, 40.0),
    t_half_pk=0.5,
    t_half_effect=2.0,
    ec50=8.0,
    hill=1.0,
    effects="SBP down up to 15 mmHg, eGFR decline slowed 30 %, eGFR dip 4 %; adverse: potassium up",
)
AMLODIPINE = Drug(
    key="amlodipine",
    code="197361",
    display="amlodipine 5 MG Oral Tablet",
    doses=(5.0, 10.0),
    t_half_pk=1.6,
    t_half_effect=7.0,
    ec50=4.0,
    hill=1.0,
    effects="SBP down up to 14 mmHg (slow onset: long half-life)",
)
ATORVASTATIN = Drug(
    key="atorvastatin",
    code="617312",
    display="atorvastatin 10 MG Oral Tablet",
    doses=(10.0, 20.0, 40.0, 80.0),
    t_half_pk=0.6,
    t_half_effect=3.0,
    ec50=5.0,
    hill=1.0,
    effects="LDL set-point down up to 62 %; SLCO1B1 c.521T>C raises exposure",
)

#: The drugs in the fixed order used for the ``(patients, drugs)`` arrays of the simulator.
DRUGS: tuple[Drug, ...] = (METFORMIN, EMPAGLIFLOZIN, LISINOPRIL, AMLODIPINE, ATORVASTATIN)
#: RxNorm code -> column index in the simulator's drug arrays.
DRUG_INDEX: dict[str, int] = {d.code: i for i, d in enumerate(DRUGS)}

#: Per-drug constants as arrays (column order of :data:`DRUGS`).
K_PK = np.exp(-np.log(2.0) / np.array([d.t_half_pk for d in DRUGS]))
K_EFFECT = np.exp(-np.log(2.0) / np.array([d.t_half_effect for d in DRUGS]))
EC50 = np.array([d.ec50 for d in DRUGS])
HILL = np.array([d.hill for d in DRUGS])


def drug_by_code(code: str) -> Drug:
    """The drug with RxNorm ``code``; :class:`TwinError` naming the known codes otherwise."""
    try:
        return DRUGS[DRUG_INDEX[str(code)]]
    except KeyError:
        known = ", ".join(f"{d.code} ({d.key})" for d in DRUGS)
        raise TwinError(f"unknown drug code {code!r}; the synthetic cohort knows {known}") from None

"""The tumour counterfactual benchmark (Geng et al. 2017 simulator) through the path a user takes.

    PYTHONPATH=. .venv/bin/python bench/tumour.py --gammas 0 1 2 3 4 --seeds 1 --out bench/results/tumour.json

For each confounding strength γ and seed: simulate training, validation and test cohorts
(:mod:`synthetic.tumour`, protocol in ``shared/benchmarks/tumour.md``), export the factual
histories as FHIR R4 (:mod:`synthetic.tumour_fhir`: tumour volume LOINC 21889-1 in cm3,
carboplatin MedicationAdministration in mg/m2, radiotherapy Procedure with a 2 Gy mCODE dose),
``graph.ingest_paths`` them into an embedded store, ``twin.train`` with the cohort
specification derived from the records (nothing set by hand: the bench prints what was
derived), then ask counterfactual questions through the public scenario API
(``scenarios.simulate`` with ``TreatmentPlan``s naming the treatments as the records do).

Scored against the simulator's exact counterfactuals (same noise draws), next to persistence
(today's volume carried forward) and a GRU sequence model without the graph
(:mod:`bench.tumour_baselines`), all on the same test patients:

* one-step: every test day ``t``, the four actions (none, chemo, radio, both) on day ``t``,
  the true ``V_{t+1}``; normalised RMSE = RMSE / 1150.35 cm3 x 100, CT's "orig" averaging;
* τ-step "single sliding treatment", τ = 2..6: day ``t``'s factual action, then one chemo dose
  or one radio fraction on one of the next five days, the true ``V_{t+2} .. V_{t+6}``;
* the mean one-day effect of chemo, radio and both (``V_{t+1}`` under the action minus under
  none, in cm3): the twin's against the truth.

Seed 0 is the development seed; report figures from other seeds. Published figures (CT's
updated tables, 10,000 training patients) are printed alongside.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.tumour_baselines import persistence_predictions, sequence_predictions, train_sequence_model  # noqa: E402
from graph import ingest_paths, open_store  # noqa: E402
from scenarios import TreatmentPlan, simulate  # noqa: E402
from synthetic.tumour import (  # noqa: E402
    ACTIONS,
    OneStepSet,
    SlidingSet,
    TumourCohort,
    normalised_rmse,
    one_step_counterfactuals,
    simulate_cohort,
    sliding_treatment_counterfactuals,
)
from synthetic.tumour_fhir import patient_ids, write_bundles  # noqa: E402
from twin import TrainConfig, Twin, load_model, train  # noqa: E402
from twin.features import load_records  # noqa: E402

#: Published one-step and τ = 6 sliding-treatment figures (CT's updated Tables 9 and 11, best per γ).
PUBLISHED_ONE_STEP = {0: ("CRN", 0.755), 1: ("CT", 0.783), 2: ("CT (α=0)", 0.862), 3: ("G-Net", 1.057),
                      4: ("G-Net", 1.319)}
PUBLISHED_TAU6_CT = {0: 0.789, 1: 0.821, 2: 0.909, 3: 1.205, 4: 2.052}
CHEMO, RADIO = "carboplatin", "radiotherapy"
CHEMO_DOSE = {"dose": 300, "unit": "mg/m2"}
RADIO_DOSE = {"dose": 2, "unit": "Gy"}


def _plan(name: str, days: dict[str, list[float]]) -> TreatmentPlan:
    """No therapy except single administrations of chemo / radio on the given days."""
    actions = []
    for treatment, dose in ((CHEMO, CHEMO_DOSE), (RADIO, RADIO_DOSE)):
        if days.get(treatment):
            actions.append({"treatment": treatment, **dose, "at": days[treatment]})
    return TreatmentPlan.from_dict({"name": name, "baseline": "none", "actions": actions})


def _action_days(action: int, day: float) -> dict[str, list[float]]:
    return {CHEMO: [day] if action & 1 else [], RADIO: [day] if action >> 1 else []}


class TwinPredictor:
    """Counterfactual volumes of a trained twin model via ``scenarios.simulate`` (posterior-mean
    forecasts averaged over the ensemble's samples)."""

    def __init__(self, store: Any, model: Any, cohort: TumourCohort, samples: int, batch: int = 512) -> None:
        self.store, self.model, self.cohort, self.samples, self.batch = store, model, cohort, samples, batch
        self.ids = patient_ids(cohort)
        self.records = {i: load_records(store, pid) for i, pid in enumerate(self.ids)}
        self.code = model.cohort.targets[0].code
        self.obs_times: dict[int, list[Any]] = {}
        for i, rec in self.records.items():
            labs = sorted(n.time for n in rec.nodes if n.code == self.code and n.time is not None)
            self.obs_times[i] = labs

    def _twins(self, patient: np.ndarray, t: np.ndarray) -> list[Twin]:
        out = []
        for i, day in zip(patient.tolist(), t.tolist(), strict=True):
            t0 = self.obs_times[i][day]
            out.append(Twin(self.store, self.ids[i], self.model, t0, self.records[i].cut(t0)))
        return out

    def _run(self, patient: np.ndarray, t: np.ndarray, plans: list[TreatmentPlan], days: list[float]) -> np.ndarray:
        """Mean volume ``[rows, plans, days]`` for twins at (patient, day t) under every plan."""
        out = np.zeros((len(patient), len(plans), len(days)))
        horizon = max(days)
        for s in range(0, len(patient), self.batch):
            twins = self._twins(patient[s:s + self.batch], t[s:s + self.batch])
            res = simulate(twins, plans, horizon, n_samples=self.samples, seed=0, observation_noise=False,
                           sample_latent=False,
                           query_days=[0.0, *days])
            lab = res.labs.index(self.code)
            q = [res.time_index(d) for d in days]
            out[s:s + len(twins)] = res.lab_samples[..., lab][:, :, :, q].mean(axis=0)
        return out

    def __call__(self, cohort: TumourCohort, test_set: OneStepSet | SlidingSet) -> np.ndarray:
        if isinstance(test_set, OneStepSet):
            first = np.arange(0, len(test_set.patient), 4)  # four rows (actions) per (patient, day)
            p, t = test_set.patient[first], test_set.t[first]
            plans = [_plan(a, _action_days(k, 0.0)) for k, a in enumerate(ACTIONS)]
            v = self._run(p, t, plans, [1.0])[:, :, 0]  # [rows, 4]
            return v[np.repeat(np.arange(len(first)), 4), test_set.action]
        n_plans = int(test_set.plan.max()) + 1
        first = np.arange(0, len(test_set.patient), n_plans)
        factual = test_set.actions[first, 0]  # (chemo, radio) on day t
        pred = np.zeros(test_set.volume.shape)
        proj = test_set.volume.shape[1]
        for code in range(4):  # plans share day 0, so group the origins by their factual action
            rows = first[(factual[:, 0] + 2 * factual[:, 1]) == code]
            if not len(rows):
                continue
            plans = []
            for k in range(n_plans):
                acts = test_set.actions[rows[0] + k]
                days = _action_days(code, 0.0)
                for day in range(1, proj + 1):
                    for name, flag in ((CHEMO, acts[day, 0]), (RADIO, acts[day, 1])):
                        if flag:
                            days[name] = [*days[name], float(day)]
                plans.append(_plan(f"plan {k}", days))
            v = self._run(test_set.patient[rows], test_set.t[rows], plans, [float(d) for d in range(2, proj + 2)])
            for k in range(n_plans):
                pred[rows + k] = v[:, k]
        return pred


def _scores(cohort: TumourCohort, one: OneStepSet, sliding: SlidingSet, fn: Any) -> dict[str, Any]:
    p1, ps = fn(cohort, one), fn(cohort, sliding)
    rows = p1.reshape(-1, 4)
    effects = {a: float((rows[:, k] - rows[:, 0]).mean()) for k, a in enumerate(ACTIONS) if k}
    return {"one_step": normalised_rmse(p1, one.volume, one.t),
            "tau": {str(k + 2): normalised_rmse(ps[:, k], sliding.volume[:, k]) for k in range(sliding.volume.shape[1])},
            "effects_cm3": effects}


def run_one(gamma: float, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Simulate, export, ingest, train and score one (γ, seed)."""
    t_start = time.perf_counter()
    base = int(seed) * 1000 + int(round(gamma * 10))
    train_c, val_c, test_c = (simulate_cohort(n, gamma, base + k)
                              for k, n in enumerate((args.train, args.val, args.test)))
    here = work / f"gamma{gamma:g}-seed{seed}"
    files = write_bundles(train_c, here / "train") + write_bundles(val_c, here / "val")
    with open_store(f"sqlite:///{here / 'train.db'}") as st:
        ingest_paths(st, files)
        cfg = TrainConfig(epochs=args.epochs, members=args.members, origins_per_patient=args.origins,
                          batch_size=args.batch_size, patience=args.patience, seed=seed, device=args.device,
                          early_stopping=args.early_stopping,
                          progress=not args.quiet, val_fraction=args.val / (args.train + args.val))
        report = train(st, cfg, here / "model.pt")
    t_trained = time.perf_counter()
    ens = load_model(here / "model.pt", args.device)
    test_files = write_bundles(test_c, here / "test")
    one, sliding = one_step_counterfactuals(test_c), sliding_treatment_counterfactuals(test_c)
    with open_store(f"sqlite:///{here / 'test.db'}") as st:
        ingest_paths(st, test_files)
        twin_scores = _scores(test_c, one, sliding, TwinPredictor(st, ens, test_c, args.samples))
    t_twin = time.perf_counter()
    gru = train_sequence_model(train_c, val_c, args.gru_epochs, seed, args.device)
    result = {
        "gamma": gamma, "seed": seed, "n_train": args.train, "n_val": args.val, "n_test": args.test,
        "spec": report.cohort_spec, "train_seconds": t_trained - t_start, "twin_eval_seconds": t_twin - t_trained,
        "epochs_run": [m["epochs_run"] for m in report.members],
        "twin": twin_scores,
        "persistence": _scores(test_c, one, sliding, persistence_predictions),
        "gru_no_graph": _scores(test_c, one, sliding, partial(sequence_predictions, gru)),
        "truth": _scores(test_c, one, sliding, lambda c, s: s.volume),
    }
    return result


def _table(results: list[dict[str, Any]]) -> str:
    lines = ["| γ | seed | model | one-step | τ=2 | τ=3 | τ=4 | τ=5 | τ=6 | chemo effect | radio effect | both |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for key, label in (("twin", "twin (GNN + ODE)"), ("gru_no_graph", "GRU, no graph"),
                           ("persistence", "persistence"), ("truth", "truth")):
            s = r[key]
            eff = " | ".join(f"{s['effects_cm3'][a]:+.1f}" for a in ACTIONS[1:])
            taus = " | ".join(f"{v:.3f}" for v in s["tau"].values()) if key != "truth" else " | " * 4
            one = f"{s['one_step']:.3f}" if key != "truth" else ""
            lines.append(f"| {r['gamma']:g} | {r['seed']} | {label} | {one} | {taus} | {eff} |")
        name, best = PUBLISHED_ONE_STEP[int(r["gamma"])]
        lines.append(f"| {r['gamma']:g} | | published best ({name}; CT at τ=6), 10,000 patients | {best:.3f} "
                     f"| | | | | {PUBLISHED_TAU6_CT[int(r['gamma'])]:.3f} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 4.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1], help="0 is the development seed")
    ap.add_argument("--train", type=int, default=600)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--members", type=int, default=2)
    ap.add_argument("--origins", type=int, default=8, help="training origins per patient")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--early-stopping", default="lab_mse", choices=("loss", "lab_mse"),
                    help="validation score that picks the kept weights (the benchmark scores point forecasts)")
    ap.add_argument("--samples", type=int, default=2, help="scenario samples per twin (posterior means: one per member)")
    ap.add_argument("--gru-epochs", type=int, default=50)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="keep the records, stores and models here")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    work = args.work or Path(tempfile.mkdtemp(prefix="tumour-bench-"))
    results = []
    for seed in args.seeds:
        for gamma in args.gammas:
            r = run_one(gamma, seed, args, work)
            results.append(r)
            print(_table([r]), flush=True)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"machine": "see README", "args": {k: str(v) for k, v in vars(args).items()},
                                                "results": results}, indent=2))
    print("\n" + _table(results))


if __name__ == "__main__":
    main()

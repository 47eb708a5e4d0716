"""What-if accuracy and speed of the scenario engine against the synthetic cohort's true counterfactuals.

For each confounding strength of the generator: generate a cohort, ingest it, train the twin on
the training patients, then on held-out patients (origin one year into follow-up) simulate
plans they did not receive and compare with the oracle's replay of the same patients under
the same plans (``synthetic.simulate``):

* counterfactual RMSE per lab at 90/180/365 days and PEHE (error of the predicted effect of
  each plan vs "no treatment"), for the twin, for the no-graph sequence baseline
  (``twin/baselines.py``, when present) and for the twin with treatment inputs removed
  (every plan gets the patient's factual schedule: the prediction a treatment-blind model makes);
* ranking quality: top-1 agreement with the truly best plan and Kendall's tau of predicted vs
  true ranking, next to a random-ranking reference;
* speed: 1 twin × 32 plans × 365 days and 1,000 twins × 8 plans, one batched solve vs a loop
  over plans and vs a loop over (twin, plan) pairs (same code path, same rows), on CPU and on
  CUDA when available.

Usage::

    python bench/whatif.py                  # default run: 500 patients per level (~25 min on 2 cores)
    python bench/whatif.py --patients 200   # ~10 min, a data-starved twin (fewer drug starts to learn from)
    python bench/whatif.py --quick          # ~2 min
Writes ``bench/results/whatif.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

from bench.metrics import brier, reliability, truly_best  # noqa: E402
from graph.store.sqlite import SQLiteStore  # noqa: E402
from scenarios.plan import Action, ResolvedPlan, TreatmentPlan  # noqa: E402
from scenarios.rank import Objective, objective_samples, p_best_of, rank  # noqa: E402
from scenarios.regimens import load_regimens  # noqa: E402
from scenarios.result import ScenarioResult  # noqa: E402
from scenarios.simulate import prepare, run_prepared, simulate  # noqa: E402

log = logging.getLogger("bench.whatif")
DAYS = (90, 180, 365)
HORIZON = 365
ORIGIN_DAY = 365
REF = "no treatment"
PAIR_LOOP_TWINS = 100  # twins the per-(twin, plan) loop is timed on (then scaled linearly)


# ---------------------------------------------------------------- setup
def bench_plans() -> list[TreatmentPlan]:
    """Full regimens (baseline none) of every condition, plus no treatment as the reference."""
    plans = [TreatmentPlan.no_treatment(REF)]
    plans += [p for c in ("diabetes", "hypertension", "lipids") for p in load_regimens(c) if p.baseline == "none"]
    return plans


def oracle_plan(rp: ResolvedPlan) -> Any:
    """The oracle's plan for a resolved scenario plan (same semantics, see scenarios.plan)."""
    from synthetic import Action as OAction
    from synthetic import Plan as OPlan

    acts = []
    for a in rp.actions:
        if a.kind == "give":
            acts.append(OAction(a.code, a.daily, int(round(a.start)), None if a.stop is None else int(round(a.stop))))
        else:
            acts.append(OAction(a.code, 0.0, int(round(a.start)), None))
    return OPlan(tuple(acts), continue_factual=rp.baseline == "current", name=rp.name)


def load_twin(store: SQLiteStore, ens: Any, pid: str, t0: datetime) -> Any:
    from twin.twin import Twin

    return Twin.load(store, pid, ens, as_of=t0)


def build_cohort(work: Path, n: int, confounding: float, seed: int, years: float) -> tuple[SQLiteStore, Path]:
    from graph.ingest import ingest_paths
    from synthetic import SynthConfig, generate_cohort

    coh = work / "cohort"
    generate_cohort(SynthConfig(patients=n, seed=seed, years=years, confounding=confounding), coh)
    store = SQLiteStore(work / "graph.db")
    ingest_paths(store, [coh / "fhir"])
    return store, coh


# ---------------------------------------------------------------- metrics
def point(result: ScenarioResult) -> np.ndarray:
    """Mean over samples: ``[N, P, T, L]``."""
    return result.lab_samples.mean(axis=0)


def accuracy(pred: np.ndarray, true: np.ndarray, result: ScenarioResult, labs: list[str], plans: list[str]) -> dict[str, Any]:
    """RMSE per lab and day over (patients, plans) and PEHE of each plan's effect vs the reference."""
    out: dict[str, Any] = {"rmse": {}, "pehe": {}}
    ref = plans.index(REF)
    others = [p for p in range(len(plans)) if p != ref]
    for lab in labs:
        li = result.labs.index(lab)
        out["rmse"][lab], out["pehe"][lab] = {}, {}
        for d in DAYS:
            ti = result.time_index(d)
            e = pred[:, :, ti, li] - true[lab][:, :, d]
            ok = np.isfinite(e)
            out["rmse"][lab][str(d)] = float(np.sqrt(np.mean(e[ok] ** 2))) if ok.any() else None
            pe = (pred[:, others, ti, li] - pred[:, [ref], ti, li]) - (true[lab][:, others, d] - true[lab][:, [ref], d])
            ok = np.isfinite(pe)
            out["pehe"][lab][str(d)] = float(np.sqrt(np.mean(pe[ok] ** 2))) if ok.any() else None
    return out


def ranking_quality(result: ScenarioResult, true: dict[str, np.ndarray], labs: list[str], rng: random.Random,
                    day: int = 180) -> dict[str, Any]:
    """Per objective 'minimise LAB at day': top-1 agreement and Kendall's tau, twin vs random;
    the twin's reported ties (a tie is right when the truly best plan is among the tied);
    and the p(best) of every plan of every ranking against the truly best plan (true ties
    share it), for the calibration over all rankings (``calibration``)."""
    out: dict[str, Any] = {}
    for lab in labs:
        top1, taus, p_top, r_top1, r_taus = [], [], [], [], []
        tie_right, tie_size, p_tied, p_rows, naive_rows, y_rows, raw_rows = [], [], [], [], [], [], []
        for i, pid in enumerate(result.patients):
            tv = true[lab][i, :, day]
            if not np.isfinite(tv).all() or np.ptp(tv) < 1e-9:
                continue
            r = rank(result, Objective(lab, day), pid)
            order = [result.plans.index(n) for n in r.order()]
            pred_rank = np.empty(len(order))
            pred_rank[order] = np.arange(len(order))
            best = tv.min()
            top1.append(float(abs(tv[order[0]] - best) <= 1e-6 * max(1.0, abs(best))))
            taus.append(float(kendalltau(pred_rank, tv).statistic))
            p_top.append(r.p_top_is_best)
            y = truly_best(tv)
            tied = [result.plans.index(n) for n in r.tied]
            tie_right.append(float(y[tied].sum() > 0))
            tie_size.append(len(tied))
            p_tied.append(r.p_tied_best)
            by = {e.plan: e.p_best for e in r.entries}
            p_rows.append([by[n] for n in result.plans])
            score, feasible = objective_samples(result, Objective(lab, day), pid)
            raw_rows.append(p_best_of(score, feasible))  # as before: each sample's winner, members as drawn
            naive_rows.append(np.eye(len(order))[order[0]])
            y_rows.append(y)
            for _ in range(20):
                perm = list(range(len(order)))
                rng.shuffle(perm)
                r_top1.append(float(abs(tv[perm[0]] - best) <= 1e-6 * max(1.0, abs(best))))
                r_taus.append(float(kendalltau(np.argsort(perm), tv).statistic))
        if top1:
            out[lab] = {"cases": len(top1), "top1": float(np.mean(top1)), "kendall_tau": float(np.nanmean(taus)),
                        "mean_p_top_is_best": float(np.mean(p_top)), "random_top1": float(np.mean(r_top1)),
                        "random_kendall_tau": float(np.nanmean(r_taus)),
                        "tie_rate": float(np.mean(np.array(tie_size) > 1)), "mean_tied_plans": float(np.mean(tie_size)),
                        "top1_or_tied": float(np.mean(tie_right)), "mean_p_tied_best": float(np.mean(p_tied)),
                        "brier": brier(np.array(p_rows), np.array(y_rows)),
                        "brier_always_certain": brier(np.array(naive_rows), np.array(y_rows)),
                        "_p": p_rows, "_naive": naive_rows, "_y": y_rows, "_raw": raw_rows}
    return out


def calibration(ranking: dict[str, Any]) -> dict[str, Any]:
    """p(best) over all rankings of one run (every lab, patient and plan): Brier score against the
    truly best plan and the reliability table, for the twin and for a naive ranking that is
    always certain of its top plan (p = 1 for it, 0 for the others), and the twin's p(best) as it was
    computed before the members' disagreement was redrawn (the share of samples each plan wins,
    ``twin_samples_only``). Pops the raw rows."""
    rows = {k: [r for lab in ranking.values() for r in lab.pop(k, [])] for k in ("_p", "_naive", "_y", "_raw")}
    if not rows["_y"]:
        return {}
    y = np.array(rows["_y"])
    doc: dict[str, Any] = {"rankings": len(y), "plans_per_ranking": int(y.shape[1])}
    for name, key in (("twin", "_p"), ("always_certain", "_naive"), ("twin_samples_only", "_raw")):
        if len(rows[key]) != len(y):
            continue
        p = np.array(rows[key])
        top = p.argmax(axis=1)
        doc[name] = {"brier": brier(p, y), "brier_top": float(np.mean((p[np.arange(len(p)), top] -
                                                                       y[np.arange(len(p)), top]) ** 2)),
                     "reliability": reliability(p, y)}
    return doc


# ---------------------------------------------------------------- accuracy per confounding
def run_confounding(c: float, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from synthetic import load_truth
    from synthetic import simulate as oracle
    from twin.model.checkpoint import TwinEnsemble
    from twin.spec import SpecRequest
    from twin.training import TrainConfig, TrainReport, train

    work = root / f"conf-{c:g}"
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    model_path = work / "model.pt"
    reuse = args.reuse_model and model_path.is_file() and (work / "graph.db").is_file()
    store, coh = (SQLiteStore(work / "graph.db"), work / "cohort") if reuse else build_cohort(
        work, args.patients, c, args.seed, args.years)
    ids = sorted(store.patient_ids())
    random.Random(args.seed).shuffle(ids)
    held, train_ids = ids[: args.heldout], ids[args.heldout:]
    t_data = time.perf_counter() - t
    t = time.perf_counter()
    if reuse:  # the cohort, store and model of an earlier run with the same --workdir and settings
        rep = TrainReport(**json.loads(model_path.with_suffix(".report.json").read_text()))
    else:
        rep = train(store, TrainConfig(epochs=args.epochs, members=args.members, progress=False, seed=args.seed,
                                       origins_per_patient=args.origins, image_epochs=args.image_epochs,
                                       **({"batch_size": args.batch_size} if args.batch_size else {}),
                                       spec=SpecRequest(horizon_days=HORIZON)), model_path, patient_ids=train_ids)
    t_train = time.perf_counter() - t
    ens = TwinEnsemble.load(model_path)
    truths, twins, origins = [], [], []
    for pid in held:
        tr = load_truth(coh / "truth" / f"{pid}.json")
        if tr.follow_up_days < ORIGIN_DAY + 1 or (tr.death_day is not None and tr.death_day <= ORIGIN_DAY):
            continue
        t0 = datetime.fromisoformat(tr.start_date).replace(tzinfo=UTC) + timedelta(days=ORIGIN_DAY)
        truths.append(tr)
        twins.append(load_twin(store, ens, pid, t0))
        origins.append(ORIGIN_DAY)
    plans = bench_plans()
    names = [p.name for p in plans]
    qd = sorted({0.0, *map(float, DAYS)})
    t = time.perf_counter()
    res = simulate(twins, plans, HORIZON, n_samples=args.samples, seed=args.seed, reference=REF,
                   observation_noise=False, query_days=qd)
    t_sim = time.perf_counter() - t
    # treatment-blind reference: every plan predicted with the patient's factual schedule
    blind = simulate(twins, [TreatmentPlan.continue_current()], HORIZON, n_samples=args.samples, seed=args.seed,
                     observation_noise=False, query_days=qd)
    blind_pred = np.repeat(point(blind), len(plans), axis=1)
    # oracle: every (patient, plan) pair in one batch
    rplans = prepare(twins[:1], plans, HORIZON).plans
    pairs_p = [tr for tr in truths for _ in plans]
    pairs_plan = [oracle_plan(rp) for _ in truths for rp in rplans]
    orc = oracle(pairs_p, pairs_plan, HORIZON, origin=[o for o in origins for _ in plans])
    labs = [lab for lab in res.labs if lab in orc.labs]
    true = {lab: orc.labs[lab].reshape(len(truths), len(plans), -1) for lab in labs}
    out: dict[str, Any] = {
        "confounding": c, "patients": args.patients, "heldout_evaluated": len(twins), "plans": names,
        "labs": {lab: res.lab_names.get(lab, lab) for lab in labs},
        "seconds": {"data": round(t_data, 1), "train": round(t_train, 1), "simulate": round(t_sim, 2)},
        "model_reused": reuse,
        "train": {"members": args.members, "epochs": args.epochs, "seconds_per_epoch": rep.seconds_per_epoch,
                  "model_drugs": list(ens.spec.vocab.treatments)},
        "flags": [f.to_dict() for f in res.flags],
        "twin": accuracy(point(res), true, res, labs, names),
        "treatment_blind": accuracy(blind_pred, true, res, labs, names),
        "ranking": ranking_quality(res, true, labs, random.Random(args.seed)),
    }
    out["p_best_calibration"] = calibration(out["ranking"])
    out["sequence_baseline"] = run_baseline(store, train_ids, twins, plans, true, res, labs, names, args, ens)
    out["_twins"] = twins  # kept for the speed part, dropped before writing
    store.close()
    return out


def run_baseline(store: SQLiteStore, train_ids: list[str], twins: list[Any], plans: list[TreatmentPlan],
                 true: dict[str, np.ndarray], res: ScenarioResult, labs: list[str], names: list[str],
                 args: argparse.Namespace, ens: Any) -> dict[str, Any]:
    """The no-graph GRU sequence baseline (``twin.baselines``), trained on the twin's training
    patients and origins, fed the same plan dose schedules."""
    from twin.baselines import seq_example, train_gru
    from twin.features import build_example, load_records
    from twin.training import TrainConfig, build_examples, split_patients

    t = time.perf_counter()
    spec = ens.spec
    vocab, norms = spec.vocab, spec.norms
    records = {p: load_records(store, p) for p in train_ids}
    tr_ids, va_ids = split_patients(train_ids, 0.15, args.seed)
    k_change = TrainConfig().change_origins_per_patient  # the twin's training origins
    tr_ex = build_examples([records[p] for p in tr_ids], spec, args.origins, args.seed, k_change=k_change)
    va_ex = build_examples([records[p] for p in va_ids], spec, args.origins, args.seed + 1, k_change=k_change)
    gru = train_gru([seq_example(records[e.patient_id], e, vocab, norms) for e in tr_ex],
                    [seq_example(records[e.patient_id], e, vocab, norms) for e in va_ex],
                    vocab.n_targets, vocab.n_treatments, horizon_days=HORIZON, epochs=args.epochs, seed=args.seed)
    run = prepare(twins, plans, HORIZON)
    seqs = []
    for tw in twins:
        full = load_records(store, tw.patient_id)
        ex = build_example(full, tw.as_of, spec, HORIZON, ens.image_encoder)
        seqs.append(seq_example(full, ex, vocab, norms))
    mu = np.array([norms.lab_mean[c] for c in vocab.target_labs])
    sd = np.array([norms.lab_std[c] for c in vocab.target_labs])
    n, p = run.doses.shape[:2]
    pred = np.zeros((n, p, len(res.times), vocab.n_targets))
    with torch.no_grad():
        for j in range(p):
            grid, mean, _ = gru([s.seq for s in seqs], torch.stack([s.anchor for s in seqs]),
                                torch.stack([s.anchor_mask for s in seqs]), run.doses[:, j], float(HORIZON))
            g, m = grid.numpy(), mean.numpy() * sd + mu
            for li in range(vocab.n_targets):
                pred[:, j, :, li] = np.stack([np.interp(res.times, g, m[i, :, li]) for i in range(n)])
    order = [vocab.target_labs.index(c) for c in res.labs]
    return {"available": True, "seconds": round(time.perf_counter() - t, 1),
            **accuracy(pred[..., order], true, res, labs, names)}


# ---------------------------------------------------------------- speed
def speed_plans(n: int) -> list[TreatmentPlan]:
    """``n`` distinct plans over the cohort's drugs (doses and start days vary)."""
    from synthetic import DRUGS

    plans = []
    k = 0
    while len(plans) < n:
        d = DRUGS[k % len(DRUGS)]
        e = DRUGS[(k // len(DRUGS) + k + 1) % len(DRUGS)]
        dose = d.doses[(k // len(DRUGS)) % len(d.doses)]
        acts = [Action(drug=d.code, dose=dose, start=(k % 4) * 14)]
        if e.code != d.code and k % 2:
            acts.append(Action(drug=e.code, dose=e.doses[0], start=30))
        plans.append(TreatmentPlan(name=f"plan {k}", actions=tuple(acts)))
        k += 1
    return plans


def _best(fn: Any, device: str, repeats: int, warm_up: Any = None) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` after one warm-up call (of ``warm_up``,
    default ``fn``), CUDA synchronised."""
    (warm_up or fn)()
    ts = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return min(ts)


def time_speed(twins: list[Any], n_twins: int, n_plans: int, n_samples: int, device: str, repeats: int) -> dict[str, Any]:
    """Seconds for one batched solve of all twins x plans vs two loops over the same rows.

    * ``loop_s``: one solve per plan, all twins batched in each (the loop over plans);
    * ``pair_loop_s``: one solve per (twin, plan) pair, what calling the engine once per
      scenario costs. It is timed once (no repeats) on the first ``PAIR_LOOP_TWINS`` twins and
      scaled linearly to all of them (``pair_loop_measured_twins`` says how many were run):
      its calls are independent, and the full loop would take over ten minutes.

    All three use the same prepared dose rows and the same code path (``run_prepared``).
    With ``P`` plans the loop over plans is at most ``P`` times slower than the batched
    solve on a compute-bound CPU (it does ``P`` encodings and the same solve work), so its
    ratio is bounded by ``P`` by construction; the per-pair loop shows the per-call overhead.
    """
    tw = [twins[i % len(twins)] for i in range(n_twins)]
    model = tw[0].model
    model.to(device)
    plans = speed_plans(n_plans)
    q = [float(d) for d in range(0, HORIZON + 1, 7)]
    run = prepare(tw, plans, HORIZON, query_days=q)
    n_pair = min(n_twins, PAIR_LOOP_TWINS)
    singles = [prepare([t], plans, HORIZON, query_days=q) for t in tw[:n_pair]]

    def batched() -> None:
        run_prepared(run, n_samples=n_samples, seed=0)

    def loop() -> None:
        for p in range(n_plans):
            run_prepared(run, n_samples=n_samples, seed=0, plan_rows=slice(p, p + 1))

    def pair_loop() -> None:
        for one in singles:
            for p in range(n_plans):
                run_prepared(one, n_samples=n_samples, seed=0, plan_rows=slice(p, p + 1))

    b, lp = _best(batched, device, repeats), _best(loop, device, repeats)
    def one_pair() -> None:
        run_prepared(singles[0], n_samples=n_samples, seed=0, plan_rows=slice(0, 1))

    pair = _best(pair_loop, device, 1, warm_up=one_pair) * n_twins / n_pair if n_twins > 1 else lp
    model.to("cpu")
    return {"twins": n_twins, "plans": n_plans, "samples": n_samples, "horizon_days": HORIZON, "device": device,
            "batched_s": round(b, 4), "loop_s": round(lp, 4), "speedup": round(lp / b, 2),
            "pair_loop_s": round(pair, 4), "pair_loop_measured_twins": n_pair, "pair_speedup": round(pair / b, 2)}


# ---------------------------------------------------------------- report
def _fmt(x: float | None) -> str:
    return "   -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:6.2f}"


def print_table(doc: dict[str, Any]) -> None:
    for acc in doc["accuracy"]:
        print(f"\n== confounding {acc['confounding']:g}: {acc['heldout_evaluated']} held-out patients x "
              f"{len(acc['plans'])} plans (reference: {REF}) ==")
        print(f"{'lab':28s} {'model':18s} " + " ".join(f"RMSE@{d:<3d}" for d in DAYS) + " " +
              " ".join(f"PEHE@{d:<3d}" for d in DAYS))
        for lab, name in acc["labs"].items():
            for key in ("twin", "sequence_baseline", "treatment_blind"):
                m = acc[key]
                if not m.get("rmse"):
                    continue
                print(f"{name[:28]:28s} {key:18s} " + " ".join(_fmt(m["rmse"][lab][str(d)]) + "  " for d in DAYS)
                      + " " + " ".join(_fmt(m["pehe"][lab][str(d)]) + "  " for d in DAYS))
        for f in acc["flags"]:
            print(f"flag: {f['plan']}: {f['kind']} {f['treatment']}")
        if not acc["sequence_baseline"].get("available", True):
            print(f"sequence baseline: not run ({acc['sequence_baseline']['reason']})")
        print(f"{'ranking: minimise lab at 180d':34s} {'top1':>6s} {'tau':>6s} {'P(top)':>7s} {'rnd top1':>9s} {'rnd tau':>8s}")
        for lab, r in acc["ranking"].items():
            print(f"{acc['labs'][lab][:34]:34s} {r['top1']:6.2f} {r['kendall_tau']:6.2f} {r['mean_p_top_is_best']:7.2f} "
                  f"{r['random_top1']:9.2f} {r['random_kendall_tau']:8.2f}")
    for acc in doc["accuracy"]:
        cal = acc.get("p_best_calibration")
        if not cal:
            continue
        print(f"\n== p(best) calibration, confounding {acc['confounding']:g}: {cal['rankings']} rankings x "
              f"{cal['plans_per_ranking']} plans ==")
        for name in (k for k in ("twin", "always_certain", "twin_samples_only") if k in cal):
            print(f"{name:16s} Brier {cal[name]['brier']:.3f} (top plan only {cal[name]['brier_top']:.3f})")
            print("    predicted  " + " ".join(f"{b['mean_predicted']:5.2f}" for b in cal[name]["reliability"]))
            print("    observed   " + " ".join(f"{b['observed']:5.2f}" for b in cal[name]["reliability"]))
            print("    n          " + " ".join(f"{b['n']:5d}" for b in cal[name]["reliability"]))
        print(f"{'ties: lab':34s} {'tie rate':>8s} {'size':>5s} {'top1|tie':>8s} {'P(tie best)':>11s}")
        for lab, r in acc["ranking"].items():
            print(f"{acc['labs'][lab][:34]:34s} {r['tie_rate']:8.2f} {r['mean_tied_plans']:5.2f} {r['top1_or_tied']:8.2f} "
                  f"{r['mean_p_tied_best']:11.2f}")
    if not doc["speed"]:
        return
    print("\n== speed (batched = one solve for all twins x plans; loop = one solve per plan, twins batched; "
          "pair loop = one solve per twin x plan) ==")
    for s in doc["speed"]:
        print(f"{s['twins']:5d} twins x {s['plans']:2d} plans x {s['horizon_days']} d, {s['samples']} samples, "
              f"{s['device']}: batched {s['batched_s']:.3f}s  loop {s['loop_s']:.3f}s ({s['speedup']:.1f}x)  "
              f"pair loop {s['pair_loop_s']:.2f}s ({s['pair_speedup']:.1f}x"
              + (f", timed on {s['pair_loop_measured_twins']} twins and scaled)" if s["pair_loop_measured_twins"] < s["twins"]
                 else ")"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small cohort, short training (~2 min)")
    ap.add_argument("--confounding", type=float, nargs="+", default=[0.1, 0.9])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "whatif.json")
    ap.add_argument("--workdir", type=Path, default=None, help="keep cohorts and models here (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None, help="training mini-batch (default: TrainConfig's)")
    ap.add_argument("--patients", type=int, default=None, help="cohort size per confounding level (500; quick 100)")
    ap.add_argument("--reuse-model", action="store_true",
                    help="reuse the cohort, store and model of an earlier run in --workdir (same settings)")
    ap.add_argument("--skip-speed", action="store_true", help="measure accuracy and ranking only, not speed")
    a = ap.parse_args(argv)
    quick = a.quick
    a.patients = a.patients or (100 if quick else 500)
    a.heldout = 25 if quick else 50
    a.years = 2.5
    a.epochs = 8 if quick else 20
    a.members = 1 if quick else 2
    a.origins = 2 if quick else 3
    a.image_epochs = 3 if quick else 8
    a.samples = 8 if quick else 16
    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.WARNING)
    root = a.workdir or Path(tempfile.mkdtemp(prefix="whatif-"))
    started = time.perf_counter()
    doc: dict[str, Any] = {"bench": "whatif", "quick": quick, "started": datetime.now(UTC).isoformat(timespec="seconds"),
                           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
                           "torch_threads": torch.get_num_threads(), "accuracy": [], "speed": []}
    try:
        twins: list[Any] = []
        for c in a.confounding:
            acc = run_confounding(c, a, root)
            twins = acc.pop("_twins")
            doc["accuracy"].append(acc)
        reps = 1 if quick else 2
        devices = [] if a.skip_speed else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for dev in devices:
            doc["speed"].append(time_speed(twins, 1, 32, 8, dev, reps))
            doc["speed"].append(time_speed(twins, 200 if quick else 1000, 8, 1, dev, reps))
    finally:
        if a.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    doc["seconds_total"] = round(time.perf_counter() - started, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=2, default=str))
    print_table(doc)
    print(f"\nwrote {a.out} in {doc['seconds_total']:.0f}s")
    return doc


if __name__ == "__main__":
    main()

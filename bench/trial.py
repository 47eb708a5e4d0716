"""Scale-out bench: a virtual trial in-process vs on a local Ray cluster, checked against the
synthetic cohort's truth, and single-process vs 2-process data-parallel training.

1. A synthetic cohort (``--patients``) is generated, ingested into SQLite and a small twin is
   trained on it (or ``--model`` is reused).
2. Trial: every patient matching ``--predicate`` (default: every patient with a recorded
   observation of LDL, i.e. all) is simulated under 4 plans (no treatment, metformin,
   high-intensity atorvastatin, lisinopril) in shards of ``--shard-size``: once in this
   process, once on a local Ray cluster of ``--workers`` workers. The two results must be
   identical (the same shards with the same seeds); the wall times are reported.
3. Truth: the oracle replays the same patients from the same origin under the same plans
   (``synthetic.simulate``); the trial's average effect of each plan vs no treatment is
   compared with the oracle's average effect over the same patients.
4. DDP: one epoch of ``twin train`` in one process vs ``torchrun --nproc-per-node 2 ... --distributed``.

Usage::

    python bench/trial.py --patients 300                       # ~5 min on 2 cores
    python bench/trial.py --patients 2000 --train-patients 300  # the trial on 2,000 patients
Writes ``bench/results/trial.json`` (or ``--out``) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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

PLANS = ("no treatment", "diabetes first-line metformin", "lipids high-intensity atorvastatin",
         "hypertension first-line lisinopril")
LDL = "18262-6"
DAYS = (90.0, 180.0)
ORIGIN_DAY = 365  # the common origin: this many days after the latest follow-up start


def trial_plans() -> list[Any]:
    from scenarios import find_regimen

    return [find_regimen(name) for name in PLANS]


def build_cohort(work: Path, n: int, seed: int, years: float) -> tuple[str, Path]:
    from graph.ingest import ingest_paths
    from graph.store.sqlite import SQLiteStore
    from synthetic import SynthConfig, generate_cohort

    coh = work / "cohort"
    generate_cohort(SynthConfig(patients=n, seed=seed, years=years, confounding=0.5), coh)
    with SQLiteStore(work / "graph.db") as store:
        ingest_paths(store, [coh / "fhir"])
    return f"sqlite:///{work / 'graph.db'}", coh


def common_origin(cohort_dir: Path) -> tuple[datetime, list[str]]:
    """A calendar origin ``ORIGIN_DAY`` days after the latest follow-up start, and the patients
    alive and followed up at least ``max(DAYS)`` days beyond it (so the truth is in range)."""
    from synthetic import load_truth

    truths = [load_truth(p) for p in sorted((cohort_dir / "truth").glob("*.json"))]
    starts = {t.patient_id: datetime.fromisoformat(str(t.start_date)).replace(tzinfo=UTC) for t in truths}
    as_of = max(starts.values()) + timedelta(days=ORIGIN_DAY)
    ok = []
    for t in truths:
        day = (as_of - starts[t.patient_id]).days
        if t.follow_up_days >= day + max(DAYS) and (t.death_day is None or t.death_day > day + max(DAYS)):
            ok.append(t.patient_id)
    return as_of, sorted(ok)


def oracle_average_effects(result: Any, cohort_dir: Path, as_of: datetime) -> dict[str, dict[str, dict[str, float]]]:
    """The oracle's average effect of every plan vs the reference over ``result.patients``, per
    lab and trial day: the same patients, origins and plans, noise-free true values."""
    from scenarios import TreatmentCatalog
    from synthetic import Action as OAction
    from synthetic import Plan as OPlan
    from synthetic import load_truth
    from synthetic import simulate as oracle
    from twin.model.checkpoint import load_model

    ens = load_model(result.spec.model_path)
    cat = TreatmentCatalog(ens.spec.vocab.cohort.treatments)
    truths = [load_truth(cohort_dir / "truth" / f"{pid}.json") for pid in result.patients]
    origins = [(as_of - datetime.fromisoformat(str(t.start_date)).replace(tzinfo=UTC)).days for t in truths]
    horizon = int(max(result.spec.days))
    true: dict[str, Any] = {}
    for plan in result.spec.plan_objects():
        rp = plan.resolve(cat, as_of)
        acts = tuple(OAction(a.code, a.daily if a.kind == "give" else 0.0, int(round(a.start)),
                             None if a.stop is None else int(round(a.stop))) for a in rp.actions)
        true[plan.name] = oracle(truths, OPlan(acts, continue_factual=rp.baseline == "current", name=plan.name),
                                 horizon, origin=origins)
    out: dict[str, dict[str, dict[str, float]]] = {}
    ref = result.plans[0]
    for name in result.plans[1:]:
        out[name] = {}
        for lab in result.labs:
            if lab not in true[name].labs:
                continue
            out[name][lab] = {f"{d:g}": float(np.nanmean(true[name].labs[lab][:, int(d)] - true[ref].labs[lab][:, int(d)]))
                              for d in result.spec.days}
    return out


def train_small(store_url: str, out: Path, epochs: int, seed: int, patients: int | None = None) -> float:
    """Train a 2-member twin on the store's patients (the first ``patients`` of them in id order)."""
    from graph import open_store
    from twin import TrainConfig, train
    from twin.spec import SpecRequest

    t = time.perf_counter()
    with open_store(store_url) as store:
        ids = sorted(store.patient_ids())[:patients] if patients else None
        train(store, TrainConfig(epochs=epochs, members=2, origins_per_patient=3, image_epochs=5, progress=False,
                                 seed=seed, spec=SpecRequest(horizon_days=365)), out, patient_ids=ids)
    return time.perf_counter() - t


def ddp_epoch_times(store_url: str, work: Path, epochs: int) -> dict[str, Any]:
    """Seconds per epoch of ``twin train`` in 1 process and of 2 gloo processes under torchrun."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    common = ["train", "--store", store_url, "--epochs", str(epochs), "--members", "1", "--json",
              "--horizon-days", "365"]
    out: dict[str, Any] = {}
    for label, cmd in (("single", [sys.executable, "-m", "cli", *common, "--models", str(work / "m1"),
                                   "--threads", "1"]),
                       ("ddp2", [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                 "--master-port", "29533", "-m", "cli", *common, "--models", str(work / "m2"),
                                 "--threads", "1", "--distributed"])):
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{label} training failed: {proc.stderr[-2000:]}")
        rep = json.loads(proc.stdout[proc.stdout.index("{"):])  # rank 0's document (other ranks print nothing)
        out[label] = {"seconds_per_epoch": rep["seconds_per_epoch"], "wall_s": time.perf_counter() - t,
                      "processes": rep.get("processes", 1), "command": " ".join(cmd[1:])}
    out["speedup"] = out["single"]["seconds_per_epoch"] / out["ddp2"]["seconds_per_epoch"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--years", type=float, default=2.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--train-patients", type=int, default=None, help="train on this many patients (default all)")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ddp-epochs", type=int, default=2)
    ap.add_argument("--skip-ddp", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="reuse the cohort, store and model already in --workdir")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "trial.json")
    args = ap.parse_args()

    import torch

    from scenarios.trial import TrialSpec, run_trial

    torch.set_num_threads(1)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-trial-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"bench": "trial", "started": datetime.now(UTC).isoformat(timespec="seconds"),
                              "settings": {k: str(v) for k, v in vars(args).items()}, "machine": machine()}
    t = time.perf_counter()
    if args.reuse:
        store_url, coh = f"sqlite:///{work / 'graph.db'}", work / "cohort"
    else:
        store_url, coh = build_cohort(work, args.patients, args.seed, args.years)
    report["seconds_data"] = time.perf_counter() - t  # generate + ingest
    report["store_bytes"] = (work / "graph.db").stat().st_size
    report["store_bytes_per_patient"] = report["store_bytes"] / args.patients
    model = work / "model.pt"
    if not args.reuse:
        report["seconds_train"] = train_small(store_url, model, args.epochs, args.seed, args.train_patients)
    as_of, ids = common_origin(coh)
    spec = TrialSpec(store_url, str(model), {"lab": LDL, "op": ">", "value": 0},
                     tuple(p.to_dict() for p in trial_plans()), days=DAYS, samples=args.samples, seed=args.seed,
                     as_of=as_of.isoformat(), shard_size=args.shard_size, better={})
    inproc = run_trial(spec, ids=ids)
    import ray

    t = time.perf_counter()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                       "RAY_USAGE_STATS_ENABLED": "0"}})
    ray_init = time.perf_counter() - t
    cold = run_trial(spec, ids=ids, ray="local", workers=args.workers)  # workers start and import torch
    on_ray = run_trial(spec, ids=ids, ray="local", workers=args.workers)  # the same workers, warm
    ray.shutdown()
    same = all(bool(np.array_equal(inproc.values, r.values)) and inproc.patients == r.patients for r in (cold, on_ray))
    truth = oracle_average_effects(inproc, coh, as_of)
    summary = inproc.summary()
    report["trial"] = {
        "patients": len(inproc.patients), "plans": len(inproc.plans), "samples": args.samples,
        "shards": inproc.shards, "in_process_s": inproc.seconds, "ray_init_s": ray_init,
        "ray_cold_s": cold.seconds, "ray_s": on_ray.seconds, "identical": same,
        "shard_seconds_in_process": inproc.shard_seconds, "shard_seconds_ray": on_ray.shard_seconds,
        "load_seconds_in_process": inproc.load_seconds,
        "effects": {name: {lab: {day: {"trial": summary["effects"][name][lab][day], "oracle": truth[name][lab][day]}
                                 for day in truth[name][lab]} for lab in truth[name]} for name in truth},
        "guardrails": summary["guardrails"],
        # encoding (records -> twins, as-of graphs) + one batched solve, per patient and per patient-plan
        "in_process_s_per_patient": inproc.seconds / max(len(inproc.patients), 1),
        "in_process_s_per_patient_plan": inproc.seconds / max(len(inproc.patients) * len(inproc.plans), 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))  # the trial's part, before the DDP runs
    if not args.skip_ddp:
        report["ddp"] = ddp_epoch_times(store_url, work, args.ddp_epochs)
    report["seconds_total"] = time.perf_counter() - t
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    tr = report["trial"]
    print(f"trial: {tr['patients']} patients x {tr['plans']} plans x {args.samples} samples in {tr['shards']} shards; "
          f"in-process {tr['in_process_s']:.1f}s; Ray ({args.workers} workers): init {tr['ray_init_s']:.1f}s, "
          f"first trial {tr['ray_cold_s']:.1f}s, warm {tr['ray_s']:.1f}s; identical={same}")
    for name in truth:
        e, o = tr["effects"][name][LDL]["180"]["trial"], tr["effects"][name][LDL]["180"]["oracle"]
        print(f"  {name}: LDL effect at 180d trial {e['mean']:+.1f} [{e['low']:+.1f}, {e['high']:+.1f}] "
              f"oracle {o:+.1f}")
    if "ddp" in report:
        d = report["ddp"]
        print(f"DDP: 1 process {d['single']['seconds_per_epoch']:.2f}s/epoch, 2 processes "
              f"{d['ddp2']['seconds_per_epoch']:.2f}s/epoch (speed-up {d['speedup']:.2f}x)")


def machine() -> dict[str, Any]:
    import platform

    import torch

    return {"cpus": os.cpu_count(), "cuda": torch.cuda.is_available(), "python": platform.python_version(),
            "torch": torch.__version__, "load_avg_at_start": os.getloadavg()}


if __name__ == "__main__":
    main()

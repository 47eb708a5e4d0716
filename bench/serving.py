"""Serving speed: one forecast in process, and a cohort what-if's time and peak memory.

Run from the repository root::

    .venv/bin/python bench/serving.py            # ~4 min on 2 cores (trains a small model first)
    .venv/bin/python bench/serving.py --model runs/model.pt --store twin-data/graph.db

1. **Forecast** (180 days, 32 samples, every member of a 3-member ensemble, 1 torch thread):
   the median over repeated calls of ``Twin.load`` + ``Twin.forecast`` (cold: a new ensemble
   object each call so no cached encoding; warm: the same patient again), next to the previous
   algorithm, kept here as the reference (records read twice, the graph batched, every member
   put in eval mode and rolled out on its own, each quantile by its own float64 bisection), in
   the same run on the same patients; the largest difference between their quantiles is printed.
2. **Cohort what-if** (``--twins`` twins x 8 plans x 365 days at 8, 32 and 128 samples, ``--workers``
   chunks at once in threads, 2 by default, each with 1 torch thread on the 2 cores): wall
   time and peak resident memory of a fresh process per run, which simulates with samples kept
   only at the report days (the default for cohort runs is to summarise, see
   ``scenarios.simulate``'s ``sample_days``), and once with every sample kept.

Writes ``bench/results/serving.json`` and prints a table. Absolute figures depend on the
machine (named in the output); the before/after comparison is within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

OUT = ROOT / "bench" / "results" / "serving.json"


def build_model(work: Path, patients: int, seed: int) -> tuple[Path, Path]:
    """A synthetic cohort in SQLite and a 3-member model trained on it (small, quick)."""
    from graph.ingest import ingest_paths
    from graph.store.sqlite import SQLiteStore
    from synthetic import SynthConfig, generate_cohort
    from twin.training import TrainConfig, train

    generate_cohort(SynthConfig(patients=patients, seed=seed, years=3.0), work / "cohort")
    store = SQLiteStore(work / "graph.db")
    ingest_paths(store, [work / "cohort" / "fhir"])
    train(store, TrainConfig(epochs=4, members=3, progress=False, image_epochs=3, seed=seed), work / "model.pt")
    store.close()
    return work / "graph.db", work / "model.pt"


def reference_forecast(store: Any, pid: str, ens: Any, horizon: float, n_samples: int, seed: int) -> np.ndarray:
    """The forecast as computed before the one-solve ensemble: ``[3, Q, L]`` standardised quantiles."""
    from torch_geometric.data import Batch

    from twin.features import build_graph, dose_schedule, load_records
    from twin.predict import QUANTILES, mixture_quantile

    latest = load_records(store, pid)
    t0 = max(n.time for n in latest.nodes if n.time is not None)
    rec = load_records(store, pid, t0)
    from twin.features import actions_from_records

    spec = ens.spec
    doses = dose_schedule(actions_from_records(rec, t0, spec.vocab), spec.vocab, spec.norms, int(horizon) + 1,
                          strict=False)[None]
    days = torch.from_numpy(np.unique(np.append(np.arange(0, horizon + 1, 7), horizon)).astype(np.float32))
    batch = Batch.from_data_list([build_graph(rec, t0, spec, ens.image_encoder)])
    gen = torch.Generator().manual_seed(seed)
    means, logvars = [], []
    with torch.no_grad():
        for m in ens.members:
            m.eval()
            eps = torch.randn(n_samples, m.cfg.latent, generator=gen)
            ro = m.rollout(batch, doses.repeat_interleave(n_samples, dim=0), days, eps=eps)
            means.append(ro.mean.view(1, n_samples, *ro.mean.shape[1:]))
            logvars.append(ro.logvar.view(1, n_samples, *ro.logvar.shape[1:]))
    mu = torch.cat(means, 1).double()
    sd = torch.exp(0.5 * torch.cat(logvars, 1).double())
    q = np.stack([mixture_quantile(mu, sd, p).numpy()[0] for p in QUANTILES])
    if ens.interval_calibration is not None:  # the checkpoint's interval calibration, as predict applies it
        q[0], q[2] = ens.interval_calibration.widen(q[0], q[1], q[2], spec.vocab.target_labs, days.numpy())
    return q


def new_forecast(store: Any, pid: str, ens: Any, horizon: float, n_samples: int, seed: int) -> np.ndarray:
    """``Twin.load`` + ``Twin.forecast``, as standardised quantiles ``[3, Q, L]`` for comparison."""
    from twin.twin import Twin

    fc = Twin.load(store, pid, ens).forecast(horizon_days=horizon, n_samples=n_samples, seed=seed)
    norms, codes = ens.spec.norms, ens.spec.vocab.target_labs
    out = [[(np.array(getattr(fc.labs[c], f)) - norms.lab_mean[c]) / norms.lab_std[c] for c in codes]
           for f in ("p05", "median", "p95")]
    return np.stack([np.stack(q, axis=-1) for q in out])


def time_forecasts(db: Path, model: Path, n_patients: int, repeats: int) -> dict[str, Any]:
    from graph.store.sqlite import SQLiteStore
    from twin.model.checkpoint import TwinEnsemble

    store = SQLiteStore(db)
    ens = TwinEnsemble.load(model)
    pids = sorted(store.patient_ids())[:n_patients]
    horizon, samples = 180.0, 32
    nodes = [len(store.find_nodes(__import__("graph").NodeQuery(patient_id=p))) for p in pids]
    diffs = [float(np.abs(reference_forecast(store, p, ens, horizon, samples, 0)
                          - new_forecast(store, p, ens, horizon, samples, 0)).max()) for p in pids]
    cold_ens = [TwinEnsemble.load(model) for _ in range(3)]

    def med(fn: Any) -> float:
        ts = []
        for r in range(repeats):
            for i, p in enumerate(pids):
                t = time.perf_counter()
                fn(p, r * len(pids) + i)
                ts.append(time.perf_counter() - t)
        return float(np.median(ts) * 1000)

    for p in pids:  # warm-up: imports, allocator, first-call paths
        reference_forecast(store, p, ens, horizon, samples, 0)
        new_forecast(store, p, ens, horizon, samples, 0)
    before = med(lambda p, i: reference_forecast(store, p, ens, horizon, samples, 0))
    warm = med(lambda p, i: new_forecast(store, p, ens, horizon, samples, 0))

    def cold(p: str, i: int) -> None:
        e = cold_ens[i % 3]
        e.encodings.clear()
        new_forecast(store, p, e, horizon, samples, 0)

    after_cold = med(cold)
    store.close()
    return {"horizon_days": horizon, "samples": samples, "members": len(ens.members), "patients": len(pids),
            "graph_nodes_median": float(np.median(nodes)), "repeats": repeats,
            "median_ms_before": round(before, 1), "median_ms_after_cold": round(after_cold, 1),
            "median_ms_after_warm": round(warm, 1), "speedup_cold": round(before / after_cold, 2),
            "max_abs_quantile_diff_standardised": max(diffs)}


# ---------------------------------------------------------------- cohort what-if, one process per run
def whatif_child(db: str, model: str, twins: int, samples: int, keep_all: bool, workers: int) -> dict[str, Any]:
    import resource

    from graph.store.sqlite import SQLiteStore
    from scenarios import TreatmentPlan, simulate
    from service import REPORT_DAYS
    from twin.model.checkpoint import TwinEnsemble
    from twin.twin import Twin

    store = SQLiteStore(db)
    ens = TwinEnsemble.load(model)
    ids = sorted(store.patient_ids())
    tws = [Twin.load(store, ids[i % len(ids)], ens) for i in range(twins)]
    # 8 plans: no treatment, then each treatment alone at its cohort's typical daily dose, then
    # at twice that dose, until there are 8
    plans = [TreatmentPlan.no_treatment("none")]
    for mult in (1.0, 2.0):
        for tr in ens.cohort.treatments:
            if len(plans) < 8:
                dose = mult * ens.spec.norms.dose_scale.get(tr.code, 1.0)
                plans.append(TreatmentPlan.from_dict({"name": f"{tr.name} x{mult:g}", "baseline": "none", "actions": [
                    {"treatment": tr.name, "dose": dose, "unit": tr.unit, "start": 0}]}))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    res = simulate(tws, plans, 365, n_samples=samples, seed=0, sample_days=None if keep_all else REPORT_DAYS,
                   workers=workers)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"twins": twins, "plans": len(plans), "samples": samples, "keep_all_samples": keep_all,
            "seconds": round(secs, 2), "peak_rss_mb": round(peak / 1024, 1),
            "rss_before_mb": round(rss0 / 1024, 1), "workers": workers, "torch_threads": torch.get_num_threads(), "sample_array_mb": round(res.lab_samples.nbytes / 2**20, 1),
            "trajectories_per_s": round(twins * len(plans) * samples / secs)}


def time_whatif(db: Path, model: Path, twins: int, sample_counts: list[int], keep_all_at: int,
                workers: int) -> list[dict[str, Any]]:
    runs = [(s, False) for s in sample_counts] + [(keep_all_at, True)]
    out = []
    for s, keep in runs:
        cmd = [sys.executable, __file__, "--child", str(db), str(model), str(twins), str(s), str(int(keep)), str(workers)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
        if proc.returncode:
            raise SystemExit(f"what-if child failed:\n{proc.stderr[-3000:]}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help="checkpoint (default: train a small one)")
    ap.add_argument("--store", type=Path, help="SQLite store the model's patients are in (with --model)")
    ap.add_argument("--patients", type=int, default=120, help="cohort size when training a model")
    ap.add_argument("--forecast-patients", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--twins", type=int, default=1000)
    ap.add_argument("--samples", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--workers", type=int, default=2,
                    help="what-if chunks solved at once in threads, each with 2 // workers torch threads (2 cores)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        if args.model:
            db, model = args.store, args.model
        else:
            db, model = build_model(Path(tmp), args.patients, seed=0)
        fc = time_forecasts(db, model, args.forecast_patients, args.repeats)
        wi = time_whatif(db, model, args.twins, args.samples, keep_all_at=32, workers=args.workers)
    doc = {"bench": "serving", "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                            "torch": torch.__version__, "device": "cpu"},
           "forecast": fc, "whatif": wi}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"forecast (180 d, 32 samples, {fc['members']} members, 1 thread, {fc['patients']} patients of "
          f"~{fc['graph_nodes_median']:.0f} nodes): before {fc['median_ms_before']} ms, after {fc['median_ms_after_cold']} ms "
          f"cold / {fc['median_ms_after_warm']} ms warm ({fc['speedup_cold']}x); largest quantile difference "
          f"{fc['max_abs_quantile_diff_standardised']:.1e} sd")
    for w in wi:
        print(f"what-if {w['twins']} twins x {w['plans']} plans x {w['samples']} samples x 365 d "
              f"({'every sample kept' if w['keep_all_samples'] else 'samples at report days'}; {w['workers']} workers x "
              f"{w['torch_threads']} torch threads): {w['seconds']} s, "
              f"peak RSS {w['peak_rss_mb']} MB, {w['trajectories_per_s']} trajectories/s")
    return doc


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        torch.set_num_threads(max(1, 2 // int(a[5])))  # workers x torch threads = the 2 cores
        print(json.dumps(whatif_child(a[0], a[1], int(a[2]), int(a[3]), bool(int(a[4])), int(a[5]))))
    else:
        main()

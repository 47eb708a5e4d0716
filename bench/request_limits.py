"""Wall time of the largest forecast and scenario requests the API accepts at once.

Run from the repository root::

    .venv/bin/python bench/request_limits.py [--patients 60] [--repeat 3]

What it does (loopback only, everything in a temporary folder):

1. generates a synthetic cohort, ingests it into an embedded store and trains a model with
   the default architecture and ensemble size (``TrainConfig()``'s members; 1 epoch: the
   cost of a request does not depend on how well the model is trained);
2. starts the API in this process (as ``twin serve`` does, one torch thread) with the default
   ``max_request_cost``;
3. for request shapes that stress each term of the cost model (long horizons, 1-day steps,
   32 plans, 512 samples), finds the largest ``n_samples`` the cost model admits
   (:func:`service.forecast_cost`, :func:`service.scenario_cost`), times that request over
   HTTP ``--repeat`` times, and checks that one more sample is refused with 422;
4. prints a table and the slowest accepted request of each kind, and writes
   ``bench/results/request_limits.json``. Exits non-zero if an accepted request failed or an
   over-budget one was not refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api import Settings, create_app, uvicorn_config  # noqa: E402
from api.security import KeyStore  # noqa: E402
from graph import ingest_paths, open_store  # noqa: E402
from service import (  # noqa: E402
    DEFAULT_MAX_REQUEST_COST,
    ModelRegistry,
    forecast_cost,
    report_days,
    scenario_cost,
    set_torch_threads,
    train_config,
    train_model,
)
from synthetic.cohort import SynthConfig, generate_cohort  # noqa: E402

OUT = ROOT / "bench" / "results" / "request_limits.json"
MAX_SAMPLES = 512  # the API's limit on n_samples

#: (horizon_days, step_days) of forecasts; (horizon_days, plans) of scenario runs.
FORECASTS = [(3650, 1), (3650, 7), (365, 1), (90, 1)]
SCENARIOS = [(3650, 32), (3650, 1), (365, 32), (1825, 8)]

_PLAN_KINDS = [
    {"baseline": "none"},
    {"baseline": "current"},
    {"baseline": "none", "actions": [{"drug": "metformin", "dose": 1000, "unit": "mg", "frequency": "bid"}]},
]


def _plans(n: int) -> list[dict[str, Any]]:
    return [{"name": f"plan {i}", **_PLAN_KINDS[i % len(_PLAN_KINDS)]} for i in range(n)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _largest(cost_of: Any, ceiling: int) -> int:
    """The largest n_samples in 1..512 whose cost is within ``ceiling`` (0 if none)."""
    best = 0
    for n in range(1, MAX_SAMPLES + 1):
        if cost_of(n).units <= ceiling:
            best = n
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--members", type=int, default=None, help="ensemble size (default: TrainConfig's)")
    args = ap.parse_args()
    set_torch_threads(1)
    logging.getLogger("api.access").setLevel(logging.WARNING)  # no access-log line per request

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_cohort(SynthConfig(patients=args.patients, years=3.0, seed=0), root / "cohort")
        store_url = f"sqlite:///{root / 'store.db'}"
        registry = ModelRegistry(root / "models")
        t0 = time.perf_counter()
        with open_store(store_url) as store:
            ingest_paths(store, sorted((root / "cohort" / "fhir").glob("*.json")))
            pid = sorted(store.patient_ids())[0]
            members = {"members": args.members} if args.members else {}
            train_model(store, registry, "bench", train_config(epochs=1, progress=False, **members))
        train_s = time.perf_counter() - t0
        model = registry.load("bench")
        v = model.spec.vocab
        print(f"model: {len(model.members)} members, {v.n_targets} labs, {v.n_treatments} drugs, "
              f"{len(v.event_kinds)} event kinds, solver step {model.cohort.scales.step_days:g} d "
              f"(cohort + training {train_s:.0f} s)")

        settings = Settings(store=store_url, model_path=root / "models", keys_db=root / "keys.db",
                            audit_log=root / "audit.jsonl", jobs_db=root / "jobs.db", upload_dir=root / "uploads",
                            rate_limit_per_minute=60_000.0, rate_limit_burst=10_000)
        ceiling = settings.max_request_cost
        ks = KeyStore(settings.keys_db)
        token = ks.create("bench", ["sim:run"]).token
        ks.close()
        import uvicorn

        port = _free_port()
        server = uvicorn.Server(uvicorn_config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)

        rows: list[dict[str, Any]] = []
        bad = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                          timeout=600.0) as c:
            c.post(f"/v1/twins/{pid}/forecast", json={"model": "bench", "horizon_days": 30}).raise_for_status()
            cases: list[tuple[str, dict[str, Any], Any]] = []
            for horizon, step in FORECASTS:
                def fcost(n: int, h: int = horizon, s: int = step) -> Any:
                    return forecast_cost(model, samples=n, horizon_days=h, step_days=s)
                cases.append(("forecast", {"model": "bench", "horizon_days": horizon, "step_days": step}, fcost))
            for horizon, n_plans in SCENARIOS:
                n_days = len(report_days(float(horizon)))

                def scost(n: int, h: int = horizon, p: int = n_plans, d: int = n_days) -> Any:
                    return scenario_cost(model, plans=p, samples=n, horizon_days=h, summary_days=d)
                cases.append(("scenarios", {"model": "bench", "horizon_days": horizon, "plans": _plans(n_plans)},
                              scost))
            for kind, body, cost_of in cases:
                n = _largest(cost_of, ceiling)
                if n == 0:
                    print(f"{kind} {body['horizon_days']} d: not even 1 sample fits the ceiling")
                    continue
                times = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    r = c.post(f"/v1/twins/{pid}/{kind}", json={**body, "n_samples": n})
                    times.append(time.perf_counter() - t)
                    if r.status_code != 200:
                        print(f"FAILED {kind} {r.status_code}: {r.text[:300]}")
                        bad += 1
                refused = None
                if n < MAX_SAMPLES:
                    r = c.post(f"/v1/twins/{pid}/{kind}", json={**body, "n_samples": n + 1})
                    refused = r.status_code
                    if r.status_code != 422 or "over-budget" not in r.json().get("type", ""):
                        print(f"NOT REFUSED {kind} n_samples={n + 1}: {r.status_code}")
                        bad += 1
                cost = cost_of(n)
                row = {"kind": kind, "horizon_days": body["horizon_days"], "step_days": body.get("step_days"),
                       "plans": len(body.get("plans", [])) or None, "n_samples": n, "cost": cost.units,
                       "trajectories": cost.trajectories, "median_s": round(statistics.median(times), 3),
                       "max_s": round(max(times), 3), "next_sample_status": refused}
                rows.append(row)
                shape = (f"step {row['step_days']} d" if kind == "forecast" else f"{row['plans']} plans")
                print(f"{kind:9s} {row['horizon_days']:5d} d, {shape:10s}, n_samples {n:3d}: cost {cost.units:>9,} "
                      f"({cost.trajectories:,} trajectories)  median {row['median_s']:.2f} s  max {row['max_s']:.2f} s"
                      f"  n_samples+1 -> {refused}")
        server.should_exit = True
        thread.join(timeout=10)

    slowest = {k: max((r for r in rows if r["kind"] == k), key=lambda r: r["max_s"]) for k in ("forecast", "scenarios")}
    summary = "; ".join(
        f"{k}: {r['horizon_days']} d x {r['n_samples']} samples"
        + (f" at a {r['step_days']}-day step" if k == "forecast" else f" x {r['plans']} plans")
        + f" (cost {r['cost']:,}) in {r['max_s']:.1f} s" for k, r in slowest.items())
    print(f"\nceiling max_request_cost = {ceiling:,}; slowest accepted: {summary}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "ceiling": ceiling, "default_ceiling": DEFAULT_MAX_REQUEST_COST, "members": len(model.members),
        "rows": rows, "slowest": slowest,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch_threads": 1},
    }, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

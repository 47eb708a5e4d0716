"""Load benchmark of the HTTP API on loopback: ingest, forecast and scenario endpoints.

Run from the repository root::

    .venv/bin/python bench/api_load.py [--patients 40] [--requests 200] [--concurrency 8]

What it does (everything bounded in request count and in time, only on 127.0.0.1):

1. starts ``twin serve`` (``--workers`` processes) on a free loopback port with a fresh
   embedded store, key file and audit log in a temporary folder;
2. **ingest**: generates a synthetic cohort (``synthetic``) and POSTs every patient's
   bundle to ``/v1/records`` concurrently, then checks that no write was lost: every patient
   answers ``GET /v1/patients/{id}`` with exactly the node counts its upload reported;
3. trains a small model through ``POST /v1/models`` and waits for the job;
4. **forecast** and **scenarios**: ``--requests`` requests each, ``--concurrency`` in flight,
   on random patients (scenarios: three plans per request, ranked by an objective).

Prints a table (requests, errors, throughput, p50/p99 latency) and writes
``bench/results/api_load.json``. Exits non-zero on any error or lost write.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.security import KeyStore  # noqa: E402
from synthetic.cohort import SynthConfig, generate_cohort  # noqa: E402

OUT = ROOT / "bench" / "results" / "api_load.json"
HOST = "127.0.0.1"

def scenario_plans(treatments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Three plans any trained model can simulate: no treatment, current therapy continued, and
    current therapy without the model's first treatment (a stop needs no dose in its unit)."""
    first = treatments[0]["name"] if treatments else None
    plans: list[dict[str, Any]] = [{"name": "no treatment", "baseline": "none"},
                                   {"name": "continue current therapy", "baseline": "current"}]
    if first:
        plans.append({"name": f"stop {first}", "baseline": "current",
                      "actions": [{"action": "stop", "treatment": first, "start": 0}]})
    return plans



def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


class Server:
    """``twin serve`` in a child process with its state in ``root``."""

    def __init__(self, root: Path, *, rate_per_minute: float, workers: int = 1) -> None:
        self.root = root
        self.workers = workers
        self.port = _free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "TWIN_STORE": f"sqlite:///{root / 'store.db'}",
            "TWIN_MODEL_PATH": str(root / "models"),
            "TWIN_KEYS_DB": str(root / "keys.db"),
            "TWIN_AUDIT_LOG": str(root / "audit.jsonl"),
            "TWIN_JOBS_DB": str(root / "jobs.db"),
            "TWIN_UPLOAD_DIR": str(root / "uploads"),
            "TWIN_RATE_LIMIT_PER_MINUTE": str(rate_per_minute),
            "TWIN_RATE_LIMIT_BURST": "100000",
        }
        ks = KeyStore(root / "keys.db")
        self.token = ks.create("api-load-bench", ["admin"]).token
        ks.close()
        self.log = open(root / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-c", "from cli import main; main()",
               "serve", "--host", HOST, "--port", str(self.port), "--workers", str(self.workers)]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.root / 'server.log'}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become healthy within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


async def _run_load(
    client: httpx.AsyncClient, make_request: Any, n: int, concurrency: int, max_seconds: float,
    on_response: Any = None,
) -> dict[str, Any]:
    """Send up to ``n`` requests (``concurrency`` in flight, stop after ``max_seconds``)."""
    lat: list[float] = []
    errors: dict[str, int] = {}
    first_error: dict[str, str] = {}  # the first answer of each error code, to say why
    sem = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + max_seconds
    sent = 0

    async def one(i: int) -> None:
        nonlocal sent
        async with sem:
            if time.monotonic() > deadline:
                return
            sent += 1
            method, path, kwargs, expect = make_request(i)
            t0 = time.perf_counter()
            try:
                r = await client.request(method, path, **kwargs)
                code = r.status_code
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            lat.append(time.perf_counter() - t0)
            if on_response is not None and code == expect:
                on_response(r)
            if code != expect:
                errors[str(code)] = errors.get(str(code), 0) + 1
                if isinstance(code, int):
                    first_error.setdefault(str(code), r.text[:500])

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    return {
        "requests": sent,
        "errors": sum(errors.values()),
        "error_codes": errors,
        "first_error": first_error,
        "concurrency": concurrency,
        "seconds": round(wall, 3),
        "throughput_rps": round(sent / wall, 2) if wall > 0 else None,
        "p50_ms": round(_percentile(lat, 0.50) * 1000, 1),
        "p99_ms": round(_percentile(lat, 0.99) * 1000, 1),
        "max_ms": round(max(lat, default=float("nan")) * 1000, 1),
    }


async def _bench(args: argparse.Namespace, server: Server, cohort_dir: Path) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.token}"}
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120, limits=limits) as client:
        bundles = sorted((cohort_dir / "fhir").glob("*.json"))
        bodies = [b.read_bytes() for b in bundles]
        reported: dict[str, dict[str, int]] = {}

        def note(r: httpx.Response) -> None:
            doc = r.json()
            for pid in doc["patients"]:
                reported[pid] = {k: v for k, v in doc["nodes_by_type"].items() if k not in ("Concept", "Gene")}

        def ingest_req(i: int) -> tuple[str, str, dict[str, Any], int]:
            return ("POST", "/v1/records",
                    {"content": bodies[i], "headers": {"Content-Type": "application/fhir+json"}}, 201)

        results["ingest"] = await _run_load(client, ingest_req, len(bodies), args.concurrency, args.max_seconds, note)
        lost = [b.stem for b in bundles if b.stem not in reported]  # uploads that did not succeed

        for pid, expected in sorted(reported.items()):  # every acknowledged write is in the store
            r = await client.get(f"/v1/patients/{pid}")
            if r.status_code != 200 or r.json()["counts"] != expected:
                lost.append(pid)
        results["ingest"]["patients"] = len(reported)
        results["ingest"]["lost_writes"] = len(lost)
        patients = sorted(reported)
        if not {"forecast", "scenarios"} & set(args.phases):
            return results

        t0 = time.perf_counter()
        job = (await client.post("/v1/models", json={"name": "default", "epochs": args.epochs, "members": 3,
                                                     "origins_per_patient": 2, "spec": {"horizon_days": 365}})).json()
        while job["status"] in ("queued", "running") and time.perf_counter() - t0 < args.max_train_seconds:
            await asyncio.sleep(0.5)
            job = (await client.get(f"/v1/jobs/{job['id']}")).json()
        results["train"] = {"status": job["status"], "seconds": round(time.perf_counter() - t0, 1),
                            "error": job.get("error")}
        if job["status"] != "succeeded":
            return results

        rng = random.Random(0)
        pick = [rng.choice(patients) for _ in range(args.requests)]
        models = (await client.get("/v1/models")).json()
        listed = models["models"] if isinstance(models, dict) else models
        plans = scenario_plans(next(m for m in listed if m["name"] == "default")["spec"]["treatments"])

        def forecast_req(i: int) -> tuple[str, str, dict[str, Any], int]:
            return ("POST", f"/v1/twins/{pick[i]}/forecast", {"json": {"horizon_days": 180}}, 200)

        def scenario_req(i: int) -> tuple[str, str, dict[str, Any], int]:
            body = {"horizon_days": 180, "plans": plans, "n_samples": 16,
                    "objective": "minimise HbA1c at 180d"}
            return ("POST", f"/v1/twins/{pick[i]}/scenarios", {"json": body}, 200)

        # warm-up: every server process loads the model once (concurrent requests reach each worker)
        await _run_load(client, forecast_req, min(8 * args.workers, args.requests), args.concurrency, args.max_seconds)
        if "forecast" in args.phases:
            results["forecast"] = await _run_load(client, forecast_req, args.requests, args.concurrency,
                                                  args.max_seconds)
        if "scenarios" in args.phases:
            results["scenarios"] = await _run_load(client, scenario_req, args.requests, args.concurrency,
                                                   args.max_seconds)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--requests", type=int, default=200, help="requests per load phase (forecast, scenarios)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=120.0, help="time bound of each load phase")
    ap.add_argument("--max-train-seconds", type=float, default=600.0)
    ap.add_argument("--workers", type=int, default=1, help="server processes (twin serve --workers)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--phases", default="ingest,forecast,scenarios",
                    help="comma-separated subset of ingest,forecast,scenarios (ingest always runs: it loads the data)")
    args = ap.parse_args()
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]

    with tempfile.TemporaryDirectory(prefix="twin-api-load-") as tmp:
        root = Path(tmp)
        generate_cohort(SynthConfig(patients=args.patients, years=2.0, seed=11), root / "cohort")
        server = Server(root, rate_per_minute=1e9, workers=args.workers)
        server.start()
        try:
            results = asyncio.run(_bench(args, server, root / "cohort"))
        finally:
            server.stop()

    doc = {
        "bench": "api_load",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")

    print(f"{'endpoint':<12}{'requests':>9}{'conc':>6}{'errors':>8}{'req/s':>9}{'p50 ms':>10}{'p99 ms':>10}")
    for name in ("ingest", "forecast", "scenarios"):
        r = results.get(name)
        if r:
            print(f"{name:<12}{r['requests']:>9}{r['concurrency']:>6}{r['errors']:>8}{r['throughput_rps']:>9}"
                  f"{r['p50_ms']:>10}{r['p99_ms']:>10}")
    ing = results["ingest"]
    print(f"ingest: {ing['patients']} patients, lost writes: {ing['lost_writes']}; "
          f"train: {results.get('train', {}).get('status')} in {results.get('train', {}).get('seconds')} s")
    print(f"wrote {args.out}")
    bad = ing["lost_writes"] or any(results.get(n, {}).get("errors") for n in ("ingest", "forecast", "scenarios"))
    complete = all(n in results for n in args.phases)
    return 0 if complete and not bad else 1


if __name__ == "__main__":
    sys.exit(main())

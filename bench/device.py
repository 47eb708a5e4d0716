"""The GPU path, measured: training throughput on CPU and CUDA, forecast latency, what-if throughput.

One prepared script for a machine with an accelerator (it needs only torch, torch_geometric,
torchdiffeq, numpy and the project's own packages; no store server, no web stack)::

    python bench/device.py                 # CUDA when available, always CPU for the ratio
    python bench/device.py --quick         # a minute: smaller cohort and what-if

Prints and writes ``bench/results/device.json``:

* training throughput, patients/s (examples from the same cohort, same config, one epoch
  after a warm-up epoch) on CPU and on CUDA, and their ratio;
* forecast latency (180 days, 32 samples, every member), median of repeated calls;
* what-if throughput of the one-solve ensemble (``StackedMembers.rollout``): twin-plan
  trajectories per second at 1,000 and 100,000 twin-plans (8 plans per twin, 365 days, one
  latent draw per member, the posterior means), solved in chunks that fit the device.
"""

from __future__ import annotations

import argparse
import json
import platform
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

OUT = ROOT / "bench" / "results" / "device.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cohort(work: Path, patients: int) -> Any:
    from graph.ingest import ingest_paths
    from graph.store.sqlite import SQLiteStore
    from synthetic import SynthConfig, generate_cohort

    generate_cohort(SynthConfig(patients=patients, seed=0, years=3.0), work / "cohort")
    store = SQLiteStore(work / "graph.db")
    ingest_paths(store, [work / "cohort" / "fhir"])
    return store


def train_throughput(store: Any, work: Path, device: str) -> dict[str, Any]:
    from twin.training import TrainConfig, train

    cfg = TrainConfig(epochs=2, members=1, progress=False, image_epochs=1, device=device, patience=10)
    t = time.perf_counter()
    rep = train(store, cfg, work / f"model-{device}.pt")
    wall = time.perf_counter() - t
    per_epoch = float(rep.seconds_per_epoch)
    return {"device": device, "train_patients": rep.n_train_patients, "seconds_per_epoch": round(per_epoch, 3),
            "patients_per_s": round(rep.n_train_patients / per_epoch, 1), "wall_s": round(wall, 1)}


def forecast_latency(store: Any, model: Path, device: str, repeats: int) -> float:
    from twin.model.checkpoint import TwinEnsemble
    from twin.twin import Twin

    ens = TwinEnsemble.load(model, device)
    pid = sorted(store.patient_ids())[0]
    tw = Twin.load(store, pid, ens)
    for _ in range(3):
        tw.forecast(horizon_days=180, n_samples=32)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        tw.forecast(horizon_days=180, n_samples=32)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000)


def whatif_throughput(store: Any, model: Path, device: str, twin_plans: int) -> dict[str, Any]:
    """Twin-plan trajectories per second of the stacked solve (graphs encoded once, reused)."""
    from torch_geometric.data import Batch

    from twin.features import build_graph, load_records
    from twin.model.checkpoint import TwinEnsemble

    ens = TwinEnsemble.load(model, device)
    dev = torch.device(device)
    stacked = ens.stacked()
    pids = sorted(store.patient_ids())[:64]
    graphs = []
    for p in pids:
        rec = load_records(store, p)
        t0 = max(n.time for n in rec.nodes if n.time is not None)
        graphs.append(build_graph(rec.cut(t0), t0, ens.spec, ens.image_encoder))
    plans = 8
    per_chunk = max(plans, min(twin_plans, 200_000 if dev.type == "cuda" else 8_000) // plans * plans)
    n_chunk_twins = per_chunk // plans
    batch = Batch.from_data_list([graphs[i % len(graphs)] for i in range(n_chunk_twins)]).to(dev)
    enc = stacked.encode(batch)
    d = ens.spec.vocab.n_treatments
    gen = torch.Generator().manual_seed(0)
    doses = (torch.rand(n_chunk_twins * plans, 366, d, generator=gen) < 0.5).float().to(dev)
    t_q = torch.arange(0.0, 366.0, 7.0, device=dev)
    stacked.rollout(enc, None, doses, t_q)  # warm-up: kernels, allocator
    _sync(dev)
    done, t = 0, time.perf_counter()
    while done < twin_plans:
        stacked.rollout(enc, None, doses, t_q)
        done += per_chunk
    _sync(dev)
    secs = time.perf_counter() - t
    return {"device": device, "twin_plans": done, "members": len(ens.members), "seconds": round(secs, 3),
            "twin_plan_trajectories_per_s": round(done / secs)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    doc: dict[str, Any] = {"bench": "device", "machine": {"platform": platform.platform(), "torch": torch.__version__,
                                                          "cpu_threads": torch.get_num_threads(),
                                                          "cuda": torch.cuda.get_device_name(0) if "cuda" in devices else None},
                           "train": [], "forecast_ms": {}, "whatif": []}
    with tempfile.TemporaryDirectory(prefix="bench-device-") as tmp:
        work = Path(tmp)
        store = cohort(work, 60 if args.quick else 400)
        for dev in devices:
            doc["train"].append(train_throughput(store, work, dev))
        model = work / "model-cpu.pt"
        from twin.training import TrainConfig, train

        train(store, TrainConfig(epochs=1, members=3, progress=False, image_epochs=1), model)
        for dev in devices:
            doc["forecast_ms"][dev] = round(forecast_latency(store, model, dev, 10 if args.quick else 30), 1)
            for n in ((1_000, 8_000) if args.quick else (1_000, 100_000)):
                doc["whatif"].append(whatif_throughput(store, model, dev, n))
    if len(doc["train"]) == 2:
        doc["gpu_over_cpu_training"] = round(doc["train"][1]["patients_per_s"] / doc["train"][0]["patients_per_s"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return doc


if __name__ == "__main__":
    main()

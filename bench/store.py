"""Benchmark: embedded SQLite store vs Neo4j on the same synthetic cohort.

Run from the repository root (starts its own Neo4j through ``scripts/neo4j-server`` unless
``--neo4j-uri`` or ``NEO4J_TEST_URI`` names a running one; everything on that server is wiped)::

    python bench/store.py [--patients 200] [--per-node 2000] [--queries 50]

Measures, on a cohort from ``synthetic.generate_cohort`` (parsed once; only store work is
timed):

* **ingest**: nodes+edges written per second, one ``write`` (one transaction) per patient bundle;
* **timeline**: latency of ``find_nodes(patient_id=...)`` for random patients (median, p95);
* **cohort**: latency of a composed predicate (condition AND recent lab value AND NOT medication);
* **Neo4j batched vs per-node**: the same nodes written by ``Neo4jStore.write`` (batched
  ``UNWIND ... MERGE`` in one transaction) vs one ``MERGE`` statement per node in its own
  auto-commit transaction, and vs one statement per node inside a single transaction; ratio of
  throughputs (target: batched at least 20x faster than per-node).

Prints a table and writes ``bench/results/store.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graph.ingest import parse_path  # noqa: E402
from graph.predicates import HasCondition, LabValue, OnMedication, Predicate  # noqa: E402
from graph.schema import GraphBatch, Node, NodeType  # noqa: E402
from graph.store.base import GraphStore, NodeQuery  # noqa: E402
from graph.store.codec import node_to_record  # noqa: E402
from graph.store.neo4j import Neo4jStore  # noqa: E402
from graph.store.sqlite import SQLiteStore  # noqa: E402

OUT = ROOT / "bench" / "results" / "store.json"
SCRIPT = ROOT / "scripts" / "neo4j-server"


def _cohort(patients: int, seed: int, work: Path) -> list[GraphBatch]:
    from synthetic import SynthConfig, generate_cohort

    summary = generate_cohort(SynthConfig(patients=patients, seed=seed), work / "cohort")
    files = sorted((Path(summary.out_dir) / "fhir").glob("*.json"))
    return [parse_path(f).batch for f in files]


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _latency(fn: Callable[[Any], Any], args: list[Any]) -> dict[str, float]:
    fn(args[0])  # warm caches and query plans
    ms = sorted(_timed(lambda a=a: fn(a)) * 1000 for a in args)
    return {"median_ms": statistics.median(ms), "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))], "n": len(ms)}


def _predicate(batches: list[GraphBatch]) -> tuple[Predicate, Any]:
    """A composed predicate over the cohort's most common condition, lab and medication codes."""
    kinds: dict[NodeType, Counter[str]] = {t: Counter() for t in (NodeType.CONDITION, NodeType.LAB, NodeType.MEDICATION)}
    lab_values: dict[str, list[float]] = {}
    last = None
    for b in batches:
        for n in b.nodes:
            if n.type in kinds and n.code:
                kinds[n.type][n.code] += 1
            if n.type == NodeType.LAB and n.value is not None:
                lab_values.setdefault(n.code or "", []).append(n.value)
            if n.time is not None and (last is None or n.time > last):
                last = n.time
    cond = kinds[NodeType.CONDITION].most_common(1)[0][0]
    lab = kinds[NodeType.LAB].most_common(1)[0][0]
    med = kinds[NodeType.MEDICATION].most_common(1)[0][0]
    threshold = statistics.median(lab_values[lab])
    pred = HasCondition(cond) & LabValue(lab, ">", threshold, within_days=365) & ~OnMedication(med)
    return pred, last - timedelta(days=30)


def _bench_store(store: GraphStore, batches: list[GraphBatch], pred: Predicate, as_of: Any, n_queries: int) -> dict[str, Any]:
    items = sum(len(b.nodes) + len(b.edges) for b in batches)
    secs = _timed(lambda: [store.write(b) for b in batches])
    pids = store.patient_ids()
    rng = random.Random(0)
    sample = [rng.choice(pids) for _ in range(n_queries)]
    timeline = _latency(lambda pid: store.find_nodes(NodeQuery(patient_id=pid)), sample)
    cohort = _latency(lambda _: store.cohort(pred, as_of=as_of), list(range(max(5, n_queries // 5))))
    return {
        "items": items,
        "ingest_s": secs,
        "ingest_items_per_s": items / secs,
        "timeline": timeline,
        "cohort": cohort,
        "cohort_size": len(store.cohort(pred, as_of=as_of)),
        "counts": store.counts().nodes,
    }


def _per_node(store: Neo4jStore, nodes: list[Node], *, one_tx: bool) -> float:
    """One MERGE per node: each in its own auto-commit transaction, or all in one transaction."""
    store.wipe()
    rows = [(n.type.value, node_to_record(n)) for n in nodes]

    def stmt(label: str) -> str:
        return f"MERGE (n:Node {{id: $id}}) SET n:{label} SET n += $p"

    def run() -> None:
        with store._driver.session(database=store.database) as s:
            if one_tx:
                with s.begin_transaction() as tx:
                    for label, r in rows:
                        tx.run(stmt(label), id=r["id"], p={k: v for k, v in r.items() if k != "id"}).consume()
                    tx.commit()
            else:
                for label, r in rows:
                    s.run(stmt(label), id=r["id"], p={k: v for k, v in r.items() if k != "id"}).consume()

    return len(nodes) / _timed(run)


def _batched(store: Neo4jStore, nodes: list[Node]) -> float:
    store.wipe()
    return len(nodes) / _timed(lambda: store.write(GraphBatch(nodes=nodes)))


def _start_neo4j(run_dir: Path) -> tuple[str, float]:
    t0 = time.perf_counter()
    out = subprocess.run([str(SCRIPT), "start", "--run-dir", str(run_dir)], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1], time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-node", type=int, default=2000, help="nodes in the batched vs per-node comparison")
    ap.add_argument("--queries", type=int, default=50, help="timeline queries per store")
    ap.add_argument("--neo4j-uri", default=os.environ.get("NEO4J_TEST_URI"))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        work = Path(tmp)
        batches = _cohort(args.patients, args.seed, work)
        pred, as_of = _predicate(batches)
        started_here = args.neo4j_uri is None
        start_s = None
        uri = args.neo4j_uri
        if started_here:
            uri, start_s = _start_neo4j(work / "neo4j")
        try:
            with SQLiteStore(work / "bench.db") as sq:
                embedded = _bench_store(sq, batches, pred, as_of, args.queries)
            with Neo4jStore.from_url(uri) as neo:
                neo.wipe()
                neo4j = _bench_store(neo, batches, pred, as_of, args.queries)
                if neo4j["cohort_size"] != embedded["cohort_size"]:
                    raise SystemExit(f"stores disagree on the cohort: {embedded['cohort_size']} vs {neo4j['cohort_size']}")
                nodes = [n for b in batches for n in b.nodes][: args.per_node]
                _batched(neo, nodes[:200])  # warm the query plans of both paths
                _per_node(neo, nodes[:200], one_tx=True)
                batched = _batched(neo, nodes)
                per_node_tx = _per_node(neo, nodes, one_tx=True)
                per_node_auto = _per_node(neo, nodes, one_tx=False)
                neo.wipe()
        finally:
            if started_here:
                subprocess.run([str(SCRIPT), "stop", "--run-dir", str(work / "neo4j")], check=False, capture_output=True)

    doc = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "cohort": {"patients": args.patients, "seed": args.seed, "bundles": len(batches),
                   "predicate": repr(pred), "as_of": as_of.isoformat()},
        "neo4j_start_s": start_s,
        "embedded": embedded,
        "neo4j": neo4j,
        "neo4j_write_modes": {
            "nodes": len(nodes),
            "batched_nodes_per_s": batched,
            "per_node_autocommit_nodes_per_s": per_node_auto,
            "per_node_one_tx_nodes_per_s": per_node_tx,
            "ratio_batched_vs_per_node_autocommit": batched / per_node_auto,
            "ratio_batched_vs_per_node_one_tx": batched / per_node_tx,
            "target_ratio": 20.0,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")

    print(f"cohort: {args.patients} synthetic patients, {embedded['items']} nodes+edges in {len(batches)} bundles")
    print(f"{'':32}{'embedded':>14}{'neo4j':>14}")
    print(f"{'ingest (nodes+edges/s)':32}{embedded['ingest_items_per_s']:>14,.0f}{neo4j['ingest_items_per_s']:>14,.0f}")
    for q in ("timeline", "cohort"):
        for stat in ("median_ms", "p95_ms"):
            print(f"{q + ' ' + stat:32}{embedded[q][stat]:>14.2f}{neo4j[q][stat]:>14.2f}")
    w = doc["neo4j_write_modes"]
    print(f"neo4j writes of {w['nodes']} nodes: batched {batched:,.0f}/s, per-node auto-commit {per_node_auto:,.0f}/s "
          f"(ratio {w['ratio_batched_vs_per_node_autocommit']:.1f}x, target >= 20x), "
          f"per-node in one tx {per_node_tx:,.0f}/s (ratio {w['ratio_batched_vs_per_node_one_tx']:.1f}x)")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()

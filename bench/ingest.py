"""Benchmark: ingest of the external Synthea FHIR bundles vs parsing them with ``fhir.resources``.

Run from the repository root::

    python bench/ingest.py [--repeat 3]

Measures, on the 25 bundles in ``../shared/data/external/synthea-fhir``:

* **twin ingest**: read + parse + validate + unit-normalise + write into a fresh embedded
  SQLite store (one transaction per bundle), i.e. everything ``twin ingest`` does;
* **fhir.resources parse**: ``Bundle.model_validate_json`` with the library's R4B models
  (its default models are R5) on the same bytes, which only builds Python objects.

Both report resources/second (Bundle entries); the best of ``--repeat`` runs is used. Prints a
table and writes ``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graph.ingest import ingest_paths  # noqa: E402
from graph.store import SQLiteStore  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "external" / "synthea-fhir"
OUT = ROOT / "bench" / "results" / "ingest.json"


def _count_resources(files: list[Path]) -> int:
    return sum(len(json.loads(f.read_bytes()).get("entry", [])) for f in files)


def bench_twin(files: list[Path]) -> tuple[float, dict[str, int]]:
    """Seconds for a full ingest into a fresh store, and the store's node counts."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.db")
        try:
            t0 = time.perf_counter()
            ingest_paths(store, files)
            elapsed = time.perf_counter() - t0
            counts = store.counts().nodes
        finally:
            store.close()
    return elapsed, counts


def bench_fhir_resources(files: list[Path]) -> float:
    """Seconds for ``fhir.resources`` (R4B) to read and parse every bundle."""
    from fhir.resources.R4B.bundle import Bundle

    t0 = time.perf_counter()
    for f in files:
        Bundle.model_validate_json(f.read_bytes())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per side; the best is reported")
    args = ap.parse_args()
    files = sorted(DATA.glob("*.json"))
    if not files:
        sys.exit(f"no bundles found under {DATA}")
    n = _count_resources(files)
    twin_times, lib_times, counts = [], [], {}
    for _ in range(args.repeat):
        t, counts = bench_twin(files)
        twin_times.append(t)
        lib_times.append(bench_fhir_resources(files))
    twin_best, lib_best = min(twin_times), min(lib_times)
    import fhir.resources

    result = {
        "bundles": len(files),
        "resources": n,
        "bytes": sum(f.stat().st_size for f in files),
        "repeat": args.repeat,
        "twin_ingest": {"seconds": twin_best, "resources_per_s": n / twin_best, "all_seconds": twin_times,
                        "what": "parse + validate + normalise + write to embedded SQLite store"},
        "fhir_resources_parse": {"seconds": lib_best, "resources_per_s": n / lib_best, "all_seconds": lib_times,
                                 "what": "fhir.resources R4B Bundle.model_validate_json only",
                                 "version": getattr(fhir.resources, "__version__", "unknown")},
        "ratio_twin_over_fhir_resources": (n / twin_best) / (n / lib_best),
        "store_nodes": counts,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(files)} Synthea bundles, {n} resources, {result['bytes'] / 1e6:.1f} MB (best of {args.repeat})")
    print(f"{'':34}{'seconds':>10}{'resources/s':>14}")
    print(f"{'twin ingest (parse+store)':34}{twin_best:10.3f}{n / twin_best:14.0f}")
    print(f"{'fhir.resources R4B parse only':34}{lib_best:10.3f}{n / lib_best:14.0f}")
    print(f"ratio (twin / fhir.resources): {result['ratio_twin_over_fhir_resources']:.2f}x")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""The graph commands of the ``twin`` CLI, run as a user runs them (a subprocess, JSON output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXTERNAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "external"
BUNDLE = EXTERNAL / "synthea-fhir" / "Reginald_Auer_d46fae79-67eb-4721-a300-238c8eb943eb.json"
PATIENT = next(e["resource"]["id"] for e in json.loads(BUNDLE.read_text())["entry"] if e["resource"]["resourceType"] == "Patient")


def twin(*args: str, store: Path, check: bool = True) -> tuple[int, dict]:
    env = {**os.environ, "TWIN_STORE": f"sqlite:///{store}"}
    proc = subprocess.run([sys.executable, "-m", "cli", *args, "--json"], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"twin {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "twin.db"
    rc, doc = twin("ingest", str(BUNDLE), store=path)
    assert doc["ok"] and doc["totals"]["files"] == 1
    assert doc["store"]["nodes"]["Patient"] == 1
    assert doc["skipped"].get("Claim", 0) > 0  # billing resources are counted, not errors
    return path


def test_reingest_adds_nothing(store):
    _, doc = twin("ingest", str(BUNDLE), store=store)
    assert doc["totals"]["nodes_added"] == 0 and doc["totals"]["edges_added"] == 0


def test_timeline_and_cut(store):
    _, full = twin("query", "timeline", PATIENT, store=store)
    _, cut = twin("query", "timeline", PATIENT, "--as-of", "2000-01-01", store=store)
    assert 0 < cut["count"] < full["count"]
    assert all(n["time"] <= "2000-01-01T00:00:00Z" for n in cut["nodes"])
    times = [n["time"] for n in full["nodes"]]
    assert times == sorted(times)


def test_cohort_query(store):
    raw = json.loads(BUNDLE.read_text())
    conds = {c["code"] for e in raw["entry"] if e["resource"]["resourceType"] == "Condition"
             for c in e["resource"]["code"]["coding"]}
    code = sorted(conds)[0]
    _, doc = twin("query", "cohort", json.dumps({"has_condition": code}), store=store)
    assert doc["patient_ids"] == [PATIENT]
    _, doc = twin("query", "cohort", json.dumps({"not": {"has_condition": code}}), store=store)
    assert doc["patient_ids"] == []


def test_graph_export(store, tmp_path):
    out = tmp_path / "g.json"
    _, doc = twin("graph", PATIENT, "--as-of", "2010-01-01", "--out", str(out), store=store)
    g = json.loads(out.read_text())
    assert len(g["nodes"]) == doc["nodes"] and len(g["links"]) == doc["edges"]
    assert all((n["time"] or "") <= "2010-01-01T00:00:00Z" for n in g["nodes"])


def test_errors_are_json_and_precise(store, tmp_path):
    bad = json.loads(BUNDLE.read_text())
    obs = [e for e in bad["entry"] if e["resource"]["resourceType"] == "Observation" and "valueQuantity" in e["resource"]]
    victim = obs[len(obs) // 2]["resource"]
    victim["valueQuantity"]["unit"] = victim["valueQuantity"]["code"] = "furlongs"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    _, before = twin("summary", store=store)
    rc, doc = twin("ingest", str(path), store=store, check=False)
    assert rc == 1 and not doc["ok"]
    err = doc["error"] if "error" in doc else doc["errors"][0]
    assert err["resource"] == f"Observation/{victim['id']}" and "valueQuantity" in err["field"]
    _, after = twin("summary", store=store)
    assert after["nodes"] == before["nodes"] and after["edges"] == before["edges"]
    rc, doc = twin("query", "cohort", "{not json", store=store, check=False)
    assert rc == 1 and "not valid JSON" in doc["error"]["reason"]

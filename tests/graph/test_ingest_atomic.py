"""One file = one transaction: a corrupt resource or a SIGKILL leaves the store consistent."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.errors import RecordError
from graph.ingest import ingest_paths, parse_file
from graph.schema import NodeType
from graph.store.base import NodeQuery
from graph.store.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[2]


def synthea_bundles(external_dir: Path) -> list[Path]:
    return sorted((external_dir / "synthea-fhir").glob("*.json"))


def middle_observation(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Observation with a valueQuantity closest to the middle of the bundle."""
    entries = bundle["entry"]
    mid = len(entries) // 2
    order = sorted(range(len(entries)), key=lambda i: abs(i - mid))
    for i in order:
        r = entries[i]["resource"]
        if r["resourceType"] == "Observation" and "valueQuantity" in r:
            return r
    raise AssertionError("no Observation with a valueQuantity")


def _bad_unit(r: dict[str, Any]) -> str:
    r["valueQuantity"].pop("code", None)
    r["valueQuantity"]["unit"] = "furlong/fortnight"
    return "valueQuantity.unit"


def _bad_date(r: dict[str, Any]) -> str:
    r["effectiveDateTime"] = "last tuesday"
    return "effectiveDateTime"


def _bad_value(r: dict[str, Any]) -> str:
    r["valueQuantity"]["value"] = "12.5"
    return "valueQuantity.value"


def _impossible(r: dict[str, Any]) -> str:
    r["code"]["coding"][0]["code"] = "29463-7"
    r["valueQuantity"].update(value=-70, unit="kg", code="kg")
    return "valueQuantity.value"  # the value is impossible, not its unit


@pytest.mark.parametrize("corrupt", [_bad_unit, _bad_date, _bad_value, _impossible])
def test_corrupt_resource_aborts_whole_file(external_dir: Path, tmp_path: Path, sqlite_store: SQLiteStore,
                                            corrupt: Any) -> None:
    first, victim = synthea_bundles(external_dir)[:2]
    ingest_paths(sqlite_store, [first])
    before = sqlite_store.counts()
    assert before.total_nodes > 0
    bundle = json.loads(victim.read_text(encoding="utf-8"))
    bad = copy.deepcopy(bundle)
    obs = middle_observation(bad)
    field = corrupt(obs)
    path = tmp_path / "corrupt.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(RecordError) as info:
        ingest_paths(sqlite_store, [path])
    err = info.value
    assert err.file == str(path)
    assert err.resource == f"Observation/{obs['id']}"
    assert err.field == field
    assert str(path) in str(err) and obs["id"] in str(err)
    assert sqlite_store.counts() == before
    # keep_going records the error and still ingests the good file after it
    report = ingest_paths(sqlite_store, [path, victim], keep_going=True)
    assert [e["resource"] for e in report.errors] == [f"Observation/{obs['id']}"]
    assert report.files[1].error is None and sqlite_store.counts().total_nodes > before.total_nodes


@pytest.mark.parametrize(
    ("text", "resource", "field", "match"),
    [
        ('{"resourceType": "Bundle", "entry": [', None, None, "invalid JSON"),
        ('{"resourceType": "Observation", "id": "x", "status": "final", "valueQuantity": {"value": NaN}}',
         None, None, "invalid JSON"),
        ('{"resourceType": "Bundle", "entry": [{"resource": 5}]}', "entry 1", None, "JSON object"),
        ('{"resourceType": "Bundle", "entry": [{"resource": {"id": "a"}}]}', "entry 1", "resourceType", "resourceType"),
        ('{"resourceType": "Bundle", "entry": "nope"}', "Bundle", "entry", "expected a list"),
        ('{"resourceType": "Patient", "id": "p", "birthDate": "1999-13-45"}', "Patient/p", "birthDate", "date"),
        ('{"resourceType": "Patient", "id": "p", "gender": 7}', "Patient/p", "gender", "string"),
        ('{"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/p"}, '
         '"code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}, '
         '"valueQuantity": {"value": 1e400, "unit": "mg/dL"}}', "Observation/o", "valueQuantity.value", "finite"),
        ('{"resourceType": "Observation", "id": "o", "subject": "Patient/p"}', "Observation/o", "subject", "object"),
    ],
)
def test_malformed_json_is_a_located_record_error(tmp_path: Path, text: str, resource: str | None,
                                                   field: str | None, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecordError, match=match) as info:
        parse_file(path)
    assert info.value.file == str(path)
    assert info.value.resource == resource
    assert info.value.field == field


def test_ndjson_errors_name_the_line(tmp_path: Path) -> None:
    good = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    path = tmp_path / "Patient.ndjson"
    path.write_text(json.dumps(good) + "\n\n" + '{"resourceType": "Patient", "id": "p2", "birthDate": "x"}\n')
    with pytest.raises(RecordError) as info:
        parse_file(path)
    assert (info.value.resource, info.value.field) == ("line 3", "birthDate")
    path.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(RecordError, match="invalid JSON") as info:
        parse_file(path)
    assert info.value.resource == "line 2"


# ------------------------------------------------------------------ SIGKILL mid-ingest
_CHILD = """
import sys
from graph.ingest import ingest_paths
from graph.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
def tick(report):
    print("done", report.path, flush=True)
ingest_paths(store, sys.argv[2:], on_file=tick)
print("finished", flush=True)
"""


def _node_ids(store: SQLiteStore) -> set[str]:
    return {n.id for n in store.find_nodes(NodeQuery())}


def test_sigkill_mid_ingest_leaves_a_consistent_prefix(external_dir: Path, tmp_path: Path) -> None:
    files = synthea_bundles(external_dir)
    db = tmp_path / "killed.db"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(db), *map(str, files)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    done = 0
    deadline = time.monotonic() + 120
    while done < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "ingest process ended before it could be killed"
        done += line.startswith("done")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    per_file = {f: {n.id for n in parse_file(f).batch.nodes if n.type not in (NodeType.CONCEPT, NodeType.GENE)}
                for f in files}
    with SQLiteStore(db) as store:
        stored = _node_ids(store)
        committed = [f for f, ids in per_file.items() if ids <= stored]
        for f, ids in per_file.items():  # each file is all-or-nothing
            assert ids <= stored or not (ids & stored), f.name
        assert 3 <= len(committed) < len(files)
        own = {i for i in stored if not i.startswith(("Concept/", "Gene/"))}
        assert own == set().union(*(per_file[f] for f in committed))
        ingest_paths(store, files)  # the re-run completes the ingest
        resumed = store.counts()
    with SQLiteStore(tmp_path / "clean.db") as clean:
        ingest_paths(clean, files)
        assert resumed == clean.counts()

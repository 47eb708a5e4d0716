"""Record integrity through ``twin ingest`` (issue 16), run as a user runs it (subprocess, JSON output).

The attacks are those of :mod:`tests.record_attacks`, the same the HTTP tests send: each must
exit non-zero with the message naming resource and field, and leave the store unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.record_attacks import ATTACKS, bundle, fresh, glucose, patient, uid


def twin(*args: str, store: Path, json_out: bool = True) -> tuple[int, Any, str]:
    env = {**os.environ, "TWIN_STORE": f"sqlite:///{store}"}
    cmd = [sys.executable, "-m", "cli", *args, *(["--json"] if json_out else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return proc.returncode, (json.loads(proc.stdout) if json_out and proc.stdout.strip() else proc.stdout), proc.stderr


def write(path: Path, doc: Any) -> str:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def state(store: Path, patients: list[str]) -> dict[str, Any]:
    """Store counts (nodes, edges, pending) and each patient's exported graph."""
    _, summary, _ = twin("summary", store=store)
    out: dict[str, Any] = {"summary": summary}
    for p in patients:
        rc, doc, _ = twin("query", "timeline", p, store=store)
        out[p] = doc["nodes"] if rc == 0 else None
    return out


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_exits_non_zero_and_changes_nothing(tmp_path: Path, name: str) -> None:
    atk = fresh(name)
    store = tmp_path / "twin.db"
    for i, b in enumerate(atk.setup):
        rc, doc, err = twin("ingest", write(tmp_path / f"setup{i}.json", b), store=store)
        assert rc == 0 and doc["ok"], (doc, err)
    before = state(store, atk.victims + atk.absent)
    path = write(tmp_path / "attack.json", atk.attack)
    rc, doc, _ = twin("ingest", path, store=store)
    assert rc == 1 and not doc["ok"]
    err = doc["error"]
    assert err["file"] == path and err["resource"] == atk.resource and err.get("field") == atk.field, err
    if atk.status == 409:
        assert err["type"] == "ConflictError"
    # the plain-text form carries the same message and also fails
    rc, _, stderr = twin("ingest", path, store=store, json_out=False)
    assert rc == 1 and atk.resource in stderr
    if atk.reason:
        assert atk.reason in stderr
    after = state(store, atk.victims + atk.absent)
    assert after == before
    assert all(after[p] is None or after[p] == [] for p in atk.absent)


def test_bare_patient_without_id_is_rejected_not_invented(tmp_path: Path) -> None:
    store = tmp_path / "twin.db"
    rc, doc, _ = twin("ingest", write(tmp_path / "p.json", {"resourceType": "Patient"}), store=store)
    assert rc == 1 and doc["error"]["field"] == "id" and doc["error"]["resource"] == "resource 1"
    _, summary, _ = twin("summary", store=store)
    assert summary["patients"] == 0 and summary["nodes"] == {}


def test_ndjson_line_without_subject_is_rejected_naming_the_line(tmp_path: Path) -> None:
    a = uid("nd")
    obs = glucose(f"{a}-g", a)
    del obs["subject"]
    path = tmp_path / "Observation.ndjson"
    path.write_text(json.dumps(patient(a)) + "\n" + json.dumps(obs) + "\n", encoding="utf-8")
    rc, doc, _ = twin("ingest", str(path), store=tmp_path / "twin.db")
    assert rc == 1 and (doc["error"]["resource"], doc["error"]["field"]) == ("line 2", "subject")


def test_summary_counts_stored_skipped_and_rejected_truthfully(tmp_path: Path) -> None:
    a, b = uid("ok"), uid("bad")
    claim = {"resourceType": "Claim", "id": f"{a}-claim", "patient": {"reference": f"Patient/{a}"}}
    orphan = glucose(f"{b}-g", b)
    del orphan["subject"]
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "a.json", bundle(patient(a), glucose(f"{a}-g", a), claim))
    write(folder / "b.json", bundle(patient(b), orphan))
    store = tmp_path / "twin.db"
    rc, doc, _ = twin("ingest", str(folder), "--keep-going", store=store)
    assert rc == 1 and not doc["ok"]
    t = doc["totals"]
    assert (t["files"], t["failed_files"]) == (1, 1)
    assert (t["resources"], t["stored"], t["skipped"], t["rejected"]) == (3, 2, 1, 1)
    assert [e["resource"] for e in doc["errors"]] == [f"Observation/{b}-g"]
    assert doc["store"]["nodes"]["Patient"] == 1  # only a's file landed
    rc, text, _ = twin("ingest", str(folder), "--keep-going", store=store, json_out=False)
    assert rc == 1 and "2 stored, 1 skipped, 1 rejected" in " ".join(text.split())


def test_ndjson_bulk_export_split_by_type_ingests_in_any_order(tmp_path: Path) -> None:
    a = uid("bulk")
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Observation.ndjson").write_text(json.dumps(glucose(f"{a}-g", a)) + "\n", encoding="utf-8")
    (folder / "Patient.ndjson").write_text(json.dumps(patient(a)) + "\n", encoding="utf-8")
    store = tmp_path / "twin.db"
    rc, doc, _ = twin("ingest", str(folder / "Observation.ndjson"), str(folder / "Patient.ndjson"), store=store)
    assert rc == 0 and doc["ok"], doc
    assert doc["store"]["pending_edges"] == 0 and doc["store"]["nodes"]["Lab"] == 1


def test_two_ehrs_reusing_ids_stay_apart_under_their_namespaces(tmp_path: Path) -> None:
    """EHR 1 and EHR 2 both have Patient/123 and Observation/o1 (different people). In one id
    space they are indistinguishable from a re-sent record; each under its source's namespace they stay apart."""
    store = tmp_path / "twin.db"
    one = write(tmp_path / "ehr1.json", bundle(patient("123"), glucose("o1", "123", value=90.0)))
    two = write(tmp_path / "ehr2.json", bundle(patient("123"), glucose("o1", "123", value=250.0)))
    assert twin("ingest", one, "--namespace", "ehr1", store=store)[0] == 0
    assert twin("ingest", two, "--namespace", "ehr2", store=store)[0] == 0
    _, s, _ = twin("summary", store=store)
    assert s["patients"] == 2 and s["nodes"]["Lab"] == 2
    for ns, value in (("ehr1", 90.0), ("ehr2", 250.0)):
        _, tl, _ = twin("query", "timeline", f"{ns}:123", store=store)
        assert [(n["id"], n["value"]) for n in tl["nodes"]] == [(f"Observation/{ns}:o1", value)]
    rc, doc, _ = twin("ingest", two, "--namespace", "ehr 2!", store=store)
    assert rc == 1 and doc["error"]["field"] == "namespace"

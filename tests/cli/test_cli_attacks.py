"""Issue 16 attacks through the real ``twin`` command (a subprocess, as a user runs it):
predicate nesting and width, unknown patients, de-identified export of image file names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graph import MAX_PREDICATE_DEPTH, MAX_PREDICATE_TERMS, open_store, patient_graph

LEAF = '{"has_condition": "44054006"}'


def twin(*args: str, store: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "TWIN_STORE": f"sqlite:///{store}", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=full, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, (proc.returncode, out[-2000:])
    assert "Traceback" not in out, out[-2000:]
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One synthetic patient with image files named after it, ingested by `twin ingest`."""
    from synthetic.cohort import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("attack")
    summary = generate_cohort(SynthConfig(patients=1, years=1.0, seed=5, missing_images=0.0), root / "cohort")
    store = root / "twin.db"
    proc = twin("ingest", str(root / "cohort" / "fhir"), "--json", store=store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"store": store, "pid": summary.patient_ids[0], "root": root}


def _nested(depth: int) -> str:
    return '{"not": ' * depth + LEAF + "}" * depth


@pytest.mark.parametrize("depth", [MAX_PREDICATE_DEPTH + 1, 500, 5_000, 12_000])
def test_cohort_nesting_past_the_limit_is_a_one_line_error(cohort: dict, depth: int) -> None:
    proc = twin("query", "cohort", _nested(depth), store=cohort["store"])
    assert_one_line_error(proc, "depth", str(MAX_PREDICATE_DEPTH))


def test_cohort_nesting_at_the_limit_runs(cohort: dict) -> None:
    proc = twin("query", "cohort", _nested(MAX_PREDICATE_DEPTH), "--json", store=cohort["store"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True


@pytest.mark.parametrize("op", ["all", "any"])
def test_cohort_width_past_the_limit_is_a_one_line_error(cohort: dict, op: str) -> None:
    spec = json.dumps({op: [json.loads(LEAF)] * (MAX_PREDICATE_TERMS + 1)})
    proc = twin("query", "cohort", spec, store=cohort["store"])
    assert_one_line_error(proc, "terms", str(MAX_PREDICATE_TERMS))
    proc = twin("query", "cohort", spec, "--json", store=cohort["store"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and str(MAX_PREDICATE_TERMS) in doc["error"]["reason"]


def test_timeline_of_an_unknown_patient_is_an_error(cohort: dict) -> None:
    proc = twin("query", "timeline", "nobody-here", store=cohort["store"])
    assert_one_line_error(proc, "no patient with id 'nobody-here'")
    proc = twin("query", "timeline", "nobody-here", "--json", store=cohort["store"])
    assert proc.returncode == 1 and json.loads(proc.stdout)["ok"] is False
    # a known patient with nothing before --as-of is still an (empty) answer, not an error
    proc = twin("query", "timeline", cohort["pid"], "--as-of", "1900-01-01", "--json", store=cohort["store"])
    assert proc.returncode == 0 and json.loads(proc.stdout)["count"] == 0


def test_graph_of_an_unknown_patient_says_so(cohort: dict) -> None:
    assert_one_line_error(twin("graph", "nobody-here", store=cohort["store"]), "no patient with id 'nobody-here'")


def test_deidentified_graph_export_leaks_no_id_date_or_file_name(cohort: dict) -> None:
    with open_store(f"sqlite:///{cohort['store']}") as st:
        g = patient_graph(st, cohort["pid"])
    assert any("file_path" in n.props for n in g.nodes)
    ids = {n.id for n in g.nodes if n.patient_id} | {n.id.split("/", 1)[1] for n in g.nodes if n.patient_id}
    dates = {d.date().isoformat() for n in g.nodes for d in (n.time, n.end) if d is not None}
    for fmt in ("node-link", "graphml"):
        proc = twin("graph", cohort["pid"], "--deidentify", "--format", fmt, store=cohort["store"],
                    env={"TWIN_DEID_SALT": "cli-test-salt"})
        assert proc.returncode == 0, proc.stderr
        text = proc.stdout
        assert cohort["pid"] not in text
        for secret in ids | dates:
            assert secret not in text, (fmt, secret)
        assert str(cohort["root"]) not in text and "images/" not in text

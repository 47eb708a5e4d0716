"""The README's main job, end to end: ``twin demo`` on the embedded store (small and fast settings)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--out", str(out), "--patients", "60", "--epochs", "2",
         "--members", "1", "--json"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["ok"] and len(doc["ranking"]["plans"]) == 3
    assert 0.0 <= doc["ranking"]["p_top_is_best"] <= 1.0
    for name in ("twin.db", "models/default/model.pt", "forecast.png", "scenarios.png", "report.md", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cohort"]["patients"] == 60 and summary["store_nodes"]["Patient"] == 60
    labs = summary["forecast"]["labs"]
    assert "4548-4" in labs  # HbA1c is forecast for the chosen (diabetic) patient
    for lf in labs.values():
        assert all(lo <= med <= hi for lo, med, hi in zip(lf["p05"], lf["median"], lf["p95"], strict=True))
    report = (out / "report.md").read_text()
    assert "![forecast](forecast.png)" in report and "What-if" in report
    # names a clinician reads: display names with the code beside, readable units, nothing cut
    for code, lf in labs.items():
        assert f"| {lf['name']} ({code}) |" in report
    assert "| mmHg |" in report and "mm[Hg]" not in report and "{1.73_m2}" not in report and "…" not in report
    # the records that drove the forecast: names, kinds and dates, the patient node described, no node ids
    drivers = report.split("| record | kind | date | score |")[1].split("##")[0]
    rows = [r.split("|")[1:-1] for r in drivers.strip().splitlines()[1:]]
    assert len(rows) == len(summary["explanation"])
    for (name, kind, date, _score), a in zip(rows, summary["explanation"], strict=True):
        assert "/" not in name.split("(")[-1] and a["node_id"] not in name
        assert kind.strip() in {"patient summary", "lab result", "condition", "medication", "procedure", "encounter",
                                "imaging study", "genetic variant"}
        assert re.fullmatch(r" \d{4}-\d{2}-\d{2} ", date), date
    # the ranking: each plan's value at the objective's day with its interval and the paired difference
    ranking = report.split("| rank | plan | HbA1c day 180 | Δ vs reference |")[1]
    for e in doc["ranking"]["plans"]:
        diff = "reference" if e["plan"] == e["reference"] else f"{e['diff_median']:+.2f} [{e['diff_lo']:+.2f}, "
        assert f"| {e['plan']} | {e['median']:.2f} [{e['lo']:.2f}, {e['hi']:.2f}] | {diff}" in ranking
    assert "patient" not in proc.stderr.lower() or summary["patient"] not in proc.stderr  # no patient ids in logs

"""The README's main job, end to end: ``twin demo`` on the embedded store (small and fast settings)."""

from __future__ import annotations

import json
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
    assert "patient" not in proc.stderr.lower() or summary["patient"] not in proc.stderr  # no patient ids in logs

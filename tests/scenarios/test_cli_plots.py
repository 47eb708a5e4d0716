"""``twin simulate`` argument handling and error reporting; PNG plots; the public surface."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scenarios.errors import PlanError
from scenarios.plots import plot_trajectories
from scenarios.result import ScenarioResult
from twin.cli import app
from twin.cli.scenario_commands import parse_horizon, parse_threshold

REPO = Path(__file__).resolve().parents[2]


def test_public_surface_is_sorted_and_importable() -> None:
    # in a fresh interpreter: under pytest, tests/scenarios can shadow the package name
    code = "import scenarios as s; assert s.__all__ == sorted(s.__all__); [getattr(s, n) for n in s.__all__]; print(len(s.__all__))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) >= 15


@pytest.mark.parametrize(("text", "days"), [("365d", 365), ("90", 90), ("26w", 182), ("1y", 365.25), ("6m", 182.625)])
def test_horizon_parsing(text: str, days: float) -> None:
    assert parse_horizon(text) == pytest.approx(days)


def test_bad_horizon_and_threshold_are_plan_errors() -> None:
    with pytest.raises(PlanError, match="--horizon"):
        parse_horizon("a year")
    with pytest.raises(PlanError, match="--threshold"):
        parse_threshold("eGFR about 45")
    th = parse_threshold("eGFR<45")
    assert (th.lab, th.op, th.value) == ("eGFR", "<", 45.0)


def test_cli_reports_a_bad_plan_file_as_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nactions:\n  - {drug: metformin, dose: -5}\n")
    r = CliRunner().invoke(app, ["simulate", "p1", "--plan", str(bad), "--json", "--store", f"sqlite:///{tmp_path}/s.db"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["error"]["type"] == "PlanError"
    assert doc["error"]["field"] == "actions[0].dose" and doc["error"]["file"] == str(bad)


def test_cli_refuses_unknown_builtin_regimen(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["simulate", "p1", "--plan", "builtin:snake oil", "--json"])
    assert r.exit_code == 1 and "no built-in regimen" in json.loads(r.stdout)["error"]["reason"]


def test_plot_writes_a_png_per_patient(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    times = np.arange(0, 181, 30.0)
    x = rng.normal(7, 0.3, (16, 2, 3, len(times), 2)).astype(np.float32)
    risk = np.sort(rng.uniform(0, 0.2, (16, 2, 3, len(times), 1)), axis=3).astype(np.float32)
    res = ScenarioResult(["a", "b"], ["p0", "p1", "p2"], "p0", times, ["4548-4", "8480-6"], x,
                         events=["hospitalisation"], risk_samples=risk, lab_names={"4548-4": "HbA1c"})
    out = plot_trajectories(res, tmp_path / "sub" / "plot.png", patient="b")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(PlanError, match="name one"):
        plot_trajectories(res, tmp_path / "x.png")


def test_cli_simulates_ranks_and_plots_a_stored_twin(toy_dir: Path, treated_twin, tmp_path: Path) -> None:
    plans = tmp_path / "plans.yaml"
    plans.write_text(
        "plans:\n"
        "  - {name: keep, baseline: current}\n"
        "  - {name: stop, baseline: current, actions: [{action: stop, drug: D1, start: 0}]}\n"
        "  - {name: double, actions: [{drug: D1, dose: 1, unit: g, frequency: bid}]}\n")
    png = tmp_path / "traj.png"
    args = ["simulate", treated_twin.patient_id, "--plan", str(plans), "--horizon", "120d",
            "--model", str(toy_dir / "model.pt"), "--store", f"sqlite:///{toy_dir / 'toy.db'}",
            "--as-of", treated_twin.as_of.isoformat(), "--objective", "minimise T1 at 100d",
            "--threshold", "T1<6", "--samples", "4", "--plot", str(png)]
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output[-2000:]
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["plans"] == ["keep", "stop", "double"] and doc["reference"] == "keep"
    rows = doc["patients"][0]["plans"]
    assert set(rows[0]["labs"]["T1"]["at_day"]) == {"90", "100"}
    assert "T1 < 6" in rows[1]["thresholds"]
    assert sorted(e["plan"] for e in doc["ranking"]["plans"]) == ["double", "keep", "stop"]
    assert 0 < doc["ranking"]["p_top_is_best"] <= 1
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "P(top plan is truly best)" in table.stdout

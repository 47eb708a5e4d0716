"""``twin simulate`` argument handling and error reporting; PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from core import PlanError, TwinError, parse_duration
from scenarios import ScenarioResult, Threshold, plot_trajectories

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "days"), [("365d", 365), ("90", 90), ("26w", 182), ("1y", 365.25), ("6m", 182.625),
                                           ("2 years", 730.5), (30, 30)])
def test_one_duration_parser(text: str | int, days: float) -> None:
    assert parse_duration(text) == pytest.approx(days)


def test_bad_horizon_and_threshold_are_named_errors() -> None:
    with pytest.raises(TwinError, match="--horizon 'a year'"):
        parse_duration("a year", what="--horizon")
    with pytest.raises(TwinError, match="positive"):
        parse_duration("0d")
    with pytest.raises(PlanError, match="threshold 'eGFR about 45'"):
        Threshold.parse("eGFR about 45")
    th = Threshold.parse("eGFR<45")
    assert (th.lab, th.op, th.value) == ("eGFR", "<", 45.0)


def test_forecast_and_simulate_read_a_horizon_the_same(tmp_path: Path) -> None:
    """Both commands refuse the same bad horizon with the same message (one parser)."""
    msgs = []
    for cmd in (["forecast", "p1"], ["simulate", "p1", "--plan", "builtin:general"]):
        r = CliRunner().invoke(app, [*cmd, "--horizon", "soon", "--json", "--store", f"sqlite:///{tmp_path}/s.db",
                                     "--models", str(tmp_path / "models")])
        assert r.exit_code == 1, r.output
        msgs.append(json.loads(r.stdout)["error"]["reason"])
    assert msgs[0] == msgs[1] and "soon" in msgs[0]


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
        "  - {name: double, actions: [{treatment: D1, dose: 1, unit: g, frequency: bid}]}\n"
        "  - {name: weekly, actions: [{treatment: D1, dose: 2000, unit: mg, every: 7, times: 4}, "
        "{treatment: D1, dose: 1, unit: g, at: [3, 40]}]}\n")
    png = tmp_path / "traj.png"
    args = ["simulate", treated_twin.patient_id, "--plan", str(plans), "--horizon", "120d",
            "--model", "toy", "--models", str(toy_dir / "models"), "--store", f"sqlite:///{toy_dir / 'toy.db'}",
            "--as-of", treated_twin.as_of.isoformat(), "--objective", "minimise T1 at 100d",
            "--threshold", "T1<6", "--samples", "4", "--plot", str(png)]
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output[-2000:]
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["plans"] == ["keep", "stop", "double", "weekly"] and doc["reference"] == "keep"
    rows = doc["patients"][0]["plans"]
    assert set(rows[0]["labs"]["T1"]["at_day"]) == {"90", "100"}
    assert "T1 < 6" in rows[1]["thresholds"]
    assert sorted(e["plan"] for e in doc["ranking"]["plans"]) == ["double", "keep", "stop", "weekly"]
    assert 0 < doc["ranking"]["p_top_is_best"] <= 1
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "P(top plan is truly best)" in table.stdout

"""What ``twin forecast``/``twin simulate`` print: every interval at 80 columns, names whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cli import app
from cli.tables import drivers_table, forecast_table
from twin import Attribution, Forecast, LabForecast
from twin.twin import PATIENT_SUMMARY

REPO = Path(__file__).resolve().parents[2]
LDL = "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay"
EGFR = "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood"


def _cells(text: str) -> list[list[str]]:
    """The body rows of a rich table as lists of stripped cells."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]


def _twin_cli(args: list[str], columns: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=env, timeout=300,
                          cwd=REPO)


def test_forecast_at_80_columns_shows_the_interval_columns_with_their_values(toy_dir: Path, treated_twin) -> None:
    args = ["forecast", treated_twin.patient_id, "--model", "toy", "--models", str(toy_dir / "models"),
            "--store", f"sqlite:///{toy_dir / 'toy.db'}", "--as-of", treated_twin.as_of.isoformat(),
            "--samples", "4", "--horizon", "120d"]
    doc = json.loads(_twin_cli([*args, "--json"], 80).stdout)
    narrow = _twin_cli(args, 80)
    assert narrow.returncode == 0, narrow.stderr[-2000:]
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if line.startswith("┃") and "lab" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]] == ["lab [unit]", "now", "day 120", "5%", "95%"]
    rows = {r[0].split(" ")[0]: r for r in _cells(narrow.stdout) if r[0]}
    assert set(rows) == set(doc["labs"])
    for code, lf in doc["labs"].items():
        assert rows[code][1:] == [f"{lf['median'][0]:.3g}", f"{lf['median'][-1]:.3g}", f"{lf['p05'][-1]:.3g}",
                                  f"{lf['p95'][-1]:.3g}"]
        assert float(rows[code][3]) <= float(rows[code][2]) <= float(rows[code][4])
    wide = _twin_cli(args, 160)
    header = next(line for line in wide.stdout.splitlines() if line.startswith("┃") and "lab" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]] == ["lab", "unit", "now (median)", "day 120 median", "5%",
                                                            "95%"]


def _forecast() -> Forecast:
    labs = {code: LabForecast(code, name, unit, [0.0, 365.0], [m, m + 1], [m - 20, m - 19], [m + 20, m + 21],
                              [m, m + 1])
            for code, name, unit, m in (("18262-6", LDL, "mg/dL", 110.0), ("62238-1", EGFR, "mL/min/{1.73_m2}", 88.0),
                                        ("8480-6", "Systolic blood pressure", "mm[Hg]", 127.0))}
    return Forecast("p1", datetime(2022, 3, 11, 12, 42, tzinfo=UTC), 365.0, labs, {"hospitalisation": 0.028}, 32, 2)


@pytest.mark.parametrize("width", [80, 140])
def test_forecast_table_wraps_names_and_shows_readable_units(width: int) -> None:
    con = Console(width=width, record=True)
    con.print(forecast_table(_forecast(), width))
    text = con.export_text()
    flat = " ".join(" ".join(r[0] for r in _cells(text)).split())
    for name, code in ((LDL, "18262-6"), (EGFR, "62238-1")):
        assert f"{name} ({code})" in flat  # whole, wrapped over lines, never cut
    assert "…" not in text and "mm[Hg]" not in text and "{1.73_m2}" not in text
    assert "mmHg" in text and "mL/min/1.73 m²" in text
    assert max(len(line) for line in text.splitlines()) <= width
    ldl = next(r for r in _cells(text) if r[0].startswith("Cholesterol"))
    assert ldl[-2:] == ["91", "131"]  # 5 % and 95 % at the horizon


def test_drivers_table_names_records_kinds_dates_and_explains_the_score() -> None:
    attributions = [
        Attribution("Patient/p1", "patient", -0.026, None, "2022-03-11T12:42:00Z", PATIENT_SUMMARY),
        Attribution("MedicationRequest/9a", "medication", 0.013, "860975", "2021-03-20T11:28:00Z",
                    "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"),
        Attribution("ImagingStudy/ad", "image", -0.0035, "US", "2019-07-30T09:00:00Z", "Ultrasound of Kidney structure"),
    ]
    con = Console(width=80, record=True)
    con.print(drivers_table(attributions, "Hemoglobin A1c", 180))
    text = con.export_text()
    rows = _cells(text)
    flat = " ".join(" ".join(c for r in rows for c in r[:1]).split())
    assert "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet (860975)" in flat
    assert "Ultrasound of Kidney structure (US)" in flat and "patient summary at the origin: age, sex" in flat
    kinds_dates = [(r[1], r[2], r[3]) for r in rows if r[2]]
    assert kinds_dates == [("patient summary", "2022-03-11", "-0.026"), ("medication", "2021-03-20", "+0.013"),
                           ("imaging study", "2019-07-30", "-0.004")]
    assert "Patient/" not in text and "MedicationRequest/" not in text  # names, not node ids
    assert "standard deviations" in " ".join(text.split())  # the score is explained


def test_explain_describes_the_patient_node_and_names_records(treated_twin) -> None:
    out = treated_twin.explain(horizon_days=60, top_k=50, steps=4)
    patient = [a for a in out if a.node_type == "patient"]
    assert len(patient) == 1
    assert patient[0].display == PATIENT_SUMMARY and patient[0].code is None
    assert patient[0].time is not None and patient[0].time.startswith(treated_twin.as_of.date().isoformat())
    records = [a for a in out if a.node_type != "patient"]
    assert records and all(a.time is not None and a.code for a in records if a.node_type in ("lab", "medication"))


def test_simulate_at_80_columns_keeps_every_plan_name_and_interval(toy_dir: Path, treated_twin, tmp_path: Path) -> None:
    plans = tmp_path / "plans.yaml"
    plans.write_text("plans:\n  - {name: keep the current therapy unchanged, baseline: current}\n"
                     "  - {name: stop the study drug at once, baseline: current, actions: [{action: stop, drug: D1, "
                     "start: 0}]}\n")
    args = ["simulate", treated_twin.patient_id, "--plan", str(plans), "--horizon", "120d", "--model", "toy",
            "--models", str(toy_dir / "models"), "--store", f"sqlite:///{toy_dir / 'toy.db'}",
            "--as-of", treated_twin.as_of.isoformat(), "--objective", "minimise T1 at 100d", "--samples", "4"]
    r = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output[-2000:]
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    flat = " ".join(" ".join(c[1] if len(c) > 5 else c[0] for c in _cells(r.stdout)).split())
    assert "keep the current therapy unchanged" in flat and "stop the study drug at once" in flat
    assert "…" not in r.stdout
    assert "Δ [5–95 %]" in r.stdout and "reference" in r.stdout
    doc = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)
    stop = next(e for e in doc["ranking"]["plans"] if e["plan"].startswith("stop"))
    assert stop["reference"] == "keep the current therapy unchanged"
    assert stop["diff_lo"] <= stop["diff_median"] <= stop["diff_hi"]
    assert f"{stop['diff_median']:+.{_decimals(doc)}f}" in r.stdout  # the ranking shows the paired difference


def _decimals(doc: dict) -> int:
    from cli.tables import _decimals as decimals

    keep = next(e for e in doc["ranking"]["plans"] if e["plan"].startswith("keep"))
    return decimals(keep["median"]) + 1


def test_a_bare_builtin_name_as_plan_hints_at_builtin(tmp_path: Path) -> None:
    for spec, hint in (("diabetes", "builtin:diabetes"),
                       ("diabetes first-line metformin", "builtin:'diabetes first-line metformin'")):
        r = CliRunner().invoke(app, ["simulate", "p1", "--plan", spec, "--json", "--store",
                                     f"sqlite:///{tmp_path}/s.db"])
        assert r.exit_code == 1
        reason = json.loads(r.stdout)["error"]["reason"]
        assert reason.startswith(f"no plan file {spec!r}") and "did you mean the built-in regimen" in reason
        assert hint in reason
    r = CliRunner().invoke(app, ["simulate", "p1", "--plan", "missing.yaml", "--json"])
    assert json.loads(r.stdout)["error"]["reason"] == "no plan file 'missing.yaml'"


def test_ranking_table_marks_plans_tied_with_the_top_and_says_so_in_the_title() -> None:
    from cli.tables import ranking_table
    from scenarios.rank import RankedPlan, Ranking

    entries = [RankedPlan("combination", 1, 6.80, 6.39, 7.12, 1.0, 0.55, "no treatment", -0.4, -0.6, -0.2,
                          tied_with_top=True),
               RankedPlan("metformin", 2, 6.81, 6.39, 7.13, 1.0, 0.43, "no treatment", -0.39, -0.6, -0.2,
                          0.005, -0.02, 0.03, True),
               RankedPlan("no treatment", 3, 7.2, 6.8, 7.6, 1.0, 0.02, "no treatment", 0.0, 0.0, 0.0, 0.4, 0.2, 0.6,
                          False)]
    r = Ranking("p1", "minimise HbA1c at 180d", entries, "4548-4")
    assert r.tied == ["combination", "metformin"] and r.p_tied_best == pytest.approx(0.98)
    con = Console(width=120, record=True)
    con.print(ranking_table(r, "%", 120))
    raw = con.export_text()
    text = " ".join(raw.split())
    assert "P(top plan is truly best) = 0.55; tied: combination, metformin, P(the best is one of them) = 0.98" in text
    assert [c[0] for c in _cells(raw)] == ["1", "=2", "3"]

"""``twin simulate PATIENT --plan a.yaml --plan builtin:diabetes --horizon 365d``: what-if plans on one twin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import (
    DeviceOpt,
    FormatOpt,
    JsonOpt,
    ModelOpt,
    ModelsOpt,
    StoreOpt,
    ThreadsOpt,
    check_format,
    emit_json,
    fail,
    parse_as_of,
    registry,
)
from core import TwinError
from service import DEFAULT_MODEL, DEFAULT_TORCH_THREADS

__all__ = ["register"]


def simulate_cmd(
    patient: Annotated[str, typer.Argument(help="Patient id in the store.")],
    plan: Annotated[list[str], typer.Option("--plan", help="Plan file (YAML/JSON; may hold several plans) or "
                                            "builtin:CONDITION / builtin:'REGIMEN NAME'. Repeat for more.")],
    horizon: Annotated[str, typer.Option("--horizon", help="How far to simulate: 365d, 26w, 6m, 1y.")] = "365d",
    model: ModelOpt = DEFAULT_MODEL,
    models: ModelsOpt = None,
    store: StoreOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Forecast origin (ISO date); default: latest record.")] = None,
    objective: Annotated[str | None, typer.Option("--objective", help="Rank plans, e.g. 'minimise HbA1c at 180d "
                                                  "subject to eGFR > 45'.")] = None,
    reference: Annotated[str | None, typer.Option("--reference", help="Plan differences are taken against "
                                                  "(default: the first).")] = None,
    threshold: Annotated[list[str] | None, typer.Option("--threshold", help="Report time until e.g. 'eGFR<45'. "
                                                        "Repeatable.")] = None,
    samples: Annotated[int, typer.Option("--samples", help="Samples of the twin's uncertainty.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same numbers).")] = 0,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse plans outside the model's training range.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the trajectories per plan.")] = None,
    fmt: FormatOpt = "table",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = DEFAULT_TORCH_THREADS,
    as_json: JsonOpt = False,
) -> None:
    """Simulate a patient's twin under several treatment plans in one batched solve; compare and rank."""
    from graph import open_store
    from service import model_stamp, plans_from_specs, scenario_bundle, set_torch_threads, simulate_patient

    fhir = check_format(fmt, as_json)
    try:
        set_torch_threads(threads)
        plans = plans_from_specs(plan)
        reg = registry(models, device)
        with open_store(store) as st:
            run = simulate_patient(st, reg, patient, plans, model=model, horizon=horizon,
                                   as_of=parse_as_of(as_of), objective=objective, reference=reference,
                                   thresholds=threshold or [], samples=samples, seed=seed, strict=strict, plot=plot)
            if fhir:
                emit_json(scenario_bundle(run, model_stamp(reg, model)))
                return
    except TwinError as exc:
        fail(exc, as_json)
    if as_json:
        emit_json({"ok": True, "model": model, **run.to_dict(), "plot": str(run.plot) if run.plot else None})
    else:
        _print(run.result, run.ranking, run.days, run.plot)


def _print(result: Any, ranking: Any, key_days: tuple[float, ...], png: Path | None) -> None:
    from cli.tables import console, lab_tables, paired_note, ranking_table, risk_table
    from graph import display_unit
    from scenarios import Objective

    con = console()
    rows = result.summary(days=key_days)
    con.print(paired_note(result))
    for table in lab_tables(result, rows, key_days, con.width):
        con.print(table)
    if result.events:
        con.print(risk_table(result, rows))
    for r in rows:
        for th, v in r["thresholds"].items():
            when = f"median day {v['median_days']:g}" if v["median_days"] is not None else "median: not within horizon"
            con.print(f"{r['plan']}: {th} within horizon with p={v['p_within_horizon']:.2f} ({when})")
    for f in result.flags:
        con.print(f"[yellow]flag[/yellow] {f.plan}: {f.message}")
    if ranking is not None:
        obj = Objective.parse(ranking.objective)
        unit = "" if obj.is_risk else display_unit(result.lab_units.get(result.labs[result.lab_index(obj.target)], ""))
        con.print(ranking_table(ranking, unit, con.width, percent=obj.is_risk))
    if png:
        con.print(f"plot written to {png}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``twin`` app."""
    app.command("simulate")(simulate_cmd)

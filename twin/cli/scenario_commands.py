"""``twin simulate PATIENT --plan a.yaml --plan b.yaml --horizon 365d``: what-if plans on one twin."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from graph.errors import TwinError
from twin.cli.common import JsonOpt, StoreOpt, emit_json, fail

__all__ = ["parse_horizon", "parse_threshold", "register"]

_HORIZON = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(d|w|m|y)?\s*$", re.I)
_THRESH = re.compile(r"^\s*(.+?)\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")


def parse_horizon(text: str) -> float:
    """``"365d"``, ``"52w"``, ``"6m"``, ``"1y"`` or ``"90"`` → days."""
    from scenarios.errors import PlanError
    from scenarios.rank import parse_days

    m = _HORIZON.match(text)
    if not m:
        raise PlanError(f"--horizon {text!r}: write a number of days, e.g. 365d, 26w, 6m or 1y")
    return round(parse_days(m.group(1), m.group(2)), 6)


def parse_threshold(text: str) -> Any:
    """``"eGFR<45"`` → :class:`scenarios.result.Threshold`."""
    from scenarios.errors import PlanError
    from scenarios.result import Threshold

    m = _THRESH.match(text)
    if not m:
        raise PlanError(f"--threshold {text!r}: write LAB OP VALUE, e.g. 'eGFR<45'")
    return Threshold(m.group(1), m.group(2), float(m.group(3)))


def _plans(specs: list[str]) -> list[Any]:
    from scenarios.plan import load_plans
    from scenarios.regimens import conditions, find_regimen, load_regimens

    out = []
    for spec in specs:
        if spec.startswith("builtin:"):
            key = spec.removeprefix("builtin:")
            out.extend(load_regimens(key) if key in conditions() else [find_regimen(key)])
        else:
            out.extend(load_plans(Path(spec)))
    return out


def simulate_cmd(
    patient: Annotated[str, typer.Argument(help="Patient id in the store.")],
    plan: Annotated[list[str], typer.Option("--plan", help="Plan file (YAML/JSON; may hold several plans) or "
                                            "builtin:CONDITION / builtin:'REGIMEN NAME'. Repeat for more.")],
    horizon: Annotated[str, typer.Option("--horizon", help="How far to simulate: 365d, 26w, 6m, 1y.")] = "365d",
    model: Annotated[Path, typer.Option("--model", envvar="TWIN_MODEL", help="Fitted model checkpoint.")] = Path(
        "twin-data/model.pt"),
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
    as_json: JsonOpt = False,
) -> None:
    """Simulate a patient's twin under several treatment plans in one batched solve; compare and rank."""
    from graph.store import open_store
    from graph.timeutil import parse_fhir_time
    from scenarios.plots import plot_trajectories
    from scenarios.rank import rank
    from scenarios.simulate import simulate

    try:
        days = parse_horizon(horizon)
        plans = _plans(plan)
        ths = [parse_threshold(t) for t in threshold or []]
        from scenarios.rank import Objective

        obj = Objective.parse(objective) if objective else None
        origin = None
        if as_of:
            try:
                origin = parse_fhir_time(as_of)
            except ValueError as exc:
                raise TwinError(f"--as-of: {exc}") from None
        try:
            from twin.twin import Twin
        except ImportError as exc:
            raise TwinError(f"the twin object (twin.twin.Twin) is not available: {exc}") from None
        with open_store(store) as st:
            tw = Twin.load(st, patient, model, as_of=origin)
        extra = [obj.day] if obj is not None and obj.day <= days else []
        result = simulate(tw, plans, days, n_samples=samples, seed=seed, strict=strict, reference=reference,
                          thresholds=ths, extra_days=extra)
        ranking = rank(result, obj) if obj is not None else None
        png = plot_trajectories(result, plot) if plot else None
    except TwinError as exc:
        fail(exc, as_json)
        return
    key_days = tuple(d for d in (90.0, 180.0, 365.0) if d <= days) or (days,)
    if obj is not None and obj.day not in key_days and obj.day <= days:
        key_days = (*key_days, obj.day)
    doc = {"ok": True, **result.to_dict(days=key_days), "ranking": ranking.to_dict() if ranking else None,
           "plot": str(png) if png else None}
    if as_json:
        emit_json(doc)
    else:
        _print(result, ranking, key_days, png)


def _print(result: Any, ranking: Any, key_days: tuple[float, ...], png: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    rows = result.summary(days=key_days)
    for lab in result.labs:
        name, unit = result.lab_names.get(lab, lab), result.lab_units.get(lab, "")
        t = Table(title=f"{name} ({lab}{', ' + unit if unit else ''}): median [5–95 %]; Δ vs {result.reference}")
        t.add_column("plan")
        for d in key_days:
            t.add_column(f"day {d:g}", justify="right")
            t.add_column(f"Δ day {d:g}", justify="right")
        for r in rows:
            cells = []
            for d in key_days:
                v = r["labs"][lab]["at_day"][f"{d:g}"]
                dd = v["diff_vs_reference"]
                cells += [f"{v['median']:.2f} [{v['lo']:.2f}, {v['hi']:.2f}]",
                          f"{dd['median']:+.2f} [{dd['lo']:+.2f}, {dd['hi']:+.2f}]"]
            t.add_row(r["plan"], *cells)
        con.print(t)
    if result.events:
        t = Table(title=f"event risk by day {result.horizon_days:g}: median [5–95 %]")
        t.add_column("plan")
        for e in result.events:
            t.add_column(e, justify="right")
        for r in rows:
            t.add_row(r["plan"], *(f"{r['events'][e]['risk_at_horizon']['median']:.1%} "
                                   f"[{r['events'][e]['risk_at_horizon']['lo']:.1%}, "
                                   f"{r['events'][e]['risk_at_horizon']['hi']:.1%}]" for e in result.events))
        con.print(t)
    for r in rows:
        for th, v in r["thresholds"].items():
            when = f"median day {v['median_days']:g}" if v["median_days"] is not None else "median: not within horizon"
            con.print(f"{r['plan']}: {th} within horizon with p={v['p_within_horizon']:.2f} ({when})")
    for f in result.flags:
        con.print(f"[yellow]flag[/yellow] {f.plan}: {f.message}")
    if ranking is not None:
        t = Table(title=f"ranking: {ranking.objective} — P(top plan is truly best) = {ranking.p_top_is_best:.2f}")
        for c in ("rank", "plan", "median [5–95 %]", "P(constraints)", "P(best)"):
            t.add_column(c)
        for e in ranking.entries:
            t.add_row(str(e.rank), e.plan, f"{e.median:.3g} [{e.lo:.3g}, {e.hi:.3g}]", f"{e.p_feasible:.2f}",
                      f"{e.p_best:.2f}")
        con.print(t)
    if png:
        con.print(f"plot written to {png}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)

"""Tables of ``twin forecast`` and ``twin simulate`` that fit the terminal without losing a column.

Names wrap inside their cell (never cut); numbers never wrap. Below :data:`WIDE` columns
(the terminal's width, or ``$COLUMNS``) the compact layout is used: the unit moves under the
lab's name and each plan gets one row per summary day instead of one column pair per day, so
an 80-column terminal still shows every median with its 5–95 % interval.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from graph import display_unit, name_with_code

if TYPE_CHECKING:
    from scenarios import Ranking, ScenarioResult
    from twin import Attribution, Forecast

__all__ = ["WIDE", "console", "drivers_table", "forecast_table", "lab_tables", "paired_note", "ranking_table", "record_kind",
           "risk_table"]

#: Terminal width (columns) from which the wide layouts are used.
WIDE = 100

#: What each graph node type is, in words, for the records that drove a forecast.
_KINDS = {"patient": "patient summary", "lab": "lab result", "condition": "condition", "medication": "medication",
          "procedure": "procedure", "encounter": "encounter", "image": "imaging study", "variant": "genetic variant"}


def record_kind(node_type: str) -> str:
    """``"image"`` → ``"imaging study"``: a graph node type as a reader names it."""
    return _KINDS.get(node_type, node_type)


def _decimals(scale: float) -> int:
    """Decimals that show about three significant digits of numbers near ``scale``."""
    if not math.isfinite(scale) or scale == 0:
        return 2
    return min(4, max(0, 2 - math.floor(math.log10(abs(scale)))))


def _interval(med: float, lo: float, hi: float, decimals: int | None = None, sign: str = "") -> str:
    """``"7.18 [6.57, 7.63]"``: a median and its interval, with ``decimals`` (default: from the median)."""
    d = _decimals(med) if decimals is None else decimals
    return f"{med:{sign}.{d}f} [{lo:{sign}.{d}f}, {hi:{sign}.{d}f}]"


def _difference(plan: str, reference: str, med: float, lo: float, hi: float, decimals: int) -> str:
    return "reference" if plan == reference else _interval(med, lo, hi, decimals, "+")


def forecast_table(fc: Forecast, width: int) -> Table:
    """Each target lab now and at the horizon: median and the 5 % / 95 % quantiles."""
    days = f"{fc.horizon_days:g}"
    wide = width >= WIDE
    table = Table(title=f"forecast from {fc.origin:%Y-%m-%d} over {days} days "
                        f"({fc.n_members} member{'s' if fc.n_members != 1 else ''} × {fc.n_samples} samples)")
    table.add_column("lab" if wide else escape("lab [unit]"), ratio=1, overflow="fold")
    if wide:
        table.add_column("unit", no_wrap=True)
    for col in ("now" if not wide else "now (median)", f"day {days}" if not wide else f"day {days} median", "5%", "95%"):
        table.add_column(col, justify="right", no_wrap=True)
    for code, lf in fc.labs.items():
        unit = display_unit(lf.unit)
        name = name_with_code(lf.name, code)
        cells = [escape(name), escape(unit)] if wide else [escape(f"{name}\n[{unit}]" if unit else name)]
        table.add_row(*cells, f"{lf.median[0]:.3g}", f"{lf.median[-1]:.3g}", f"{lf.p05[-1]:.3g}", f"{lf.p95[-1]:.3g}")
    return table


def drivers_table(attributions: list[Attribution], lab: str, day: float) -> Table:
    """The records that drove the forecast of ``lab`` on ``day``: name and code, kind, date, score."""
    table = Table(title=escape(f"records that drove the day-{day:g} forecast of {lab}"),
                  caption="score: integrated-gradients contribution to the forecast mean, in standard deviations "
                          "of the lab across the training cohort (+ pushes it up, − down)")
    table.add_column("record", ratio=1, overflow="fold")
    table.add_column("kind")
    table.add_column("date", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    for a in attributions:
        table.add_row(escape(name_with_code(a.display, a.code) or a.node_id), record_kind(a.node_type),
                      (a.time or "")[:10], f"{a.score:+.3f}")
    return table


def paired_note(result: ScenarioResult) -> str:
    """The line that says what the scenario tables show."""
    return (f"median [5–95 %] of each plan; Δ = plan − {result.reference}, from paired samples "
            "(the same draws of the twin's uncertainty under both plans)")


def lab_tables(result: ScenarioResult, rows: list[dict[str, Any]], days: tuple[float, ...], width: int) -> list[Table]:
    """One table per lab: each plan's median [5–95 %] and its paired difference from the reference."""
    wide = width >= 30 + 46 * len(days)
    out = []
    for lab in result.labs:
        name, unit = result.lab_names.get(lab, lab), display_unit(result.lab_units.get(lab, ""))
        ref_row = next(r for r in rows if r["plan"] == result.reference)
        d = _decimals(ref_row["labs"][lab]["at_day"][f"{days[0]:g}"]["median"])
        t = Table(title=escape(f"{name_with_code(name, lab)}{' [' + unit + ']' if unit else ''}"))
        t.add_column("plan", ratio=1, overflow="fold", min_width=12)
        if wide:
            for day in days:
                t.add_column(f"day {day:g}", justify="right", no_wrap=True)
                t.add_column(f"Δ day {day:g}", justify="right", no_wrap=True)
        else:
            for col in ("day", "median [5–95 %]", "Δ [5–95 %]"):
                t.add_column(col, justify="right", no_wrap=True)
        for r in rows:
            cells = []
            for i, day in enumerate(days):
                v = r["labs"][lab]["at_day"][f"{day:g}"]
                dd = v["diff_vs_reference"]
                pair = [_interval(v["median"], v["lo"], v["hi"], d),
                        _difference(r["plan"], result.reference, dd["median"], dd["lo"], dd["hi"], d + 1)]
                if wide:
                    cells += pair
                else:
                    t.add_row(escape(r["plan"]) if i == 0 else "", f"{day:g}", *pair, end_section=i == len(days) - 1)
            if wide:
                t.add_row(escape(r["plan"]), *cells)
        out.append(t)
    return out


def risk_table(result: ScenarioResult, rows: list[dict[str, Any]]) -> Table:
    """Each plan's risk of each event by the horizon (%), with the paired difference from the
    reference (percentage points)."""
    t = Table(title=f"risk of each event by day {result.horizon_days:g}")
    t.add_column("plan", ratio=1, overflow="fold", min_width=12)
    t.add_column("event", overflow="fold")
    t.add_column("risk (%)", justify="right", no_wrap=True)
    t.add_column("Δ (points)", justify="right", no_wrap=True)
    for r in rows:
        for i, e in enumerate(result.events):
            v, dd = r["events"][e]["risk_at_horizon"], r["events"][e]["diff_vs_reference"]
            t.add_row(escape(r["plan"]) if i == 0 else "", escape(e), _interval(100 * v["median"], 100 * v["lo"],
                                                                               100 * v["hi"], 1),
                      _difference(r["plan"], result.reference, 100 * dd["median"], 100 * dd["lo"], 100 * dd["hi"], 2))
    return t


def ranking_table(ranking: Ranking, unit: str, width: int, percent: bool = False) -> Table:
    """Plans best first: the objective's target at its day (a risk in % when ``percent``), the
    paired difference from the reference plan, P(constraints hold) and P(best). Below
    :data:`WIDE` columns the difference goes under the value, in the same cell."""
    k = 100.0 if percent else 1.0
    unit = "%" if percent else unit
    reference = ranking.entries[0].reference
    ref = next((e for e in ranking.entries if e.plan == reference), ranking.entries[0])
    d = _decimals(k * ref.median)
    tie = (f"; tied: {', '.join(ranking.tied)}, P(the best is one of them) = {ranking.p_tied_best:.2f}"
           if len(ranking.tied) > 1 else "")
    t = Table(title=escape(f"ranking: {ranking.objective}; P(top plan is truly best) = {ranking.p_top_is_best:.2f}{tie}"),
              caption=escape(f"value: the target on the objective's day{' in ' + unit if unit else ''}, "
                             f"median [5–95 %]; Δ: plan − {reference}, from paired samples; "
                             "P(ok): the constraints hold up to that day; P(best): the plan is the best one, "
                             "with the ensemble members' disagreement; =: tied with the top plan (the top's "
                             "paired advantage over it has a 5–95 % interval containing 0)"))
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("plan", ratio=1, overflow="fold", min_width=12)
    wide = width >= WIDE
    for c in ("value", "Δ", "P(ok)", "P(best)") if wide else ("value\nΔ", "P(ok)", "P(best)"):
        t.add_column(c, justify="right", no_wrap=True)
    for e in ranking.entries:
        value = _interval(k * e.median, k * e.lo, k * e.hi, d)
        diff = _difference(e.plan, reference, k * e.diff_median, k * e.diff_lo, k * e.diff_hi, d + 1)
        cells = [value, diff] if wide else [f"{value}\n{'Δ ' + diff if e.plan != reference else diff}"]
        place = f"={e.rank}" if e.tied_with_top and e.rank > 1 else str(e.rank)
        t.add_row(place, escape(e.plan), *cells, f"{e.p_feasible:.2f}", f"{e.p_best:.2f}")
    return t


def console() -> Console:
    """The console tables print to (its width follows the terminal, or ``$COLUMNS``)."""
    return Console()

"""``twin trial --cohort PREDICATE --plan A --plan B [--ray ADDRESS]``: a virtual trial of twins."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import JsonOpt, ModelOpt, ModelsOpt, StoreOpt, ThreadsOpt, emit_json, fail, parse_as_of, registry
from core import TwinError
from service import DEFAULT_MODEL, DEFAULT_TORCH_THREADS

__all__ = ["register"]


def trial_cmd(
    cohort: Annotated[str, typer.Option("--cohort", help="Cohort predicate as JSON, e.g. "
                                        "'{\"has_condition\": \"44054006\"}' (see `twin query cohort`).")],
    plan: Annotated[list[str], typer.Option("--plan", help="Plan file or builtin:'REGIMEN NAME'; the first is the "
                                            "reference arm. Repeat for each arm (at least 2).")],
    day: Annotated[list[str] | None, typer.Option("--day", help="Day to summarise (90, 26w, 6m); repeatable; "
                                                  "default 90 and 180.")] = None,
    better: Annotated[list[str] | None, typer.Option("--better", help="LAB=lower|higher: which way a lab improves "
                                                     "(default lower); repeatable.")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    models: ModelsOpt = None,
    store: StoreOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Common origin (ISO date); default: each patient's "
                                              "latest record.")] = None,
    samples: Annotated[int, typer.Option("--samples", help="Samples of each twin's uncertainty.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed and shard size, same numbers).")] = 0,
    shard_size: Annotated[int | None, typer.Option("--shard-size", help="Patients per shard (one batched solve "
                                                   "each).")] = None,
    ray: Annotated[str | None, typer.Option("--ray", help="Run the shards on Ray: 'local' (a local cluster of "
                                            "--workers CPUs) or a cluster address (ray://head:10001, auto).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="CPUs of a --ray local cluster.")] = 2,
    per_patient: Annotated[bool, typer.Option("--per-patient", help="With --json: every patient's effect "
                                              "distribution.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the arms and the effects.")] = None,
    threads: ThreadsOpt = DEFAULT_TORCH_THREADS,
    as_json: JsonOpt = False,
) -> None:
    """Simulate every patient matching a cohort predicate under each plan and compare the arms."""
    from graph import resolve_store_url
    from service import plans_from_specs, run_cohort_trial, set_torch_threads

    try:
        set_torch_threads(threads)
        plans = plans_from_specs(plan)
        ways = dict(_better(b) for b in better or [])
        run = run_cohort_trial(resolve_store_url(store), registry(models), cohort, plans, model=model, days=day,
                               samples=samples, seed=seed, as_of=parse_as_of(as_of), better=ways,
                               shard_size=shard_size, ray=ray, workers=workers, plot=plot)
    except TwinError as exc:
        fail(exc, as_json)
    if as_json:
        emit_json({"ok": True, "model": model, **run.to_dict(per_patient=per_patient),
                   "plot": str(run.plot) if run.plot else None})
    else:
        _print(run.to_dict(), run.plot)


def _better(text: str) -> tuple[str, str]:
    from core import ConfigError

    lab, sep, way = text.rpartition("=")
    if not sep or way not in ("lower", "higher") or not lab.strip():
        raise ConfigError(f"--better {text!r}: write LAB=lower or LAB=higher")
    return lab.strip(), way


def _print(doc: dict[str, Any], png: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"cohort: {doc['cohort_size']} patients, {doc['simulated']} simulated ({doc['excluded']} excluded), "
              f"{len(doc['plans'])} arms, {doc['samples']} samples each; {doc['shards']} shards ({doc['executor']}) "
              f"in {doc['seconds']:.1f}s")
    for lab, meta in doc["labs"].items():
        t = Table(title=f"{meta['name']} ({lab}{', ' + meta['unit'] if meta['unit'] else ''}): median [5–95 %] per "
                        f"arm; average effect vs {doc['reference']} [5–95 %], share with P(better) >= "
                        f"{doc['benefit_probability']:g}")
        t.add_column("plan")
        for d in doc["days"]:
            t.add_column(f"day {d:g}", justify="right")
            t.add_column(f"effect day {d:g}", justify="right")
        for plan in doc["plans"]:
            cells = []
            for d in doc["days"]:
                a = doc["arms"][plan][lab][f"{d:g}"]
                cells.append("-" if a["median"] is None else f"{a['median']:.2f} [{a['low']:.2f}, {a['high']:.2f}]")
                e = doc["effects"].get(plan, {}).get(lab, {}).get(f"{d:g}")
                cells.append("reference" if e is None else
                             f"{e['mean']:+.2f} [{e['low']:+.2f}, {e['high']:+.2f}] {e['share_benefit']:.0%}")
            t.add_row(plan, *cells)
        con.print(t)
    for plan, n in doc["guardrails"].items():
        if n:
            con.print(f"[yellow]guardrail[/yellow] {plan}: out of the model's support for {n} patients")
    if png:
        con.print(f"plot written to {png}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``twin`` app."""
    app.command("trial")(trial_cmd)

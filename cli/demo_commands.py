"""``twin demo``: the whole story on the embedded store, end to end, with a Markdown report.

synthetic cohort → ingest → train → forecast one patient → simulate and rank three plans.
No server of ours runs; everything lands under ``--out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import JsonOpt, emit_json, fail
from core import TwinError

__all__ = ["register", "run_demo"]

OBJECTIVE = "minimise HbA1c at 180d subject to eGFR > 45"
HBA1C = "4548-4"


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        typer.secho(msg, fg=typer.colors.CYAN, err=True)


def _pick_patient(store: Any) -> str:
    """A patient with diabetes and an HbA1c on record, else any patient with an HbA1c."""
    from graph import HasCondition, LabValue

    for pred in (HasCondition("44054006") & LabValue(HBA1C, ">", 0), LabValue(HBA1C, ">", 0)):
        ids = store.cohort(pred)
        if ids:
            return ids[0]
    raise TwinError("no patient in the store has an HbA1c to forecast")


def run_demo(out: Path, *, patients: int = 300, seed: int = 0, epochs: int = 15, members: int = 2,
             device: str = "cpu", quiet: bool = False) -> dict[str, Any]:
    """Run the demo into ``out`` and return its summary (also written to ``out/summary.json``)."""
    from graph import ingest_paths, open_store
    from scenarios import find_regimen, load_regimens
    from service import ModelRegistry, forecast_patient, set_torch_threads, simulate_patient, train_config, train_model
    from synthetic import SynthConfig, generate_cohort

    # every setting is checked before anything runs or is written
    synth_cfg = SynthConfig(patients=patients, seed=seed)
    cfg = train_config(epochs=epochs, members=members, seed=seed, device=device, progress=not quiet)
    set_torch_threads()

    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    _say(quiet, f"[1/5] generating a synthetic cohort of {patients} patients (seed {seed})")
    cohort_dir = out / "cohort"
    cohort = generate_cohort(synth_cfg, cohort_dir)
    seconds["synth"] = time.perf_counter() - t

    t = time.perf_counter()
    _say(quiet, "[2/5] ingesting the FHIR bundles into the embedded store")
    db = out / "twin.db"
    registry = ModelRegistry(out / "models", device=device)
    with open_store(f"sqlite:///{db}") as store:
        report = ingest_paths(store, [cohort_dir / "fhir"])
        counts = store.counts()
        seconds["ingest"] = time.perf_counter() - t

        t = time.perf_counter()
        _say(quiet, f"[3/5] training the GNN + neural-ODE twin ({members} members, up to {epochs} epochs, {device})")
        train_report = train_model(store, registry, "default", cfg)
        seconds["train"] = time.perf_counter() - t

        t = time.perf_counter()
        pid = _pick_patient(store)
        _say(quiet, "[4/5] forecasting one patient for 365 days")
        run = forecast_patient(store, registry, pid, horizon=365, samples=64, plot=out / "forecast.png")
        forecast = run.forecast
        explanation = run.twin.explain(lab=HBA1C, horizon_days=180, top_k=5)
        seconds["forecast"] = time.perf_counter() - t

        t = time.perf_counter()
        _say(quiet, "[5/5] simulating and ranking metformin, no treatment and current therapy in one batched solve")
        # plans name only treatments the model knows: metformin is a treatment input of any demo-sized cohort
        plans = [find_regimen("diabetes first-line metformin"), *load_regimens("general")]
        scen = simulate_patient(store, registry, pid, plans, horizon=365, objective=OBJECTIVE,
                                samples=256, seed=seed, plot=out / "scenarios.png")
        result, ranking = scen.result, scen.ranking
        assert ranking is not None  # an objective was given
        seconds["scenarios"] = time.perf_counter() - t

    summary = {
        "out": str(out),
        "cohort": {k: v for k, v in cohort.to_dict().items() if k != "patient_ids"} | {"patients": len(cohort.patient_ids)},
        "ingest": report.totals,
        "store_nodes": counts.nodes,
        "train": train_report,
        "patient": pid,
        "forecast": forecast.to_dict(),
        "explanation": [a.__dict__ for a in explanation],
        "scenarios": result.summary(days=(90.0, 180.0, 365.0)),
        "flags": [f.__dict__ if hasattr(f, "__dict__") else str(f) for f in getattr(result, "flags", [])],
        "ranking": ranking.to_dict(),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "report.md").write_text(_report(summary))
    _say(quiet, f"done in {sum(seconds.values()):.0f} s: {out / 'report.md'}")
    return summary


def _fmt(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _cell(text: str) -> str:
    """Text in a Markdown table cell (a ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def _report(s: dict[str, Any]) -> str:
    from cli.tables import record_kind
    from graph import display_unit, name_with_code

    f, spec = s["forecast"], s["train"]["cohort_spec"]
    lines = [
        "# patient-twin demo report",
        "",
        f"Synthetic cohort: {s['cohort'].get('patients')} patients; ingested {s['ingest']['resources']} FHIR resources "
        f"into the embedded store ({sum(s['store_nodes'].values())} nodes).",
        f"Model: {s['train']['n_train_patients']} training patients, targets "
        f"{', '.join(name_with_code(t['name'], t['code']) for t in spec['targets'])}; treatments "
        f"{', '.join(name_with_code(t['name'], t['code']) for t in spec['treatments'])}; {s['train']['seconds']:.0f} s on "
        f"{s['train']['device']}.",
        "",
        f"## Forecast for patient `{s['patient']}` from {f['origin'][:10]} (365 days)",
        "",
        "![forecast](forecast.png)",
        "",
        "| lab | unit | day | median | 5% | 95% |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for code, lf in f["labs"].items():
        for target in (90, 180, 365):
            i = min(range(len(lf["days"])), key=lambda k: abs(lf["days"][k] - target))
            lines.append(f"| {_cell(name_with_code(lf['name'], code))} | {display_unit(lf['unit'])} | {lf['days'][i]:.0f} | "
                         f"{_fmt(lf['median'][i])} | {_fmt(lf['p05'][i])} | {_fmt(lf['p95'][i])} |")
    if f["event_risk"]:
        lines += ["", "Event risk at the horizon: " + ", ".join(f"{k} {v:.1%}" for k, v in f["event_risk"].items())]
    if s["explanation"]:
        hba1c = f["labs"].get(HBA1C, {}).get("name") or "HbA1c"
        lines += ["", f"Records that drove the 180-day forecast of {hba1c} most. Score: the record's contribution to the "
                  "forecast mean by integrated gradients, in standard deviations of the lab across the training "
                  "cohort (positive pushes the forecast up). The patient summary is the encoder's digest of the whole "
                  "history at the origin, not one record.", "",
                  "| record | kind | date | score |", "| --- | --- | --- | ---: |"]
        for a in s["explanation"]:
            name = name_with_code(a.get("display"), a.get("code")) or a["node_id"]
            lines.append(f"| {_cell(name)} | {record_kind(a['node_type'])} | {(a.get('time') or '')[:10]} | "
                         f"{a['score']:+.3f} |")
    r = s["ranking"]
    unit = display_unit(f["labs"].get(HBA1C, {}).get("unit"))
    ref = r["plans"][0].get("reference") or ""
    lines += ["", "## What-if: metformin, no treatment, current therapy", "", "![scenarios](scenarios.png)", "",
              f"Objective: *{r['objective']}*. Probability that the top plan is truly best under the twin's "
              f"uncertainty (with the ensemble members' disagreement about the effects): {r['p_top_is_best']:.0%}."
              + (f" **Tie**: {', '.join(r['tied'])} (the top plan's paired advantage has a 5–95 % interval "
                 f"containing 0); probability that the best is one of them: {r['p_tied_best']:.0%}."
                 if len(r.get('tied', [])) > 1 else "") + f" HbA1c on day 180{' in ' + unit if unit else ''}: median and "
              f"5–95 % interval; Δ: the plan minus *{ref}*, computed sample by sample (the same draws of the twin's "
              "uncertainty under both plans), with its 5–95 % interval.", "",
              "| rank | plan | HbA1c day 180 | Δ vs reference | P(constraints hold) | P(best) | tied with top |",
              "| ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for e in r["plans"]:
        diff = "reference" if e["plan"] == ref else f"{e['diff_median']:+.2f} [{e['diff_lo']:+.2f}, {e['diff_hi']:+.2f}]"
        lines.append(f"| {e['rank']} | {_cell(e['plan'])} | {e['median']:.2f} [{e['lo']:.2f}, {e['hi']:.2f}] | {diff} | "
                     f"{e['p_feasible']:.0%} | {e['p_best']:.0%} | {'yes' if e.get('tied_with_top') else 'no'} |")
    lines += ["", "Timings (s): " + ", ".join(f"{k} {v}" for k, v in s["seconds"].items()), ""]
    return "\n".join(lines)


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the cohort, store, model, plots and report.")] = Path("out/demo"),
    patients: Annotated[int, typer.Option(help="Synthetic patients to generate.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of every random step.")] = 0,
    epochs: Annotated[int, typer.Option(help="Maximum training epochs per ensemble member.")] = 15,
    members: Annotated[int, typer.Option(help="Ensemble members (epistemic uncertainty).")] = 2,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Run the end-to-end demo on the embedded store and write a Markdown report."""
    try:
        summary = run_demo(out, patients=patients, seed=seed, epochs=epochs, members=members, device=device, quiet=as_json)
    except TwinError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({"ok": True, **{k: summary[k] for k in ("out", "patient", "ranking", "seconds")}})
    else:
        typer.echo((out / "report.md").read_text())


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``twin`` app."""
    app.command("demo")(demo)

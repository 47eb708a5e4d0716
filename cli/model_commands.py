"""``twin train``, ``twin models`` and ``twin forecast``: fit a named model, list models, forecast one patient."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

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
from twin import EFFECTS, TRANSFORMS, CohortSpec, SpecRequest, TrainConfig

__all__ = ["register"]

_DEFAULTS = TrainConfig()


def train_cmd(
    name: Annotated[str, typer.Option("--name", help="Model name in the registry (what forecast, simulate and "
                                      "the API refer to).")] = DEFAULT_MODEL,
    store: StoreOpt = None,
    models: ModelsOpt = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs per ensemble member (early stopping may end sooner).")]
    = _DEFAULTS.epochs,
    members: Annotated[int, typer.Option(help="Ensemble members (epistemic uncertainty).")] = _DEFAULTS.members,
    batch_size: Annotated[int, typer.Option(help="Examples (patient x origin) per mini-batch.")] = _DEFAULTS.batch_size,
    origins: Annotated[int, typer.Option(help="Random forecast origins per patient.")] = _DEFAULTS.origins_per_patient,
    target: Annotated[list[str] | None, typer.Option(
        "--target", help="Forecast target: an observation code or display name, optionally with a transform "
        "(CODE:log1p, CODE:positive, CODE:identity). Repeat for several; default: derived from the records.")] = None,
    treatment: Annotated[list[str] | None, typer.Option(
        "--treatment", help="Treatment input: a medication or procedure code or display name, optionally with how "
        "its effect behaves (NAME:level, NAME:lasting). Repeat for several; default: the drugs given to most patients "
        "and the procedures recorded with a dose.")] = None,
    event: Annotated[list[str] | None, typer.Option(
        "--event", help="Event kind: death, hospitalisation or condition:<code>. Repeat; default: derived.")] = None,
    step_days: Annotated[float | None, typer.Option(help="ODE solver step in days (default: from the cohort's "
                                                       "observation cadence).")] = None,
    time_unit_days: Annotated[float | None, typer.Option(help="The model's time unit in days (default: from the "
                                                            "step).")] = None,
    horizon_days: Annotated[float | None, typer.Option(help="Training horizon in days (default: from the cohort's "
                                                          "observation cadence).")] = None,
    patience: Annotated[int, typer.Option(help="Epochs without improvement before stopping.")] = _DEFAULTS.patience,
    early_stopping: Annotated[str, typer.Option(help="Validation score that picks the kept weights: loss (the full "
                                                "loss) or lab_mse (the targets' squared error).")]
    = _DEFAULTS.early_stopping,
    seed: Annotated[int, typer.Option(help="Seed of the split, origins and initialisation.")] = _DEFAULTS.seed,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = DEFAULT_TORCH_THREADS,
    distributed: Annotated[bool, typer.Option(
        "--distributed", help="Data-parallel training, one process per rank: launch with torchrun, e.g. "
        "torchrun --nproc-per-node 2 -m cli train --distributed (gloo on CPU, NCCL with --device cuda); "
        "rank 0 writes the model.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train the twin model (GNN encoder + neural ODE) on every patient of the store, as model NAME."""
    from graph import open_store
    from service import set_torch_threads, train_config, train_model

    try:
        set_torch_threads(threads)
        cfg = train_config(epochs=epochs, members=members, batch_size=batch_size, origins_per_patient=origins,
                           patience=patience, early_stopping=early_stopping, seed=seed, device=device,
                           progress=not as_json,
                           spec=spec_request(target, treatment, event, step_days, time_unit_days, horizon_days))
        reg = registry(models)
        with open_store(store) as st:
            report = train_model(st, reg, name, cfg, distributed=distributed)
    except TwinError as exc:
        fail(exc, as_json)
    if distributed and os.environ.get("RANK", "0") != "0":
        return  # rank 0 reports
    if as_json:
        emit_json({"ok": True, "name": name, **report})
        return
    typer.echo(f"trained model {name!r} into {reg.path_for(name)} ({report['n_train_patients']} train / "
               f"{report['n_val_patients']} val patients, {report['n_train_examples']} examples, "
               f"{report['seconds']:.0f}s, {report['seconds_per_epoch']:.2f}s/epoch)")
    typer.echo(CohortSpec.from_dict(report["cohort_spec"]).describe())


def spec_request(targets: list[str] | None, treatments: list[str] | None, events: list[str] | None,
                 step_days: float | None, time_unit_days: float | None, horizon_days: float | None) -> SpecRequest:
    """The ``--target CODE[:transform]``, ``--treatment``, ``--event`` and time options as a request."""
    codes, transforms = _suffixed(targets, TRANSFORMS)
    names, effects = _suffixed(treatments, EFFECTS)
    return SpecRequest(targets=codes, transforms=transforms, treatments=names, effects=effects,
                       events=tuple(events) if events else None, step_days=step_days, time_unit_days=time_unit_days,
                       horizon_days=horizon_days)


def _suffixed(items: list[str] | None, kinds: tuple[str, ...]) -> tuple[tuple[str, ...] | None, dict[str, str]]:
    """``["CODE:kind", "NAME"]`` -> the codes or names and ``{code: kind}`` for those with a known suffix."""
    if not items:
        return None, {}
    out, chosen = [], {}
    for item in items:
        head, sep, tail = item.rpartition(":")
        if sep and tail in kinds:
            chosen[head] = tail
            out.append(head)
        else:
            out.append(item)
    return tuple(out), chosen


def models_cmd(models: ModelsOpt = None, as_json: JsonOpt = False) -> None:
    """List the trained models of the registry (name, training cohort and date, targets)."""
    try:
        reg = registry(models)
        found = [m.summary() for m in reg.list()]
    except TwinError as exc:
        fail(exc, as_json)
    if as_json:
        emit_json({"ok": True, "registry": str(reg.root), "count": len(found), "models": found})
        return
    if not found:
        typer.echo(f"no trained model in {reg.root}; train one with `twin train`")
    for m in found:
        cohort = m["cohort"]
        typer.echo(f"{m['name']:16} trained {m['trained_at'] or m['updated']} on {cohort.get('patients', '?')} "
                   f"patients ({cohort.get('store', '?')}); targets "
                   f"{', '.join(t.get('name') or t['code'] for t in m['spec'].get('targets', []))}")


def forecast_cmd(
    patient: Annotated[str, typer.Argument(help="Patient id.")],
    model: ModelOpt = DEFAULT_MODEL,
    models: ModelsOpt = None,
    horizon: Annotated[str, typer.Option("--horizon", help="Forecast horizon, e.g. 365d, 26w, 12m, 1y.")] = "365d",
    store: StoreOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Forecast origin (ISO date); default: the latest record.")] = None,
    samples: Annotated[int, typer.Option(help="Latent samples per ensemble member.")] = 32,
    step: Annotated[int, typer.Option(help="Days between reported forecast points.")] = 7,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of history + forecast bands.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also list the graph nodes that drove the forecast.")] = False,
    fmt: FormatOpt = "table",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = DEFAULT_TORCH_THREADS,
    as_json: JsonOpt = False,
) -> None:
    """Forecast a patient's target labs (median, 5-95%) and event risk under their current treatment."""
    from graph import open_store
    from service import forecast_bundle, forecast_patient, model_stamp, set_torch_threads

    fhir = check_format(fmt, as_json)
    try:
        set_torch_threads(threads)
        reg = registry(models, device)
        with open_store(store) as st:
            run = forecast_patient(st, reg, patient, model=model, horizon=horizon,
                                   as_of=parse_as_of(as_of), samples=samples, step_days=step, explain=explain,
                                   plot=plot)
            if fhir:
                emit_json(forecast_bundle(run, model_stamp(reg, model)))
                return
    except TwinError as exc:
        fail(exc, as_json)
    fc = run.forecast
    doc = fc.to_dict()
    if explain:
        doc["explanation"] = [a.__dict__ for a in run.attributions]
    if run.plot:
        doc["plot"] = str(run.plot)
    if as_json:
        emit_json({"ok": True, "model": model, **doc})
        return
    from cli.tables import console as make_console
    from cli.tables import drivers_table, forecast_table

    console = make_console()
    console.print(forecast_table(fc, console.width))
    for k, v in fc.event_risk.items():
        console.print(f"risk of {k} within {fc.horizon_days:g} days: {v:.1%}")
    if run.attributions:
        lab = run.twin.model.spec.vocab.target_labs[0]  # what ``explain`` attributes by default
        name = fc.labs[lab].name if lab in fc.labs else lab
        console.print(drivers_table(run.attributions, name, min(fc.horizon_days, 180)))
    if run.plot:
        console.print(f"plot: {run.plot}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``twin`` app."""
    app.command("train")(train_cmd)
    app.command("models")(models_cmd)
    app.command("forecast")(forecast_cmd)

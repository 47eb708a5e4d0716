"""``twin train`` and ``twin forecast``: fit the dynamics model, forecast one patient."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from graph.errors import TwinError
from twin.cli.common import JsonOpt, StoreOpt, emit_json, fail

__all__ = ["register"]

DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda (same code path, tensors moved with .to()).")]


def _horizon_days(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([dwmy]?)\s*", text.lower())
    if not m:
        raise TwinError(f"--horizon: expected a duration such as 365d, 26w, 12m or 1y, got {text!r}")
    n, unit = int(m.group(1)), m.group(2) or "d"
    return n * {"d": 1, "w": 7, "m": 30, "y": 365}[unit]


def train_cmd(
    data: Annotated[str | None, typer.Option("--data", help="Store URL with the training cohort (else --store/TWIN_STORE).")] = None,
    store: StoreOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Checkpoint file to write (atomically).")] = Path("runs/model.pt"),
    epochs: Annotated[int, typer.Option(help="Maximum epochs per ensemble member (early stopping may end sooner).")] = 30,
    members: Annotated[int, typer.Option(help="Ensemble members (epistemic uncertainty).")] = 3,
    batch_size: Annotated[int, typer.Option(help="Examples (patient x origin) per mini-batch.")] = 32,
    origins: Annotated[int, typer.Option(help="Random forecast origins per patient.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the split, origins and initialisation.")] = 0,
    device: DeviceOpt = "cpu",
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Train the twin model (GNN encoder + neural ODE) on every patient of the store."""
    from graph.store import open_store
    from twin.train import TrainConfig, train

    try:
        cfg = TrainConfig(epochs=epochs, members=members, batch_size=batch_size, origins_per_patient=origins,
                          seed=seed, device=device, threads=threads, progress=not as_json)
        with open_store(data or store) as st:
            report = train(st, cfg, out)
    except (TwinError, ValueError) as exc:
        fail(exc if isinstance(exc, TwinError) else TwinError(str(exc)), as_json)
        return
    doc = report.to_dict()
    if as_json:
        emit_json({"ok": True, **{k: v for k, v in doc.items() if k != "members"},
                   "best_val_loss": [m["best_val_loss"] for m in doc["members"]]})
        return
    typer.echo(f"wrote {report.checkpoint} ({report.n_train_patients} train / {report.n_val_patients} val patients, "
               f"{report.n_train_examples} examples, {report.seconds:.0f}s, {report.seconds_per_epoch:.2f}s/epoch)")
    typer.echo(f"targets: {', '.join(report.target_labs)}; drugs: {', '.join(report.drugs) or 'none'}; "
               f"events: {', '.join(report.event_kinds) or 'none'}")
    for m in report.members:
        typer.echo(f"  member {m['member'] + 1}: best validation loss {m['best_val_loss']:.3f} after {m['epochs_run']} epochs")


def forecast_cmd(
    patient: Annotated[str, typer.Argument(help="Patient id.")],
    model: Annotated[Path, typer.Option("--model", help="Checkpoint written by `twin train`.")] = Path("runs/model.pt"),
    horizon: Annotated[str, typer.Option("--horizon", help="Forecast horizon, e.g. 365d, 26w, 12m, 1y.")] = "365d",
    store: StoreOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Forecast origin (ISO date); default: the latest record.")] = None,
    samples: Annotated[int, typer.Option(help="Latent samples per ensemble member.")] = 32,
    step: Annotated[int, typer.Option(help="Days between reported forecast points.")] = 7,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of history + forecast bands.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also list the graph nodes that drove the forecast.")] = False,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Forecast a patient's target labs (median, 5-95%) and event risk under their current treatment."""
    from graph.store import open_store
    from graph.timeutil import parse_fhir_time
    from twin.twin import Twin

    try:
        days = _horizon_days(horizon)
        try:
            origin = parse_fhir_time(as_of) if as_of else None
        except ValueError as exc:
            raise TwinError(f"--as-of: {exc}") from None
        with open_store(store) as st:
            tw = Twin.load(st, patient, model, as_of=origin, device=device)
            fc = tw.forecast(horizon_days=days, n_samples=samples, step_days=step)
            attributions = tw.explain(horizon_days=min(days, 180)) if explain else []
            png = tw.plot(plot, fc) if plot else None
    except TwinError as exc:
        fail(exc, as_json)
        return
    doc = fc.to_dict()
    if explain:
        doc["explanation"] = [a.__dict__ for a in attributions]
    if png:
        doc["plot"] = str(png)
    if as_json:
        emit_json({"ok": True, **doc})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"forecast from {doc['origin']} ({days} days, {fc.n_members} members x {fc.n_samples} samples)")
    for col in ("lab", "unit", "now (median)", f"day {days} median", "5%", "95%"):
        table.add_column(col, no_wrap=True)
    for code, lf in fc.labs.items():
        name = lf.name if len(lf.name) <= 32 else lf.name[:31] + "…"
        table.add_row(f"{code} {name}", lf.unit, f"{lf.median[0]:.3g}", f"{lf.median[-1]:.3g}", f"{lf.p05[-1]:.3g}",
                      f"{lf.p95[-1]:.3g}")
    console = Console()
    console.print(table)
    for k, v in fc.event_risk.items():
        console.print(f"risk of {k} within {days} days: {v:.1%}")
    for a in attributions:
        console.print(f"  {a.score:+.4f}  {a.node_type:10s} {a.code or '':12s} {a.time or ''}")
    if png:
        console.print(f"plot: {png}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("forecast")(forecast_cmd)

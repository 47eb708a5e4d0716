"""``twin synth`` (generate a synthetic cohort) and ``twin synth-plots`` (its documentation figures)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.common import JsonOpt, emit_json, fail
from core import TwinError

__all__ = ["register"]


def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder (fhir/, images/, truth/, cohort.json).")],
    patients: Annotated[int, typer.Option("--patients", help="Number of patients.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same bytes.")] = 0,
    years: Annotated[float, typer.Option("--years", help="Years of follow-up per patient.")] = 3.0,
    confounding: Annotated[
        float, typer.Option(help="0: treatment independent of state ... 1: strongly state-driven.")] = 0.5,
    missing_images: Annotated[float, typer.Option(help="Share of patients without imaging.")] = 0.3,
    missing_genomics: Annotated[float, typer.Option(help="Share of patients without genomic results.")] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """Generate a synthetic cohort with known ground truth (FHIR R4 bundles + truth files)."""
    from synthetic import SynthConfig, generate_cohort

    t0 = time.perf_counter()
    try:
        cfg = SynthConfig(patients=patients, seed=seed, years=years, confounding=confounding,
                          missing_images=missing_images, missing_genomics=missing_genomics)
        summary = generate_cohort(cfg, out)
    except TwinError as exc:
        fail(exc, as_json)
        return
    elapsed = time.perf_counter() - t0
    doc = summary.to_dict()
    doc.pop("patient_ids")
    doc["seconds"] = round(elapsed, 2)
    if as_json:
        emit_json({"ok": True, **doc})
        return
    typer.echo(f"wrote {patients} patients to {out} in {elapsed:.1f} s")
    for k, v in summary.counts.items():
        typer.echo(f"  {k:22s} {v}")
    typer.echo("  modality share        " + ", ".join(f"{k} {v:.2f}" for k, v in summary.modality_share.items()))
    typer.echo("  confounding AUC       " + ", ".join(f"{k} {v:.2f}" for k, v in summary.confounding_auc.items()))


def synth_plots(
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNG figures.")] = Path("docs/img"),
    cohort: Annotated[Path | None, typer.Option(help="An existing cohort folder; default: generate one.")] = None,
    patients: Annotated[int, typer.Option(help="Patients to generate when no --cohort is given.")] = 80,
    seed: Annotated[int, typer.Option(help="Seed of the generated cohort.")] = 7,
) -> None:
    """Write PNG figures of a few patients (hidden trajectories, observations, treatments, what-ifs)."""
    from synthetic import SynthConfig, generate_cohort
    from synthetic.plots import plot_cohort

    try:
        if cohort is not None and not any((cohort / "truth").glob("*.json")):
            raise TwinError(f"--cohort {cohort}: not a cohort written by `twin synth` (no truth/*.json in it)")
        if cohort is None:
            with tempfile.TemporaryDirectory() as tmp:
                generate_cohort(SynthConfig(patients=patients, seed=seed, confounding=0.7), tmp)
                paths = plot_cohort(tmp, out)
        else:
            paths = plot_cohort(cohort, out)
    except TwinError as exc:
        fail(exc, False)
        return
    except OSError as exc:
        fail(TwinError(f"cannot write the figures to {out}: {exc.strerror or exc}"), False)
        return
    for p in paths:
        typer.echo(str(p))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``twin`` app."""
    app.command("synth")(synth)
    app.command("synth-plots")(synth_plots)

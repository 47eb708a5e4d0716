"""``twin export meds OUTDIR``: a cohort of the store as a MEDS dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cli.common import JsonOpt, StoreOpt, emit_json, fail
from core import QueryError, TwinError, software_version

__all__ = ["register"]

export_app = typer.Typer(help="Export the graph in a health-data standard.", no_args_is_help=True)


@export_app.command("meds")
def meds_cmd(
    out: Annotated[Path, typer.Argument(metavar="OUTDIR", help="Folder to write the dataset into (created; must hold "
                                        "no dataset).")],
    where: Annotated[str | None, typer.Option("--where", help="Cohort predicate as JSON (as `twin query cohort`); "
                                              "default: every patient.")] = None,
    deid: Annotated[bool, typer.Option("--deidentify", help="Pseudonymous ids, shifted dates, no free text and no "
                                       "id mapping (needs TWIN_DEID_SALT).")] = False,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Patients per data/*.parquet shard.")] = 1000,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write patients as a MEDS dataset (data/*.parquet, metadata/); `twin ingest OUTDIR` reads it back."""
    from graph import cohort, open_store, predicate_from_json, write_meds

    try:
        salt = os.environ.get("TWIN_DEID_SALT") if deid else None
        if deid and not salt:
            raise QueryError("--deidentify needs a secret salt in TWIN_DEID_SALT")
        with open_store(store) as st:
            patients = cohort(st, predicate_from_json(where)) if where else None
            report = write_meds(st, out, patients=patients, deidentify_salt=salt, shard_size=shard_size,
                                etl_version=software_version())
    except TwinError as exc:
        fail(exc, as_json)
    if as_json:
        emit_json({"ok": True, **report.to_dict()})
        return
    kinds = ", ".join(f"{v} {k}" for k, v in sorted(report.nodes_by_type.items()))
    typer.echo(f"wrote {out}: {report.subjects} subjects, {report.rows} rows ({kinds}) in "
               f"{len(report.shards)} shard(s){' (de-identified)' if report.deidentified else ''}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``twin`` app."""
    app.add_typer(export_app, name="export")

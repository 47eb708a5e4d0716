"""Options and output helpers shared by every ``twin`` command."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from core import ConfigError, QueryError, TwinError
from graph import parse_fhir_time
from service import ModelRegistry

__all__ = ["DeviceOpt", "FormatOpt", "JsonOpt", "ModelOpt", "ModelsOpt", "StoreOpt", "ThreadsOpt", "check_format", "emit_json", "fail", "parse_as_of", "registry"]

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", envvar="TWIN_STORE", help="Store URL: sqlite:///path.db, bolt://host:port or neo4j://host:port."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON document instead of tables.")]
ModelOpt = Annotated[str, typer.Option("--model", envvar="TWIN_MODEL",
                                       help="Name of a trained model in the model registry (see `twin models`).")]
ModelsOpt = Annotated[Path | None, typer.Option("--models", envvar="TWIN_MODEL_PATH", show_default=False,
                                                help="Model registry folder (default twin-data/models; "
                                                     "`twin serve` reads the same).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda (same code path, tensors moved with .to()).")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads for this command.")]
FormatOpt = Annotated[str, typer.Option("--format", help="table (default), or fhir: one FHIR R4 Bundle (JSON) with "
                                        "Provenance on stdout.")]


def check_format(fmt: str, as_json: bool) -> bool:
    """Whether ``--format`` asks for FHIR; a value other than table or fhir is a :class:`QueryError`."""
    if fmt not in ("table", "fhir"):
        fail(QueryError(f"--format must be table or fhir, got {fmt!r}"), as_json)
    return fmt == "fhir"

def registry(models: Path | None, device: str = "cpu") -> ModelRegistry:
    """The model registry at ``models`` (default: ``$TWIN_MODEL_PATH`` or twin-data/models).

    Raises:
        ConfigError: ``models`` names something that is not a folder.
    """
    if models is not None and models.exists() and not models.is_dir():
        raise ConfigError(f"--models {models}: not a folder")
    return ModelRegistry(models, device=device)


def parse_as_of(text: str | None, option: str = "--as-of") -> datetime | None:
    """An ISO date/time option → UTC datetime (``None`` stays ``None``); :class:`QueryError` naming the option."""
    if text is None:
        return None
    try:
        return parse_fhir_time(text)
    except ValueError as exc:
        raise QueryError(f"{option}: {exc}") from None


def emit_json(doc: Any) -> None:
    """Print ``doc`` as the command's single JSON document."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def fail(exc: TwinError, as_json: bool, extra: dict[str, Any] | None = None) -> NoReturn:
    """Report a user-facing error (as JSON when asked) and exit with status 1."""
    if as_json:
        err = exc.to_dict() if hasattr(exc, "to_dict") else {"reason": str(exc)}
        emit_json({"ok": False, "error": {"type": type(exc).__name__, **err}, **(extra or {})})
    else:
        typer.secho(f"error: {' '.join(str(exc).split())}", fg=typer.colors.RED, err=True)  # always one line
    raise typer.Exit(1)

"""Options and output helpers shared by every ``twin`` command."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from graph.errors import TwinError

__all__ = ["JsonOpt", "StoreOpt", "emit_json", "fail"]

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", envvar="TWIN_STORE", help="Store URL: sqlite:///path.db, bolt://host:port or neo4j://host:port."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON document instead of tables.")]


def emit_json(doc: Any) -> None:
    """Print ``doc`` as the command's single JSON document."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def fail(exc: TwinError, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    """Report a user-facing error (as JSON when asked) and exit with status 1."""
    if as_json:
        err = exc.to_dict() if hasattr(exc, "to_dict") else {"reason": str(exc)}
        emit_json({"ok": False, "error": {"type": type(exc).__name__, **err}, **(extra or {})})
    else:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)

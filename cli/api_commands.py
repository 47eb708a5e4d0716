"""``twin serve`` and ``twin api-key create|list|revoke``: run the service and manage its keys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import JsonOpt, emit_json

if TYPE_CHECKING:
    from api import Settings

__all__ = ["register"]

key_app = typer.Typer(help="Manage API keys (stored hashed; a token is shown once, at creation).",
                      no_args_is_help=True)

SettingsOpt = Annotated[
    Path | None,
    typer.Option("--settings", envvar="TWIN_SETTINGS_FILE",
                 help="YAML/JSON settings file (TWIN_* variables override it)."),
]


def _settings(path: Path | None) -> Settings:
    from api import load_settings

    try:
        return load_settings(path)
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        typer.secho(f"error: invalid settings: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    settings_file: SettingsOpt = None,
) -> None:
    """Start the HTTP API with uvicorn (settings from TWIN_* variables or --settings)."""
    import uvicorn

    from api import create_app, uvicorn_config

    settings = _settings(settings_file)
    uvicorn.Server(uvicorn_config(create_app(settings), host=host, port=port)).run()


@key_app.command("create")
def key_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key (shown in listings).")],
    scopes: Annotated[list[str], typer.Option("--scope",
                                              help="graph:read, records:write, sim:run or admin (repeatable).")],
    settings_file: SettingsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print its token once (it cannot be shown again)."""
    from api import KeyStore, KeyStoreError

    ks = KeyStore(_settings(settings_file).keys_db)
    try:
        new = ks.create(name, scopes)
    except KeyStoreError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    finally:
        ks.close()
    if as_json:
        emit_json({"ok": True, "id": new.key.id, "name": new.key.name, "scopes": sorted(new.key.scopes),
                   "token": new.token})
        return
    typer.echo(f"created key {new.key.id} ({new.key.name}) with scopes {' '.join(sorted(new.key.scopes))}")
    typer.echo("token (shown once; store it now):")
    typer.echo(new.token)


@key_app.command("list")
def key_list(settings_file: SettingsOpt = None, as_json: JsonOpt = False) -> None:
    """List keys (ids, names, scopes, dates; never tokens)."""
    from api import KeyStore

    ks = KeyStore(_settings(settings_file).keys_db)
    try:
        keys = ks.list()
    finally:
        ks.close()
    docs = [
        {"id": k.id, "name": k.name, "scopes": sorted(k.scopes), "created": k.created.isoformat(),
         "revoked": k.revoked.isoformat() if k.revoked else None}
        for k in keys
    ]
    if as_json:
        emit_json({"ok": True, "keys": docs})
        return
    for k in keys:
        state = f"revoked {k.revoked.isoformat()}" if k.revoked else "active"
        typer.echo(f"{k.id}  {k.name:24} {' '.join(sorted(k.scopes)):32} {k.created.isoformat()}  {state}")


@key_app.command("revoke")
def key_revoke(key_id: Annotated[str, typer.Argument(help="Key id (from `twin api-key list`).")],
               settings_file: SettingsOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a key for good."""
    from api import KeyStore, KeyStoreError

    ks = KeyStore(_settings(settings_file).keys_db)
    try:
        key = ks.revoke(key_id)
    except KeyStoreError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    finally:
        ks.close()
    if as_json:
        emit_json({"ok": True, "id": key.id, "revoked": key.revoked.isoformat() if key.revoked else None})
    else:
        typer.echo(f"revoked key {key.id} ({key.name})")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``twin`` app."""
    app.command("serve")(serve)
    app.add_typer(key_app, name="api-key")

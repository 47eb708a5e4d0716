"""``twin serve`` and ``twin api-key create|list|revoke``: run the service and manage its keys."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import JsonOpt, emit_json, fail
from core import TwinError

if TYPE_CHECKING:
    from api import KeyStore, Settings

__all__ = ["register"]

key_app = typer.Typer(help="Manage API keys (stored hashed; a token is shown once, at creation).",
                      no_args_is_help=True)

SettingsOpt = Annotated[
    Path | None,
    typer.Option("--settings", envvar="TWIN_SETTINGS_FILE",
                 help="YAML/JSON settings file (TWIN_* variables override it)."),
]


def _settings(path: Path | None, as_json: bool = False) -> Settings:
    from api import load_settings

    try:
        return load_settings(path)
    except TwinError as exc:
        fail(exc, as_json)


@contextmanager
def _keys(path: Path | None, as_json: bool) -> Iterator[KeyStore]:
    """The key file named by the settings, closed afterwards."""
    from api import KeyStore

    ks = KeyStore(_settings(path, as_json).keys_db)
    try:
        yield ks
    finally:
        ks.close()


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help=(
        "Server processes sharing the port. Each runs torch with the torch_threads setting (default 1), "
        "so workers x torch_threads should not exceed the cores; rate limits and the job queue are per process."
    ))] = 1,
    settings_file: SettingsOpt = None,
) -> None:
    """Start the HTTP API with uvicorn (settings from TWIN_* variables or --settings)."""
    import uvicorn

    from api import create_app, uvicorn_config, uvicorn_kwargs

    settings = _settings(settings_file)  # checked here, so a bad setting fails before any worker starts
    if workers == 1:
        uvicorn.Server(uvicorn_config(create_app(settings), host=host, port=port)).run()
        return
    if settings_file is not None:  # every worker process reads the same settings
        os.environ["TWIN_SETTINGS_FILE"] = str(settings_file)
    uvicorn.run(**uvicorn_kwargs("api.main:create_app", host=host, port=port, factory=True, workers=workers))


@key_app.command("create")
def key_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key (shown in listings).")],
    scopes: Annotated[list[str], typer.Option("--scope",
                                              help="graph:read, records:write, sim:run or admin (repeatable).")],
    settings_file: SettingsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print its token once (it cannot be shown again)."""
    try:
        with _keys(settings_file, as_json) as ks:
            new = ks.create(name, scopes)
    except TwinError as exc:
        fail(exc, as_json)
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
    with _keys(settings_file, as_json) as ks:
        keys = ks.list()
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
    try:
        with _keys(settings_file, as_json) as ks:
            key = ks.revoke(key_id)
    except TwinError as exc:
        fail(exc, as_json)
    if as_json:
        emit_json({"ok": True, "id": key.id, "revoked": key.revoked.isoformat() if key.revoked else None})
    else:
        typer.echo(f"revoked key {key.id} ({key.name})")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``twin`` app."""
    app.command("serve")(serve)
    app.add_typer(key_app, name="api-key")

"""The ``twin`` command line: the top layer, a thin shell over :mod:`service` and the packages below.

Each command group lives in its own module with a ``register(app)`` function; heavy
dependencies (torch, fastapi, neo4j) are imported inside the commands that need them, so
``twin query`` does not pay for loading the model code.

Bad input never ends in a traceback: commands report :class:`~core.TwinError` through
``cli.common.fail``; :func:`run` turns usage errors (a missing option, a value that is not a
number) and anything unexpected into one ``error: ...`` line on stderr (a JSON document on
stdout with ``--json``). Exit status: 0 done, 1 error, 2 usage error, 130 interrupted.
``TWIN_DEBUG=1`` lets unexpected errors through with their traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import typer
from typer._click import exceptions as click_exc  # typer's own click, which its commands raise

__all__ = ["app", "main", "run"]

app = typer.Typer(
    name="twin",
    help="patient-twin: patient knowledge graphs, digital twins and what-if treatment scenarios.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_COMMAND_MODULES = (
    "cli.graph_commands",
    "cli.model_commands",
    "cli.api_commands",
    "cli.synth_commands",
    "cli.scenario_commands",
    "cli.trial_commands",
    "cli.neo4j_commands",
    "cli.demo_commands",
    "cli.export_commands",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _error(message: str, kind: str, as_json: bool) -> None:
    line = " ".join(message.split())  # one line, whatever the message holds
    if as_json:
        sys.stdout.write(json.dumps({"ok": False, "error": {"type": kind, "reason": line}}, indent=2) + "\n")
    else:
        sys.stderr.write(f"error: {line}\n")


#: Typer's value placeholders (``<str>``, ``<list[str]>``, ``<int range>``) as the words help shows.
_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "int range": "INTEGER",
               "float range": "NUMBER", "bool": ""}


def _plain_help(command: Any) -> Any:
    """Help without type placeholders: an option's value reads ``TEXT``/``INTEGER``/``PATH`` (a
    flag shows none), an argument its name (``PATIENT``, not ``{patient}``); in every subcommand."""
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "argument":
            name = param.metavar or param.name.upper()
            param.metavar = name
            shown = name if param.required else f"[{name}]"
            param.get_usage_pieces = lambda ctx, shown=shown: [shown]
            param.display_type_rich = lambda ctx: None  # the help text says what the argument is
            continue
        if param.metavar is not None:
            continue
        label = str(param.display_type_rich(None) or "").strip("<>").removesuffix("...")
        inner = label.removeprefix("list[").removesuffix("]")
        param.metavar = _TYPE_WORDS.get(inner, inner.upper() if inner.isidentifier() else inner)
    if hasattr(command, "get_help_option"):
        command.get_help_option = _flag_help_option(command.get_help_option)
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)
    return command


def _flag_help_option(make: Any) -> Any:
    """``--help`` is made per context; it is a flag, so it shows no value placeholder either."""
    def help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option
    return help_option


def run(argv: Sequence[str] | None = None) -> int:
    """Run the ``twin`` command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    try:
        rv = _plain_help(typer.main.get_command(app)).main(args=args, prog_name="twin", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        sys.stdout.write(exc.ctx.get_help() + "\n")
        return 2
    except click_exc.UsageError as exc:
        sub = exc.ctx.command_path.partition(" ")[2] if exc.ctx else ""
        _error(f"{exc.format_message()} (see 'twin {sub + ' ' if sub else ''}--help')", "UsageError", as_json)
        return exc.exit_code
    except click_exc.ClickException as exc:
        _error(exc.format_message(), type(exc).__name__, as_json)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _error("interrupted", "Interrupted", as_json)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
        if os.environ.get("TWIN_DEBUG"):
            raise
        from core import TwinError

        if isinstance(exc, TwinError):
            _error(str(exc), type(exc).__name__, as_json)
        else:
            _error(f"unexpected {type(exc).__name__}: {exc} (TWIN_DEBUG=1 shows the traceback)",
                   type(exc).__name__, as_json)
        return 1
    return rv if isinstance(rv, int) else 0


def main() -> None:
    """The ``twin`` console command."""
    # torch_geometric still calls torch.jit.script at import; the warning is noise for CLI users.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    sys.exit(run())

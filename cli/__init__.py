"""The ``twin`` command line: the top layer, a thin shell over :mod:`service` and the packages below.

Each command group lives in its own module with a ``register(app)`` function; heavy
dependencies (torch, fastapi, neo4j) are imported inside the commands that need them, so
``twin query`` does not pay for loading the model code.
"""

from __future__ import annotations

import importlib
import warnings

import typer

__all__ = ["app", "main"]

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
    "cli.neo4j_commands",
    "cli.demo_commands",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """The ``twin`` console command."""
    # torch_geometric still calls torch.jit.script at import; the warning is noise for CLI users.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    app()

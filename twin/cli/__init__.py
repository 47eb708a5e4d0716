"""The ``twin`` command line: a thin layer over the library functions the API also calls.

Each command group lives in its own module with a ``register(app)`` function; heavy
dependencies (torch, fastapi, neo4j) are imported inside the commands that need them.
"""

from __future__ import annotations

import importlib
import warnings

import typer

# torch_geometric still calls torch.jit.script at import; the warning is noise for CLI users.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

__all__ = ["app", "main"]

app = typer.Typer(
    name="twin",
    help="patient-twin: patient knowledge graphs, digital twins and what-if treatment scenarios.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_COMMAND_MODULES = (
    "twin.cli.graph_commands",
    "twin.cli.model_commands",
    "twin.cli.api_commands",
    "twin.cli.synth_commands",
    "twin.cli.scenario_commands",
    "twin.cli.neo4j_commands",
    "twin.cli.demo_commands",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()

"""``python -m cli``: the ``twin`` command."""

from cli import main

main()

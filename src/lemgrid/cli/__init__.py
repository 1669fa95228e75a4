"""The ``lemgrid`` command line. Each command lives in its own module and imports its heavy
dependencies inside the command, so that ``lemgrid --help`` stays fast."""

from lemgrid.cli._app import app
from lemgrid.cli import (  # noqa: F401  (registers)
    agent, clear, fairness, joint, ledger, optimize, powerflow, serve, simulate, stochastic)

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()

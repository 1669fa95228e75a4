"""The ``lemgrid`` command line. Each command lives in its own module and imports its heavy
dependencies inside the command, so that ``lemgrid --help`` stays fast."""

from lemgrid.cli._app import app
from lemgrid.cli import agent, clear, ledger, optimize, powerflow, serve, simulate  # noqa: F401  (registers)

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()

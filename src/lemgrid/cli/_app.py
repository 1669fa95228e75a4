"""The typer application shared by all command modules, and the user-error wrapper."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from lemgrid.errors import InfeasibleError, InputError, NotBuiltError

app = typer.Typer(
    name="lemgrid",
    help="Grid-aware local electricity markets: run market designs on real distribution grids.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from lemgrid import __version__

        console.print(f"lemgrid {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True,
        help="Print the version of lemgrid and exit.")) -> None:
    """Grid-aware local electricity markets: run market designs on real distribution grids."""

F = TypeVar("F", bound=Callable)

#: Exit code for bad input or an infeasible problem (usage errors in click also exit with 2).
EXIT_USER_ERROR = 2


def user_errors(func: F) -> F:
    """Turn lemgrid's user-facing exceptions into ``error: ...`` on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (InputError, InfeasibleError, NotBuiltError, FileNotFoundError) as exc:
            message = str(exc)
            if isinstance(exc, FileNotFoundError) and exc.filename:
                message = f"file not found: {exc.filename}"
            err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USER_ERROR) from None

    return wrapper  # type: ignore[return-value]

"""The typer application shared by all command modules, and the user-error wrapper."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
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


#: ``update(done, total)`` of a progress bar; ``total`` None while it is not known.
ProgressUpdate = Callable[[int, "int | None"], None]


def quiet_option():
    return typer.Option("--quiet", "-q",
                        help="No progress bar (there is none either when stderr is not a "
                             "terminal).")


@contextlib.contextmanager
def progress_bar(description: str, quiet: bool = False) -> Iterator[ProgressUpdate]:
    """A progress bar on stderr, gone when the block ends; yields its ``update(done, total)``.

    Nothing is drawn with ``quiet`` or when stderr is not a terminal (a pipe, a log file, CI), so
    output that is kept stays free of control characters.
    """
    if quiet or not err_console.is_terminal:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def check_horizon(start: str | None, days: float | None) -> None:
    """``--start`` is a date or date-time, ``--days`` a finite number > 0 (exit 2 otherwise)."""
    import pandas as pd

    if start is not None:
        try:
            stamp = pd.Timestamp(start)
        except (ValueError, TypeError, OverflowError):
            stamp = None
        if stamp is None or pd.isna(stamp):
            raise InputError(f"--start: not a date or date-time (e.g. 2016-06-01 or "
                             f"2016-06-01T12:00), got {start!r}")
    if days is not None and not (math.isfinite(days) and days > 0):
        raise InputError(f"--days must be a finite number > 0, got {days}")

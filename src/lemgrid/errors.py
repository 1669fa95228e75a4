"""Exceptions that carry a message meant for the user.

The CLI turns them into a one-line ``error: ...`` on stderr and a non-zero exit; the service turns
them into 4xx responses. Messages name the field and the offending value.
"""


class InputError(ValueError):
    """Bad user input: a malformed file, an unknown bus, a negative quantity, NaN, ...

    ``field`` is the top-level key of the input at fault, where one is known (e.g. ``"start"``
    of a scenario), so that a caller that set the key itself (a command-line option) can name it.
    """

    field: str | None = None


class InfeasibleError(RuntimeError):
    """A well-formed problem that has no solution (e.g. an EV that cannot be charged in time)."""


class NotBuiltError(NotImplementedError):
    """A capability that lemgrid does not have yet; says so rather than returning a fake result."""

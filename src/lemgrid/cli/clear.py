"""``lemgrid clear``: clear an order book from a CSV file (issue 3)."""

from __future__ import annotations

from lemgrid.cli._app import app, user_errors
from lemgrid.errors import NotBuiltError


@app.command()
@user_errors
def clear() -> None:
    """Clear ORDERS.csv with a double auction or continuous trading (not built yet)."""
    raise NotBuiltError("`lemgrid clear` is not built yet")

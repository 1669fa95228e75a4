"""``lemgrid ledger ...``: the verifiable ledger's commands (issue 5)."""

from __future__ import annotations

import typer

from lemgrid.cli._app import app, user_errors
from lemgrid.errors import NotBuiltError

ledger_app = typer.Typer(help="Verifiable, tamper-evident ledger: verify, proofs, anchoring.",
                         no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command()
@user_errors
def verify() -> None:
    """Verify a ledger (not built yet)."""
    raise NotBuiltError("`lemgrid ledger verify` is not built yet")

"""``lemgrid serve``: the market operator (issue 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lemgrid.cli._app import app, console, user_errors


@app.command()
@user_errors
def serve(
    scenario: Optional[Path] = typer.Argument(
        None, metavar="[SCENARIO.yaml]",
        help="Scenario whose participants' meters keys may be bound to and whose order-based "
             "design clears the sessions (default: any meter, uniform auction)."),
    db: str = typer.Option("sqlite:///market.db", "--db",
                           help="Database URL: sqlite:///FILE (WAL, synchronous=FULL) or "
                                "postgresql://USER@HOST:PORT/DB (psycopg 3)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    operator_key: Path = typer.Option(
        Path("operator.key"), "--operator-key",
        help="The operator's Ed25519 key (PEM); created with mode 0600 if missing."),
    tick_s: float = typer.Option(1.0, "--tick-s", min=0.01,
                                 help="How often the scheduler checks for gate closures [s]."),
) -> None:
    """Run the market server: signed order intake, gate closure, clearing, settlement, ledger."""
    import uvicorn

    from lemgrid.ledger.identity import generate_key, load_private_key, write_private_key
    from lemgrid.service.app import create_app
    from lemgrid.service.engine import load_market

    if not operator_key.exists():
        write_private_key(generate_key(), operator_key)
        console.print(f"created operator key {operator_key}")
    key = load_private_key(operator_key)
    spec = load_market(str(scenario)) if scenario is not None else None
    application = create_app(db, key, spec=spec, tick_s=tick_s, verify_process=True)
    console.print(f"lemgrid market operator on http://{host}:{port} (database {db}, log "
                  f"{application.state.market.log_id})")
    # uvloop and httptools (dependencies of the service extra); no per-request extras: no access
    # log, no proxy-header rewriting (the server is not behind a proxy it trusts), no Date or
    # Server header.
    uvicorn.run(application, host=host, port=port, log_level="warning", loop="uvloop",
                http="httptools", access_log=False, proxy_headers=False, server_header=False,
                date_header=False)

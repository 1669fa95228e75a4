"""``lemgrid optimize``: clear a scenario's horizon with the community or P2P design."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lemgrid.cli._app import app, console, progress_bar, quiet_option, user_errors


@app.command()
@user_errors
def optimize(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file")],
    design: Annotated[str | None, typer.Option(
        help="community or p2p (default: the scenario's market.design)")] = None,
    network: Annotated[str | None, typer.Option(
        help="ignore or constrained: clear within the grid's limits with DLMPs "
             "(default: the scenario's market.network, else ignore)")] = None,
    days: Annotated[float | None, typer.Option(help="Override the scenario's days")] = None,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("out/optimize"),
    quiet: Annotated[bool, quiet_option()] = False,
) -> None:
    """Clear a whole horizon with the community (DLMPs) or P2P design.

    Writes schedule.parquet, participants.csv, prices.parquet, dlmp_components.parquet (network
    constrained), trades.parquet (p2p) and summary.json.
    """
    from lemgrid.errors import InputError
    from lemgrid.scenario import load_scenario
    from lemgrid.sim.optimize import optimize_scenario, write_optimize_outputs

    if design is not None and design not in ("community", "p2p"):
        raise InputError(f"--design must be one of community, p2p, got {design!r}")
    if network is not None and network not in ("ignore", "constrained"):
        raise InputError(f"--network must be 'ignore' or 'constrained', got {network!r}")
    loaded = load_scenario(scenario, days=days)
    # One solve over the whole horizon: the bar shows that it runs and for how long.
    with progress_bar(f"clearing {loaded.name} ({len(loaded.time_index)} intervals)", quiet):
        outcome = optimize_scenario(loaded, design, network)
    write_optimize_outputs(outcome, out)
    _print(outcome.summary, out)


def _print(summary: dict, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"{summary['design']} market ({summary['network']})", show_header=False,
                  box=None)
    for key, value in summary.items():
        if key in ("design", "network"):
            continue
        table.add_row(key, f"{value:,.4g}" if isinstance(value, float) else str(value))
    table.add_row("written to", str(out))
    console.print(table)
